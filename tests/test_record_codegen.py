"""
The generated record hooks decide exactly as cattrs' own hooks do (the detailed twin):
the same record for every body that fits, an error for every body that does not.
"""

from __future__ import annotations

import datetime as dt
import weakref
from typing import Any, cast

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._converter import _detailed, converter, parse_datetime, structure_records
from aposthog._errors import ResponseDecodeError
from aposthog.models import (
    BatchExport,
    BatchExportBackfill,
    BatchExportDestination,
    BatchExportLogEntry,
    BatchExportRun,
    CustomerProfileConfig,
)
from aposthog.models.conversations import Conversation

RECORDS = [
    BatchExport,
    BatchExportRun,
    BatchExportDestination,
    BatchExportBackfill,
    BatchExportLogEntry,
    CustomerProfileConfig,
    Conversation,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.integers(2**63, 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.sampled_from(
        [
            "2025-03-01T00:00:00Z",
            "2025-03-01T00:00:00.123456Z",
            "2025-03-01 10:00:00+0100",
            "2025-03-01T00:00:00",
            "2025-03-01",
            "2025-13-01",
            "Completed",
            "hour",
            "S3",
            "person",
            "events",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.sampled_from(["id", "status", "type", "x"]), children, max_size=3)
    ),
    max_leaves=6,
)


def _outcome(convert: Any, data: Any, cls: type) -> tuple[str, Any]:
    try:
        return "record", convert(data, cls)
    except Exception:
        return "error", None


@st.composite
def bodies(draw: st.DrawFn, cls: type) -> dict[str, Any]:
    names = [a.name for a in attrs.fields(cls) if a.name != "extra_fields"]
    keys = st.sampled_from([*names, "unknown_field"])
    return draw(st.dictionaries(keys, json_values, max_size=len(names) + 1))


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_generated_hooks_agree_with_cattrs(cls: type, data: st.DataObject) -> None:
    body = data.draw(bodies(cls))
    assert _outcome(_detailed.structure, body, cls) == _outcome(converter.structure, body, cls)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_generated_hooks_agree_on_near_valid_bodies(cls: type, data: st.DataObject) -> None:
    """Valid bodies with one field replaced: the hooks' decisions still match."""
    body = dict(VALID[cls])
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(json_values)
    assert _outcome(_detailed.structure, body, cls) == _outcome(converter.structure, body, cls)


_RUN = {
    "id": "r1",
    "status": "Completed",
    "records_completed": 3,
    "latest_error": None,
    "data_interval_start": "2025-03-01T00:00:00Z",
    "data_interval_end": "2025-03-01T01:00:00Z",
    "created_at": "2025-03-01T01:00:05.5Z",
    "finished_at": None,
    "bytes_exported": 10,
    "batch_export": "e1",
}
VALID: dict[type, dict[str, Any]] = {
    BatchExportRun: _RUN,
    BatchExportDestination: {"type": "S3", "config": {"bucket_name": "b"}, "integration": 1},
    BatchExport: {
        "id": "e1",
        "team_id": 1,
        "name": "n",
        "model": "events",
        "destination": {"type": "S3", "config": {}},
        "interval": "hour",
        "paused": False,
        "created_at": "2025-03-01T00:00:00Z",
        "latest_runs": [_RUN, _RUN],
        "schema": None,
        "filters": [],
        "offset_hour": None,
    },
    BatchExportBackfill: {
        "id": "b1",
        "status": "Running",
        "progress": {"total_runs": 3, "finished_runs": 1, "progress": 0.3},
        "start_at": "2025-03-01T00:00:00Z",
        "team": 1,
    },
    BatchExportLogEntry: {
        "log_source_id": "e1",
        "instance_id": "r1",
        "timestamp": "2025-03-01T00:00:00Z",
        "level": "INFO",
        "message": "m",
    },
    CustomerProfileConfig: {
        "id": "c1",
        "scope": "person",
        "content": {"properties": []},
        "sidebar": [],
        "created_at": "2025-03-01T00:00:00Z",
        "updated_at": None,
    },
    Conversation: {"id": "c1", "status": "idle", "title": "t", "messages": []},
}


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_the_array_function_builds_what_the_item_function_builds(
    cls: type, data: st.DataObject
) -> None:
    """
    A page's results go through the generated array function, one loop for them all:
    the same records as the item function, in order, and an error where it raises one.
    """
    items = data.draw(st.lists(st.one_of(st.just(VALID[cls]), bodies(cls)), max_size=4))
    item = converter.get_structure_hook(cls)
    array = item.array  # type: ignore[attr-defined]
    try:
        expected: Any = ("records", [item(body, cls) for body in items])
    except Exception as exc:
        expected = ("error", type(exc))
    try:
        built: Any = ("records", array(items))
    except Exception as exc:
        built = ("error", type(exc))
    assert built == expected
    if built[0] == "records":
        assert [type(record) for record in built[1]] == [cls] * len(items)
        assert structure_records(items, cls) == built[1]
    else:  # the page's error names the bad record, as `structure()` of the list does
        with pytest.raises(ResponseDecodeError) as caught:
            structure_records(items, cls)
        assert caught.value.paths
        assert caught.value.paths[0].startswith("$[")


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_the_valid_bodies_fit(cls: type) -> None:
    assert isinstance(converter.structure(VALID[cls], cls), cls)


def test_json_containers_are_kept_as_parsed() -> None:
    """Objects nobody else holds are not copied; timestamps are aware."""
    body = dict(VALID[BatchExport])
    export = converter.structure(body, BatchExport)
    assert export.destination.config is body["destination"]["config"]
    assert export.filters is body["filters"]
    assert export.created_at == dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_records_built_through_the_twin_are_the_records_init_builds(cls: type[Any]) -> None:
    """Filled through a mutable twin, a record is still exactly `cls`, frozen and equal."""
    from aposthog._record_codegen import _builder

    assert _builder(cls) is not None  # every record takes the fast path
    record = converter.structure(VALID[cls], cls)
    assert type(record) is cls
    assert record == _detailed.structure(VALID[cls], cls)
    assert attrs.evolve(record) == record
    assert record == cls(**{a.alias: getattr(record, a.name) for a in attrs.fields(cls)})
    assert cast(Any, weakref.ref(record)()) is record  # else mypy narrows `record` to `Any | None`
    field = attrs.fields(cls)[0].name  # a real field of each record
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(record, field, "changed")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        delattr(record, field)
    assert getattr(record, field) == getattr(converter.structure(VALID[cls], cls), field)


def test_subclassed_records_and_unknown_keys_through_the_twin() -> None:
    """A record with a base record of its own, and one with unknown keys."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    @attrs.frozen(kw_only=True)
    class Base:
        id: str
        extra_fields: Any = extra_fields_field()

    @attrs.frozen(kw_only=True)
    class Derived(Base):
        name: str

    structure = compile_record_structure(Derived, converter)
    made = structure({"id": "a", "name": "n", "new": 1}, Derived)
    assert type(made) is Derived
    assert made == Derived(id="a", name="n", extra_fields={"new": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.name = "m"  # type: ignore[misc]  # a frozen record's field: refused at runtime


def test_a_record_with_a_validator_is_built_by_its_init() -> None:
    """Validators and `__attrs_post_init__` run: such a record is not filled directly."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    @attrs.frozen(kw_only=True)
    class Checked:
        id: str = attrs.field(validator=attrs.validators.min_len(2))
        extra_fields: Any = extra_fields_field()

    structure = compile_record_structure(Checked, converter)
    assert structure({"id": "ab"}, Checked) == Checked(id="ab")
    with pytest.raises(ValueError, match="Length of 'id'"):
        structure({"id": "a"}, Checked)


def test_a_record_built_by_its_init_with_no_field_but_its_extra_fields() -> None:
    """Nothing but unknown keys: its `__init__` takes `extra_fields` alone."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    @attrs.frozen(kw_only=True)
    class Bare:
        extra_fields: Any = extra_fields_field()

        def __attrs_post_init__(self) -> None:  # built by its `__init__`, not filled
            pass

    structure = compile_record_structure(Bare, converter)
    assert structure({}, Bare) == Bare()
    assert structure({"new": 1}, Bare).extra_fields == {"new": 1}
    assert structure.array([{}, {"new": 1}]) == [Bare(), Bare(extra_fields={"new": 1})]  # type: ignore[attr-defined]


def test_records_with_converters_or_post_init_are_built_by_their_init() -> None:
    """A field converter and `__attrs_post_init__` run; a private field is passed by alias."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    def lower(text: str) -> str:
        return text.lower()

    @attrs.frozen(kw_only=True)
    class Lowered:
        _name: str = attrs.field(converter=lower)
        extra_fields: Any = extra_fields_field()

    lowered = compile_record_structure(Lowered, converter)({"_name": "AB", "new": 1}, Lowered)
    assert Lowered(name="ab", extra_fields={"new": 1}) == lowered
    assert "ab" == lowered._name

    @attrs.frozen(kw_only=True)
    class Posted:
        id: str
        extra_fields: Any = extra_fields_field()

        def __attrs_post_init__(self) -> None:
            if not self.id.startswith("x"):
                raise ValueError("id must start with x")

    posted = compile_record_structure(Posted, converter)
    assert Posted(id="xa") == posted({"id": "xa"}, Posted)
    with pytest.raises(ValueError, match="must start with x"):
        posted({"id": "a"}, Posted)


def test_a_field_init_does_not_take_gets_its_default() -> None:
    """A record with an `init=False` field is built by its `__init__`, default included."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    @attrs.frozen(kw_only=True)
    class Counted:
        id: str
        n: int = attrs.field(init=False, default=0)
        extra_fields: Any = extra_fields_field()

    built = compile_record_structure(Counted, converter)({"id": "a"}, Counted)
    assert 0 == built.n
    assert Counted(id="a") == built


def test_a_default_that_takes_self_is_refused() -> None:
    """The generated function has no instance to give such a factory: refused up front."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import compile_record_structure

    @attrs.frozen(kw_only=True)
    class Derived:
        id: str
        copy: str = attrs.field(default=attrs.Factory(lambda self: self.id, takes_self=True))
        extra_fields: Any = extra_fields_field()

    with pytest.raises(TypeError, match="takes_self is not supported"):
        compile_record_structure(Derived, converter)


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-01T00:00:00",
        "2025-03-01",
        "2025-03-01T00:00:00z",
        "2025-03-01T01:00:00.5 +0100",
        "2025-03-01Z",
    ],
)
def test_generated_hooks_read_every_timestamp_shape_as_aware(text: str) -> None:
    """Without an offset it is UTC; what `fromisoformat` refuses goes to the slow path."""
    expected = parse_datetime(text)
    assert expected.tzinfo is not None
    run = converter.structure({**_RUN, "data_interval_start": text}, BatchExportRun)
    assert expected == run.data_interval_start
    assert run.data_interval_start is not None
    assert run.data_interval_start.tzinfo is not None
    body = {**VALID[CustomerProfileConfig], "created_at": text}
    config = converter.structure(body, CustomerProfileConfig)
    assert expected == config.created_at
    assert config.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (BatchExportRun, "records_completed", True),
        (BatchExport, "team_id", False),
        (BatchExportRun, "id", 1),
        (CustomerProfileConfig, "content", "x"),
        (CustomerProfileConfig, "sidebar", 1),
        (BatchExportDestination, "config", None),
        (BatchExportDestination, "config", []),
    ],
)
def test_generated_hooks_refuse_wrong_types(cls: type, key: str, value: Any) -> None:
    """A bool is not an int, a string is no JSON object or array: both converters refuse."""
    body = {**VALID[cls], key: value}
    assert ("error", None) == _outcome(converter.structure, body, cls)
    assert ("error", None) == _outcome(_detailed.structure, body, cls)


def test_both_converters_read_a_null_json_container_as_an_empty_object() -> None:
    """PostHog stores a null `content` or `sidebar` as `{}`: a null it sends reads so too."""
    body = {**VALID[CustomerProfileConfig], "content": None, "sidebar": None}
    for structure in (converter.structure, _detailed.structure):
        config = structure(body, CustomerProfileConfig)
        assert (config.content, config.sidebar) == ({}, {})
