"""Inflating a compressed body in bounded pieces, whatever the chunking."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._inflate import PIECE, BodyTooLarge, Inflater, UnreadableBody


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush()
    return data


def _inflate(body: bytes, encoding: str, cuts: list[int], limit: int | None) -> list[bytes]:
    inflater = Inflater("deflate" if encoding == "raw-deflate" else encoding, limit=limit)
    pieces: list[bytes] = []
    start = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        pieces.extend(inflater.feed(body[start:cut]))
        start = cut
    pieces.extend(inflater.feed(body[start:]))
    pieces.extend(inflater.finish())
    return pieces


encodings = st.sampled_from(["gzip", "deflate", "raw-deflate", "identity"])


@given(data=st.binary(max_size=5000), encoding=encodings, cuts=st.lists(st.integers(0, 6000)))
def test_any_chunking_gives_back_the_body(data: bytes, encoding: str, cuts: list[int]) -> None:
    body = _encode(data, encoding)
    assert data == b"".join(_inflate(body, encoding, cuts, limit=None))


@given(size=st.integers(0, 300_000), encoding=st.sampled_from(["gzip", "deflate"]))
def test_no_piece_is_larger_than_a_piece(size: int, encoding: str) -> None:
    pieces = _inflate(_encode(b"\0" * size, encoding), encoding, [], limit=None)
    assert all(len(p) <= PIECE for p in pieces)
    assert size == sum(map(len, pieces))


@given(size=st.integers(1, 200_000), limit=st.integers(0, 200_000), encoding=encodings)
def test_the_limit_is_exact(size: int, limit: int, encoding: str) -> None:
    body = _encode(b"a" * size, encoding)
    if size > limit:
        with pytest.raises(BodyTooLarge):
            _inflate(body, encoding, [], limit=limit)
    else:
        assert size == len(b"".join(_inflate(body, encoding, [], limit=limit)))


def test_a_bomb_stops_after_about_the_limit() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(packer.compress(b"\0" * 1024 * 1024) for _ in range(64)) + packer.flush()
    inflater = Inflater("gzip", limit=1024 * 1024)
    produced = 0
    with pytest.raises(BodyTooLarge):
        for piece in inflater.feed(bomb):
            produced += len(piece)
    assert produced <= 1024 * 1024


def test_concatenated_gzip_members_are_one_body() -> None:
    body = gzip.compress(b"one ") + gzip.compress(b"two")
    assert b"one two" == b"".join(_inflate(body, "gzip", [5, 30], limit=None))


@pytest.mark.parametrize("cut", range(0, 40, 3))
def test_zero_bytes_padding_a_gzip_member_are_skipped(cut: int) -> None:
    """
    Zeros after a gzip member pad it (gzip and Python's `gzip` skip them): a complete
    body with them failed with "incorrect header check", however it was chunked.
    """
    member = gzip.compress(b"one ", mtime=0)
    body = member + bytes(16) + gzip.compress(b"two", mtime=0) + bytes(7)
    assert b"one two" == b"".join(_inflate(body, "gzip", [cut, len(member) + 3], limit=None))
    # Anything else after a member is still no gzip.
    with pytest.raises(UnreadableBody):
        _inflate(member + bytes(3) + b"junk", "gzip", [cut], limit=None)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(b"cut short", mtime=0)[:-12]),
        ("deflate", b"\x78\x9c garbage"),
    ],
)
def test_a_corrupt_or_short_body_is_unreadable(encoding: str, body: bytes) -> None:
    with pytest.raises(UnreadableBody):
        _inflate(body, encoding, [], limit=None)


def test_an_unknown_encoding_is_unreadable() -> None:
    with pytest.raises(UnreadableBody, match="br"):
        Inflater("br", limit=None)


@pytest.mark.parametrize("name", ["x-gzip", " GZip ", "X-GZIP", "Deflate"])
def test_encoding_names_are_read_as_http_spells_them(name: str) -> None:
    """Content-Encoding is case-insensitive, and `x-gzip` is gzip."""
    data = b"hello " * 100
    body = zlib.compress(data) if "deflate" in name.lower() else gzip.compress(data)
    inflater = Inflater(name, limit=None)
    assert data == b"".join([*inflater.feed(body), *inflater.finish()])


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_what_only_finish_gives_counts_toward_the_limit() -> None:
    """A raw deflate body's last bytes come out of `finish()`: they count too."""
    size = PIECE + 4
    body = _raw_deflate(b"\0" * size)
    inflater = Inflater("deflate", limit=size - 1)
    fed = b"".join(inflater.feed(body))
    assert len(fed) < size  # the rest is only given by finish()
    with pytest.raises(BodyTooLarge):
        list(inflater.finish())
    assert b"\0" * size == b"".join(_inflate(body, "raw-deflate", [], limit=size))


def test_finish_gives_no_piece_larger_than_a_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny pieces, what is left at the end still comes a piece at a time."""
    monkeypatch.setattr("aposthog._inflate.PIECE", 16)
    data = b"\0" * 36  # the last match outlasts the input: 20 bytes only finish() gives
    inflater = Inflater("deflate", limit=None)
    fed = list(inflater.feed(_raw_deflate(data)))
    rest = list(inflater.finish())
    assert sum(map(len, rest)) > 16  # the case under test: more than a piece left at the end
    assert all(len(p) <= 16 for p in fed + rest)
    assert data == b"".join(fed + rest)


def test_a_piece_is_64_kib() -> None:
    """A bomb's cost per step: the 64 KiB the module documents, whatever else changes."""
    pieces = _inflate(gzip.compress(b"\0" * 1024 * 1024), "gzip", [], limit=None)
    assert 64 * 1024 == max(map(len, pieces))
