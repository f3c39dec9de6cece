"""Hypothesis strategies for aposthog records, built from their attrs fields."""

from __future__ import annotations

import datetime as dt
import enum
import json
import types
import typing
from typing import Any

import attrs
from hypothesis import strategies as st

from aposthog._converter import EXTRA_FIELDS

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1)
).map(lambda d: d.replace(tzinfo=dt.timezone.utc))


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the annotation `tp`, as records declare them."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in args:
            # An open enum: a known member or a value a newer PostHog might send.
            strategy: st.SearchStrategy[Any] = st.sampled_from(list(enums[0])) | st.text(
                min_size=1, max_size=12
            ).filter(lambda s: s not in {m.value for m in enums[0]})
            if type(None) in args:
                strategy = strategy | st.none()
            return strategy
        return st.one_of(*(for_type(a) for a in args))
    if tp is type(None):
        return st.none()
    if tp is Any:
        return json_values
    if tp is str:
        return st.text(max_size=20)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**31), 2**31)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is dt.datetime:
        return aware_datetimes
    if origin is list:
        return st.lists(for_type(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), for_type(args[1]), max_size=3)
    if isinstance(tp, type) and attrs.has(tp):
        return records(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    raise NotImplementedError(f"no strategy for {tp!r}")


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Instances of an attrs record, with unknown extra fields now and then."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    known = set()
    for field in attrs.fields(cls):
        known.add(field.alias)
        if field.name == EXTRA_FIELDS:
            continue
        fields[field.alias] = for_type(hints[field.name])
    extra = st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in known and k != EXTRA_FIELDS),
        json_values,
        max_size=2,
    )
    return st.builds(cls, **fields, **{EXTRA_FIELDS: extra})


# ---------------------------------------------------------------------- PostHog AI runs

#: Tokens an answer grows by: multi-byte characters, blank lines and trailing spaces
#: (held back until the final message) included.
_TOKENS = ("The", " answer", " is", " 42", ".", " grüße", " 👋", "\n", " ", "  ", "**")

Wire = tuple[str, str]  # (event name, data): one SSE event as PostHog writes it


def wire_message(**fields: Any) -> Wire:
    """A `message` event as PostHog writes it: compact JSON, null fields omitted."""
    data = {k: v for k, v in fields.items() if v is not None}
    return ("message", json.dumps(data, separators=(",", ":"), ensure_ascii=False))


@st.composite
def _answer_text(draw: st.DrawFn, min_tokens: int = 0) -> str:
    return "".join(draw(st.lists(st.sampled_from(_TOKENS), min_size=min_tokens, max_size=6)))


@st.composite
def _snapshots(draw: st.DrawFn, content: str, parent: str | None = None) -> list[Wire]:
    """The growing id-less snapshots PostHog streams before `content`'s final message."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(content)), max_size=4))))
    out: list[Wire] = []
    for cut in cuts:
        out.append(wire_message(type="ai", content=content[:cut], parent_tool_call_id=parent))
        if draw(st.integers(0, 5)) == 0:
            out.append(out[-1])  # the same snapshot again (a chunk that added no text)
    return out


@st.composite
def posthog_runs(
    draw: st.DrawFn, *, trace_id: str = "t0", question: str = "q0"
) -> tuple[list[Wire], list[dict[str, Any]]]:
    """
    A realistic PostHog AI stream (reference §3.5): maybe the `conversation` event, then
    per turn (the message sent, then up to two queued ones) the human echo, tool steps
    (the `ai` message calling a tool, its `update`, a subagent's snapshots and final
    message, the `tool` result), and an end: the answer's growing snapshots and final
    message (some after a `generation_error` PostHog recovered from), or a failure
    (`ai/failure` with an id, PostHog's bare one, or a failure mid-answer). Returns the
    wire events and the run's messages in order.
    """
    wire: list[Wire] = []
    finals: list[dict[str, Any]] = []
    ids = iter(range(1, 1000))
    new = draw(st.booleans())
    if new:
        conv = {"id": "c1", "status": "in_progress", "title": None}
        wire.append(("conversation", json.dumps(conv)))
    for turn in range(draw(st.integers(1, 3))):
        human = {
            "type": "human",
            "content": question if turn == 0 else f"queued {turn}",
            "id": f"h{turn}",
            "trace_id": trace_id if turn == 0 else f"{trace_id}-queued-{turn}",
        }
        wire.append(wire_message(**human))
        finals.append(human)
        for _ in range(draw(st.integers(0, 2))):
            content = draw(_answer_text())
            call_id = f"call{next(ids)}"
            call = {"id": call_id, "name": "tool", "args": {}, "type": "tool_call"}
            wire += draw(_snapshots(content))
            calling = {
                "type": "ai",
                "content": content,
                "id": f"a{next(ids)}",
                "tool_calls": [call],
            }
            wire.append(wire_message(**calling))
            finals.append(calling)
            if draw(st.booleans()):
                update = {"id": calling["id"], "tool_call_id": call_id, "content": "working"}
                wire.append(("update", json.dumps(update, separators=(",", ":"))))
            if draw(st.booleans()):
                sub_text = draw(_answer_text(1))
                wire += draw(_snapshots(sub_text, call_id))
                sub = {
                    "type": "ai",
                    "content": sub_text,
                    "id": f"s{next(ids)}",
                    "parent_tool_call_id": call_id,
                }
                wire.append(wire_message(**sub))
                finals.append(sub)
            result = {
                "type": "tool",
                "content": "ok",
                "tool_call_id": call_id,
                "id": f"t{next(ids)}",
            }
            wire.append(wire_message(**result))
            finals.append(result)
            if new and draw(st.booleans()):
                conv = {"id": "c1", "status": "in_progress", "title": "Title"}
                wire.append(("conversation", json.dumps(conv)))
        end = draw(st.sampled_from(["answer"] * 3 + ["failure", "bare", "retried", "mid"]))
        text = draw(_answer_text(1))
        if end == "retried":
            # An insight that failed its schema check, generated again: the run goes on.
            wire.append(("status", '{"type":"generation_error"}'))
        if end in ("answer", "mid", "retried"):
            wire += draw(_snapshots(text))
        if end in ("answer", "retried"):
            last = {"type": "ai", "content": text, "id": f"a{next(ids)}"}
        elif end in ("failure", "mid"):
            oops = "Oops! Something went wrong. Please try again."
            last = {"type": "ai/failure", "content": oops, "id": f"f{next(ids)}"}
        else:
            last = {"type": "ai/failure"}
        wire.append(wire_message(**last))
        finals.append(last)
    return wire, finals
