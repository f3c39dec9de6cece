"""
The package's own cattrs converter, and the conventions every record follows.

Records are frozen, slotted attrs classes. PostHog adds fields and enum values all the
time, so decoding is forward-compatible by construction:

* every record has an `extra_fields` mapping that receives the keys this version does
  not know, and gives them back when the record is unstructured;
* an enum-typed field is declared `SomeEnum | str`: a known value becomes the member,
  an unknown one stays the string it was.

A body that does not fit raises `ResponseDecodeError` naming the JSON path of each bad
field (`$.results[3].created_at`), built from cattrs' detailed validation.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.v import format_exception

from ._errors import ResponseDecodeError

__all__ = [
    "EXTRA_FIELDS",
    "converter",
    "extra_fields_field",
    "item_hook",
    "known_keys",
    "parse_datetime",
    "record_unstructure_hook",
    "register_structure_hook",
    "register_structure_hook_factory",
    "register_unstructure_hook",
    "register_unstructure_hook_factory",
    "structure",
    "structure_records",
    "unstructure",
]

T = TypeVar("T")

EXTRA_FIELDS: Final = "extra_fields"

_fromisoformat = dt.datetime.fromisoformat
_Z_OK: Final = sys.version_info >= (3, 11)
_ISO_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_datetime(value: str) -> dt.datetime:
    """
    Parse PostHog's ISO 8601 timestamps into timezone-aware datetimes.

    Accepts `Z`, offsets with or without a colon, a space instead of `T`, any number of
    fractional digits (Python 3.10's `fromisoformat` accepts few of these), and a bare
    date. A timestamp without an offset is UTC: PostHog stores and serves UTC.
    """
    try:
        # The fast path: DRF's own format, which fromisoformat reads (with a `Z` from 3.11).
        parsed = _fromisoformat(value if _Z_OK or value[-1:] != "Z" else value[:-1] + "+00:00")
    except ValueError:
        parsed = _parse_datetime_slowly(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)


def _parse_datetime_slowly(value: str) -> dt.datetime:
    match = _ISO_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    text = match["date"] + "T" + (match["time"] or "00:00")
    if match["frac"]:
        text += "." + (match["frac"] + "000000")[:6]
    tz = match["tz"]
    if tz is None or tz in ("Z", "z"):
        tz = "+00:00"
    elif len(tz) == 3:
        tz += ":00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return dt.datetime.fromisoformat(text + tz)


def _structure_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, str):
        return parse_datetime(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")


def _strict(kind: type) -> Callable[[Any, Any], Any]:
    def structure_strictly(value: Any, _: Any) -> Any:
        # type() rather than isinstance(): a bool is not an int here.
        if type(value) is kind:
            return value
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r:.40}")

    return structure_strictly


def _structure_float(value: Any, _: Any) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__} {value!r:.40}")


def _structure_optional_datetime(value: Any, _: type) -> dt.datetime | None:
    return None if value is None else _structure_datetime(value, dt.datetime)


def _strict_optional(kind: type) -> Callable[[Any, Any], Any]:
    strict = _strict(kind)

    def structure_optional_strictly(value: Any, _: Any) -> Any:
        return value if value is None or type(value) is kind else strict(value, None)

    return structure_optional_strictly


def _json_as_is(kind: type, nullable: bool) -> Callable[[Any, Any], Any]:
    """
    A JSON object or array field, kept as the parser made it: nobody else holds it, so
    a copy (cattrs' default for `dict[str, Any]` and `list[Any]`) would buy nothing.
    """
    name = "a JSON object" if kind is dict else "a JSON array"

    def structure_json(value: Any, _: Any) -> Any:
        if value.__class__ is kind or (nullable and value is None):
            return value
        raise TypeError(f"expected {name}, got {type(value).__name__} {value!r:.40}")

    return structure_json


def _strings_as_is(nullable: bool) -> Callable[[Any, Any], Any]:
    """A JSON array of strings (column names, step texts), kept as the parser made it."""

    def structure_strings(value: Any, _: Any) -> Any:
        if value.__class__ is list and all(x.__class__ is str for x in value):
            return value
        if nullable and value is None:
            return None
        # Not cattrs' default, which reads a string as the list of its characters.
        raise TypeError(
            f"expected a JSON array of strings, got {type(value).__name__} {value!r:.40}"
        )

    return structure_strings


#: `dict[str, Any]` and friends: hooks keyed by equality (they are not classes).
_JSON_HOOKS: Final[dict[Any, Callable[[Any, Any], Any]]] = {
    dict[str, Any]: _json_as_is(dict, False),
    dict[str, Any] | None: _json_as_is(dict, True),
    list[Any]: _json_as_is(list, False),
    list[Any] | None: _json_as_is(list, True),
    list[str]: _strings_as_is(False),
    list[str] | None: _strings_as_is(True),
}


def _unstructure_datetime(value: dt.datetime) -> str:
    text = value.isoformat()
    # Only a trailing offset: "+00:00:30" (an offset of 30 s) is no UTC.
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _open_enum_parts(tp: Any) -> tuple[type[enum.Enum], bool] | None:
    """`E | str` or `E | str | None` with E a str-valued Enum → (E, nullable)."""
    args = _union_args(tp)
    if args is None:
        return None
    rest = [a for a in args if a is not type(None)]
    enums = [a for a in rest if isinstance(a, type) and issubclass(a, enum.Enum)]
    if len(rest) != 2 or str not in rest or len(enums) != 1:
        return None
    return enums[0], len(rest) != len(args)


def _make_open_enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
    parts = _open_enum_parts(tp)
    assert parts is not None
    enum_cls, nullable = parts
    members: dict[Any, enum.Enum] = {m.value: m for m in enum_cls}

    def structure_open_enum(value: Any, _: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a string for {enum_cls.__name__}, got {value!r}")
        # An unknown value comes from a newer PostHog: keep it as the plain string.
        return members.get(value, value)

    return structure_open_enum


def _is_json_value(tp: Any) -> bool:
    try:
        return tp in _JSON_HOOKS
    except TypeError:  # an unhashable annotation
        return False


def _json_hook(tp: Any) -> Callable[[Any, Any], Any]:
    return _JSON_HOOKS[tp]


#: The most values `unstructure()` copies out of one JSON value: a value made of shared
#: parts (`[x, x]` nested) doubles at each level, and would fill the memory.
_MAX_COPIED = 10_000_000


def _copy_json(value: Any) -> Any:
    """
    A copy of a JSON value (any mapping as a dict, tuples as lists), level by level.
    `ValueError` for a value that contains itself (a record built by hand: the copy would
    never end) or holds more than `_MAX_COPIED` values.
    """
    if not isinstance(value, (Mapping, list, tuple)):
        return value
    root: list[Any] = [None]
    # (a value to copy, the container its copy goes into, the key or index there); a
    # container's copy done pops `_DONE` and its id, which leaves the containers above.
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    above: set[int] = set()  # the containers being copied, each inside the one before
    copied_values = 0
    while stack:
        item, into, at = stack.pop()
        if item is _DONE:
            above.discard(into)
            continue
        copied_values += 1
        if copied_values > _MAX_COPIED:
            raise ValueError(f"a JSON value of more than {_MAX_COPIED:,} values: not copied")
        if isinstance(item, (Mapping, list, tuple)):
            if id(item) in above:
                raise ValueError("a JSON value that contains itself cannot be unstructured")
            above.add(id(item))
            stack.append((_DONE, id(item), None))
            if isinstance(item, Mapping):
                copied: Any = dict.fromkeys(item)  # the keys in their order, filled below
                stack.extend((child, copied, key) for key, child in item.items())
            else:
                copied = [None] * len(item)
                stack.extend((child, copied, index) for index, child in enumerate(item))
        else:
            copied = item
        into[at] = copied
    return root[0]


_DONE: Final = object()


_SCALARS: Final = (str, int, float, bool, type(None))


def _is_plain_json(tp: Any) -> bool:
    """
    An annotation whose values are JSON as parsed, never records: `Any` (a field
    PostHog fills with any JSON), the JSON objects and arrays kept as parsed,
    `extra_fields`, and unions of these and scalars.
    """
    if tp is Any or _is_json_value(tp) or tp == Mapping[str, Any]:
        return True
    args = _union_args(tp)
    return args is not None and all(arg in _SCALARS or _is_plain_json(arg) for arg in args)


def _is_array(tp: Any) -> bool:
    """A `list[X]` of records or messages (the JSON arrays kept as parsed are apart)."""
    return typing.get_origin(tp) is list and not _is_json_value(tp)


def _array_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """
    cattrs' list hook, given only a JSON array: on its own it reads any iterable, so a
    `""` or `{}` where PostHog sends a list of records would become an empty list, and
    a non-empty string the list of its characters.
    """
    structure_items = list_structure_factory(tp, conv)

    def structure_array(value: Any, _: Any) -> Any:
        if value.__class__ is not list:
            raise TypeError(f"expected a JSON array, got {type(value).__name__} {value!r:.40}")
        return structure_items(value, tp)

    return structure_array


def _is_record(cls: Any) -> bool:
    return attrs.has(cls) and any(a.name == EXTRA_FIELDS for a in attrs.fields(cls))


def _record_structure(cls: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """
    The structure hook of a record.

    The fast converter uses one generated function per record (see
    `_record_codegen`); when it fails, `structure()` re-runs the body through
    the detailed twin, whose hooks are cattrs' own, to name the bad field.
    """
    if not conv.detailed_validation:
        # Imported here: the generator uses this module's hooks and helpers.
        from ._record_codegen import compile_record_structure

        return compile_record_structure(cls, conv)
    base: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(
        cls, conv, extra_fields=cattrs.override(omit=True)
    )
    known = known_keys(cls)

    def structure_record(data: Any, _: Any) -> Any:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {data!r:.80}")
        instance = base(data, cls)
        if not known.issuperset(data):
            # Frozen, slotted: set the one attribute the generated function leaves alone.
            object.__setattr__(instance, EXTRA_FIELDS, _extra_fields(data, known))
        return instance

    return structure_record


def known_keys(cls: type) -> frozenset[str]:
    """
    The keys a record reads: its fields, and the names of its class constants (a
    message's `type: ClassVar[str]` is the key its class was chosen by, not an extra).
    """
    fields = {a.name for a in attrs.fields(cls) if a.name != EXTRA_FIELDS}
    constants = {
        name
        for name, hint in typing.get_type_hints(cls).items()
        if typing.get_origin(hint) is typing.ClassVar
    }
    return frozenset(fields | constants)


class ReadOnlyFields(Mapping[str, Any]):
    """
    A record's `extra_fields`: a read-only view of a dict, as `types.MappingProxyType`
    is, that pickles and deep-copies with the record (a proxy does neither, so no record
    could be sent to another process, cached by pickling, or deep-copied).
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        # (`Mapping.get` goes through `__getitem__` and a `KeyError` for a missing key.)
        return self._data.get(key, default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __reduce__(self) -> tuple[type[ReadOnlyFields], tuple[dict[str, Any]]]:
        return (type(self), (dict(self._data),))

    # What `types.MappingProxyType` offers beyond `Mapping`, for code written against it.
    def copy(self) -> dict[str, Any]:
        """A shallow copy, as a dict."""
        return dict(self._data)

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self._data, **other}

    def __ror__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self._data}

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._data)


def _extra_fields(data: dict[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    return ReadOnlyFields({k: v for k, v in data.items() if k not in known})


def _record_unstructure(cls: type, conv: cattrs.Converter) -> Callable[[Any], Any]:
    base: Callable[[Any], dict[str, Any]] = cattrs.gen.make_dict_unstructure_fn(cls, conv)

    def unstructure_record(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = base(obj)
        extra = out.pop(EXTRA_FIELDS, None)
        if extra:
            out = {**extra, **out}
        return out

    return unstructure_record


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """
    Build aposthog's converter (the global cattrs converter is never touched).

    It structures without cattrs' detailed validation, which costs a third of the time
    of every page; `structure()` re-runs a failed body through a detailed copy to name
    the paths of the bad fields (of the first items that do not fit, in any list).
    """
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    # Strict scalars: cattrs' defaults call str()/int()/bool(), which would turn a null
    # into "None", "3.7" into an error but 3.7 into 3, and "false" into True.
    for scalar in (str, int, bool):
        conv.register_structure_hook(scalar, _strict(scalar))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(dt.datetime, _structure_datetime)
    # Registered directly so that generated code calls it, instead of cattrs' generic
    # Optional dispatch (a measurable cost on every page of every list).
    for optional_datetime in (dt.datetime | None, typing.Optional[dt.datetime]):  # noqa: UP045
        conv.register_structure_hook(optional_datetime, _structure_optional_datetime)
    for scalar in (str, int, bool):
        for optional in (scalar | None, typing.Optional[scalar]):  # noqa: UP045
            conv.register_structure_hook(optional, _strict_optional(scalar))
    conv.register_structure_hook_factory(_is_json_value, _json_hook)
    conv.register_structure_hook_factory(_is_array, _array_hook)
    conv.register_unstructure_hook(dt.datetime, _unstructure_datetime)
    # A JSON value is copied without recursion: cattrs would walk it three Python frames
    # a level, and fail near 335 levels on a value the parser read to nearly a thousand.
    # A copy, not the value itself: what `unstructure()` returns is the caller's to edit.
    conv.register_unstructure_hook_func(_is_plain_json, _copy_json)
    conv.register_structure_hook_factory(
        lambda tp: _open_enum_parts(tp) is not None, _make_open_enum_hook
    )
    conv.register_structure_hook_factory(_is_record, _record_structure)
    conv.register_unstructure_hook_factory(_is_record, _record_unstructure)
    return conv


converter: Final = make_converter()
# The same hooks with cattrs' detailed validation, used only to explain a failure.
_detailed: Final = make_converter(detailed_validation=True)


def register_structure_hook(tp: Any, hook: Callable[[Any, Any], Any]) -> None:
    """Register a structure hook on aposthog's converter (and its detailed twin)."""
    converter.register_structure_hook(tp, hook)
    _detailed.register_structure_hook(tp, hook)


def register_structure_hook_factory(
    predicate: Callable[[Any], bool], factory: Callable[..., Callable[[Any, Any], Any]]
) -> None:
    """Register a structure hook factory on aposthog's converter (and its detailed twin)."""
    converter.register_structure_hook_factory(predicate, factory)
    _detailed.register_structure_hook_factory(predicate, factory)


def register_unstructure_hook_factory(
    predicate: Callable[[Any], bool], factory: Callable[[Any], Callable[[Any], Any]]
) -> None:
    """Register an unstructure hook factory on aposthog's converter (and its detailed twin)."""
    converter.register_unstructure_hook_factory(predicate, factory)
    _detailed.register_unstructure_hook_factory(predicate, factory)


def record_unstructure_hook(cls: type) -> Callable[[Any], dict[str, Any]]:
    """A record's own unstructure function (`extra_fields` folded in), for wrapping hooks."""
    return _record_unstructure(cls, converter)


def register_unstructure_hook(tp: Any, hook: Callable[[Any], Any]) -> None:
    """Register an unstructure hook on aposthog's converter (and its detailed twin)."""
    converter.register_unstructure_hook(tp, hook)
    _detailed.register_unstructure_hook(tp, hook)


_NO_EXTRA_FIELDS: Final[Mapping[str, Any]] = ReadOnlyFields({})


def extra_fields_field() -> Any:
    """
    The `extra_fields` attribute every record declares: the keys this version does not know.

    Declare it as `extra_fields: Mapping[str, Any] = extra_fields_field()`. It is a
    read-only mapping, shared and empty in the usual case (no allocation per record).
    It takes part in equality but not in the hash (a mapping has none): a record whose
    values are all hashable (a log entry, a run) can be put in a set.
    """
    return attrs.field(
        default=_NO_EXTRA_FIELDS, converter=_read_only, repr=False, kw_only=True, hash=False
    )


def _read_only(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if value.__class__ is ReadOnlyFields:
        return value
    return ReadOnlyFields(dict(value)) if value else _NO_EXTRA_FIELDS


def structure(data: Any, cl: type[T] | Any, *, path: str = "$", request_path: str = "") -> T:
    """
    Structure `data` into `cl`, turning cattrs' errors into `ResponseDecodeError`.

    Args:
        path: the JSON path of `data` inside the response body, for the message.
        request_path: the request's path, for the message.
    """
    try:
        return typing.cast(T, converter.structure(data, cl))
    except Exception as fast_error:  # every failure becomes a decode error
        error: Exception = fast_error
    where = f" from {request_path}" if request_path else ""
    try:
        messages, more = _explain(data, cl, path)
    except Exception as exc:  # a hook's own error, at the top level
        error = exc
    else:
        if messages:
            paths = tuple(m.rsplit(" @ ", 1)[-1] for m in messages)
            summary = "; ".join(messages[:5]) + ("; …" if len(messages) > 5 else "")
            if more:
                summary += f" (and {more} more items that do not fit)"
            raise ResponseDecodeError(
                f"unexpected response body{where}: {summary}",
                paths=paths,
                body=data,
                path=request_path,
            )
    raise ResponseDecodeError(
        f"unexpected response body{where}: {error} @ {path}",
        paths=(path,),
        body=data,
        path=request_path,
    ) from None


#: How many of a long list's items that do not fit an error explains (each explained item
#: costs cattrs' detailed errors, a few kilobytes; the rest are counted).
EXPLAINED_ITEMS: Final = 10


def _explain(data: Any, cl: Any, path: str, *, top: bool = True) -> tuple[list[str], int]:
    """
    Why `data` does not fit `cl`: cattrs' detailed messages (`... @ $.path`), empty if it
    fits, and how many items of lists were left unexplained. Of any list (the page's
    results, or a record's list field, at any depth) only the first `EXPLAINED_ITEMS`
    items that do not fit are explained, each in the same way, so that a hostile body of
    a million bad items costs about its size, not a million detailed errors.
    """
    if isinstance(data, list) and typing.get_origin(cl) is list:
        return _explain_items(data, typing.get_args(cl)[0], path)
    messages: list[str] = []
    more = 0
    if isinstance(data, dict) and attrs.has(cl):
        hints = _hints(cl)
        trimmed: dict[str, Any] | None = None
        for field in attrs.fields(cl):
            value = data.get(field.name)
            item_type = _list_item(hints.get(field.name))
            if item_type is None or not isinstance(value, list):
                continue
            found, unexplained = _explain_items(value, item_type, f"{path}.{field.name}")
            messages += found
            more += unexplained
            if trimmed is None:
                trimmed = dict(data)
            trimmed[field.name] = []  # explained above: the rest of the record is checked
        if trimmed is not None:
            data = trimmed
    try:
        _detailed.structure(data, cl)
    except (ClassValidationError, IterableValidationError) as exc:
        messages = cattrs.transform_error(exc, path=path) + messages
    except Exception as exc:  # a hook's own error, for `data` as a whole
        if top and not messages:
            raise
        # Worded as cattrs words it inside a list (`transform_error`).
        messages = [f"{format_exception(exc, cl)} @ {path}", *messages]
    return messages, more


def _explain_items(items: list[Any], item_type: Any, path: str) -> tuple[list[str], int]:
    """`_explain()` of a list: its first items that do not fit, and how many more."""
    bad, more = _misfits(items, item_type)
    messages: list[str] = []
    for i in bad:
        found, unexplained = _explain(items[i], item_type, f"{path}[{i}]", top=False)
        messages += found
        more += unexplained
    return messages, more


def _misfits(items: list[Any], item_type: Any) -> tuple[list[int], int]:
    """The indexes of the first `EXPLAINED_ITEMS` items that do not fit, and how many more."""
    hook = item_hook(item_type)
    bad = [i for i, item in enumerate(items) if not _fits(hook, item, item_type)]
    return bad[:EXPLAINED_ITEMS], max(0, len(bad) - EXPLAINED_ITEMS)


def _fits(hook: Callable[[Any, Any], Any], item: Any, item_type: Any) -> bool:
    try:
        hook(item, item_type)
    except Exception:
        return False
    return True


def _list_item(hint: Any) -> Any:
    """`X` of a `list[X]` or `list[X] | None` hint, else None."""
    args = _union_args(hint)
    if args is not None and len(args) == 2 and type(None) in args:
        hint = args[0] if args[1] is type(None) else args[1]
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cl: type) -> dict[str, Any]:
    hints = _HINTS.get(cl)
    if hints is None:
        hints = _HINTS[cl] = typing.get_type_hints(cl)
    return hints


#: The hook of each record type a page has held (a dict lookup instead of cattrs' dispatch,
#: a fifth of a microsecond a page). The converter is aposthog's own: its hooks never change.
_ITEM_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {}


def item_hook(item_type: Any) -> Callable[[Any, Any], Any]:
    """The structure hook of one record of `item_type`: `hook(obj, item_type)`."""
    hook = _ITEM_HOOKS.get(item_type)
    if hook is None:
        hook = _ITEM_HOOKS[item_type] = converter.get_structure_hook(item_type)
    return hook


def structure_records(
    items: list[Any], item_type: Any, *, path: str = "$", request_path: str = ""
) -> list[Any]:
    """
    Structure a JSON array into a list of `item_type`, as `structure(items, list[item_type])`.

    A page's results take this path: the record type's generated array function (see
    `_record_codegen`), without cattrs' dispatch and list hook around it; a body that
    does not fit goes through `structure()`, for the same `ResponseDecodeError`.

    Tried and measured, not kept: building each record in place of its JSON object in
    the page's own list, so that the object is freed at once (and the error made from
    the body decoded again). On pages of 100 batch exports read over a socket it halved
    the full collections, yet no steady gain came of it: from 6% slower to 4% faster
    per CPU-second in four runs of 30-40 paired rounds, the client's and the floor's.
    """
    array = _ARRAYS.get(item_type)
    if array is None:
        array = _records_array(item_type)
    try:
        return array(items)
    except Exception:  # structure() below names what does not fit
        pass
    return structure(items, list[item_type], path=path, request_path=request_path)


#: The function building a JSON array of each record type a page has held.
_ARRAYS: dict[Any, Callable[[list[Any]], list[Any]]] = {}


def _records_array(item_type: Any) -> Callable[[list[Any]], list[Any]]:
    """
    The generated array function of a record type (one loop, no call per record; see
    `_record_codegen`), else a comprehension over its item hook.
    """
    hook = item_hook(item_type)
    array: Callable[[list[Any]], list[Any]] | None = getattr(hook, "array", None)
    if array is None:

        def array(items: list[Any]) -> list[Any]:
            return [hook(item, item_type) for item in items]

    _ARRAYS[item_type] = array
    return array


def unstructure(obj: Any) -> Any:
    """Unstructure a record (or anything) into JSON-ready values."""
    return converter.unstructure(obj)
