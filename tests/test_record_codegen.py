"""
The generated record hooks decide exactly as cattrs' own hooks do (the detailed twin):
the same record for every body that fits, an error for every body that does not.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._converter import _detailed, converter
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
def test_records_built_through_the_twin_are_the_records_init_builds(cls: type) -> None:
    """Filled through a mutable twin, a record is still exactly `cls`, frozen and equal."""
    from aposthog._record_codegen import _builder

    # Every list's records take the fast path; a subclass (Conversation) the setters'.
    assert (_builder(cls) is not None) is (cls.__bases__ == (object,))
    record = converter.structure(VALID[cls], cls)
    assert type(record) is cls
    assert record == _detailed.structure(VALID[cls], cls)
    assert attrs.evolve(record) == record
    assert record == cls(**{a.alias: getattr(record, a.name) for a in attrs.fields(cls)})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.id = "changed"


def test_a_record_whose_layout_the_twin_cannot_match_is_filled_slot_by_slot() -> None:
    """A `__weakref__` slot or a base class of its own: the slots' setters, same result."""
    from aposthog._converter import extra_fields_field
    from aposthog._record_codegen import _builder, compile_record_structure

    @attrs.frozen(kw_only=True)
    class WithWeakref:
        id: str
        extra_fields: Any = extra_fields_field()

    @attrs.frozen(kw_only=True, weakref_slot=False)
    class Base:
        id: str
        extra_fields: Any = extra_fields_field()

    @attrs.frozen(kw_only=True, weakref_slot=False)
    class Derived(Base):
        name: str

    assert _builder(WithWeakref) is None
    assert _builder(Derived) is None
    structure = compile_record_structure(WithWeakref, converter)
    assert structure({"id": "a", "new": 1}, WithWeakref) == WithWeakref(
        id="a", extra_fields={"new": 1}
    )
    structure = compile_record_structure(Derived, converter)
    assert structure({"id": "a", "name": "n"}, Derived) == Derived(id="a", name="n")
