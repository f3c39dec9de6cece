"""A 127.0.0.1 listener that accepts TCP and never answers a TLS ClientHello."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc


@contextlib.asynccontextmanager
async def tls_stall() -> AsyncIterator[int]:
    """Listen on a free port (yielded) whose handshakes never complete; close it all after."""
    held: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        held.append(stream)  # accept TCP, never answer the ClientHello
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            try:
                yield port
            finally:
                tg.cancel_scope.cancel()
    finally:
        await listener.aclose()
        for stream in held:
            await stream.aclose()
