"""
Decoding a compressed response body, a bounded piece at a time. Pure: no I/O.

The transport asks for `gzip, deflate` and inflates the body itself rather than letting
aiohttp do it: how much aiohttp inflates from one network chunk differs between its
versions (older ones inflate a whole chunk, so 64 KiB of a gzip bomb could become
64 MiB at once). Here no call produces more than `PIECE` bytes, and the total stops at
the caller's limit, so a bomb costs about the limit in memory and no more.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

__all__ = ["ACCEPT_ENCODING", "PIECE", "BodyTooLarge", "Inflater", "UnreadableBody"]

ACCEPT_ENCODING: Final = "gzip, deflate"
PIECE: Final = 64 * 1024
"""The most one step of inflating produces."""


class BodyTooLarge(Exception):
    """The decoded body passed the limit."""


class UnreadableBody(Exception):
    """The body is not valid in its Content-Encoding, or the encoding is unknown."""


class Inflater:
    """
    Turns the raw body of one response into its decoded bytes, in pieces.

    Example:
        >>> import gzip
        >>> inflater = Inflater("gzip", limit=100)
        >>> b"".join(inflater.feed(gzip.compress(b"hello"))) + b"".join(inflater.finish())
        b'hello'
    """

    __slots__ = ("_decompressor", "_encoding", "_limit", "_member_ended", "_size")

    def __init__(self, encoding: str, *, limit: int | None) -> None:
        encoding = encoding.strip().lower()
        if encoding not in ("gzip", "x-gzip", "deflate", "identity", ""):
            # Quoted only when short, as encodings are (`br`, `zstd`): a longer value may
            # be anything a proxy copied there, the request's key among them.
            shown = repr(encoding) if len(encoding) <= 12 else f"of {len(encoding)} characters"
            raise UnreadableBody(f"PostHog answered with an unknown Content-Encoding {shown}")
        self._encoding = encoding
        self._limit = limit
        self._size = 0
        self._member_ended = False  # a gzip member ended: zero bytes after it are padding
        self._decompressor: zlib._Decompress | None = None

    def _count(self, piece: bytes) -> bytes:
        self._size += len(piece)
        if self._limit is not None and self._size > self._limit:
            raise BodyTooLarge(self._size)
        return piece

    def _new(self, first: bytes) -> zlib._Decompress:
        if self._encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped; some servers send it raw.
        raw = bool(first) and first[0] & 0x0F != 8
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces (at most `PIECE` bytes each) that `data` completes."""
        if self._encoding in ("identity", ""):
            if data:
                yield self._count(data)
            return
        while data:
            if self._decompressor is None:
                if self._member_ended:
                    # Zero bytes after a gzip member pad it (a tape block's, a server's
                    # buffer): skipped, as Python's `gzip` and gzip itself skip them.
                    data = data.lstrip(b"\0")
                    if not data:
                        return
                self._decompressor = self._new(data)
            decompressor = self._decompressor
            try:
                piece = decompressor.decompress(data, PIECE)
            except zlib.error as exc:
                raise UnreadableBody(f"the {self._encoding} body is corrupt: {exc}") from None
            if piece:
                yield self._count(piece)
            if decompressor.eof:
                # Another gzip member may follow (concatenated gzip streams are valid).
                data = decompressor.unused_data
                self._decompressor = None
                self._member_ended = self._encoding in ("gzip", "x-gzip")
            else:
                data = decompressor.unconsumed_tail

    def finish(self) -> Iterator[bytes]:
        """What remains once the body has ended."""
        decompressor = self._decompressor
        if decompressor is None:
            return
        try:
            while piece := decompressor.decompress(b"", PIECE):
                yield self._count(piece)
            tail = decompressor.flush()
        except zlib.error as exc:
            raise UnreadableBody(f"the {self._encoding} body is corrupt: {exc}") from None
        if tail:
            yield self._count(tail)
        if not decompressor.eof:
            raise UnreadableBody(f"the {self._encoding} body ended before its end")
