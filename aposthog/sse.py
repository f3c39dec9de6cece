"""A sans-I/O decoder for ``text/event-stream`` (server-sent events).

PostHog streams AI conversations as server-sent events. This module turns the raw response
bytes into :class:`ServerSentEvent` objects without doing any I/O itself, so the same code
serves every transport and can be tested by feeding it bytes.

It implements the WHATWG "event stream interpretation" algorithm exactly. The framing
decisions below follow from wanting that exactness *and* speed on long streams:

* **Bytes in, text out late.** The spec defines the stream as UTF-8 with U+FFFD for invalid
  sequences. CR and LF are ASCII and never occur inside a multi-byte UTF-8 sequence, so
  cutting the *bytes* into lines first and decoding each complete value with
  ``errors="replace"`` yields exactly the text an incremental stream decoder would. It also
  means no incremental decoder, no widening whole chunks to UCS-2/UCS-4 ``str`` only to cut
  them up again, and nothing special for a character split across :meth:`SSEDecoder.feed`
  calls: it simply waits in the unterminated line until the line is complete.
* **Only CRLF, LF and CR end lines.** ``str.splitlines`` would also split on U+2028,
  U+0085, ``\\v``, ``\\f`` and others, which are ordinary data in an event stream; looking
  for LF in bytes (after folding CRLF and lone CR into LF) cannot make that mistake.
* **A CR at the end of a chunk ends its line at once.** Waiting for the next chunk to see
  whether an LF follows would hold back an event from a server that uses bare CR; instead
  the decoder remembers the CR and drops one LF at the start of the next chunk, so a CRLF
  split across two chunks still counts as one line end.
* **The byte-order mark is stripped once**, only at the very start of the stream (even when
  it arrives split across chunks); a BOM anywhere else is data, as the spec requires.
* **An unterminated final event is discarded** by :meth:`SSEDecoder.close`, as the spec
  requires: a stream that breaks off mid-event may have lost part of its data.
* **Memory is bounded** by ``max_event_size``: a server that never sends a line end or a
  blank line would otherwise make the decoder buffer without limit. The limit is checked
  line by line, so whether a stream trips it does not depend on how it was chunked.
* **The common case is cheap.** Almost every event on a real stream is
  ``event: <type>`` + one ``data: `` line + blank line, usually of the same type as the
  previous event. That shape is recognised with a couple of ``bytes.startswith`` and
  ``bytes.find`` calls (C speed, no per-byte Python) and dispatched in one step instead of
  three trips round the general per-line loop, which still handles everything else. A
  partial line is kept as a list of pieces, so a very long line costs linear rather than
  quadratic time.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["EventTooLargeError", "SSEDecoder", "SSEError", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
_CR = 13
_LF = 10
_COLON = 58
_LOWER_D = 100
_LOWER_E = 101
# Event types are a handful per stream, and short; the caps keep a hostile stream from
# growing the cache (64 types of 16 MiB each would pin 2 GiB beyond `max_event_size`).
_MAX_CACHED_NAMES = 64
_MAX_CACHED_NAME_LENGTH = 64


class SSEError(Exception):
    """Base class for errors raised while decoding a server-sent event stream."""


class EventTooLargeError(SSEError):
    """An event being received grew beyond the decoder's ``max_event_size``.

    The decoder has already been reset (as by :meth:`SSEDecoder.close`) when this is raised:
    the rest of the oversized event cannot be told apart from what follows it, so the
    caller should drop the connection.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"server-sent event too large: {size} bytes buffered, max_event_size is {limit}"
        )
        #: Bytes buffered for the event (data so far plus the current line) at the check.
        self.size = size
        #: The ``max_event_size`` in force.
        self.limit = limit

    def __reduce__(self) -> tuple[type[EventTooLargeError], tuple[int, int], dict[str, Any]]:
        # Made again from its two numbers (its `args` is the message): pickled to another
        # process (a worker pool's) or copied, it is the same error.
        return type(self), (self.size, self.limit), self.__dict__


@attrs.frozen
class ServerSentEvent:
    """One dispatched server-sent event.

    ``event`` is the event type (``"message"`` when the block had no or an empty ``event``
    field); ``data`` is the block's ``data`` lines joined with LF; ``id`` is the last event
    ID in force when the event was dispatched (``None`` if no ``id`` field has been seen in
    this stream, ``""`` after an empty ``id:`` line); ``retry`` is the reconnection time in
    milliseconds from a valid ``retry`` field in this event's own block, else ``None``.

    >>> ServerSentEvent(data='{"content": "Hi"}')
    ServerSentEvent(event='message', data='{"content": "Hi"}', id=None, retry=None)
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


# Creating the event objects is a sizeable share of decoding a real stream, and a frozen
# attrs class's __init__ costs about half as much again as filling the slots directly (it
# goes through object.__setattr__ for every field). The decoder therefore fills the slots
# itself; the tests check that the result equals the public constructor's, field for field.
_new = object.__new__
_set_event = ServerSentEvent.__dict__["event"].__set__
_set_data = ServerSentEvent.__dict__["data"].__set__
_set_id = ServerSentEvent.__dict__["id"].__set__
_set_retry = ServerSentEvent.__dict__["retry"].__set__


def _parse_retry(digits: bytes, current: int | None) -> int | None:
    """Return the value of a ``retry`` field of ASCII digits, or ``current`` if unusable."""
    try:
        # int() refuses strings longer than sys.get_int_max_str_digits(), leading zeros
        # included; strip those so that "0005" of any length still means 5.
        return int(digits.lstrip(b"0") or b"0")
    except ValueError:
        # Thousands of significant digits: no client could wait that long, and browsers
        # ignore values that overflow their integers too. Never raise on stream content.
        return current


class SSEDecoder:
    """Incremental decoder turning ``text/event-stream`` bytes into :class:`ServerSentEvent`.

    Feed it the response body in chunks of any size as they arrive; each :meth:`feed` call
    returns the events completed by that chunk, in order. Call :meth:`close` at the end of
    the stream.

    ``max_event_size`` (bytes, ``None`` for no limit) bounds the memory one event may take:
    for every line, the event's data buffer so far (each ``data`` value plus one LF) plus
    the line itself (field name included) must not exceed it, and neither may a line that
    is still being received. An :class:`EventTooLargeError` is raised otherwise.

    >>> decoder = SSEDecoder()
    >>> decoder.feed(b'event: message\\ndata: {"content":"Hel')
    []
    >>> decoder.feed(b'lo"}\\n\\n: keepalive\\n\\n')
    [ServerSentEvent(event='message', data='{"content":"Hello"}', id=None, retry=None)]
    >>> decoder.close()
    []
    """

    __slots__ = (
        "_data",
        "_data_size",
        "_deferred",
        "_error",
        "_event",
        "_head",
        "_head_name",
        "_id_buffer",
        "_last_id",
        "_limit",
        "_names",
        "_parts",
        "_pending_size",
        "_retry",
        "_skip_lf",
        "_start",
    )

    def __init__(self, *, max_event_size: int | None = 16 * 1024 * 1024) -> None:
        given: object = max_event_size  # typed an int, checked as anything
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, (int, float)):
                raise TypeError(
                    f"max_event_size must be an int (bytes) or None, got {type(given).__name__}"
                )
            if not isinstance(given, int):  # NaN would turn the limit off: no size
                raise ValueError(f"max_event_size must be a whole number of bytes, got {given!r}")
            if given < 0:
                raise ValueError(f"max_event_size must be None or >= 0, got {given}")
        self._limit = max_event_size
        # Decoded event types by raw bytes. Only a cache, so close() keeps it.
        self._names: dict[bytes, str] = {b"": "message"}
        # b"event: <type>\ndata: " for the type of the last event dispatched through the
        # event-line fast path, and that type decoded. Also only a cache.
        self._head = b"event: message\ndata: "
        self._head_name = "message"
        self._reset()

    def _reset(self) -> None:
        # The first bytes of the stream while they might still be a split BOM; None once
        # that is settled.
        self._start: bytes | None = b""
        # The unterminated line, as the pieces it arrived in (joined once it is complete),
        # and their total length. They may start with _deferred bytes of complete lines
        # left for the next feed() to interpret (see the fastest path there).
        self._parts: list[bytes] = []
        self._pending_size = 0
        self._deferred = 0
        # The last chunk ended with a CR, so an LF starting the next chunk belongs to it.
        self._skip_lf = False
        # The event being built: data lines and the event type stay raw bytes until the
        # event is dispatched. _data_size counts each data value plus its LF.
        self._data: list[bytes] = []
        self._data_size = 0
        self._event = b""
        self._retry: int | None = None
        # The spec's "last event ID buffer" (None: no id field yet in this stream) and
        # "last event ID string", which takes the buffer's value at every blank line.
        self._id_buffer: str | None = None
        self._last_id: str | None = None
        # An EventTooLargeError held back so that the events completed before it in the
        # same chunk could still be returned; raised by the next feed() or close().
        self._error: EventTooLargeError | None = None

    @property
    def last_event_id(self) -> str:
        """The last event ID string, i.e. what to send as ``Last-Event-ID`` to resume.

        ``""`` until an ``id`` field has been followed by a blank line. :meth:`close`
        resets it, so read it first.
        """
        return "" if self._last_id is None else self._last_id

    def close(self) -> list[ServerSentEvent]:
        """End the stream and reset the decoder, which then behaves like a new one.

        As the spec requires, an event still lacking its blank line is discarded, with any
        partial line, so this returns ``[]`` (a list, so that callers can treat it like a
        last :meth:`feed`). Everything, :attr:`last_event_id` included, is reset.
        Raises the :class:`EventTooLargeError` that the last :meth:`feed` held back, if any.
        """
        error = self._error
        self._reset()
        if error is not None:
            raise error
        return []

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[ServerSentEvent]:
        """Decode the next chunk of the stream and return the events it completes.

        Raises :class:`EventTooLargeError` when a line or the event being built exceeds
        ``max_event_size``; if the same chunk first completed some events, they are
        returned and the error is raised by the next call to :meth:`feed` or :meth:`close`.
        """
        events: list[ServerSentEvent] = self._decode(chunk, False)
        return events

    def feed_wire(self, chunk: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
        """Like :meth:`feed`, but each event as its type and its data's raw UTF-8 bytes.

        For a consumer that parses the data itself (JSON parsers read bytes): it skips
        decoding the data to ``str`` and building :class:`ServerSentEvent` objects, which
        on long events costs as much as the rest of the decoding. ``id`` and ``retry``
        fields are still interpreted (and kept for :attr:`last_event_id`) but not
        returned. Decoding the bytes with ``errors="replace"`` gives :meth:`feed`'s data.
        """
        events: list[tuple[str, bytes]] = self._decode(chunk, True)
        return events

    def _decode(self, chunk: bytes | bytearray | memoryview, wire: bool) -> list[Any]:
        if self._error is not None:
            error = self._error
            self._error = None
            raise error
        if type(chunk) is not bytes:
            # Any bytes-like object, copied so that nothing kept aliases the caller's buffer;
            # via memoryview so that a str or an int (None, "" and 0 too) is a TypeError, not
            # text or zero bytes.
            chunk = bytes(memoryview(chunk))
        if not chunk:
            return []
        if self._start is not None:
            # Hold back up to two bytes at the start of the stream until we know whether
            # they begin a BOM.
            chunk = self._start + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._start = chunk
                return []
            self._start = None
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
                if not chunk:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if _CR in chunk:  # an int operand makes this a plain memchr
            # A trailing CR is a complete line end; its LF, if any, comes in the next chunk.
            self._skip_lf = chunk[-1] == _CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        limit = self._limit
        parts = self._parts
        end = chunk.rfind(b"\n") + 1
        if not end:
            parts.append(chunk)
            self._pending_size += len(chunk)
            size = self._data_size + self._pending_size - self._deferred
            if limit is not None and size > limit:
                return self._too_large(size, limit, [])
            return []
        if parts:
            # Complete the pending line; one buffer lets every line be sliced out directly.
            end += self._pending_size
            parts.append(chunk)
            buf = b"".join(parts)
            parts.clear()
        else:
            buf = chunk
        # buf[:end] is complete lines, buf[end:] the next unterminated one (no LF in it).
        tail = end  # where the bytes to keep for the next feed() start

        # The loop works on locals and writes them back at the end: attribute access per
        # line is a measurable share of the cost on a real stream.
        data = self._data
        data_size = self._data_size
        event = self._event
        retry = self._retry
        id_buffer = self._id_buffer
        last_id = self._last_id
        names = self._names
        head = self._head
        head_name = self._head_name
        find = buf.find
        startswith = buf.startswith
        out: list[Any] = []
        pos = 0  # always the start of a line
        while True:
            # Fastest path: "event: <same type as last time>\ndata: <value>\n\n", confirmed
            # by one prefix test and one search for the end of the data line.
            if startswith(head, pos) and not data:
                start = pos + len(head)
                nl = find(b"\n", start)
                if nl < 0:
                    # The data line is still arriving, the usual way a chunk ends. Keep the
                    # event line with it, so that the next feed() takes this path at once.
                    if limit is not None and len(head) - 7 > limit:
                        return self._too_large(len(head) - 7, limit, out)
                    tail = pos
                    break
                if buf[nl + 1 : nl + 2] == b"\n":
                    if limit is not None and max(len(head) - 7, nl - start + 6) > limit:
                        return self._too_large(max(len(head) - 7, nl - start + 6), limit, out)
                    if wire:
                        out.append((head_name, buf[start:nl]))
                    else:
                        ev = _new(ServerSentEvent)
                        _set_event(ev, head_name)
                        _set_data(ev, buf[start:nl].decode("utf-8", "replace"))
                        _set_id(ev, id_buffer)
                        _set_retry(ev, retry)
                        out.append(ev)
                    last_id = id_buffer
                    event = b""
                    retry = None
                    pos = nl + 2
                    continue
                # Some other shape: the general path below handles it.

            nl = find(b"\n", pos)
            if nl < 0:
                break
            if limit is not None and data_size + nl - pos > limit:
                return self._too_large(data_size + nl - pos, limit, out)
            first = buf[pos]
            # A prefix with no LF in it that matches at pos lies wholly within this line.
            if first == _LOWER_E and startswith(b"event: ", pos):
                event = buf[pos + 7 : nl]
                pos = nl + 1
                # Fast path: one data line and the blank line follow. Dispatch the event in
                # one step instead of two more trips round the loop.
                if data or not startswith(b"data: ", pos):
                    continue
                nl = find(b"\n", pos + 6)
                if nl < 0:
                    break  # the data line is the unterminated tail
                if buf[nl + 1 : nl + 2] != b"\n":
                    continue  # more lines follow: the general path handles them
                if limit is not None and nl - pos > limit:
                    return self._too_large(nl - pos, limit, out)
                name = names.get(event) or self._event_name(event)
                if name is not head_name and len(event) <= _MAX_CACHED_NAME_LENGTH:
                    # A new type: expect it again next time (see the fastest path).
                    head = b"event: " + event + b"\ndata: "
                    head_name = name
            elif first == _LF:
                # Blank line: dispatch. The last event ID string is updated even when there
                # is no data and so no event.
                last_id = id_buffer
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    if wire:
                        out.append((names.get(event) or self._event_name(event), raw))
                    else:
                        ev = _new(ServerSentEvent)
                        _set_event(ev, names.get(event) or self._event_name(event))
                        _set_data(ev, raw.decode("utf-8", "replace"))
                        _set_id(ev, last_id)
                        _set_retry(ev, retry)
                        out.append(ev)
                    data.clear()
                    data_size = 0
                event = b""
                retry = None
                pos = nl + 1
                continue
            elif first == _LOWER_D and startswith(b"data: ", pos):
                if data or buf[nl + 1 : nl + 2] != b"\n":
                    data.append(buf[pos + 6 : nl])
                    data_size += nl - pos - 5
                    pos = nl + 1
                    continue
                # The event's only data line, followed by the blank line: dispatch below.
                name = names.get(event) or self._event_name(event)
            else:
                if first != _COLON:  # a line starting with a colon is a comment
                    field, _, value = buf[pos:nl].partition(b":")
                    if value[:1] == b" ":
                        value = value[1:]
                    if field == b"data":
                        data.append(value)
                        data_size += len(value) + 1
                    elif field == b"event":
                        event = value
                    elif field == b"id" and 0 not in value:  # an id with NUL is ignored
                        id_buffer = value.decode("utf-8", "replace")
                    elif field == b"retry" and value.isdigit():
                        # bytes.isdigit() is ASCII-only and False for b"": exactly the
                        # spec's "only ASCII digits", which int() alone would not enforce
                        # ("+5", " 5", "1_0" and non-ASCII digits all parse).
                        retry = _parse_retry(value, retry)
                    # The spec ignores any other field, and invalid id and retry values.
                pos = nl + 1
                continue

            # Dispatch an event whose only data line is buf[pos:nl] (the data buffer is
            # empty), with the blank line at nl + 1: what the general path would produce.
            if wire:
                out.append((name, buf[pos + 6 : nl]))
            else:
                ev = _new(ServerSentEvent)
                _set_event(ev, name)
                _set_data(ev, buf[pos + 6 : nl].decode("utf-8", "replace"))
                _set_id(ev, id_buffer)
                _set_retry(ev, retry)
                out.append(ev)
            last_id = id_buffer
            event = b""
            retry = None
            pos = nl + 2

        if tail < len(buf):
            parts.append(buf[tail:])
            self._pending_size = len(buf) - tail
            self._deferred = end - tail
            if limit is not None and data_size + len(buf) - end > limit:
                return self._too_large(data_size + len(buf) - end, limit, out)
        else:
            self._pending_size = self._deferred = 0
        self._data_size = data_size
        self._event = event
        self._retry = retry
        self._id_buffer = id_buffer
        self._last_id = last_id
        self._head = head
        self._head_name = head_name
        return out

    def _event_name(self, raw: bytes) -> str:
        """Decode an event type (not yet in the cache), caching a short one while there is room."""
        name = raw.decode("utf-8", "replace")
        if len(self._names) < _MAX_CACHED_NAMES and len(raw) <= _MAX_CACHED_NAME_LENGTH:
            self._names[raw] = name
        return name

    def _too_large(self, size: int, limit: int, events: list[Any]) -> list[Any]:
        """Reset, then raise the error now, or after returning the events completed first."""
        error = EventTooLargeError(size, limit)
        self._reset()
        if not events:
            raise error
        self._error = error
        return events
