"""
aposthog._json: one parser entry point, `ValueError` only, and the same result with or
without the `speedups` extra (orjson) for every body of the corpus, hostile ones included.

The orjson half runs where orjson is installed (`nox -s tests` installs the extra).
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog import _json
from aposthog._converter import structure
from aposthog._errors import ResponseDecodeError
from aposthog.models import BatchExport, CustomerProfileConfig

PARSERS: list[Any] = [pytest.param(_json.stdlib_loads, id="stdlib")]
PARSERS.append(
    pytest.param(
        _json.orjson_loads,
        id="orjson",
        marks=pytest.mark.skipif(
            _json.orjson_loads is None, reason="the speedups extra (orjson) is not installed"
        ),
    )
)

_EXPORT = {
    "id": "7f1c0c4e-0000-4000-8000-000000000001",
    "team_id": 1,
    "name": "S3 export",
    "model": "events",
    "destination": {"type": "S3", "config": {"bucket_name": "b", "region": "eu-west-1"}},
    "interval": "hour",
    "paused": False,
    "created_at": "2025-03-01T00:00:00.123456Z",
    "latest_runs": [
        {
            "id": "7f1c0c4e-0000-4000-8000-000000000002",
            "status": "Completed",
            "records_completed": 12,
            "data_interval_end": "2025-03-01T01:00:00Z",
        }
    ],
}

#: Bodies PostHog (or something pretending to be it) might send, hostile ones included.
CORPUS: list[bytes] = [
    json.dumps(_EXPORT).encode(),
    json.dumps({"results": [_EXPORT, _EXPORT], "count": 2, "next": None}).encode(),
    b'{"id": "x", "scope": "person", "content": {}, "created_at": "2025-01-01T00:00:00Z"}',
    b"[" * 100 + b"]" * 100,  # nested, but not too deeply
    b"[" * 100_000 + b"]" * 100_000,  # nested far too deeply
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    b'"\xff\xfe"',  # not UTF-8
    b"\xff\xfe[\x001\x00]\x00",  # UTF-16 with a BOM
    b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 BOM
    b'"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"',  # valid multi-byte UTF-8
    b'"\xc3"',  # a cut multi-byte character
    b"123456789012345678901234567890",  # beyond 64 bits
    b"-9223372036854775809",
    b"18446744073709551616",
    b'{"records_completed": 99999999999999999999999}',
    b"9" * 5000,  # beyond the int digit limit
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"NaN",
    b"[Infinity, -Infinity, NaN]",
    b'{"a": 1, "a": 2}',  # duplicate keys: the last wins
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"\\udc00\\ud800"',
    b'"\xed\xa0\x80"',  # a lone surrogate, encoded
    b'"\\ud83d\\ude00"',  # a pair
    b'"\\u0000"',
    b'"a\tb"',  # a raw control character
    b"[1,]",
    b"{'a': 1}",
    b"",
    b" ",
    b"null",
    b" 1 ",
    b"1 2",
    b"-0",
    b"-0.0",
    b"0.1",
    b"1E2",
    b"01",
    b"1.",
    b".5",
    b"[1, 2",
    b'{"a"}',
    b"\x00",
    b"true false",
    b"tru",
    # Objects, read by the scanner alone when they are plain UTF-8 and read whole:
    b'{"a": "\xff"}',  # not UTF-8 inside an object
    b'{"a": "\xed\xa0\x80"}',  # an encoded lone surrogate inside an object
    b'{"a": "\\ud800"}',  # an escaped one
    b'{"a": 1} {"b": 2}',  # two objects
    b'{"a": 1}}',  # a stray brace after one
    b'{"a": [1, 2}',  # cut short inside
    b'{"a": 1}\n',  # whitespace after it
    b'{"a": "x\ty"}',  # a raw control character inside an object
    b"\xef\xbb\xbf12345678901234567890",  # a UTF-8 BOM, then a number beyond 64 bits
]


def _outcome(parse: Callable[[Any], Any], body: bytes | str) -> tuple[str, Any]:
    try:
        return "value", parse(body)
    except ValueError:
        return "error", None


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 is not 1.0, NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("body", CORPUS, ids=range(len(CORPUS)))
def test_the_corpus_parses_as_the_standard_library_does(
    parse: Callable[[Any], Any], body: bytes
) -> None:
    expected = _outcome(json.loads, body) if len(body) < 1000 else None
    outcome = _outcome(parse, body)
    for data in (body, body.decode("utf-8", errors="surrogateescape")):
        assert _same(_outcome(parse, data), _outcome(_json.stdlib_loads, data))
    if expected is not None:  # short bodies: exactly json.loads (no deep recursion)
        assert _same(outcome, expected)


@pytest.mark.parametrize("parse", PARSERS)
def test_nesting_too_deep_is_a_value_error(parse: Callable[[Any], Any]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse(b"[" * 100_000 + b"]" * 100_000)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("parse", PARSERS)
@given(value=json_values, ascii_only=st.booleans())
def test_any_document_parses_as_the_standard_library_does(
    parse: Callable[[Any], Any], value: Any, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    body = text.encode("utf-8", errors="surrogatepass")
    assert _same(_outcome(parse, body), _outcome(json.loads, body))
    assert _same(_outcome(parse, text), _outcome(json.loads, text))


@pytest.mark.parametrize("parse", PARSERS)
@given(body=st.binary(max_size=64))
def test_any_bytes_parse_as_the_standard_library_does(
    parse: Callable[[Any], Any], body: bytes
) -> None:
    assert _same(_outcome(parse, body), _outcome(json.loads, body))


@pytest.mark.parametrize("parse", PARSERS)
@given(body=st.text(alphabet='[]{}",:0123456789.eE+- tfnrulsa\\u\ud800', max_size=40))
def test_json_like_text_parses_as_the_standard_library_does(
    parse: Callable[[Any], Any], body: str
) -> None:
    assert _same(_outcome(parse, body), _outcome(json.loads, body))


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("body", CORPUS, ids=range(len(CORPUS)))
def test_records_and_errors_are_the_same_with_either_parser(
    parse: Callable[[Any], Any], body: bytes
) -> None:
    def decode(parse: Callable[[Any], Any], cl: Any) -> tuple[str, Any]:
        try:
            data = parse(body)
        except ValueError:
            return "not JSON", None
        try:
            return "record", structure(data, cl)
        except ResponseDecodeError as exc:
            return "decode error", (str(exc), exc.paths)

    for cl in (BatchExport, CustomerProfileConfig, list[BatchExport]):
        assert decode(parse, cl) == decode(_json.stdlib_loads, cl)


def test_loads_is_orjson_when_the_speedups_extra_is_installed() -> None:
    assert _json.loads is (_json.orjson_loads or _json.stdlib_loads)


@pytest.mark.parametrize(
    ("version", "used"),
    [
        ("3.9.15", True),
        ("3.10.0", True),
        ("4.0.0rc1", True),
        ("3.9.14", False),  # parses JSON nested to any depth
        ("3.9.0", False),
        ("2.6.9", False),
        ("", False),
        (None, False),  # no __version__ at all
    ],
)
def test_an_orjson_too_old_to_bound_nesting_is_not_used(version: str | None, used: bool) -> None:
    module = types.SimpleNamespace(loads=json.loads)
    if version is not None:
        module.__version__ = version
    assert _json.usable_orjson(module) is (json.loads if used else None)


def test_the_installed_orjson_is_used_when_recent_enough() -> None:
    orjson = pytest.importorskip("orjson")
    recent = _json.usable_orjson(orjson) is not None
    assert (_json.orjson_parse is orjson.loads) is recent
