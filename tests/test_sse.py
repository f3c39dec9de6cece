"""Tests for aposthog.sse: the WHATWG event-stream rules, chunking, limits, and a reference."""

from __future__ import annotations

import copy
import itertools
import pickle
import re
import tracemalloc
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aposthog.sse import EventTooLargeError, ServerSentEvent, SSEDecoder, SSEError

E = ServerSentEvent
BOM = b"\xef\xbb\xbf"


def decode(chunks: Sequence[bytes], **kwargs: int | None) -> list[ServerSentEvent]:
    """Feed `chunks` to a new decoder, then close it; return every event."""
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events


def split_at(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Cut `stream` at the given offsets (any order, duplicates allowed)."""
    bounds = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def outcome(chunks: Sequence[bytes], **kwargs: int | None) -> tuple[list[ServerSentEvent], str]:
    """Events until the stream ends or an error; then last_event_id, or the error's name."""
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
    except SSEError as error:
        return events, type(error).__name__
    ending = decoder.last_event_id
    try:
        events += decoder.close()
    except SSEError as error:
        return events, type(error).__name__
    return events, ending


# --- The reference: the spec's algorithm written out plainly over fully decoded text. ---


def reference(stream: bytes) -> tuple[list[ServerSentEvent], str]:
    """Decode a whole stream per WHATWG; return the events and the last event ID string."""
    if stream.startswith(BOM):
        stream = stream[3:]
    lines = re.split("\r\n|\r|\n", stream.decode("utf-8", "replace"))
    lines.pop()  # whatever follows the last line end is not a complete line
    events: list[ServerSentEvent] = []
    data = event_type = ""
    id_buffer: str | None = None
    last_id: str | None = None
    retry: int | None = None
    for line in lines:
        if not line:
            last_id = id_buffer
            if data:
                events.append(E(event_type or "message", data[:-1], last_id, retry))
            data = event_type = ""
            retry = None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events, "" if last_id is None else last_id


# --- Table-driven cases for each rule. ---

RULES = [
    # (id, chunks, expected events)
    ("lf", [b"data: a\n\n"], [E(data="a")]),
    ("crlf", [b"data: a\r\n\r\n"], [E(data="a")]),
    ("cr", [b"data: a\r\r"], [E(data="a")]),
    ("mixed-endings", [b"data: a\r\ndata: b\rdata: c\n\r\n"], [E(data="a\nb\nc")]),
    ("lf-cr-is-two-line-ends", [b"data: a\n\rdata: b\n\n"], [E(data="a"), E(data="b")]),
    ("crlf-split-across-chunks", [b"data: a\r", b"\ndata: b\n\n"], [E(data="a\nb")]),
    (
        "crlf-split-blank-line",
        [b"data: a\r\n\r", b"\n", b"data: b\r\n\r\n"],
        [E(data="a"), E(data="b")],
    ),
    ("cr-then-empty-chunk-then-lf", [b"data: a\r", b"", b"\ndata: b\n\n"], [E(data="a\nb")]),
    ("cr-at-chunk-end-is-line-end", [b"data: a\r", b"\r"], [E(data="a")]),
    ("cr-then-other-text", [b"data: a\r", b"data: b\r\r"], [E(data="a\nb")]),
    ("bom-stripped", [BOM + b"data: a\n\n"], [E(data="a")]),
    ("bom-split-three-ways", [b"\xef", b"\xbb", b"\xbfdata: a\n\n"], [E(data="a")]),
    ("bom-split-two-ways", [b"\xef\xbb", b"\xbfdata: a\n\n"], [E(data="a")]),
    ("second-bom-is-data", [BOM + BOM + b"data: a\n\n"], []),
    ("second-bom-in-value", [BOM + b"data: " + BOM + b"a\n\n"], [E(data="\ufeffa")]),
    ("bom-after-first-chunk-is-data", [b"data: a\n\n", BOM + b"data: b\n\n"], [E(data="a")]),
    ("bom-only-at-stream-start", [b"d", BOM + b"ata: a\n\n"], []),
    ("almost-a-bom", [b"\xef\xbb", b"\ndata: a\n\n"], [E(data="a")]),
    ("comment", [b": hi\ndata: a\n:x\n\n"], [E(data="a")]),
    ("keepalive-only", [b": keepalive\n\n"], []),
    ("colon-only-line", [b":\ndata: a\n\n"], [E(data="a")]),
    ("field-without-colon", [b"data\ndata\n\n"], [E(data="\n")]),
    ("lone-data-without-colon", [b"data\n\n"], [E(data="")]),
    ("one-space-removed", [b"data:  a\n\n"], [E(data=" a")]),
    ("no-space", [b"data:a\n\n"], [E(data="a")]),
    ("tab-kept", [b"data:\ta\n\n"], [E(data="\ta")]),
    ("only-first-colon-splits", [b"data: a: b:c\n\n"], [E(data="a: b:c")]),
    ("empty-value", [b"data: \n\n"], [E(data="")]),
    ("multi-line-data", [b"data: a\ndata: b\ndata: c\n\n"], [E(data="a\nb\nc")]),
    ("only-one-trailing-lf-removed", [b"data: a\ndata:\n\n"], [E(data="a\n")]),
    ("empty-block-resets-type", [b"event: x\n\ndata: y\n\n"], [E(data="y")]),
    ("event-type", [b"event: update\ndata: a\n\n"], [E("update", "a")]),
    ("empty-event-type", [b"event:\ndata: a\n\nevent: \ndata: b\n\n"], [E(data="a"), E(data="b")]),
    ("last-event-field-wins", [b"event: a\nevent: b\ndata: x\n\n"], [E("b", "x")]),
    ("event-after-data", [b"data: x\nevent: late\n\n"], [E("late", "x")]),
    ("type-does-not-carry-over", [b"event: a\ndata: 1\n\ndata: 2\n\n"], [E("a", "1"), E(data="2")]),
    ("field-name-case-matters", [b"Data: a\nDATA: b\n\n"], []),
    ("field-name-space-matters", [b"data : a\n data: b\n\n"], []),
    ("unknown-field-ignored", [b"foo: bar\ndata: a\n\n"], [E(data="a")]),
    ("id-persists", [b"id: 1\ndata: a\n\ndata: b\n\n"], [E(data="a", id="1"), E(data="b", id="1")]),
    ("id-none-when-never-set", [b"data: a\n\n"], [E(data="a", id=None)]),
    (
        "id-with-nul-ignored",
        [b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n"],
        [E(data="a", id="1"), E(data="b", id="1")],
    ),
    (
        "empty-id-resets",
        [b"id: 1\ndata: a\n\nid\ndata: b\n\n"],
        [E(data="a", id="1"), E(data="b", id="")],
    ),
    ("empty-id-with-colon", [b"id:\ndata: b\n\n"], [E(data="b", id="")]),
    ("id-after-data-in-block", [b"data: a\nid: 5\n\n"], [E(data="a", id="5")]),
    ("id-from-dataless-block", [b"id: 7\n\ndata: a\n\n"], [E(data="a", id="7")]),
    ("id-non-ascii", ["id: é中\ndata: a\n\n".encode()], [E(data="a", id="é中")]),
    ("id-invalid-utf8", [b"id: a\xffb\ndata: x\n\n"], [E(data="x", id="a\ufffdb")]),
    (
        "field-name-must-match-whole",
        [b"ids: 1\nidx\nretry2: 5\nevents: x\ndatas: y\ndata: a\n\n"],
        [E(data="a")],
    ),
    ("retry", [b"retry: 3000\ndata: a\n\n"], [E(data="a", retry=3000)]),
    ("retry-zero", [b"retry: 0\ndata: a\n\n"], [E(data="a", retry=0)]),
    ("retry-leading-zeros", [b"retry: 007\ndata: a\n\n"], [E(data="a", retry=7)]),
    ("retry-plus", [b"retry: +5\ndata: a\n\n"], [E(data="a")]),
    ("retry-minus", [b"retry: -5\ndata: a\n\n"], [E(data="a")]),
    ("retry-underscore", [b"retry: 1_0\ndata: a\n\n"], [E(data="a")]),
    ("retry-extra-space", [b"retry:  5\ndata: a\n\n"], [E(data="a")]),
    ("retry-trailing-space", [b"retry: 5 \ndata: a\n\n"], [E(data="a")]),
    ("retry-decimal", [b"retry: 5.0\ndata: a\n\n"], [E(data="a")]),
    ("retry-empty", [b"retry:\ndata: a\n\n"], [E(data="a")]),
    ("retry-arabic-indic-digit", ["retry: \u0663\ndata: a\n\n".encode()], [E(data="a")]),
    ("retry-fullwidth-digit", ["retry: \uff15\ndata: a\n\n".encode()], [E(data="a")]),
    ("retry-superscript-digit", ["retry: ²\ndata: a\n\n".encode()], [E(data="a")]),
    (
        "retry-own-block-only",
        [b"retry: 10\ndata: a\n\ndata: b\n\n"],
        [E(data="a", retry=10), E(data="b")],
    ),
    ("retry-of-dataless-block-dropped", [b"retry: 10\n\ndata: b\n\n"], [E(data="b")]),
    (
        "invalid-retry-keeps-valid-one",
        [b"retry: 10\nretry: x\ndata: a\n\n"],
        [E(data="a", retry=10)],
    ),
    ("later-valid-retry-wins", [b"retry: 10\nretry: 20\ndata: a\n\n"], [E(data="a", retry=20)]),
    ("invalid-utf8", [b"data: a\xffb\n\n"], [E(data="a\ufffdb")]),
    ("truncated-utf8-at-line-end", [b"data: \xe4\xb8\n\n"], [E(data="\ufffd")]),
    ("invalid-utf8-event-type", [b"event: \xff\ndata: a\n\n"], [E("\ufffd", "a")]),
    ("overlong-encoding", [b"data: \xc0\xaf\n\n"], [E(data="\ufffd\ufffd")]),
    ("utf8-split-2-bytes", ["data: é\n\n".encode()[:7], "data: é\n\n".encode()[7:]], [E(data="é")]),
    ("utf8-split-3-bytes", [b"data: \xe4", b"\xb8", b"\xad\n\n"], [E(data="中")]),
    ("utf8-split-4-bytes", [b"data: \xf0", b"\x9f", b"\x9a", b"\x80\n\n"], [E(data="🚀")]),
    (
        "unicode-line-separators-are-data",
        ["data: a\u2028b\u2029c\x85d\ve\ff\x1cg\n\n".encode()],
        [E(data="a\u2028b\u2029c\x85d\ve\ff\x1cg")],
    ),
    ("nul-in-data", [b"data: a\x00b\n\n"], [E(data="a\x00b")]),
    ("unterminated-event-discarded", [b"data: a\n"], []),
    ("unterminated-line-discarded", [b"data: a\n\ndata: b"], [E(data="a")]),
    ("stream-ending-in-cr", [b"data: a\r\r"], [E(data="a")]),
    ("empty-feeds", [b"", b"data: a", b"", b"\n", b"", b"\n", b""], [E(data="a")]),
    ("nothing", [], []),
    ("blank-lines-only", [b"\n\n\r\n\r"], []),
]


@pytest.mark.parametrize(("chunks", "expected"), [c[1:] for c in RULES], ids=[c[0] for c in RULES])
def test_rule(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    """Each WHATWG rule, exercised on its own; the reference agrees when fed whole."""
    assert decode(chunks) == expected
    assert reference(b"".join(chunks))[0] == expected


@pytest.mark.parametrize(("chunks", "expected"), [c[1:] for c in RULES], ids=[c[0] for c in RULES])
def test_rule_byte_by_byte(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    """Each rule case gives the same events when the stream arrives one byte at a time."""
    stream = b"".join(chunks)
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == expected


# --- PostHog-shaped streams, which take the decoder's fast paths. ---


POSTHOG = (
    b'event: conversation\ndata: {"id": "c1", "status": "in_progress"}\n\n'
    b'event: message\ndata: {"content":"Hel","type":"ai"}\n\n'
    b": keepalive\n\n"
    + 'event: message\ndata: {"content":"Hello wörld 中 🚀","type":"ai"}\n\n'.encode()
    + b'event: update\ndata: {"id":"m1","tool_call_id":"t1","content":"Searching"}\n\n'
    b'event: message\ndata: {"content":"Hello again","type":"ai"}\n\n'
)
POSTHOG_EVENTS = [
    E("conversation", '{"id": "c1", "status": "in_progress"}'),
    E("message", '{"content":"Hel","type":"ai"}'),
    E("message", '{"content":"Hello wörld 中 🚀","type":"ai"}'),
    E("update", '{"id":"m1","tool_call_id":"t1","content":"Searching"}'),
    E("message", '{"content":"Hello again","type":"ai"}'),
]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 64, 4096])
def test_posthog_stream_in_fixed_chunks(size: int) -> None:
    """A PostHog-like stream decodes the same whatever the chunk size."""
    chunks = [POSTHOG[i : i + size] for i in range(0, len(POSTHOG), size)]
    assert decode(chunks) == POSTHOG_EVENTS


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"event: message\ndata: 1\ndata: 2\n\n", [E(data="1\n2")]),
        (b"event: message\ndata: 1\nid: 5\n\n", [E(data="1", id="5")]),
        (b"event: message\ndata: 1\nretry: 5\n\n", [E(data="1", retry=5)]),
        (b"event: message\ndata: 1\nevent: x\n\n", [E("x", "1")]),
        (b"event: message\ndata: 1\n: c\n\n", [E(data="1")]),
        (b"event: message\ndata:1\n\n", [E(data="1")]),
        (b"event: message\ndata\n\n", [E(data="")]),
        (b"data: 0\nevent: message\ndata: 1\n\n", [E(data="0\n1")]),
        (
            b"id: 3\nevent: message\ndata: 1\n\nevent: message\ndata: 2\n\n",
            [E(data="1", id="3"), E(data="2", id="3")],
        ),
        (
            b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: a\ndata: 3\n\n",
            [E("a", "1"), E("b", "2"), E("a", "3")],
        ),
        (
            b"event: a\ndata: 1\n\nevent: a\ndata: 2\n\ndata: 3\n\n",
            [E("a", "1"), E("a", "2"), E(data="3")],
        ),
        (
            b"event: message\ndata: 1\n\nevent: messages\ndata: 2\n\n",
            [E(data="1"), E("messages", "2")],
        ),
        (b"event: message\ndata: 1\n\nevent: message\n\ndata: 2\n\n", [E(data="1"), E(data="2")]),
        (
            b"retry: 5\nevent: message\ndata: 1\n\nevent: message\ndata: 2\n\n",
            [E(data="1", retry=5), E(data="2")],
        ),
        (
            b"retry: 5\nevent: a\ndata: 1\n\nevent: a\ndata: 2\n\n",
            [E("a", "1", retry=5), E("a", "2")],
        ),
        (b"retry: 5\ndata: 1\n\ndata: 2\n\n", [E(data="1", retry=5), E(data="2")]),
        (b"event: x\nevent: message\ndata: 1\n\ndata: 2\n\n", [E(data="1"), E(data="2")]),
        (b"event: message\ndata: a\xffb\n\n", [E(data="a\ufffdb")]),
        (
            b"event: a\ndata: 1\n\nevent: a\ndata: \xe4\xb8\n\n",
            [E("a", "1"), E("a", "\ufffd")],
        ),
    ],
)
def test_event_shapes_near_the_fast_path(stream: bytes, expected: list[ServerSentEvent]) -> None:
    """Streams that start like the common event shape but differ are decoded per the spec."""
    assert decode([stream]) == expected
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == expected
    assert reference(stream)[0] == expected


@pytest.mark.parametrize("cut", range(1, 12))
def test_repeated_type_cut_inside_data_line(cut: int) -> None:
    """An event of the previous event's type, cut anywhere after its type, keeps the type."""
    first = b"event: update\ndata: 1\n\n"
    second = b"event: update\ndata: 2345678\n\n"
    chunks = [
        first + second[: len(b"event: update\n") + cut],
        second[len(b"event: update\n") + cut :],
    ]
    assert decode(chunks) == [E("update", "1"), E("update", "2345678")]


def test_many_event_types() -> None:
    """More distinct event types than the decoder caches still come out right."""
    stream = b"".join(b"event: t%d\ndata: %d\n\n" % (i, i) for i in range(200))
    assert decode([stream]) == [E(f"t{i}", str(i)) for i in range(200)]


def test_ever_new_event_types_do_not_grow_memory() -> None:
    """A server sending ever-new event types cannot make the decoder keep them all."""
    decoder = SSEDecoder()
    names = [b"t%05d" % i + b"x" * 1000 for i in range(2000)]  # 2 MB of names, 4 MB decoded
    tracemalloc.start()
    try:
        for name in names:
            assert [e.event for e in decoder.feed(b"event: %s\ndata: 1\n\n" % name)] == [
                name.decode()
            ]
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000


def test_long_event_types_are_not_kept_after_their_events() -> None:
    """Memory is bounded by `max_event_size` (the module's docstring), but the cache of
    event types keeps 64 of them whatever their length, bytes and text, even after
    `close()`: with the default limit, 64 distinct 16 MiB types pin 2 GiB. A hostile
    stream's long types must be forgotten once their events are out."""
    decoder = SSEDecoder()
    names = [b"%02d" % i * 50_000 for i in range(64)]  # 100 KB each, 6.4 MB in all
    tracemalloc.start()
    try:
        for name in names:
            assert [e.data for e in decoder.feed(b"event: %s\ndata: 1\n\n" % name)] == ["1"]
        decoder.close()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000  # at most the last type (the fast path's guess) and change


def test_long_line_across_many_chunks() -> None:
    """A 1.3 MB data line fed in 1000-byte chunks is decoded whole."""
    value = "é中🚀x" * (1 << 17)
    stream = b"data: " + value.encode() + b"\n\n"
    assert decode([stream[i : i + 1000] for i in range(0, len(stream), 1000)]) == [E(data=value)]


# --- last_event_id and close(). ---


def test_last_event_id() -> None:
    """last_event_id starts empty and follows blank lines, not id fields, per the spec."""
    decoder = SSEDecoder()
    assert decoder.last_event_id == ""
    assert decoder.feed(b"id: 1\ndata: a\n") == []
    assert decoder.last_event_id == ""  # the id is in force only once its block ends
    assert decoder.feed(b"\n") == [E(data="a", id="1")]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"id: 2\n\n") == []  # no data, no event, but the ID still moves
    assert decoder.last_event_id == "2"
    assert decoder.feed(b"id\n\n") == []
    assert decoder.last_event_id == ""


@pytest.mark.parametrize(
    "stream",
    [
        b"id: 5\nevent: message\ndata: x\n\n",  # the fastest path (the last event type)
        b"id: 5\nevent: other\ndata: x\n\n",  # the fast path for a new event type
        b"id: 5\ndata: x\n\n",  # the fast path for a lone data line
        b"id: 5\ndata: x\nretry: 1\n\n",  # the general path
    ],
)
def test_last_event_id_on_every_path(stream: bytes) -> None:
    """An id in the block of an event sets last_event_id, whichever path dispatches it."""
    decoder = SSEDecoder()
    assert [e.id for e in decoder.feed(stream)] == ["5"]
    assert decoder.last_event_id == "5"


def test_close_discards_unterminated_event_and_resets() -> None:
    """close() drops a half-received event and leaves the decoder like a new one."""
    decoder = SSEDecoder()
    assert decoder.feed(BOM + b"id: 1\ndata: a\n\nid: 2\ndata: b\n") == [E(data="a", id="1")]
    assert decoder.close() == []
    assert decoder.last_event_id == ""
    # A new stream: its BOM is stripped and no ID carries over.
    assert decoder.feed(BOM + b"data: c\n\n") == [E(data="c")]
    assert decoder.feed(b"data: partial") == []
    assert decoder.close() == []
    assert decoder.close() == []


def test_close_forgets_pending_cr() -> None:
    """After close(), an LF starting the next stream is a line end of its own."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    decoder.close()
    assert decoder.feed(b"data: b\n") == []
    assert decoder.feed(b"\n") == [E(data="b")]
    # Had the CR survived close(), the LF would have been swallowed; check the other order.
    decoder = SSEDecoder()
    decoder.feed(b"x\r")
    decoder.close()
    assert decoder.feed(b"\ndata: c\n\n") == [E(data="c")]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_input(kind: type[bytearray] | type[memoryview]) -> None:
    """feed() accepts any bytes-like object and does not keep a view of it."""
    decoder = SSEDecoder()
    buffer = bytearray(b"data: a\n\ndata: b")
    # aiohttp hands out bytes, other code may not (a relay reading into a buffer).
    assert decoder.feed(kind(buffer)) == [E(data="a")]
    buffer[:] = b"garbage!"  # the decoder must have copied the partial line
    assert decoder.feed(kind(bytearray(b"c\n\n"))) == [E(data="bc")]


@pytest.mark.parametrize("chunk", ["data: a\n\n", 5])
def test_non_bytes_input_is_a_type_error(chunk: object) -> None:
    """Text or a number passed by mistake is rejected, not decoded as something else."""
    with pytest.raises(TypeError):
        SSEDecoder().feed(chunk)  # type: ignore[arg-type]


def test_events_equal_public_constructor() -> None:
    """Events built by the decoder are ordinary ServerSentEvents, equal field for field."""
    stream = b"id: 9\nretry: 5\nevent: update\ndata: x\n\nevent: update\ndata: y\n\ndata: z\n\n"
    events = decode([stream])
    assert [attrs.astuple(e) for e in events] == [
        ("update", "x", "9", 5),
        ("update", "y", "9", None),
        ("message", "z", "9", None),
    ]
    assert events == [E("update", "x", "9", 5), E("update", "y", "9"), E("message", "z", "9")]
    assert [type(e) for e in events] == [ServerSentEvent] * 3
    assert hash(events[0]) == hash(E("update", "x", "9", 5))
    # The decoder fills these slots itself; a new field would need filling there too.
    assert [f.name for f in attrs.fields(ServerSentEvent)] == ["event", "data", "id", "retry"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        events[0].data = "changed"  # type: ignore[misc]


def test_retry_with_thousands_of_digits() -> None:
    """A retry value too long for int() is ignored; leading zeros do not count."""
    huge = b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"
    assert decode([huge]) == [E(data="a")]
    assert decode([b"retry: 7\n" + huge]) == [E(data="a", retry=7)]
    padded = b"retry: " + b"0" * 5000 + b"12\ndata: a\n\n"
    assert decode([padded]) == [E(data="a", retry=12)]


# --- max_event_size. ---


def test_max_event_size_pending_line() -> None:
    """A line that grows past the limit before its end arrives raises, with size and limit."""
    decoder = SSEDecoder(max_event_size=10)
    assert decoder.feed(b"data: 0123") == []
    with pytest.raises(EventTooLargeError, match=r"11 bytes buffered, max_event_size is 10"):
        decoder.feed(b"4")


def test_max_event_size_accumulated_data() -> None:
    """Data lines add up: the data so far plus the next line must fit."""
    decoder = SSEDecoder(max_event_size=27)
    assert decoder.feed(b"data: 0123456789\n") == []  # 16-byte line; data buffer now 11
    with pytest.raises(EventTooLargeError) as info:
        decoder.feed(b"data: 01234567890\n")  # 11 + 17 = 28
    assert (info.value.size, info.value.limit) == (28, 27)
    assert isinstance(info.value, SSEError)


@pytest.mark.parametrize(
    "stream",
    [
        b"data: 0123456789\n\n",  # the fast path for a lone data line
        b"event: message\ndata: 0123456789\n\n",  # the fast path for the last event type
        b"event: other\ndata: 0123456789\n\n",  # the fast path for a new event type
        b"event: message\ndata: 0123456789\nid: 1\n\n",  # the general path
    ],
)
def test_max_event_size_boundary(stream: bytes) -> None:
    """A 16-byte data line fits a limit of 16 and not 15, on every path, however cut."""
    for chunks in [
        [stream],
        *([stream[:i], stream[i:]] for i in range(1, len(stream))),
        *([stream[:i], stream[i : i + 3], stream[i + 3 :]] for i in range(1, len(stream) - 3)),
    ]:
        assert decode(chunks, max_event_size=16)[0].data == "0123456789"
        with pytest.raises(EventTooLargeError):
            decode(chunks, max_event_size=15)


def test_max_event_size_accumulated_data_without_space() -> None:
    """ "data:x" and a bare "data" add their value plus one LF to the data buffer too."""
    decoder = SSEDecoder(max_event_size=26)
    assert decoder.feed(b"data:0123456789\n") == []  # 15-byte line; data buffer now 11
    with pytest.raises(EventTooLargeError) as info:
        decoder.feed(b"data:01234567890\n")  # 11 + 16 = 27
    assert (info.value.size, info.value.limit) == (27, 26)
    assert decode([b"data:0123456789\ndata:01234567890\n\n"], max_event_size=27) == [
        E(data="0123456789\n01234567890")
    ]
    decoder = SSEDecoder(max_event_size=5)
    assert decoder.feed(b"data\ndata\n") == []  # 4-byte lines; data buffer now 2
    with pytest.raises(EventTooLargeError) as info:
        decoder.feed(b"data\n")  # 2 + 4 = 6
    assert (info.value.size, info.value.limit) == (6, 5)


@pytest.mark.parametrize(
    ("stream", "line"),
    [
        (b"event: message\ndata: 0\n\n", 14),  # the fastest path (the initial event type)
        (b"event: other\ndata: 0\n\n", 12),  # the fast path for a new event type
        (b"event: other\ndata: 0\nid: 1\n\n", 12),  # the general path
    ],
)
def test_max_event_size_boundary_of_the_event_line(stream: bytes, line: int) -> None:
    """An event line of N bytes fits a limit of N and not N - 1, on every path, however cut."""
    for chunks in [
        [stream],
        *([stream[:i], stream[i:]] for i in range(1, len(stream))),
        *([stream[:i], stream[i : i + 3], stream[i + 3 :]] for i in range(1, len(stream) - 3)),
    ]:
        assert decode(chunks, max_event_size=line)[0].data == "0"
        with pytest.raises(EventTooLargeError):
            decode(chunks, max_event_size=line - 1)
    # The line is too large as soon as it is there, even if the stream then breaks off.
    for end in range(line, len(stream)):
        with pytest.raises(EventTooLargeError):
            decode([stream[:end]], max_event_size=line - 1)


def test_max_event_size_counts_other_lines() -> None:
    """Event, comment and unknown-field lines are held to the limit too."""
    for line in [b"event: " + b"x" * 20, b": " + b"x" * 20, b"foo: " + b"x" * 20]:
        with pytest.raises(EventTooLargeError):
            decode([line + b"\ndata: a\n\n"], max_event_size=16)


def test_max_event_size_resets_per_event() -> None:
    """Each event starts from an empty data buffer."""
    stream = b"data: 0123456789\n\n" * 100
    assert len(decode([stream], max_event_size=16)) == 100


def test_max_event_size_returns_earlier_events_first() -> None:
    """Events completed before the oversized line are returned; the next call raises."""
    decoder = SSEDecoder(max_event_size=16)
    assert decoder.feed(b"data: a\n\ndata: " + b"x" * 20 + b"\n\n") == [E(data="a")]
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: b\n\n")
    # The decoder was reset: it reads a new stream.
    assert decoder.feed(b"data: c\n\n") == [E(data="c")]
    assert decoder.feed(b"data: a\n\nevent: " + b"x" * 20) == [E(data="a")]
    with pytest.raises(EventTooLargeError):
        decoder.close()
    assert decoder.close() == []


def test_max_event_size_none_is_unlimited() -> None:
    """With max_event_size=None a 20 MiB event goes through."""
    value = b"x" * (20 << 20)
    assert decode([b"data: ", value, b"\n\n"], max_event_size=None) == [E(data=value.decode())]
    with pytest.raises(EventTooLargeError):
        decode([b"data: ", value, b"\n\n"])  # the default limit is 16 MiB


def test_max_event_size_default_is_16_mib() -> None:
    """By default a line may grow to exactly 16 MiB; one byte more raises."""
    decoder = SSEDecoder()
    assert decoder.feed(b"x" * (16 << 20)) == []
    with pytest.raises(EventTooLargeError) as info:
        decoder.feed(b"x")
    assert (info.value.size, info.value.limit) == ((16 << 20) + 1, 16 << 20)


def test_max_event_size_must_not_be_negative() -> None:
    """A negative limit is a programming error."""
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=-1)


# --- Property tests. ---

FIELD_NAMES = ["data", "event", "id", "retry", "foo", "", "dat", "data "]
VALUES = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=8
) | st.sampled_from(
    ["", " ", "message", "update", "12", "007", "+1", "\x00", "\u2028", "\x85", "é中🚀"]
)
# The usual shape of a whole event, so that streams exercise the decoder's fast paths.
BLOCKS = st.tuples(st.sampled_from(["message", "update", ""]), VALUES).map(
    lambda t: f"event: {t[0]}\ndata: {t[1]}\n"
)
LINES = st.one_of(
    BLOCKS,
    st.tuples(st.sampled_from(FIELD_NAMES), st.sampled_from([":", ": ", ":  ", ""]), VALUES).map(
        lambda t: t[0] + t[1] + t[2] if t[1] else t[0]
    ),
    VALUES.map(lambda v: ":" + v),  # comment
    st.just(""),  # blank line: dispatch
)


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    """A stream of random field, comment and blank lines, each ended by LF, CR or CRLF."""
    lines = draw(st.lists(st.tuples(LINES, st.sampled_from(["\n", "\r", "\r\n"])), max_size=25))
    text = "".join(line + ending for line, ending in lines)
    if draw(st.booleans()):
        text += draw(LINES)  # an unterminated last line
    prefix = draw(st.sampled_from([b"", b"", BOM, BOM + BOM]))
    return prefix + text.encode()


FRAGMENTS = [
    b"data", b"event", b"id", b"retry", b":", b" ", b"\r", b"\n", b"\r\n", b"\x00", BOM,
    b"\xff", "é".encode(), "中".encode()[:2], b"12", b"x", b"message", b"\xf0\x9f\x9a\x80",
]  # fmt: skip
FRAGMENT_STREAMS = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)


def cut_points(stream: bytes) -> st.SearchStrategy[list[int]]:
    """Offsets at which to cut `stream` into chunks."""
    return st.lists(st.integers(0, len(stream)), max_size=12)


@settings(max_examples=300)
@given(st.data())
def test_structured_streams_any_chunking(data: st.DataObject) -> None:
    """A random event stream decodes the same in any chunks as whole, and as the reference."""
    stream = data.draw(event_streams())
    whole = outcome([stream], max_event_size=None)
    assert whole == reference(stream)
    assert outcome(split_at(stream, data.draw(cut_points(stream))), max_event_size=None) == whole
    assert outcome([stream[i : i + 1] for i in range(len(stream))], max_event_size=None) == whole


@settings(max_examples=300)
@given(st.data())
def test_fragment_streams_match_reference(data: st.DataObject) -> None:
    """Byte soup from SSE-ish fragments, cut anywhere, decodes as the reference says."""
    stream = data.draw(FRAGMENT_STREAMS)
    expected = reference(stream)
    assert outcome(split_at(stream, data.draw(cut_points(stream))), max_event_size=None) == expected
    assert outcome([stream[i : i + 1] for i in range(len(stream))], max_event_size=None) == expected


@settings(max_examples=200)
@given(st.data())
def test_max_event_size_does_not_depend_on_chunking(data: st.DataObject) -> None:
    """Whether the limit trips, and the events before it, are the same for any chunking."""
    stream = data.draw(event_streams() | FRAGMENT_STREAMS)
    limit = data.draw(st.integers(0, 40))
    whole = outcome([stream], max_event_size=limit)
    chunks = split_at(stream, data.draw(cut_points(stream)))
    assert outcome(chunks, max_event_size=limit) == whole
    assert outcome([stream[i : i + 1] for i in range(len(stream))], max_event_size=limit) == whole
    unlimited = outcome([stream], max_event_size=None)
    if whole[1] != "EventTooLargeError":
        assert whole == unlimited  # a limit that does not trip changes nothing
    else:
        assert unlimited[0][: len(whole[0])] == whole[0]  # the events before it are right


def wire_outcome(
    chunks: Sequence[bytes], **kwargs: int | None
) -> tuple[list[tuple[str, str]], str]:
    """`outcome`, through `feed_wire`: each event's type and its data bytes, decoded."""
    decoder = SSEDecoder(**kwargs)
    events: list[tuple[str, str]] = []
    try:
        for chunk in chunks:
            events += [
                (name, data.decode("utf-8", "replace")) for name, data in decoder.feed_wire(chunk)
            ]
    except SSEError as error:
        return events, type(error).__name__
    ending = decoder.last_event_id
    try:
        decoder.close()
    except SSEError as error:
        return events, type(error).__name__
    return events, ending


def as_wire(result: tuple[list[ServerSentEvent], str]) -> tuple[list[tuple[str, str]], str]:
    return [(event.event, event.data) for event in result[0]], result[1]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 64, 4096])
def test_posthog_stream_in_fixed_chunks_as_wire_bytes(size: int) -> None:
    """feed_wire gives each event's type and the UTF-8 bytes of what feed gives as data."""
    chunks = [POSTHOG[i : i + size] for i in range(0, len(POSTHOG), size)]
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed_wire(chunk)]
    assert all(type(data) is bytes for _, data in events)
    assert events == [(e.event, e.data.encode()) for e in POSTHOG_EVENTS]


@settings(max_examples=200)
@given(st.data())
def test_wire_events_match_feed(data: st.DataObject) -> None:
    """For any stream, chunking and limit, feed_wire and feed give the same events and end."""
    stream = data.draw(event_streams() | FRAGMENT_STREAMS)
    limit = data.draw(st.none() | st.integers(0, 40))
    chunks = split_at(stream, data.draw(cut_points(stream)))
    assert wire_outcome(chunks, max_event_size=limit) == as_wire(
        outcome(chunks, max_event_size=limit)
    )


def test_max_event_size_nan_is_refused() -> None:
    """NaN is no size: every `size > nan` is False, so the limit would never trip."""
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=float("nan"))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1024", True, b"1024"])
def test_max_event_size_of_a_wrong_type_is_a_type_error_naming_it(value: object) -> None:
    """README: a wrong argument is a TypeError that names it, not a later surprise."""
    with pytest.raises(TypeError, match="max_event_size"):
        SSEDecoder(max_event_size=value)  # type: ignore[arg-type]


# The decoder's own fast-path prefixes as fragments, so that cuts land inside them; cuts
# may repeat, giving empty chunks (between a CR and its LF too).
HEAD_FRAGMENTS = [
    b"event: message\ndata: ", b"event: update\ndata: ", b"event: ", b"data: ", b"id: 1",
    b"retry: 5", b"\n", b"\n\n", b"\r", b"\r\n", b":", b"x", "中".encode()[:2], b"\xad", BOM,
    b"\x00", b'{"type":"ai","content":"\xc3\xa9"}',
]  # fmt: skip


@settings(max_examples=300)
@given(st.data())
def test_random_cuts_with_empty_chunks_match_the_whole(data: st.DataObject) -> None:
    """Cut anywhere, empty chunks included: the same events, end and limit as unsplit."""
    stream = data.draw(st.lists(st.sampled_from(HEAD_FRAGMENTS), max_size=30).map(b"".join))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=15)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    limit = data.draw(st.none() | st.integers(0, 60))
    whole = outcome([stream], max_event_size=limit)
    if limit is None:
        assert whole == reference(stream)
    assert outcome(chunks, max_event_size=limit) == whole
    assert wire_outcome(chunks, max_event_size=limit) == as_wire(whole)


def test_event_too_large_error_crosses_a_process_boundary() -> None:
    """
    `aposthog.sse` is public, and its errors travel as every exception does from a worker
    process (`concurrent.futures.ProcessPoolExecutor`, multiprocessing pools): pickled
    there, unpickled here. `EventTooLargeError` pickles, but unpickling calls
    `EventTooLargeError(message)`, which its `(size, limit)` constructor refuses: the pool's
    result thread fails on it and the pool is broken (`BrokenProcessPool`) instead of the
    caller getting the error. `copy.copy()` fails the same way. aposthog's own errors
    (`PostHogError.__reduce__`) were made to survive this.
    """
    decoder = SSEDecoder(max_event_size=10)
    with pytest.raises(EventTooLargeError) as info:
        decoder.feed(b"data: 01234567890\n")
    error = info.value
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is EventTooLargeError
        assert (error.size, error.limit) == (clone.size, clone.limit)
        assert str(error) == str(clone)
