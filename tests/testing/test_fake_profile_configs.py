"""FakePostHog's customer profile configs over raw HTTP: PostHog's checks, their order, PUT."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import aiohttp
import pytest

from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

PATH = "/api/environments/1/customer_profile_configs/"
#: A well-formed id nothing is stored under.
MISSING = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
NOT_FOUND = b'{"detail":"Not found."}'


async def _call(
    fake: FakePostHog, method: str, path: str = PATH, body: Any = None
) -> tuple[int, bytes]:
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {fake.api_key}"}}
    if body is not None:
        kwargs["json"] = body
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, **kwargs) as resp,
    ):
        return resp.status, await resp.read()


async def _create(fake: FakePostHog, **body: Any) -> dict[str, Any]:
    status, reply = await _call(fake, "POST", body=body)
    assert 201 == status, reply
    created: dict[str, Any] = json.loads(reply)
    return created


def _error(code: str, detail: str, attr: str | None) -> dict[str, Any]:
    return {"type": "validation_error", "code": code, "detail": detail, "attr": attr}


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("ident", [MISSING, "nope", "1234"])
async def test_an_unknown_or_malformed_id_is_a_bare_404(
    fake: FakePostHog, method: str, ident: str
) -> None:
    """The view answers 404 itself: just {"detail": "Not found."}, no type, code or attr."""
    body = {"scope": "person"} if method in ("PATCH", "PUT") else None
    assert (404, NOT_FOUND) == await _call(fake, method, f"{PATH}{ident}/", body)


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("PUT", {}, _error("required", "This field is required.", "scope")),
        ("PUT", {"content": {"a": 1}}, _error("required", "This field is required.", "scope")),
        (
            "PATCH",
            {"scope": "quick"},
            _error("invalid_choice", '"quick" is not a valid choice.', "scope"),
        ),
        (
            "PATCH",
            {"sidebar": 3},
            _error("invalid_input", "Invalid value for field 'sidebar'", "sidebar"),
        ),
    ],
)
async def test_the_body_is_checked_before_the_id(
    fake: FakePostHog, method: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    """A bad body is a 400 even for an id that does not exist (and for a malformed one)."""
    for ident in (MISSING, "nope"):
        status, reply = await _call(fake, method, f"{PATH}{ident}/", body)
        assert (400, expected) == (status, json.loads(reply))


async def test_put_keeps_the_fields_it_leaves_out(fake: FakePostHog) -> None:
    """PUT writes only the fields the body holds: content and sidebar left out keep their values."""
    created = await _create(fake, scope="person", content={"a": 1}, sidebar=[1, 2])
    item = f"{PATH}{created['id']}/"

    status, reply = await _call(fake, "PUT", item, {"scope": "group_1"})
    assert 200 == status
    replaced = json.loads(reply)
    assert ("group_1", {"a": 1}, [1, 2]) == (
        replaced["scope"],
        replaced["content"],
        replaced["sidebar"],
    )

    status, reply = await _call(fake, "PUT", item, {"scope": "group_2", "content": None})
    assert 200 == status
    assert ({}, [1, 2]) == (json.loads(reply)["content"], json.loads(reply)["sidebar"])


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"])
async def test_a_null_scope_is_the_fields_null_error(fake: FakePostHog, method: str) -> None:
    """`scope: null` is DRF's "may not be null" (code `null`), not an invalid choice."""
    path = PATH if method == "POST" else f"{PATH}{(await _create(fake, scope='person'))['id']}/"
    status, reply = await _call(fake, method, path, {"scope": None})
    assert (400, _error("null", "This field may not be null.", "scope")) == (
        status,
        json.loads(reply),
    )


@pytest.mark.parametrize(
    ("scope", "shown"),
    [(1, "1"), (True, "True"), (["person"], "['person']"), ({"a": 1}, "{'a': 1}"), ("", "")],
)
async def test_any_other_scope_is_an_invalid_choice(
    fake: FakePostHog, scope: Any, shown: str
) -> None:
    """DRF's ChoiceField shows the value as Python's str() renders it."""
    status, reply = await _call(fake, "POST", body={"scope": scope})
    expected = _error("invalid_choice", f'"{shown}" is not a valid choice.', "scope")
    assert (400, expected) == (status, json.loads(reply))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"scope": "quick", "content": 1},
            _error("invalid_choice", '"quick" is not a valid choice.', "scope"),
        ),
        (
            {"scope": "person", "content": "x", "sidebar": 1},
            _error("invalid_input", "Invalid value for field 'content'", "content"),
        ),
        ({"content": "x"}, _error("required", "This field is required.", "scope")),
    ],
)
async def test_the_first_field_in_order_reports(
    fake: FakePostHog, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Several bad fields: drf-exceptions-hog shows the first, in scope/content/sidebar order."""
    status, reply = await _call(fake, "POST", body=body)
    assert (400, expected) == (status, json.loads(reply))


async def test_an_id_in_any_form_django_reads_finds_the_config(fake: FakePostHog) -> None:
    """Django parses the pk with uuid.UUID: upper case, no hyphens, braces and urn: all work."""
    ident = (await _create(fake, scope="person"))["id"]
    forms = [ident.upper(), ident.replace("-", ""), "{" + ident + "}", f"urn:uuid:{ident}"]
    for form in forms:
        status, reply = await _call(fake, "GET", f"{PATH}{form}/")
        assert (200, ident) == (status, json.loads(reply)["id"]), form
    status, _ = await _call(fake, "PATCH", f"{PATH}{ident.upper()}/", {"content": [1]})
    assert 200 == status
    assert (204, b"") == await _call(fake, "DELETE", f"{PATH}{ident.replace('-', '')}/")
    assert {} == fake.customer_profile_configs


async def test_a_seeded_key_in_another_uuid_form_is_found(fake: FakePostHog) -> None:
    """A config seeded under a non-canonical UUID key is still reached by its id."""
    ident = uuid.uuid4()
    key = str(ident).upper()
    fake.customer_profile_configs[key] = {
        "id": key,
        "scope": "person",
        "content": {},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }
    assert 200 == (await _call(fake, "GET", f"{PATH}{ident}/"))[0]
    assert (204, b"") == await _call(fake, "DELETE", f"{PATH}{ident}/")
    assert {} == fake.customer_profile_configs


async def test_a_seeded_key_that_is_no_uuid_is_never_reached(fake: FakePostHog) -> None:
    """A malformed id is a 404 even when a config is seeded under a key that is no UUID."""
    fake.customer_profile_configs["legacy"] = {
        "id": "legacy",
        "scope": "person",
        "content": {},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }
    for ident in ("nope", "legacy"):
        assert (404, NOT_FOUND) == await _call(fake, "GET", f"{PATH}{ident}/")
    assert (404, NOT_FOUND) == await _call(fake, "DELETE", f"{PATH}nope/")
    assert ["legacy"] == list(fake.customer_profile_configs)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_a_write_saves_updated_at_even_when_nothing_changes(
    fake: FakePostHog, method: str
) -> None:
    """PATCH {} (or PUT of the same scope) still saves the row: updated_at moves to now."""
    ident = str(uuid.uuid4())
    fake.customer_profile_configs[ident] = {
        "id": ident,
        "scope": "person",
        "content": {"a": 1},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    }
    body = {"scope": "person"} if method == "PUT" else {}
    status, reply = await _call(fake, method, f"{PATH}{ident}/", body)
    assert 200 == status
    updated = json.loads(reply)
    assert ("2024-01-01T00:00:00Z", {"a": 1}) == (updated["created_at"], updated["content"])
    saved = dt.datetime.fromisoformat(updated["updated_at"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.timezone.utc) - saved) < dt.timedelta(minutes=1)
