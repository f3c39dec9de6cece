"""Hostile answers end in typed errors: huge or inflating bodies, deep JSON, broken HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import traceback
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.http_parser import HttpResponseParser, HttpResponseParserPy

import aposthog
from aposthog.testing import DropConnection, LoopbackServer, ServerReply, ServerRequest

pytestmark = pytest.mark.anyio

ANY_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # ids are checked as UUIDs before sending

MiB = 1024 * 1024
SENTINEL = "phx_SENTINEL_never_leaks_4242"


def _gzip_bomb(inflated: int) -> bytes:
    """`inflated` bytes of JSON-ish zeros, gzip-compressed, built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0" * MiB
    parts = [packer.compress(b"[")]
    parts.extend(packer.compress(block) for _ in range(inflated // MiB))
    parts.append(packer.compress(b"]") + packer.flush())
    return b"".join(parts)


async def _serve(reply: ServerReply) -> LoopbackServer:
    async def handler(request: ServerRequest) -> ServerReply:
        return reply

    server = LoopbackServer(handler)
    await server.start()
    return server


def _client(url: str, **kwargs: Any) -> aposthog.Client:
    kwargs.setdefault("max_retries", 0)
    return aposthog.Client(api_key=SENTINEL, host=url, project_id=1, **kwargs)


# ---------------------------------------------------------------------- size


async def test_a_gzip_bomb_stops_at_max_response_size_with_bounded_memory() -> None:
    bomb = _gzip_bomb(256 * MiB)  # a quarter of a megabyte on the wire
    assert len(bomb) < MiB
    server = await _serve(
        ServerReply(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
    )
    try:
        async with _client(server.url, max_response_size=2 * MiB) as ph:
            gc.collect()
            tracemalloc.start()
            try:
                with pytest.raises(aposthog.ResponseTooLargeError) as info:
                    await ph.customer_profile_configs.get(ANY_ID)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await server.stop()
    assert isinstance(info.value, aposthog.ResponseDecodeError)
    assert 2 * MiB == info.value.limit
    assert "max_response_size" in str(info.value)
    # A small multiple of the limit, not the 256 MiB the bomb inflates to.
    assert peak < 4 * 2 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_plain_body_over_the_limit_is_refused(chunked: bool) -> None:
    body = b'"' + b"x" * (3 * MiB) + b'"'

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    reply = ServerReply(stream=pieces()) if chunked else ServerReply(body=body)
    server = await _serve(reply)
    try:
        async with _client(server.url, max_response_size=MiB) as ph:
            with pytest.raises(aposthog.ResponseTooLargeError):
                await ph.customer_profile_configs.get(ANY_ID)
    finally:
        await server.stop()


async def test_an_error_body_over_the_limit_is_refused_too() -> None:
    server = await _serve(ServerReply(status=500, body=b"e" * (2 * MiB)))
    try:
        async with _client(server.url, max_response_size=MiB) as ph:
            with pytest.raises(aposthog.ResponseTooLargeError):
                await ph.customer_profile_configs.get(ANY_ID)
            with pytest.raises(aposthog.ResponseTooLargeError):
                await ph.conversations.create("q").until_done()
    finally:
        await server.stop()


def test_max_response_size_is_checked_at_construction() -> None:
    for bad in (0, -1, 1.5, "1", True):
        with pytest.raises(aposthog.ConfigurationError, match="max_response_size"):
            aposthog.Client(api_key="k", max_response_size=bad)  # type: ignore[arg-type]
    assert 32 * MiB == aposthog.Client(api_key="k").config.max_response_size


def _message(data: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(data).encode() + b"\n\n"


async def test_a_stream_that_keeps_sending_new_messages_stops_at_max_response_size() -> None:
    """A stream keeps its final messages: bounded as a body is, after delivering them."""
    size = 100_000

    async def endless() -> AsyncIterator[bytes]:
        yield _message({"type": "human", "content": "q", "id": "h1"})
        n = 0
        while True:  # until the client goes away
            n += 1
            yield _message({"type": "ai", "content": f"{n}" + "x" * size, "id": f"a{n}"})

    server = await _serve(
        ServerReply(stream=endless(), headers={"Content-Type": "text/event-stream"})
    )
    events: list[aposthog.StreamEvent] = []
    try:
        async with _client(server.url, max_response_size=2 * MiB) as ph:
            stream = ph.conversations.create("q", max_reattach_attempts=0)
            gc.collect()
            tracemalloc.start()
            try:
                with pytest.raises(aposthog.ResponseTooLargeError) as info:
                    async for event in stream:
                        events.append(event)  # noqa: PERF401 (kept when it raises)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert ph.open_streams == 0
    finally:
        await server.stop()
    assert info.value.limit == 2 * MiB
    assert "max_response_size" in str(info.value)
    assert peak < 12 * MiB, f"peak {peak / MiB:.1f} MiB"
    # Everything decoded was delivered first, in order: the limit was passed by the last.
    ids = [e.message.id for e in events if isinstance(e, aposthog.MessageEvent)]
    answers = len(ids) - 1
    assert ids == ["h1", *(f"a{n}" for n in range(1, answers + 1))]
    assert answers * size > 2 * MiB > (answers - 8) * size
    result = stream.result()
    assert not result.complete
    assert [m.id for m in result.messages] == ids


async def test_snapshots_count_only_the_text_they_add() -> None:
    """A long answer streams as cumulative snapshots, megabytes on the wire, within the limit."""
    answer = "".join(f"{n:09d} " for n in range(2000))  # 20 KB in 2000 snapshots
    subagent = "".join(f"{n:09d} " for n in range(800))  # 8 KB in 800 snapshots

    async def events() -> AsyncIterator[bytes]:
        yield _message({"type": "human", "content": "q", "id": "h1"})
        pieces = [
            _message({"type": "ai", "content": subagent[: 10 * n], "parent_tool_call_id": "c1"})
            for n in range(1, 801)
        ]
        pieces += [_message({"type": "ai", "content": answer[: 10 * n]}) for n in range(1, 2001)]
        pieces.append(_message({"type": "ai", "content": answer.rstrip(), "id": "a1"}))
        for start in range(0, len(pieces), 100):
            yield b"".join(pieces[start : start + 100])

    server = await _serve(
        ServerReply(stream=events(), headers={"Content-Type": "text/event-stream"})
    )
    try:
        async with _client(server.url, max_response_size=512 * 1024) as ph:
            stream = ph.conversations.create("q")
            deltas = [text async for text in stream.text_deltas()]
    finally:
        await server.stop()
    result = stream.result()
    assert result.complete
    assert "".join(deltas) == result.text == answer.rstrip()
    assert len(deltas) == 2000


# ---------------------------------------------------------------------- deep JSON

DEEP = b"[" * 100_000 + b"]" * 100_000


async def test_deep_json_in_a_success_body_is_a_decode_error() -> None:
    """The error names the request and keeps only the body's first 500 characters."""
    server = await _serve(ServerReply(body=DEEP, headers={"Content-Type": "application/json"}))
    try:
        async with _client(server.url) as ph:
            with pytest.raises(aposthog.ResponseDecodeError, match="not JSON") as info:
                await ph.customer_profile_configs.get(ANY_ID)
    finally:
        await server.stop()
    assert "[" * 500 == info.value.body
    assert f"GET /api/environments/1/customer_profile_configs/{ANY_ID}/" in str(info.value)


@pytest.mark.parametrize("listed", [False, True])
async def test_a_record_that_does_not_fit_names_the_request_it_answered(listed: bool) -> None:
    """A JSON body of the wrong shape is a `ResponseDecodeError` that names the request's
    path (a fetched record's, or a page's), besides the bad field."""
    record = {"id": 5, "scope": "person", "created_at": "2024-01-01T00:00:00Z"}
    body = {"count": 1, "next": None, "previous": None, "results": [record]} if listed else record
    server = await _serve(
        ServerReply(body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    )
    try:
        async with _client(server.url) as ph:
            with pytest.raises(aposthog.ResponseDecodeError) as info:
                if listed:
                    await ph.customer_profile_configs.list()
                else:
                    await ph.customer_profile_configs.get(ANY_ID)
    finally:
        await server.stop()
    path = "/api/environments/1/customer_profile_configs/" + ("" if listed else f"{ANY_ID}/")
    assert path == info.value.path
    assert f"from {path}" in str(info.value)


async def test_deep_json_in_an_error_body_is_the_status_error() -> None:
    server = await _serve(ServerReply(status=400, body=b'{"detail":' + DEEP + b"}"))
    try:
        async with _client(server.url) as ph:
            with pytest.raises(aposthog.BadRequestError) as info:
                await ph.customer_profile_configs.get(ANY_ID)
    finally:
        await server.stop()
    assert 400 == info.value.status


async def test_deep_json_in_a_stream_event_ends_typed() -> None:
    deep_event = b"event: message\ndata: " + DEEP + b"\n\n"
    # Deep, yet under the depth a stream event may have (`_json.MAX_EVENT_DEPTH`).
    nested_content = (
        b'event: message\ndata: {"type":"ai","content":"x","id":"a1","meta":'
        + b"[" * 450
        + b"]" * 450
        + b"}\n\n"
    )
    human = b'event: message\ndata: {"type":"human","content":"q","id":"h1"}\n\n'

    async def events() -> AsyncIterator[bytes]:
        yield human + deep_event + nested_content

    server = await _serve(
        ServerReply(stream=events(), headers={"Content-Type": "text/event-stream"})
    )
    try:
        async with _client(server.url) as ph:
            stream = ph.conversations.create("q")
            seen = [event async for event in stream]
    finally:
        await server.stop()
    # The unparseable event is passed on raw; the reshaped message is kept whole.
    assert isinstance(seen[1], aposthog.UnknownEvent)
    assert isinstance(seen[2], aposthog.MessageEvent)
    assert isinstance(seen[2].message, aposthog.UnknownMessage)
    assert stream.result().complete


@pytest.mark.skipif(aposthog._json.orjson_parse is None, reason="needs the speedups extra (orjson)")
async def test_a_replayed_message_nested_near_the_parse_limit_ends_typed() -> None:
    """A final message PostHog sends again (a replay) is compared with the one kept; one
    nested 1,000 levels deep (orjson parses up to 1,024) raised a bare `RecursionError`
    out of `async for`, where README promises deep JSON ends in a typed error."""
    nested = (
        b'event: message\ndata: {"type":"ai","content":"x","id":"a1","meta":'
        + b"[" * 1000
        + b"]" * 1000
        + b"}\n\n"
    )
    human = b'event: message\ndata: {"type":"human","content":"q","id":"h1"}\n\n'

    async def events() -> AsyncIterator[bytes]:
        yield human + nested + nested

    server = await _serve(
        ServerReply(stream=events(), headers={"Content-Type": "text/event-stream"})
    )
    try:
        async with _client(server.url) as ph:
            stream = ph.conversations.create("q")
            try:
                seen = [event async for event in stream]
            except aposthog.PostHogError:
                seen = None  # a typed error is an acceptable outcome too
    finally:
        await server.stop()
    if seen is not None:
        assert isinstance(seen[-1], aposthog.MessageEvent)


async def test_compressed_answers_are_inflated_and_only_gzip_deflate_asked_for() -> None:
    import gzip

    body = gzip.compress(
        b'{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","scope":"person","content":{},'
        b'"sidebar":{},"created_at":"2024-01-01T00:00:00Z","updated_at":null}'
    )
    seen: list[ServerRequest] = []

    async def handler(request: ServerRequest) -> ServerReply:
        seen.append(request)
        if request.method == "GET":
            return ServerReply(body=body, headers={"Content-Encoding": "gzip"})
        events = (
            b'event: message\ndata: {"type":"human","content":"q","id":"h1"}\n\n'
            b'event: message\ndata: {"type":"ai","content":"Hi!","id":"a1"}\n\n'
        )
        packed = gzip.compress(events)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(packed), 7):
                yield packed[start : start + 7]

        return ServerReply(
            stream=chunks(),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url) as ph:
            config = await ph.customer_profile_configs.get(ANY_ID)
            result = await ph.conversations.create("q").until_done()
    finally:
        await server.stop()
    assert ANY_ID == config.id
    assert "Hi!" == result.text
    assert all(r.headers["accept-encoding"] == "gzip, deflate" for r in seen)


async def test_a_corrupt_compressed_body_is_a_decode_error() -> None:
    server = await _serve(ServerReply(body=b"not gzip", headers={"Content-Encoding": "gzip"}))
    try:
        async with _client(server.url) as ph:
            with pytest.raises(aposthog.ResponseDecodeError, match="unreadable"):
                await ph.customer_profile_configs.get(ANY_ID)
    finally:
        await server.stop()


async def test_a_gzip_bomb_in_a_stream_stops_at_the_event_limit() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = packer.compress(b'event: message\ndata: {"type":"ai","content":"')
    bomb = head + b"".join(packer.compress(b"0" * MiB) for _ in range(256)) + packer.flush()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(bomb), 64 * 1024):
            yield bomb[start : start + 64 * 1024]

    server = await _serve(
        ServerReply(
            stream=chunks(),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )
    )
    try:
        async with _client(server.url) as ph:
            gc.collect()
            tracemalloc.start()
            try:
                with pytest.raises(aposthog.ResponseDecodeError, match="unreadable event stream"):
                    await ph.conversations.create("q", max_reattach_attempts=0).until_done()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await server.stop()
    # The per-event limit (16 MiB) bounds it, not the 256 MiB the bomb inflates to.
    assert peak < 48 * MiB, f"peak {peak / MiB:.1f} MiB"


async def test_a_redirect_to_bytes_that_are_not_utf8_gives_a_printable_error() -> None:
    """
    An answer's header bytes are the server's to choose. A redirect's `Location` is
    quoted in the error message, and a message holding the lone surrogates aiohttp
    decodes invalid UTF-8 into cannot be written as UTF-8: a logging handler writing the
    error to a UTF-8 file or a JSON log line fails on it. The message must be text.
    """

    error = await _error_answered_with(
        b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/\xff\xfe\x1b[2J\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert isinstance(error, aposthog.APIStatusError)
    assert 302 == error.status
    assert "redirected to https://elsewhere.example/\ufffd\ufffd\\x1b[2J;" in str(error)
    str(error).encode("utf-8")  # UnicodeEncodeError: surrogates not allowed


@contextlib.asynccontextmanager
async def _raw_server(answer: bytes, asked: list[bytes] | None = None) -> AsyncIterator[str]:
    """A server on 127.0.0.1 answering every request with `answer`; `asked`: the methods."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if asked is not None:
            asked.append(head.split(b" ", 1)[0])
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def _error_answered_with(answer: bytes) -> aposthog.PostHogError:
    """The error of a `get()` that a raw server on 127.0.0.1 answers with `answer`."""
    async with _raw_server(answer) as url, _client(url) as ph:
        with pytest.raises(aposthog.PostHogError) as info:
            await ph.batch_exports.get(ANY_ID)
    return info.value


@pytest.mark.parametrize(
    ("answer", "fault"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
            "a bad chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}", "a bad Content-Length"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "a bad status line"),
    ],
    ids=["chunk-size", "content-length", "status-line"],
)
async def test_an_answer_that_is_not_http_says_what_was_wrong_and_no_byte_of_it(
    answer: bytes, fault: str
) -> None:
    """
    A malformed answer (a bad chunk size, status line or header) is named by the kind
    of fault aiohttp found, never as an HTTP status: it said "ClientResponseError 400",
    which reads as PostHog's 400 Bad Request. The bytes received are not quoted (a
    server may echo the request's `Authorization` header into them).
    """
    error = await _error_answered_with(answer.replace(b"OK", SENTINEL.encode()))
    assert isinstance(error, aposthog.APIConnectionError)
    message = str(error)
    assert "PostHog's answer is not valid HTTP" in message
    if HttpResponseParser is not HttpResponseParserPy:
        # aiohttp's C parser names each fault ("Invalid character in chunk size");
        # its pure-Python one quotes only the bytes for some.
        assert f"PostHog's answer is not valid HTTP ({fault})" in message
    assert "400" not in message
    assert SENTINEL not in message + repr(error)
    # Nor in a traceback printed with every frame's locals: aiohttp's error, whose repr
    # shows the request's headers, is no local of the frame that raised.
    printed = traceback.TracebackException.from_exception(error, capture_locals=True)
    package = str(Path(aposthog.__file__).parent)
    frames = [frame for frame in printed.stack if frame.filename.startswith(package)]
    assert frames
    assert not [
        (frame.name, name)
        for frame in frames
        for name, value in (frame.locals or {}).items()
        if SENTINEL in value
    ]
    assert error.reached_server


async def test_a_final_informational_status_is_not_a_success() -> None:
    """
    A status below 200 is not a success (RFC 9110 §15.2: informational, never a final
    answer to the request). A server or a misbehaving proxy that answers an unrequested
    `101 Switching Protocols` has not carried out the delete, yet `delete()` returns
    None as if PostHog had answered 204, since only `status < 300` is checked.
    """
    answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"

    asked: list[bytes] = []
    async with _raw_server(answer, asked) as url, _client(url) as ph:
        with pytest.raises(aposthog.APIStatusError) as deleting:
            await ph.customer_profile_configs.delete(ANY_ID)
        with pytest.raises(aposthog.APIStatusError) as getting:
            await ph.customer_profile_configs.get(ANY_ID)
        with pytest.raises(aposthog.APIStatusError) as streaming:
            await ph.conversations.create("q", max_reattach_attempts=0).until_done()
    for info in (deleting, getting, streaming):
        assert 101 == info.value.status
        assert "informational" in str(info.value)
    assert [b"DELETE", b"GET", b"POST"] == asked  # none retried


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"validation_error","code":"invalid","detail":"bad \\ud800 value","attr":"x"}',
        b'{"type":"validation_error","code":"invalid","detail":"bad","attr":"na\\udfffme"}',
        b'{"name":["bad \\udbff value"]}',
        b'"\\ud800"',
    ],
    ids=["detail", "attr", "field-map", "bare-string"],
)
async def test_an_error_body_with_a_lone_surrogate_escape_gives_a_printable_error(
    body: bytes,
) -> None:
    """
    A JSON error body is the server's (or a proxy's) to write, and `"\\ud800"` is a
    valid JSON escape that Python decodes into a lone surrogate. The detail, attr and
    field names are quoted in `str(error)`, which then cannot be written as UTF-8: a
    logging handler writing the error to a UTF-8 file (or the client's own "retrying …
    after: <error>" log line) fails on it. A redirect's `Location` is already cleaned
    this way (`header_text`); the JSON text of an error body is not.
    """
    error = await _error_answered_with(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    assert isinstance(error, aposthog.BadRequestError)
    str(error).encode("utf-8")  # UnicodeEncodeError: surrogates not allowed


async def test_a_200_page_that_is_not_a_stream_and_stalls_ends_within_the_timeout() -> None:
    """
    `timeout` bounds a stream "until it starts" (README), and an error body is read
    within it (`Api._open_attempt`). A 200 whose Content-Type is not `text/event-stream`
    (a proxy's login page) is read for the error message's snippet with no limit at
    all: with `stream_idle_timeout=None` a page that sends its first bytes and then
    stalls keeps `conversations.create()` waiting forever (and with an idle timeout, a
    page that trickles a byte at a time keeps it for about a thousand idle periods).
    """
    done = asyncio.Event()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"
            b"<html><body>Please log in"
        )
        await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with _client(url, timeout=0.3, stream_idle_timeout=None) as ph:
            stream = ph.conversations.create("q", max_reattach_attempts=0)
            try:
                with pytest.raises(aposthog.ResponseDecodeError, match="text/html") as info:
                    await asyncio.wait_for(stream.until_done(), 1.5)
                assert "Please log in" in str(info.value.body)  # what came in time is shown
            finally:
                done.set()
                await stream.aclose()
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_an_error_body_of_a_stream_is_read_in_what_is_left_of_the_attempts_time() -> None:
    """
    One time limit for a stream's opening attempt: an error status that came late, its
    body stalled, ends when `timeout` runs out since the POST, not a whole `timeout`
    after the headers (twice the limit).
    """
    done = asyncio.Event()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"detail": "'
        )
        await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    loop = asyncio.get_running_loop()
    try:
        async with _client(url, timeout=0.8, stream_idle_timeout=None) as ph:
            started = loop.time()
            with pytest.raises(aposthog.BadRequestError):
                await asyncio.wait_for(ph.conversations.create("q").until_done(), 5)
            # The limit since the POST (0.8 s), not 0.5 s + another 0.8 s for the body.
            assert loop.time() - started < 1.2
    finally:
        done.set()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n"
        b"Connection: close\r\n\r\n" + b" " * 5000,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Connection: close\r\n\r\nnot gzip at all",
    ],
    ids=["too-large", "unreadable-gzip"],
)
async def test_a_decode_error_of_a_200_body_the_transport_could_not_read_keeps_its_status(
    answer: bytes,
) -> None:
    """
    `ResponseDecodeError.status` is documented as "the HTTP status of the answer whose
    body this is (200, say, for a proxy's login page), or None for a stream's event read
    after its start". A JSON call answered 200 whose body is over `max_response_size`
    (`ResponseTooLargeError`, a `ResponseDecodeError`) or is a gzip that does not inflate
    is an answer with a status, not a stream's event: its status is None all the same,
    because only `_decoded` fills it in and these errors are raised by the transport.
    """
    async with _raw_server(answer) as url, _client(url, max_response_size=1024) as ph:
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            await ph.batch_exports.get(ANY_ID)
    assert info.value.status == 200


# ---------------------------------------------------------------------- error bodies cut off


def _cut_error(status: int, headers: dict[str, str]) -> ServerReply:
    """An error answer whose body stops short of its Content-Length (the connection cut)."""

    async def short() -> AsyncIterator[bytes]:
        yield b'{"type": "throttled_error", "code": "thrott'
        raise DropConnection

    return ServerReply(status=status, stream=short(), headers={"Content-Length": "200", **headers})


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, aposthog.NotFoundError),
        (429, aposthog.RateLimitError),
        (503, aposthog.InternalServerError),
    ],
)
async def test_an_error_whose_body_is_cut_off_keeps_its_status(
    status: int, error: type[aposthog.APIStatusError]
) -> None:
    """The status line and headers came: PostHog's answer is known (a refusal), though what
    its body said is lost. It was an `APIConnectionError` (`reached_server=True`), which
    made a refused POST look possibly processed, and a 429's Retry-After unread."""

    async def handler(request: ServerRequest) -> ServerReply:
        return _cut_error(status, {"Retry-After": "0"})  # a fresh body each time

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url) as ph:
            with pytest.raises(error) as info:
                await ph.customer_profile_configs.get("00000000-0000-0000-0000-000000000001")
            with pytest.raises(error):
                await ph.conversations.create("Why did signups drop?").until_done()
    finally:
        await server.stop()
    assert info.value.status == status
    assert info.value.body is None


async def test_a_post_refused_with_a_cut_off_503_is_retried() -> None:
    """PostHog's 503 (it sends `Retry-After`) refuses a request before any work: a create
    whose answer was cut short is sent again, as one whose whole 503 came."""
    sent: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        sent.append(request.method)
        if len(sent) == 1:
            return _cut_error(503, {"Retry-After": "0"})
        config: dict[str, Any] = {
            "id": "00000000-0000-0000-0000-000000000001",
            "scope": "person",
            "content": {},
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }
        return ServerReply(status=201, body=json.dumps(config).encode())

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url, max_retries=2) as ph:
            created = await ph.customer_profile_configs.create(scope="person")
    finally:
        await server.stop()
    assert ["POST", "POST"] == sent
    assert created.scope == aposthog.ProfileScope.PERSON


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, aposthog.NotFoundError),
        (429, aposthog.RateLimitError),
        (502, aposthog.InternalServerError),
    ],
)
async def test_an_error_whose_compressed_body_is_unreadable_keeps_its_status(
    status: int, error: type[aposthog.APIStatusError]
) -> None:
    """
    A proxy's 502 (or any refusal) whose gzip body does not inflate: the status line and
    headers came, so the answer is known, as for a body cut off. It was a
    `ResponseDecodeError`, for a JSON call and a stream alike: a 502 or a 429 was never
    retried (a read of a page failed at once), and the caller could not tell a refusal
    from a garbled success. The second answer, a whole one, is what the retry gets.
    """
    sent: list[str] = []
    whole_after = [100]  # answers before whole ones

    async def handler(request: ServerRequest) -> ServerReply:
        sent.append(request.method)
        if len(sent) <= whole_after[0]:
            return ServerReply(
                status=status,
                body=b"not gzip at all",
                headers={"Content-Encoding": "gzip", "Retry-After": "0"},
            )
        return ServerReply(
            status=status, body=b'{"detail": "refused"}', headers={"Retry-After": "0"}
        )

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url) as ph:
            with pytest.raises(error) as info:
                await ph.customer_profile_configs.get("00000000-0000-0000-0000-000000000001")
            assert (info.value.status, info.value.body) == (status, None)
            with pytest.raises(error) as info:
                await ph.conversations.create("Why did signups drop?").until_done()
            assert info.value.status == status
        if status != 404:
            sent.clear()
            whole_after[0] = 1
            async with _client(server.url, max_retries=1) as ph:
                with pytest.raises(error) as info:
                    await ph.customer_profile_configs.get("00000000-0000-0000-0000-000000000001")
            assert ["GET", "GET"] == sent  # retried; the whole answer's body read
            assert info.value.body == {"detail": "refused"}
    finally:
        await server.stop()


@pytest.mark.parametrize("status", [429, 503])
async def test_a_post_refused_with_an_error_whose_body_stalls_is_retried(status: int) -> None:
    """
    PostHog's refusal is known once its status and headers came, whether the body then
    is cut off (retried: `test_a_post_refused_with_a_cut_off_503_is_retried`) or stops
    coming until the attempt's `timeout` (a stream's opening already gives the status
    then: `test_an_error_body_of_a_stream_is_read_in_what_is_left_of_the_attempts_time`).
    A JSON call raised `APITimeoutError` (`reached_server=True`): the create PostHog
    refused before any work was not sent again, and a 429's wait went unread.
    """
    sent: list[bytes] = []
    done = asyncio.Event()
    config = (
        b'{"id": "00000000-0000-0000-0000-000000000001", "scope": "person", "content": {}, '
        b'"sidebar": {}, "created_at": "2024-01-01T00:00:00Z", "updated_at": null}'
    )

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        sent.append(head.split(b" ", 1)[0])
        if len(sent) == 1:
            writer.write(
                b"HTTP/1.1 %d Refused\r\nRetry-After: 0\r\nContent-Type: application/json\r\n"
                b'Content-Length: 200\r\n\r\n{"type": "throttled_error", "co' % status
            )
            await writer.drain()
            await done.wait()  # the rest of the body never comes
        else:
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(config), config)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with _client(url, timeout=0.3, max_retries=2) as ph:
            created = await asyncio.wait_for(ph.customer_profile_configs.create(scope="person"), 5)
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert [b"POST", b"POST"] == sent
    assert created.scope == aposthog.ProfileScope.PERSON


@pytest.mark.parametrize(
    ("body", "stalls"),
    [
        (b"Content-Length: 100\r\n\r\n<html>", False),  # cut off: the connection closes
        (b"Content-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip", False),  # no gzip
        (b"Content-Length: 100\r\n\r\n<html>", True),  # stalls: the connection stays open
    ],
    ids=["cut-off", "bad-gzip", "stalls"],
)
async def test_a_redirect_whose_body_is_not_read_whole_is_still_the_redirect(
    body: bytes, stalls: bool
) -> None:
    """
    A 3xx's status line and headers came: the answer (a redirect, never followed) is
    known whatever its body does, as for an error (>= 400) whose body is cut off, garbled
    or stalls (`test_an_error_whose_body_is_cut_off_keeps_its_status`, ...). A JSON call
    only keeps the status from 400 up: its 302 became "the response from PostHog was cut
    off" (or an `APITimeoutError`, or a `ResponseDecodeError`), retried for a GET, so the
    key went to the redirecting host again, and the "check `host`" advice was lost. A
    conversation stream's opening raises the redirect for the cut and the stall, but a
    `ResponseDecodeError` for the body that does not inflate (`_read_body`).
    """
    # Connection: close, so that each call has a connection of its own.
    answer = b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/\r\nConnection: close\r\n"
    answer += body
    asked: list[bytes] = []
    release = asyncio.Event()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.split(b" ", 1)[0])
        if b"content-length: " in head.lower():  # the POST's body, read before answering
            length = head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
            await reader.readexactly(int(length))
        writer.write(answer)
        await writer.drain()
        if stalls:
            await release.wait()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with _client(url, max_retries=1, timeout=0.3) as ph:
            with pytest.raises(aposthog.PostHogError) as getting:
                await ph.customer_profile_configs.get(ANY_ID)
            with pytest.raises(aposthog.PostHogError) as creating:
                await ph.customer_profile_configs.create(scope="person")
            with pytest.raises(aposthog.PostHogError) as streaming:
                await ph.conversations.create("q", max_reattach_attempts=0).until_done()
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    for info in (getting, creating, streaming):
        assert type(info.value) is aposthog.APIStatusError, repr(info.value)
        assert 302 == info.value.status
        assert "redirected to https://elsewhere.example/" in str(info.value)
    assert [b"GET", b"POST", b"POST"] == asked  # a redirect is final: nothing sent again


async def test_a_redirect_whose_compressed_body_is_unreadable_is_still_the_redirect() -> None:
    """
    A proxy or load balancer in front of PostHog that redirects (`http://` to `https://`,
    a moved host) answers 302 with its `Location`, and a small gzip page as the body. A
    redirect's answer is its status and `Location` alone (`status_failure` never reads
    its body): with a body that inflates, the call fails with `APIStatusError` 302,
    "PostHog redirected to ...: check `host`". The change that lets an error's (400 and
    up) unreadable body go empty left 3xx out: the same redirect with a corrupt gzip body
    is a `ResponseDecodeError` ("unreadable body"), as if PostHog had sent a garbled
    success, and the hint to fix `host` is lost.
    """

    async def handler(request: ServerRequest) -> ServerReply:
        return ServerReply(
            status=302,
            body=b"not gzip at all",
            headers={"Content-Encoding": "gzip", "Location": "https://eu.posthog.example/"},
        )

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url) as ph:
            with pytest.raises(aposthog.PostHogError) as info:
                await ph.customer_profile_configs.get("00000000-0000-0000-0000-000000000001")
    finally:
        await server.stop()
    assert isinstance(info.value, aposthog.APIStatusError), repr(info.value)
    assert info.value.status == 302
    assert "redirected to https://eu.posthog.example/" in str(info.value)


@pytest.mark.parametrize(
    "answer",
    [
        {"headers": {"Retry-After": "9" * 400}, "body": b'{"detail": "Slow down."}'},
        {"body": json.dumps({"detail": "Expected available in " + "9" * 400 + " seconds."})},
    ],
    ids=["header", "detail"],
)
async def test_a_wait_too_long_for_a_float_is_the_longest_wait_not_none(
    answer: dict[str, Any],
) -> None:
    """A 429 naming more seconds than a float holds asks for a very long wait (2**31 s, as
    RFC 9111 reads it): raised at once. It read as no hint at all, and the client retried
    after a backoff of its own, into the same refusal."""
    sent: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        sent.append(request.method)
        body = answer["body"]
        return ServerReply(
            status=429,
            body=body if isinstance(body, bytes) else body.encode(),
            headers=answer.get("headers", {}),
        )

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url, max_retries=3) as ph:
            with pytest.raises(aposthog.RateLimitError) as info:
                await ph.customer_profile_configs.get("00000000-0000-0000-0000-000000000001")
    finally:
        await server.stop()
    assert sent == ["GET"]
    assert info.value.retry_after == 2.0**31
