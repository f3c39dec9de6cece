"""Which proxy a request takes: the environment's, never for loopback, named without secrets."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._proxy import Proxies, is_loopback, redact

ENV = {"HTTP_PROXY": "http://proxy:3128", "HTTPS_PROXY": "http://proxy:3129", "NO_PROXY": "a.b"}


def test_the_environment_names_a_proxy_per_scheme_and_no_proxy_exempts() -> None:
    proxies = Proxies(ENV)
    assert "http://proxy:3128" == proxies.for_url("http://posthog.internal/x/")
    assert "http://proxy:3129" == proxies.for_url("https://us.posthog.com/x/")
    assert proxies.for_url("https://a.b/x/") is None
    assert Proxies({}).for_url("https://us.posthog.com/x/") is None


def test_a_no_proxy_entry_may_name_a_port() -> None:
    """`host:port` exempts that port of the host only; `host` alone, every port."""
    proxies = Proxies({**ENV, "NO_PROXY": "posthog.internal:8000,.corp.example"})
    assert proxies.for_url("http://posthog.internal:8000/x/") is None
    assert "http://proxy:3128" == proxies.for_url("http://posthog.internal:8001/x/")
    assert "http://proxy:3128" == proxies.for_url("http://posthog.internal/x/")
    assert proxies.for_url("https://ph.corp.example:8443/x/") is None
    assert proxies.for_url("https://ph.corp.example/x/") is None
    ipv6 = Proxies({**ENV, "NO_PROXY": "fd00::1"})
    assert ipv6.for_url("https://[fd00::1]:8443/x/") is None
    assert "http://proxy:3129" == ipv6.for_url("https://[fd00::2]:8443/x/")


@pytest.mark.parametrize(
    ("no_proxy", "direct", "proxied"),
    [
        ("10.0.0.0/8", "http://10.1.2.3:8000/x/", "http://11.1.2.3:8000/x/"),
        ("192.168.0.0/16, .svc", "http://192.168.5.7/x/", "http://192.169.0.1/x/"),
        ("2001:db8::/32", "http://[2001:db8::1]:8000/x/", "http://[2001:db9::1]:8000/x/"),
        ("[2001:db8::1]", "http://[2001:db8::1]/x/", "http://[2001:db8::2]/x/"),
        ("10.0.0.0/8", "http://10.0.0.9/x/", "http://10.example/x/"),
    ],
)
def test_a_no_proxy_range_exempts_the_addresses_in_it(
    no_proxy: str, direct: str, proxied: str
) -> None:
    """
    `NO_PROXY=10.0.0.0/8,.svc,.cluster.local`, as curl, requests and Go read it (what
    Kubernetes and corporate setups write): the standard library's matching reads no
    range, so a self-hosted PostHog at 10.x went through the proxy, its key in cleartext
    over `http://`. An address in a range, or an IPv6 one in brackets, goes direct.
    """
    proxies = Proxies({**ENV, "NO_PROXY": no_proxy})
    assert proxies.for_url(direct) is None
    assert proxies.for_url(proxied) is not None


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_a_no_proxy_range_matches_as_ipaddress_says(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    network = ipaddress.ip_network(f"{address}/{min(prefix, address.max_prefixlen)}", strict=False)
    proxies = Proxies({**ENV, "NO_PROXY": f"a.b, {network}"})
    probes = [address, network.network_address, network.broadcast_address]
    after = int(network.broadcast_address) + 1  # the first address past the range
    if after < 2**address.max_prefixlen:
        probes.append(
            ipaddress.ip_address(after) if address.version == 4 else ipaddress.IPv6Address(after)
        )
    for probe in probes:
        host = f"[{probe}]" if probe.version == 6 else str(probe)
        expected = None if probe in network or probe.is_loopback else "http://proxy:3128"
        assert expected == proxies.for_url(f"http://{host}:8000/x/"), probe


def test_loopback_is_never_proxied() -> None:
    proxies = Proxies(ENV)
    for url in ("http://127.0.0.1:1/", "http://127.9.9.9/", "http://[::1]:8/", "http://localhost/"):
        assert proxies.for_url(url) is None, url


@given(st.ip_addresses())
def test_is_loopback_agrees_with_ipaddress(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    text = str(address)
    assert address.is_loopback == is_loopback(text)
    if address.version == 6:
        assert address.is_loopback == is_loopback(f"[{text}]")


def test_names_are_loopback_only_when_they_say_localhost() -> None:
    for name in ("localhost", "LOCALHOST"):
        assert is_loopback(name), name
    # A name under .localhost goes to the resolver like any other: it may leave the
    # machine. So does `localhost.` with the root's dot: glibc looks it up in DNS, not in
    # /etc/hosts.
    for name in ("x.localhost", "localhost.example.com", "example.com", "", "localhost."):
        assert not is_loopback(name), name


@given(
    user=st.text(st.characters(categories=["Ll", "Nd"]), min_size=1, max_size=10),
    password=st.text(st.characters(categories=["Ll", "Nd"]), min_size=1, max_size=10),
    port=st.integers(min_value=1, max_value=65535),
)
def test_redact_drops_credentials_and_keeps_host_and_port(
    user: str, password: str, port: int
) -> None:
    shown = redact(f"http://{user}:{password}@proxy.internal:{port}")
    assert f"http://proxy.internal:{port}" == shown
    assert "@" not in shown
    assert "http://proxy.internal:3128" == redact("http://proxy.internal:3128")
    assert "http://[::1]:3128" == redact("http://u:p@[::1]:3128")


def test_a_user_name_alone_is_redacted() -> None:
    """A proxy token passed as the user name (no password) is left out too."""
    shown = redact("http://token_SECRET@proxy.internal:3128")
    assert "http://proxy.internal:3128" == shown
    assert "SECRET" not in redact("http://:SECRET@proxy.internal:3128")


@pytest.mark.parametrize(
    "proxy",
    ["http://user:SECRET@proxy.internal:notaport", "http://user:SECRET@proxy.internal:99999"],
)
def test_a_malformed_proxy_is_named_without_raising_or_its_password(proxy: str) -> None:
    """
    `redact()` builds the message of a failed connection through the proxy: for a proxy
    setting with credentials and a malformed port it raised `ValueError` there, so the
    call ended in that untyped error instead of `APIConnectionError`. It must name the
    proxy still without the password.
    """
    shown = redact(proxy)
    assert "SECRET" not in shown
    assert "proxy.internal" in shown


def test_none_says_whether_the_environment_names_a_proxy() -> None:
    """Empty variables name no proxy: every request goes direct, none is True."""
    assert Proxies({}).none
    assert not Proxies(ENV).none
    empty = Proxies({"HTTPS_PROXY": "", "http_proxy": ""})
    assert empty.none
    assert empty.for_url("https://us.posthog.com/x/") is None


def test_each_scheme_of_a_host_has_its_own_proxy() -> None:
    proxies = Proxies(ENV)
    assert "http://proxy:3129" == proxies.for_url("https://posthog.internal/x/")
    assert "http://proxy:3128" == proxies.for_url("http://posthog.internal/x/")


def test_without_a_mapping_the_process_environment_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3129")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxies = Proxies()
    assert not proxies.none
    assert "http://proxy:3129" == proxies.for_url("https://us.posthog.com/x/")
    assert proxies.for_url("https://ph.internal.example/x/") is None
    assert proxies.for_url("http://us.posthog.com/x/") is None


@pytest.mark.anyio
async def test_a_proxy_without_a_scheme_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    `HTTPS_PROXY=user:password@host:port` (no `http://`, which curl and requests accept)
    must never put the password in an error: README says a connection that fails through
    a proxy names it "without its credentials". `redact()` only strips credentials from
    a netloc, and without `//` there is none, so the whole value is quoted. (Nothing
    leaves the machine: aiohttp refuses the proxy URL before connecting.)
    """
    import traceback

    import aposthog

    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "alice:PROXY_SECRET@127.0.0.1:9")
    async with aposthog.Client(
        api_key="phx_key_of_the_test",
        host="https://posthog.invalid",
        project_id=1,
        max_retries=0,
        timeout=2,
    ) as ph:
        with pytest.raises(aposthog.APIConnectionError) as info:
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    shown = "".join(traceback.format_exception(info.value))
    assert "PROXY_SECRET" not in shown
    assert "PROXY_SECRET" not in redact("alice:PROXY_SECRET@127.0.0.1:9")


def test_a_proxy_without_a_scheme_is_an_http_proxy() -> None:
    """`HTTPS_PROXY=proxy.corp:3128` is read as curl and requests read it: http://."""
    proxies = Proxies({"HTTPS_PROXY": "proxy.corp:3128", "HTTP_PROXY": "u:p@proxy.corp:8080"})
    assert "http://proxy.corp:3128" == proxies.for_url("https://eu.posthog.com/api/")
    assert "http://u:p@proxy.corp:8080" == proxies.for_url("http://eu.posthog.com/api/")
    assert "http://proxy.corp:8080" == redact("http://u:p@proxy.corp:8080")
    assert "…@proxy.corp:8080" == redact("u:p@proxy.corp:8080")


@pytest.mark.parametrize("delimiter", ["/", "?", "#"])
def test_a_password_with_an_at_sign_and_a_url_delimiter_is_redacted_whole(delimiter: str) -> None:
    """
    A password not percent-encoded that holds an '@' and then a '/', '?' or '#' (as
    generated passwords do): the URL parser ends the netloc at the delimiter, so the
    netloc's last '@' falls inside the password, and `redact()` shows what comes after
    it ("http://user:pa@SS/WORD@proxy:3128" reads "http://SS/WORD@proxy:3128").
    The setting has an '@': what comes after its last one is all a message may show.
    """
    proxy = f"http://user:pa@SECRETHEAD{delimiter}SECRETTAIL@proxy.internal:3128"
    shown = redact(proxy)
    assert "SECRET" not in shown, shown
    assert "proxy.internal" in shown


@pytest.mark.parametrize(
    "proxy",
    [
        "http://127.0.0.1:notaport",
        "http://[::1:3128",
        "socks5://127.0.0.1:1080",
        # Digits and dots but no canonical IPv4 address: aiohttp refuses each
        # ("is not a canonical IPv4 address"), as it does such a `host`.
        "http://10.1:3128",
        "http://010.0.0.1:3128",
        "http://1.2.3.4.5:3128",
    ],
)
def test_a_proxy_aiohttp_cannot_use_is_refused_where_the_client_is_made(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    """
    A proxy URL aiohttp refuses before any connection can never work: it was reported as
    an `APIConnectionError` with `reached_server=False`, which the retry policy took for a
    failed connection, so every call made `max_retries` more attempts (telling `on_wait`
    "retry" each time) before the same error. The client refuses it where it is made,
    naming the variable. Nothing leaves the machine.
    """
    import aposthog

    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(aposthog.ConfigurationError, match=r"^HTTPS_PROXY "):
        aposthog.Client(api_key="phx_key_of_the_test", host="https://posthog.invalid")


def test_an_unusable_proxy_is_named_by_the_variable_that_was_set() -> None:
    """Only `https_proxy` set (lower case, as many shells do): the refusal names it so."""
    proxies = Proxies({"https_proxy": "http://[::1"})
    problem = proxies.problem("https://us.posthog.com")
    assert problem is not None
    assert problem.startswith("https_proxy ("), problem
    upper = Proxies({"HTTPS_PROXY": "http://[::1"}).problem("https://us.posthog.com")
    assert upper is not None
    assert upper.startswith("HTTPS_PROXY ("), upper
