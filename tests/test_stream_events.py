"""Typed events from wire bytes: always what `decode_event` gives for the decoded text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aposthog import _stream_events
from aposthog._stream_events import wire_event
from aposthog.models.events import MessageEvent, decode_event
from aposthog.models.messages import AssistantMessage

DATA = [
    b'{"type":"ai","content":"Hello"}',
    '{"type":"ai","content":"Café 數據 📈\\n\\n- x"}'.encode(),
    b'{"type":"ai","content":"Hi","id":"m1","meta":{"n":1.5}}',
    b'{"type":"ai","content":"Hi","meta":{"big":123456789012345678901234}}',
    b'{"type":"ai","content":"Hi","meta":{"big":[1,[2,18446744073709551616]]}}',
    b'{"type":"ai","content":"Hi","meta":{"n":NaN}}',
    b'{"type":"ai","content":"Hi","meta":{"n":1e400}}',
    b'{"type":"ai","content":"\\ud800 lone"}',
    b'{"type":"ai","content":"bad \xff utf-8"}',
    b'\xef\xbb\xbf{"type":"ai","content":"BOM"}',
    b'{"type":"ai","content":"Hi"} ',
    b'{"type":"ai","content":7}',
    b'{"type":"ai","content":"dup","content":"last"}',
    b'{"type":"ai/failure"}',
    b'{"type":"human","content":"q","id":"h1"}',
    b'{"type":"tool","content":"r","id":"t1","tool_call_id":"c1","ui_payload":{"a":[1,2.0]}}',
    b'{"type":"ai/hologram","id":"x"}',
    b'[{"type":"ai","content":"a list"}]',
    b'"a string"',
    b"",
    b"not json",
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
]


@pytest.mark.parametrize("orjson", [True, False])
@pytest.mark.parametrize("name", ["message", "update", "status", "conversation", "other"])
@pytest.mark.parametrize("data", DATA)
def test_same_as_decode_event(
    data: bytes, name: str, orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not orjson:
        monkeypatch.setattr(_stream_events, "_parse", None)
    expected = decode_event(name, data.decode("utf-8", "replace"))
    got = wire_event(name, data)
    assert type(got) is type(expected)
    assert got == expected
    assert repr(got) == repr(expected)  # an int stays an int, not an equal float


def test_a_snapshot_takes_the_fast_path() -> None:
    event = wire_event("message", b'{"type":"ai","content":"Hel"}')
    assert event == MessageEvent(AssistantMessage(content="Hel"))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["ai", "human", "tool", "ai/failure", "ai/reasoning", "nope"]),
    fields=st.dictionaries(
        st.sampled_from(["content", "id", "meta", "tool_calls", "parent_tool_call_id", "x"]),
        JSON,
        max_size=4,
    ),
)
def test_any_message_same_as_decode_event(kind: str, fields: dict[str, Any]) -> None:
    data = json.dumps({"type": kind, **fields}, ensure_ascii=False).encode()
    expected = decode_event("message", data.decode())
    got = wire_event("message", data)
    assert type(got) is type(expected)
    assert repr(got) == repr(expected)


@pytest.mark.skipif(_stream_events._parse is None, reason="needs the speedups extra (orjson)")
@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"ai","content":"x","id":"a1","meta":' + b"[" * 1020 + b"]" * 1020 + b"}",
        b'{"type":"tool","content":"r","id":"t1","tool_call_id":"c1","ui_payload":'
        + b'{"a":' * 1020
        + b"1"
        + b"}" * 1020
        + b"}",
    ],
    ids=["meta-lists", "ui_payload-dicts"],
)
def test_a_deeply_nested_message_can_be_compared_and_printed(data: bytes) -> None:
    """A message that parses is a value the client (and its user) can compare and print.

    The stream recognises a replayed final message by comparing it with the one it kept
    (`_conversation_state.feed_message`); `_json` refuses old orjson releases because
    values nested deeper than the interpreter's recursion limit raise `RecursionError`
    "wherever [they are] printed or compared". orjson's own limit (1,024) is above
    Python's default recursion limit (1,000), so such values still get through.
    """
    first = wire_event("message", data)
    second = wire_event("message", data)
    assert first == second
    assert repr(first)
