"""
The key is unreachable from every failure's whole exception graph, and absent from its
traceback printed with every frame's local variables.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import socket
import struct
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

import aposthog
from aposthog._http import Redactor, Secret
from aposthog._inflate import Inflater, UnreadableBody
from aposthog.testing import FakePostHog

from .web_server import serve

pytestmark = pytest.mark.anyio

ANY_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # ids are checked as UUIDs before sending

SENTINEL = "phx_SENTINEL_key_7f3a9c"

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _bad_status_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 two hundred OK\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()


async def _oversized_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * 200_000 + b"\r\n\r\n")
    await writer.drain()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


ANSWERS: dict[str, Answer] = {
    "bad status line": _bad_status_line,
    "oversized headers": _oversized_headers,
    "reset": _reset,
    "timeout": _stall,
}


def _graph(root: BaseException) -> Iterator[Any]:
    """Every object reachable from the error: chain, attributes, args (bounded walk)."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(root, 0)]
    while todo:
        item, depth = todo.pop()
        if id(item) in seen or depth > 8:
            continue
        seen.add(id(item))
        yield item
        children: list[Any] = []
        if isinstance(item, BaseException):
            children += [item.__cause__, item.__context__, *item.args]
        if isinstance(item, dict):
            children += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            children += list(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            children += list(vars(item).values())
        for name in getattr(type(item), "__slots__", ()):
            children.append(getattr(item, name, None))
        if hasattr(item, "items") and callable(item.items) and not isinstance(item, dict):
            try:
                children += [value for pair in item.items() for value in pair]
            except Exception:
                pass
        todo.extend((child, depth + 1) for child in children if child is not None)


def _assert_no_key(error: BaseException) -> None:
    for item in _graph(error):
        for text in (repr(item), str(item)):
            assert SENTINEL not in text, f"the key is reachable via {type(item).__name__}"
    _assert_no_key_in_locals(error)


def printed_with_locals(error: BaseException) -> str:
    """The traceback as pytest's --showlocals, rich or loguru print it: every frame's locals."""
    printed = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(printed.format())


def _assert_no_key_in_locals(error: BaseException) -> None:
    lines = [line for line in printed_with_locals(error).splitlines() if SENTINEL in line]
    assert not lines, f"the key is printed with the traceback's locals: {lines[0][:300]}"


async def _raised(port: int, *, stream: bool, expected: type[BaseException]) -> BaseException:
    """What a call (or a stream) of a client with the key, to 127.0.0.1:`port`, raises."""
    client = aposthog.Client(
        api_key=SENTINEL, host=f"http://127.0.0.1:{port}", max_retries=0, timeout=1.0
    )
    async with client as ph:
        with pytest.raises(expected) as info:
            if stream:
                await ph.conversations.create("q", max_reattach_attempts=0).until_done()
            else:
                await ph.customer_profile_configs.get(ANY_ID)
    return info.value


async def _failure(answer: Answer | None, *, stream: bool) -> BaseException:
    if answer is None:  # refused: a port nothing listens on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = None
    else:
        handlers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.append(writer)
            await reader.readuntil(b"\r\n\r\n")
            await answer(reader, writer)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    try:
        return await _raised(port, stream=stream, expected=aposthog.APIConnectionError)
    finally:
        if server is not None:
            server.close()
            for writer in handlers:
                writer.close()
            await server.wait_closed()


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
@pytest.mark.parametrize("kind", [*ANSWERS, "refused"])
async def test_no_failure_kind_leaves_the_key_reachable(kind: str, stream: bool) -> None:
    error = await _failure(ANSWERS.get(kind), stream=stream)
    _assert_no_key(error)
    assert error.__cause__ is None
    assert error.__context__ is None


def test_the_walk_finds_a_key_where_one_is() -> None:
    """The graph walk itself works: a key in a nested attribute is found."""

    class Holder:
        def __init__(self) -> None:
            self.request_info = {"headers": {"Authorization": f"Bearer {SENTINEL}"}}

    error = RuntimeError("outer")
    error.__context__ = ValueError(Holder())
    with pytest.raises(AssertionError, match="reachable"):
        _assert_no_key(error)


async def test_a_stream_reset_mid_answer_leaves_no_key_reachable() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'30\r\nevent: message\ndata: {"type":"human","content":"q"}\n\n\r\n'
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        await _reset(reader, writer)

    error = await _failure(answer, stream=True)
    _assert_no_key(error)
    assert error.__cause__ is None


@pytest.mark.parametrize("kind", ["get", "list", "stream"])
async def test_a_status_error_leaves_no_key_in_its_traceback_with_locals(kind: str) -> None:
    """PostHog refuses: the frames the error passes through hold the request's headers."""
    async with FakePostHog(api_key=SENTINEL) as fake, fake.client(max_retries=0) as ph:
        with pytest.raises(aposthog.APIStatusError) as info:
            if kind == "get":
                await ph.customer_profile_configs.get(ANY_ID)  # 404
            elif kind == "list":
                fake.fail_next(status=503)
                await ph.customer_profile_configs.list()
            else:
                await ph.conversations.stream(ANY_ID).until_done()  # 400: no such conversation
    assert info.value.status == {"get": 404, "list": 503, "stream": 400}[kind]
    _assert_no_key(info.value)


def test_the_traceback_check_finds_a_key_in_a_local() -> None:
    """The check itself works: a plain header mapping in a frame's locals is found."""

    def send(headers: dict[str, str]) -> None:
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError) as info:
        send({"Authorization": f"Bearer {SENTINEL}"})
    with pytest.raises(AssertionError, match="locals"):
        _assert_no_key_in_locals(info.value)


def test_a_secret_is_its_text_on_the_wire_and_redacted_in_reprs() -> None:
    secret = Secret(f"Bearer {SENTINEL}")
    assert secret == f"Bearer {SENTINEL}"
    assert f"{secret}" == str(secret) == f"Bearer {SENTINEL}"
    assert secret.encode() == f"Bearer {SENTINEL}".encode()
    for shown in (repr(secret), repr({"Authorization": secret}), f"{[secret]}", f"{secret!r}"):
        assert SENTINEL not in shown
        assert "<redacted>" in shown


# ---------------------------------------------------------- answers that quote the key


def _echo(status: int, shape: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A server (a proxy, a misconfigured host) whose answer quotes the request's headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if shape == "json":
            body = {"type": "authentication_error", "code": "x", "detail": f"rejected {header}"}
            return web.json_response(body, status=status)
        if shape == "echo":  # what an echo service answers: the request's headers
            return web.json_response({"headers": dict(request.headers)}, status=status)
        if shape == "escaped":  # a JSON writer that spells "/" as "\/"
            text = json.dumps({"detail": header}).replace("/", "\\/")
            return web.Response(text=text, status=status, content_type="application/json")
        if shape == "location":
            location = f"https://login.example/?token={urllib.parse.quote(header, safe='')}"
            return web.Response(status=status, headers={"Location": location})
        page = f"<html><body><pre>Authorization: {header}</pre>{'.' * 600}</body></html>"
        return web.Response(text=page, status=status, content_type="text/html")

    return handler


QUOTED = "phx_SENTINEL/key+7f3a9c"  # with characters that JSON and URLs spell otherwise

_QUOTING = [
    (401, "json"),
    (403, "html"),
    (502, "escaped"),
    (302, "location"),
    (200, "html"),
    (200, "echo"),
]


@pytest.mark.parametrize("kind", ["get", "list", "stream"])
@pytest.mark.parametrize(("status", "shape"), _QUOTING)
async def test_an_answer_that_quotes_the_key_leaves_it_nowhere(
    status: int, shape: str, kind: str
) -> None:
    """
    The error made of an answer that quotes the key (status errors, a 200 that is not the
    record or not an event stream) says `<redacted>` where the key was: in its message,
    its detail and body, its chain and the locals of its traceback.
    """
    async with (
        serve(_echo(status, shape)) as url,
        aposthog.Client(api_key=QUOTED, host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.PostHogError) as info:
            if kind == "get":
                await ph.customer_profile_configs.get(ANY_ID)
            elif kind == "list":
                await ph.customer_profile_configs.list()
            else:
                await ph.conversations.create("q", max_reattach_attempts=0).until_done()
    error = info.value
    # First, while this frame holds no form of the key among its locals.
    everything = printed_with_locals(error) + repr(vars(error))
    if status == 200:
        assert isinstance(error, aposthog.ResponseDecodeError)
    else:
        assert isinstance(error, aposthog.APIStatusError)
        assert status == error.status
    forms = [QUOTED, QUOTED.replace("/", "\\/"), urllib.parse.quote(QUOTED, safe="")]
    for item in _graph(error):
        everything += repr(item) + str(item)
    for form in forms:
        at = everything.find(form)
        assert at < 0, f"{form!r} in {everything[max(0, at - 300) : at + 50]!r}"
    assert "<redacted>" in str(error) + repr(getattr(error, "body", None))


async def test_a_short_placeholder_key_is_not_redacted_from_answers() -> None:
    """A key shorter than 8 characters (a test's placeholder) leaves the text readable."""
    async with (
        serve(_echo(401, "json")) as url,
        aposthog.Client(api_key="k", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.AuthenticationError) as info:
            await ph.customer_profile_configs.get(ANY_ID)
    assert "rejected Bearer k" in str(info.value)


def test_the_redactor_takes_out_every_form_of_the_key() -> None:
    key = "phx_a/b+c=d"
    redactor = Redactor(key)
    quoted = urllib.parse.quote(key, safe="")
    data = f"1 {key} 2 {key.replace('/', chr(92) + '/')} 3 {quoted} 4".encode()
    assert b"1 <redacted> 2 <redacted> 3 <redacted> 4" == redactor.scrub(data)
    untouched = b"nothing of it here"
    assert redactor.scrub(untouched) is untouched
    assert "x <redacted> \ud800" == redactor.scrub_text(f"x {key} \ud800")
    assert key not in repr(vars(redactor) if hasattr(redactor, "__dict__") else redactor._forms)
    assert Redactor("short").scrub(b"a short b") == b"a short b"


@pytest.mark.parametrize(
    "key", ['phx_SECRET"KEY\\123abc', "phx_SECRET<KEY>&123", "phx_SECRÉT/KEY+1 2"]
)
def test_the_redactor_takes_out_the_key_however_an_encoder_escaped_it(key: str) -> None:
    """
    A key with a quote, a backslash, `<>&` or non-ASCII, as JSON encoders write it (an
    echo server's `\\"`, `\\\\`, `\\u003c`), as HTML escapes it, percent-encoded in
    lower case: each went through (the plain key in `.detail` once decoded).
    """
    redactor = Redactor(key)
    forms = [
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        json.dumps(key)[1:-1]
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026"),
        html.escape(key),
        html.escape(key, quote=False),
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(key, safe="")),
    ]
    for form in forms:
        scrubbed = redactor.scrub_text(f"a {form} b")
        assert "a <redacted> b" == scrubbed, form
        decoded = json.loads('"' + scrubbed + '"') if form.startswith("phx") else scrubbed
        assert key not in decoded
    # A header's value a parser lower-cased (a Content-Type): in any case.
    assert "<redacted>/x" == redactor.scrub_folded(f"{key.lower()}/x")
    assert "<redacted>/x" == redactor.scrub_folded(f"{key.upper()}/x")


def test_an_unknown_long_content_encoding_is_not_quoted() -> None:
    """A proxy may copy anything into the header, the request's key too."""
    with pytest.raises(UnreadableBody) as info:
        Inflater(SENTINEL, limit=None)
    assert SENTINEL.lower() not in str(info.value)
    assert f"of {len(SENTINEL)} characters" in str(info.value)


@pytest.mark.parametrize("kind", ["append_message", "create_backfill", "test"])
async def test_an_echoed_200_a_resource_rejects_leaves_the_key_nowhere(kind: str) -> None:
    """
    An echo service's 200 JSON (no message `id`, `backfill_id` or `steps`), refused by the
    resource after decoding: the ResponseDecodeError holds no key, nor do the frames of
    its traceback.
    """
    async with (
        serve(_echo(200, "echo")) as url,
        aposthog.Client(api_key=QUOTED, host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            if kind == "append_message":
                await ph.conversations.append_message(ANY_ID, "hi")
            elif kind == "create_backfill":
                await ph.batch_exports.create_backfill(
                    ANY_ID, start_at="2024-01-01", end_at="2024-01-02"
                )
            else:
                await ph.batch_exports.test(destination="S3")
    error = info.value
    assert "<redacted>" in repr(error.body)
    everything = printed_with_locals(error) + repr(vars(error))
    for item in _graph(error):
        everything += repr(item) + str(item)
    assert QUOTED not in everything


async def _echo_page(request: web.Request) -> web.StreamResponse:
    """A list page whose one record is an echo of the request's headers (not the record)."""
    record = {"headers": dict(request.headers)}
    return web.json_response({"count": 1, "next": None, "previous": None, "results": [record]})


async def test_a_records_loop_over_a_page_that_quotes_the_key_leaves_it_nowhere() -> None:
    """
    `async for` over a list whose record is not the record and quotes the key: the
    ResponseDecodeError says `<redacted>`, as `await paginator` and `to_list()` do.
    """
    async with (
        serve(_echo_page) as url,
        aposthog.Client(api_key=QUOTED, host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as awaited:
            await ph.customer_profile_configs.list()
        assert QUOTED not in repr(awaited.value.body) + str(awaited.value)
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            async for _ in ph.customer_profile_configs.list():
                pass
    error = info.value
    everything = printed_with_locals(error) + repr(vars(error))
    for item in _graph(error):
        everything += repr(item) + str(item)
    assert QUOTED not in everything, "the key is reachable from the records loop's error"
    assert "<redacted>" in repr(error.body)


def _echoing(shape: str) -> Callable[[bytes], bytes]:
    """A raw answer (a misbehaving proxy) quoting the request's Authorization header."""

    def answer(authorization: bytes) -> bytes:
        page = b"<html><pre>Authorization: " + authorization + b"</pre></html>"
        if shape == "gzip label, plain body":
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: " + str(len(page)).encode() + b"\r\n\r\n" + page
            )
        if shape == "key as content type and encoding":
            key = authorization.split(b" ")[-1]
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: " + key + b"/x\r\nContent-Encoding: " + key
                + b"\r\nContent-Length: 2\r\n\r\n{}"
            )  # fmt: skip
        status = b"401 Unauthorized" if shape.startswith("401") else b"200 OK"
        head = b"HTTP/1.1 " + status + b"\r\nX-Echo-Authorization: " + authorization + b"\r\n"
        if shape.endswith("too large"):
            return head + b"Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n"
        if shape.endswith("cut off"):
            return head + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        return head + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"  # stalls

    return answer


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
@pytest.mark.parametrize(
    "shape",
    [
        "gzip label, plain body",
        "200, too large",
        "401, too large",
        "200, stalls",
        "200, cut off",
        "key as content type and encoding",
    ],
)
async def test_an_answer_quoting_the_key_leaves_it_in_no_frame_of_the_traceback(
    shape: str, stream: bool
) -> None:
    """
    A proxy that echoes the request's headers into its answer's body or headers: the
    frames the error passed through held the body's bytes (`chunk`, `raw`) or the
    response (`resp`, `response`, `refused`, whose repr shows every header), and so the
    key, printed with the traceback's locals (pytest's --showlocals, rich, Sentry).
    """
    answer = _echoing(shape)
    handlers: list[asyncio.StreamWriter] = []

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # a connection the client gave up on before its request (a loaded machine)
        (authorization,) = [
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        ]
        writer.write(answer(authorization))
        await writer.drain()
        if not shape.endswith("stalls"):
            writer.close()
            return
        await asyncio.sleep(3600)

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        error = await _raised(port, stream=stream, expected=aposthog.PostHogError)
    finally:
        server.close()
        for writer in handlers:
            writer.close()
        await server.wait_closed()
    _assert_no_key(error)
