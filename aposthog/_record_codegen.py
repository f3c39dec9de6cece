"""
The structure function of each record, generated: the hot path of every list.

cattrs' own generated hooks (`cattrs.gen.make_dict_structure_fn` without detailed
validation) call one hook per field, collect the fields in a dict and pass it to the
frozen `__init__`. Here each record gets one function that reads every field once and
converts the common field types inline (strict scalars and their optional forms, open
enums, timestamps, JSON objects and arrays kept as parsed, nested records and lists of
them), calling the registered hook only for the rest and for any value an inline check
does not take (so the errors are the hooks' own).

Measured by `benchmarks/bench_list.py` on one parsed page of 100 real-shaped batch
exports (246 runs; Python 3.11, best of 33): cattrs.gen hooks with the same scalar,
optional, JSON and enum hooks registered 3.23 ms, this module's functions 0.77 ms, and
`json.loads` of the page's bytes 0.87 ms. cattrs remains the source of every other hook,
of the detailed twin that names the bad fields of a body that does not fit, and of every
unstructure hook.

Filling the slots is where frozen records cost most. Through the slots' own `__set__`,
called once per field, a 16-field `BatchExportRun` takes 0.86-0.89 µs (13,400
instructions under callgrind: each call packs its arguments into a tuple);
`object.__setattr__` is slower still. A record is therefore built as an instance of a
mutable twin, a subclass that adds no slots and has `object`'s `__setattr__`, filled by
plain attribute stores (which CPython specialises for slots), and then given the
record's own `__class__`: 0.31-0.37 µs (4,950 instructions). The record is exactly the
frozen class's instance, as its `__init__` would build it. That cut the structuring of
the page above from 10.1 to 6.8 million instructions; what remains is reading the keys
(PostHog's key strings are not the code's own, so each lookup compares the text),
`fromisoformat` (about 120 ns per timestamp) and the interpreter itself.

A JSON array of records (a page's results, a nested list such as `latest_runs`) is
built by a second generated function, the same steps in one loop, with no call per
record: under callgrind a page of 10 profile configs takes 79,900 instructions instead
of 86,500 (timed: 8.0 µs instead of 8.6), a page of 100 batch exports 6.34 million
instead of 6.44.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable
from typing import Any, Final

import attrs
import cattrs

from ._converter import (
    _NO_EXTRA_FIELDS,
    _Z_OK,
    EXTRA_FIELDS,
    _extra_fields,
    _fromisoformat,
    _is_record,
    _open_enum_parts,
    _structure_datetime,
    _union_args,
    known_keys,
    parse_datetime,
)

__all__ = ["compile_record_structure"]


def _not_an_object(cls: type, data: Any) -> None:
    raise TypeError(f"expected a JSON object for {cls.__name__}, got {data!r:.80}")


def compile_record_structure(cls: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """
    Generate `structure_<cls>(o, _)`: every field read once and passed through its hook.

    This is the hot path of every list, so it avoids what cattrs' generic functions pay
    for: a temporary dict of defaulted fields, error collection on every field, and a
    wrapper for unknown keys. A record without validators, converters or
    `__attrs_post_init__` (all of aposthog's) is filled through its mutable twin (see
    `_builder`): the same values its frozen `__init__` would set, far faster (see the
    module's docstring). Any other record is built by its `__init__`.
    """
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    known = known_keys(cls)
    namespace: dict[str, Any] = {
        "__cl": cls,
        "_known": known,
        "_extra": _extra_fields,
        "_not_object": _not_an_object,
        "_MISSING": _MISSING,
    }
    slots: dict[str, Any] = {f.name: getattr(cls, f.name, None) for f in fields}
    direct = (
        EXTRA_FIELDS in slots
        and not hasattr(cls, "__attrs_post_init__")
        and all(isinstance(d, types.MemberDescriptorType) for d in slots.values())
        and all(
            f.init  # a field `__init__` does not take gets its default only from `__init__`
            and f.validator is None
            and (f.converter is None or f.name == EXTRA_FIELDS)
            for f in fields
        )
    )
    builder = _builder(cls) if direct else None
    if builder is not None:
        namespace["__builder"] = builder
    # Reads first: PostHog sends every field of most records, so each is read by
    # subscript inside a `try` (free until it raises); a body missing a key is read
    # with defaults. A complete body has no unknown key exactly when it has no more keys
    # than the record has fields: one length test instead of a set comparison.
    fast_reads: list[str] = []
    slow_reads: list[str] = []
    conversions: list[str] = []
    arguments = []
    for i, field in enumerate(fields):
        if field.name == EXTRA_FIELDS or not field.init:
            continue
        key = repr(field.name)
        hint = hints[field.name]
        block = _datetime_block(i, hint, namespace) or _check_block(i, hint, namespace, conv)
        convert = "" if block else _inline(i, hint, namespace, conv) or f"h{i}(v{i}, t{i})"
        fast_reads.append(f"v{i} = o[{key}]")
        keeps_none = block[:1] == [f"if v{i} is not None:"] or (
            block[:1] and block[0].startswith(f"if v{i} is not None and ")
        )
        if field.default is attrs.NOTHING:
            slow_reads.append(f"v{i} = o[{key}]")
        elif field.default is None and (keeps_none or convert.startswith(f"(None if v{i} is None")):
            # The conversion keeps None as None: a missing key reads as the default.
            slow_reads.append(f"v{i} = o.get({key})")
        else:
            if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                if field.default.takes_self:
                    raise TypeError(f"{cls.__name__}.{field.name}: takes_self is not supported")
                namespace[f"d{i}"] = field.default.factory
                fallback = f"d{i}()"
            else:
                namespace[f"d{i}"] = field.default
                fallback = f"d{i}"
            slow_reads.append(f"v{i} = o.get({key}, _MISSING)")
            if block:
                conversions.append(f"if v{i} is _MISSING: v{i} = {fallback}")
                conversions.append("else:")
                block = ["    " + line for line in block]
            else:
                convert = f"{fallback} if v{i} is _MISSING else {convert}"
        if block:
            conversions += block
        else:
            conversions.append(f"v{i} = {convert}")
        if builder is not None:
            arguments.append(f"i.{field.name} = v{i}")
        else:
            arguments.append(f"{field.alias}=v{i}")
    lines = ["if o.__class__ is not dict: _not_object(__cl, o)"]
    if fast_reads:
        # Fewer keys than fields: some field is missing for sure (a message PostHog
        # serialises without its null fields), so no subscript is tried and none raises.
        lines += ["n = len(o)", "if n >= _n_fields:", "    try:"]
        lines += [*("        " + r for r in fast_reads), "    except KeyError:"]
        lines += [*("        " + r for r in slow_reads), "        n = -1", "else:"]
        lines += [*("    " + r for r in slow_reads), "    n = -1"]
    else:
        lines.append("n = -1")
    lines += conversions
    namespace["_n_fields"] = len(fast_reads)
    extra = "_NO_EXTRA if n == _n_fields or _known.issuperset(o) else _extra(o, _known)"
    namespace["_NO_EXTRA"] = _NO_EXTRA_FIELDS
    if builder is not None:
        lines += ["i = __builder()", *arguments, f"i.{EXTRA_FIELDS} = {extra}"]
        lines += ["i.__class__ = __cl", "return i"]
    else:
        lines.append(f"return __cl({', '.join([*arguments, f'{EXTRA_FIELDS}={extra}'])})")
    body = "\n    ".join(lines)
    source = f"def structure_{cls.__name__}(o, _):\n    {body}\n"
    # The same steps for every object of a JSON array, in one loop: no call per record.
    *steps, last = lines
    assert last.startswith("return ")
    assert not any(step.lstrip().startswith("return") for step in steps)
    loop = "\n        ".join([*steps, f"append({last.removeprefix('return ')})"])
    source += (
        f"def structure_{cls.__name__}_array(a):\n"
        "    out = []\n    append = out.append\n"
        f"    for o in a:\n        {loop}\n    return out\n"
    )
    exec(compile(source, f"<aposthog structure {cls.__qualname__}>", "exec"), namespace)
    function: Callable[[Any, Any], Any] = namespace[f"structure_{cls.__name__}"]
    function.array = namespace[f"structure_{cls.__name__}_array"]  # type: ignore[attr-defined]
    return function


_MISSING: Final = object()


def _builder(cls: type) -> type | None:
    """
    A mutable twin of the frozen record `cls`: a subclass with no slots of its own whose
    `__setattr__` is `object`'s, so an instance is filled by plain attribute stores and
    then becomes a `cls` by `__class__` assignment (the layouts are the same). None if
    CPython refuses that assignment for `cls`.
    """
    twin = type(
        f"_{cls.__name__}Builder",
        (cls,),
        {
            "__slots__": (),
            # Both: they share one type slot, which is plain only when neither is overridden.
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            # `twin()` makes an empty instance: `object`'s own `__init__` (not the record's),
            # quicker to call than `object.__new__(twin)`, which copies its arguments.
            "__init__": object.__init__,
        },
    )
    probe: Any = twin()
    try:
        probe.__class__ = cls
    except TypeError:
        return None
    return twin


def _datetime_block(i: int, hint: Any, namespace: dict[str, Any]) -> list[str]:
    """
    Statements converting `v<i>` for a timestamp field: `parse_datetime`'s fast path
    inline (a call less per timestamp, and a page has over a thousand), its slow path
    for anything else. Empty when `hint` is not a timestamp or Python is older than
    3.11 (whose `fromisoformat` does not read a `Z`).
    """
    if not _Z_OK or hint not in (dt.datetime, dt.datetime | None):
        return []
    namespace.update(_fromiso=_fromisoformat, _parse_dt=parse_datetime, _dt=_structure_datetime)
    namespace["_utc"] = dt.timezone.utc
    v = f"v{i}"
    block = [
        f"if {v}.__class__ is str:",
        "    try:",
        f"        {v} = _fromiso({v})",
        "    except ValueError:",
        f"        {v} = _parse_dt({v})",
        "    else:",
        f"        if {v}.tzinfo is None: {v} = {v}.replace(tzinfo=_utc)",
        "else:",
        f"    {v} = _dt({v}, None)",
    ]
    if hint is dt.datetime:
        return block
    return [f"if {v} is not None:", *("    " + line for line in block)]


def _check_block(i: int, hint: Any, namespace: dict[str, Any], conv: cattrs.Converter) -> list[str]:
    """
    A statement checking `v<i>` for the exact scalar and JSON types, which keep their
    value: the registered hook is called only for a value the check does not take (for
    its error, or for what the check is too narrow for). Fewer steps than an expression
    that assigns the value back. Empty for any other type.
    """
    v = f"v{i}"
    args = _union_args(hint)
    nullable = args is not None and len(args) == 2 and type(None) in args
    inner = (args[0] if args[1] is type(None) else args[1]) if nullable and args else hint
    if inner in (str, int, bool):
        check = f"{v}.__class__ is not {inner.__name__}"
    elif inner == dict[str, Any]:
        check = f"{v}.__class__ is not dict"
    elif inner == list[Any]:
        check = f"{v}.__class__ is not list"
    elif inner == list[str]:
        # Column names (`primary_key`): a list of exact strings keeps its value.
        check = f"({v}.__class__ is not list or not all(x.__class__ is str for x in {v}))"
    elif inner == dict[str, Any] | list[Any]:
        check = f"{v}.__class__ is not dict and {v}.__class__ is not list"
    else:
        return []
    namespace[f"h{i}"] = conv.get_structure_hook(hint)
    namespace[f"t{i}"] = hint
    if nullable:
        check = f"{v} is not None and {check}"
    return [f"if {check}: {v} = h{i}({v}, t{i})"]


def _inline(i: int, hint: Any, namespace: dict[str, Any], conv: cattrs.Converter) -> str | None:
    """
    An expression converting `v<i>` for the common field types: the same checks as the
    registered hooks without a call each, or None for anything else (the hook is called).
    A value the inline check does not take goes to the registered hook, which raises
    the error (or accepts what the check is too narrow for).
    """
    v = f"v{i}"
    namespace.setdefault("_parse_dt", parse_datetime)
    namespace.setdefault("_dt", _structure_datetime)
    namespace[f"h{i}"] = conv.get_structure_hook(hint)
    namespace[f"t{i}"] = hint
    fallback = f"h{i}({v}, t{i})"
    if hint is Any:
        return v
    nullable = False
    args = _union_args(hint)
    if args is not None and len(args) == 2 and type(None) in args:
        # `X | None`: the same expression as for X, behind a None check.
        nullable = True
        inner = args[0] if args[1] is type(None) else args[1]
    else:
        inner = hint
    expression = _inline_value(i, inner, v, fallback, namespace, conv)
    if expression is None:
        return None
    return f"(None if {v} is None else {expression})" if nullable else expression


def _inline_value(
    i: int, hint: Any, v: str, fallback: str, namespace: dict[str, Any], conv: cattrs.Converter
) -> str | None:
    if hint in (str, int, bool):
        # Strict, as the registered hooks: the exact type (a bool is not an int here).
        return f"({v} if {v}.__class__ is {hint.__name__} else {fallback})"
    if hint is dt.datetime:
        return f"(_parse_dt({v}) if {v}.__class__ is str else _dt({v}, None))"
    if hint == dict[str, Any]:
        return f"({v} if {v}.__class__ is dict else {fallback})"
    if hint == list[Any]:
        return f"({v} if {v}.__class__ is list else {fallback})"
    if hint == dict[str, Any] | list[Any]:
        check = f"{v}.__class__ is dict or {v}.__class__ is list"
        return f"({v} if {check} else {fallback})"
    if _is_record(hint):
        # A nested record: its own generated hook, called directly.
        namespace[f"r{i}"] = conv.get_structure_hook(hint)
        namespace[f"c{i}"] = hint
        return f"r{i}({v}, c{i})"
    if typing.get_origin(hint) is list and _is_record(typing.get_args(hint)[0]):
        # A list of records (`latest_runs`): the item's generated array function, else
        # one comprehension; no generic list hook either way.
        item = typing.get_args(hint)[0]
        hook = conv.get_structure_hook(item)
        array = getattr(hook, "array", None)
        if array is not None:  # the item's generated array function: no call per item
            namespace[f"a{i}"] = array
            return f"(a{i}({v}) if {v}.__class__ is list else {fallback})"
        namespace[f"r{i}"] = hook
        namespace[f"c{i}"] = item
        return f"([r{i}(x, c{i}) for x in {v}] if {v}.__class__ is list else {fallback})"
    parts = _open_enum_parts(hint)
    if parts is None:
        return None
    namespace[f"m{i}"] = {m.value: m for m in parts[0]}
    # An unknown value (a newer PostHog's) stays its string.
    # isinstance: a member of the enum itself (a str too) is accepted as its value.
    convert = f"(m{i}.get({v}, {v}) if isinstance({v}, str) else {fallback})"
    return f"(None if {v} is None else {convert})" if parts[1] else convert
