"""Raw HTTP helpers for the tests of FakePostHog's conversation endpoints."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from aposthog.testing import FakePostHog

PATH = "/api/environments/1/conversations/"


def auth(fake: FakePostHog, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or fake.api_key}"}


def body(content: str | None, conversation: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "content": content,
        "conversation": conversation or str(uuid.uuid4()),
        "trace_id": str(uuid.uuid4()),
        **extra,
    }


async def post(
    fake: FakePostHog, body: Any, *, key: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake.url + PATH, json=body, headers={**auth(fake, key), **(headers or {})}
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def request(
    fake: FakePostHog, method: str, path: str, *, key: str | None = None, json_body: Any = None
) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, fake.url + PATH + path, json=json_body, headers=auth(fake, key)
        ) as resp,
    ):
        return resp.status, await resp.read()
