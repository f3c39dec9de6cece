"""FakePostHog's shared behaviour: routing, auth, scopes, errors and the test knobs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


async def _raw(
    fake: FakePostHog, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, **kwargs) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def test_no_credentials_is_401_with_www_authenticate(fake: FakePostHog) -> None:
    """A request without a key gets PostHog's 401 envelope and WWW-Authenticate header."""
    status, headers, body = await _raw(fake, "GET", "/api/environments/1/customer_profile_configs/")
    assert 401 == status
    assert headers["WWW-Authenticate"].startswith('Bearer resource_metadata="')
    assert (
        b'{"type":"authentication_error","code":"not_authenticated",'
        b'"detail":"Authentication credentials were not provided.","attr":null}'
    ) == body


async def test_invalid_key_is_authentication_failed(fake: FakePostHog) -> None:
    """An unknown key is 401 authentication_failed, raised as AuthenticationError."""
    async with fake.client(api_key="phx_wrong") as ph:
        with pytest.raises(aposthog.AuthenticationError) as info:
            await ph.customer_profile_configs.list()
    assert "authentication_failed" == info.value.code


@pytest.mark.parametrize(
    "path",
    [
        "/api/environments/1/customer_profile_configs",
        "/api/environments/@current/customer_profile_configs/",
        "/api/projects/1/customer_profile_configs/",
    ],
)
async def test_paths_posthog_accepts(fake: FakePostHog, path: str) -> None:
    """Optional trailing slash, @current, and the /api/projects mirror all resolve."""
    status, _, _ = await _raw(
        fake, "GET", path, headers={"Authorization": f"Bearer {fake.api_key}"}
    )
    assert 200 == status


async def test_unknown_route_and_method(fake: FakePostHog) -> None:
    """Unknown paths are 404; a known path with another method is 405."""
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    assert 404 == (await _raw(fake, "GET", "/api/environments/1/nope/", headers=auth))[0]
    status, _, body = await _raw(
        fake, "PUT", "/api/environments/1/customer_profile_configs/", headers=auth
    )
    assert 405 == status
    assert b"method_not_allowed" in body


async def test_other_project_is_forbidden(fake: FakePostHog) -> None:
    """Another environment id is refused with 403."""
    async with fake.client(project_id=99) as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.customer_profile_configs.list()


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, b"not_authenticated"), ({"Authorization": "Bearer phx_wrong"}, b"authentication_failed")],
)
async def test_a_missing_or_bad_key_is_401_before_the_project_check(
    fake: FakePostHog, headers: dict[str, str], code: bytes
) -> None:
    """DRF authenticates before checking permissions: another project still gets 401."""
    status, reply_headers, body = await _raw(
        fake, "GET", "/api/environments/99/customer_profile_configs/", headers=headers
    )
    assert 401 == status
    assert "WWW-Authenticate" in reply_headers
    assert code in body


async def test_bad_json_is_a_parse_error(fake: FakePostHog) -> None:
    """A body that is not JSON gets DRF's parse_error 400."""
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=b"{",
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    )
    assert 400 == status
    assert b'"code":"parse_error"' in body


@pytest.mark.parametrize("path", ["customer_profile_configs/", "batch_exports/"])
async def test_a_body_that_is_not_an_object_is_a_non_field_error(
    fake: FakePostHog, path: str
) -> None:
    """drf-exceptions-hog shows DRF's non-field `invalid` error without attr, as `invalid_input`."""
    status, _, body = await _raw(
        fake,
        "POST",
        f"/api/environments/1/{path}",
        data=b"[1, 2]",
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    )
    assert 400 == status
    assert {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Invalid data. Expected a dictionary, but got list.",
        "attr": None,
    } == json.loads(body)


async def test_star_scope_and_legacy_keys(fake: FakePostHog) -> None:
    """A `*` key may write; a key with another object's scope may not read."""
    star = fake.add_key(scopes=["*"])
    other = fake.add_key(scopes=["batch_export:write"])
    async with fake.client(api_key=star) as ph:
        await ph.customer_profile_configs.create(scope="person")
    async with fake.client(api_key=other) as ph:
        with pytest.raises(aposthog.PermissionDeniedError, match="customer_profile_config:read"):
            await ph.customer_profile_configs.list()


async def test_fail_next_with_body_and_path_filter(fake: FakePostHog, ph: aposthog.Client) -> None:
    """fail_next() can target a method and send a JSON body."""
    fake.fail_next(1, status=422, body={"error": "Nope"}, method="POST")
    await ph.customer_profile_configs.list()  # not a POST: untouched
    with pytest.raises(aposthog.UnprocessableEntityError) as info:
        await ph.customer_profile_configs.create(scope="person")
    assert "Nope" == info.value.detail


async def test_throttle_text_matches_drf(fake: FakePostHog) -> None:
    """The 429 carries DRF's detail text and no Retry-After header."""
    fake.throttle_next(1, wait=1)
    status, headers, body = await _raw(
        fake,
        "GET",
        "/api/environments/1/customer_profile_configs/",
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert 429 == status
    assert "Retry-After" not in headers
    assert b"Request was throttled. Expected available in 1 second." in body


@contextlib.contextmanager
def _standalone(*args: str, lines: int) -> Iterator[dict[str, str]]:
    """`python -m aposthog.testing *args`: the first `lines` it prints, then SIGINT (exit 0)."""
    with subprocess.Popen(
        [sys.executable, "-m", "aposthog.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    ) as proc:
        try:
            assert proc.stdout is not None
            yield dict(proc.stdout.readline().strip().split("=", 1) for _ in range(lines))
        finally:
            proc.send_signal(signal.SIGINT)
            assert 0 == proc.wait(timeout=10)


def test_standalone_server_prints_its_url_and_key() -> None:
    """`python -m aposthog.testing` serves on 127.0.0.1 and prints how to connect."""
    with _standalone(lines=3) as values:
        pass
    assert values["POSTHOG_HOST"].startswith("http://127.0.0.1:")
    assert values["POSTHOG_PERSONAL_API_KEY"].startswith("phx_fake_")
    assert "1" == values["POSTHOG_PROJECT_ID"]


def test_standalone_server_seeds_integrations() -> None:
    """
    `--integration aws-s3` adds one and prints its id: AwsS3 exports can be created. A
    seeded snowflake one holds the account, user and authentication type PostHog checks.
    """
    seed = ["--integration", "aws-s3", "--integration", "postgresql", "--integration", "snowflake"]
    created = []
    with _standalone(*seed, lines=6) as values:
        for destination in (
            {
                "type": "AwsS3",
                "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
                "integration": int(values["POSTHOG_INTEGRATION_AWS_S3"]),
            },
            {
                "type": "Snowflake",
                "config": {"database": "d", "warehouse": "w", "schema": "s"},
                "integration": int(values["POSTHOG_INTEGRATION_SNOWFLAKE"]),
            },
        ):
            body = json.dumps({"name": "e", "interval": "hour", "destination": destination})
            request = urllib.request.Request(
                values["POSTHOG_HOST"] + "/api/environments/1/batch_exports/",
                data=body.encode(),
                headers={
                    "Authorization": f"Bearer {values['POSTHOG_PERSONAL_API_KEY']}",
                    "Content-Type": "application/json",
                },
            )
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
            with direct.open(request, timeout=10) as response:
                created.append(json.loads(response.read()))
    assert ("1", "2", "3") == (
        values["POSTHOG_INTEGRATION_AWS_S3"],
        values["POSTHOG_INTEGRATION_POSTGRESQL"],
        values["POSTHOG_INTEGRATION_SNOWFLAKE"],
    )
    assert [1, 3] == [c["destination"]["integration"] for c in created]


def test_the_command_lines_integration_kinds_are_the_fakes() -> None:
    from aposthog._cli._args import FAKE_INTEGRATION_KINDS
    from aposthog.testing._batch_export_integrations import INTEGRATION_KINDS

    assert sorted(set(INTEGRATION_KINDS.values())) == list(FAKE_INTEGRATION_KINDS)


async def test_reset_stats_forgets_requests_and_counters(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """reset_stats() clears what was recorded, so a test can count from a known point."""
    fake.throttle_next(1, wait=0)
    await ph.customer_profile_configs.list()
    fake.script_answer("hi")
    await ph.conversations.create("hello").until_done()
    assert (2, 1) == (fake.status_counts[200], fake.status_counts[429])
    assert 1 == fake.ai_streams.completed
    fake.reset_stats()
    assert ([], {}, 0, 0) == (
        fake.requests,
        dict(fake.status_counts),
        fake.ai_streams.opened,
        fake.ai_streams.completed,
    )
