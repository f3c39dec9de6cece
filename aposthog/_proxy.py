"""
Which proxy a request goes through: the environment's `HTTP_PROXY`, `HTTPS_PROXY` and
`NO_PROXY` (names, domains, and as curl and requests read it, IP ranges such as
`10.0.0.0/8` and IPv6 addresses in brackets), except that a loopback host (127.0.0.0/8,
::1, `localhost`) never goes through one — a proxy cannot reach the caller's own
machine, and a dead proxy setting must not break an embedded FakePostHog. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

__all__ = ["Proxies", "is_loopback", "non_canonical_ipv4", "redact"]

# NO_PROXY matching, from the standard library (not in its type stubs).
_proxy_bypass: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


def is_loopback(host: str) -> bool:
    """
    Whether `host` (a name or an address, IPv6 with or without brackets) is this machine.

    Only `localhost` itself counts among names: a name under `.localhost` is resolved
    like any other by most systems' resolvers, so it may lead off the machine, and so is
    `localhost.` (glibc looks the name with the root's dot up in DNS, not /etc/hosts).
    """
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def non_canonical_ipv4(host: str) -> bool:
    """
    Whether `host` is digits and dots that are not an IPv4 address as aiohttp takes one
    (four numbers from 0 to 255, no leading zeros, no final dot): aiohttp refuses such a
    host when a request is made (`127.1`, `01.2.3.4`, `1.2.3.4.5`).
    """
    if not _DIGITS_AND_DOTS.fullmatch(host):
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


_DIGITS_AND_DOTS = re.compile("[0-9.]+")


def redact(proxy: str) -> str:
    """
    The proxy URL without its user name and password, for messages: whatever stands
    before its last `@` goes (a password may hold `/`, `?` or `#`, which a URL parser
    reads as the start of the path, query or fragment, and an `@` of its own).
    """
    if "@" not in proxy:
        return proxy
    scheme, sep, rest = proxy.partition("://")
    if not sep:
        return "…@" + proxy.rpartition("@")[2]
    # The host and the port as written, read as text (a port that is not a number must
    # not make the message of a failure fail too), and the path; no query or fragment.
    host = rest.rpartition("@")[2]
    try:
        after = urllib.parse.urlsplit(f"//{host}")
    except ValueError:  # not a URL at all (an unclosed "[")
        return f"{scheme}://…@{host}"
    return urllib.parse.urlunsplit((scheme, after.netloc, after.path, "", ""))


def _networks(no_proxy: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """
    The IP ranges and addresses a `NO_PROXY` value names (`10.0.0.0/8`, `[2001:db8::1]`,
    `2001:db8::/32`), which the standard library's matching, by name, does not read.
    """
    found = []
    for entry in no_proxy.split(","):
        entry = entry.strip().strip("[]")
        if not entry or not (entry[0].isdigit() or ":" in entry):
            continue  # a name or a domain: the standard library's
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # `host:port`, or not an address: the standard library's too
    return tuple(found)


def _in_networks(
    host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Whether `host`, an IP address, lies in one of `networks` (False for a name)."""
    if not networks or not host or not (host[0].isdigit() or ":" in host):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address.version == net.version and address in net for net in networks)


class Proxies:
    """The proxy for each origin, read from the environment once (at construction)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._names = os.environ if environ is None else environ  # for messages
        if environ is None:
            self._env = urllib.request.getproxies_environment()
        else:
            self._env = {
                k.lower()[: -len("_proxy")]: v
                for k, v in environ.items()
                if k.lower().endswith("_proxy") and v
            }
        self._cache: dict[tuple[str, str], str | None] = {}
        #: Whether the environment names no proxy at all (every request goes direct).
        self.none = not self._env
        self._networks = _networks(self._env.get("no", ""))

    def for_url(self, url: str) -> str | None:
        """The proxy URL for `url`, or None to connect directly."""
        if not self._env:
            return None
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._cache:
            host = parts.hostname or ""
            # With the URL's port, a `NO_PROXY` entry `host:port` matches as well as `host`
            # (as in the standard library and requests); an IPv6 address goes without it.
            target = host if parts.port is None or ":" in host else f"{host}:{parts.port}"
            proxy = self._env.get(parts.scheme)
            if proxy and (
                is_loopback(host)
                or _in_networks(host, self._networks)
                or _proxy_bypass(target, self._env)
            ):
                proxy = None
            elif proxy and "://" not in proxy:
                # `HTTPS_PROXY=proxy.corp:3128` (or `user:pass@proxy.corp:3128`): an
                # HTTP proxy, as curl and requests read it.
                proxy = "http://" + proxy
            self._cache[key] = proxy
        return self._cache[key]

    def problem(self, url: str) -> str | None:
        """
        Why the proxy the environment names for `url` can never carry a request (its
        variable named, the URL without credentials), or None. aiohttp refuses such a
        URL before connecting, on every request alike.
        """
        proxy = self.for_url(url)
        if proxy is None:
            return None
        # The variable as it is set (the standard library reads the lower-case one first).
        variable = f"{urllib.parse.urlsplit(url).scheme.lower()}_proxy"
        if variable not in self._names:
            variable = variable.upper()
        try:
            parts = urllib.parse.urlsplit(proxy)
            parts.port  # noqa: B018 (read for its ValueError: a port that is no number)
        except ValueError:
            return f"{variable} ({redact(proxy)}) is not a URL a request can go through"
        if not proxy.partition("://")[2].strip():
            # Set to blanks: most often a deployment's template whose value did not expand.
            return f"{variable} is set but blank: unset it, or name the proxy"
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return (
                f"{variable} ({redact(proxy)}) is not an http:// or https:// proxy URL: "
                "aiohttp speaks HTTP to a proxy"
            )
        if non_canonical_ipv4(parts.hostname):
            return (
                f"{variable} ({redact(proxy)}) names its host as digits and dots that are "
                "not an IPv4 address as four numbers from 0 to 255, without leading zeros "
                "or a final dot"
            )
        return None
