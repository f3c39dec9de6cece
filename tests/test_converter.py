"""The converter: aware datetimes, open enums, unknown fields kept, errors with JSON paths."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import aposthog
from aposthog._converter import (
    converter,
    parse_datetime,
    register_structure_hook_factory,
    structure,
    structure_records,
    unstructure,
)
from aposthog.models import BatchExportDestination, CustomerProfileConfig, ProfileScope

from .strategies import records

CONFIG: dict[str, Any] = {
    "id": "7b0c",
    "scope": "person",
    "content": {"a": 1},
    "sidebar": [],
    "created_at": "2024-05-01T12:00:00.123456Z",
    "updated_at": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        ("2024-05-01T12:00:00.5+00:00", dt.datetime(2024, 5, 1, 12, 0, 0, 500000, dt.timezone.utc)),
        (
            "2024-05-01 12:00:00.123456789",
            dt.datetime(2024, 5, 1, 12, 0, 0, 123456, dt.timezone.utc),
        ),
        ("2024-05-01T14:00:00+0200", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)),
        # Shapes `fromisoformat` refuses (on every Python), read by the slow path.
        ("2024-05-01Z", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)),
        ("2024-05-01T12:00:00z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        (
            "2024-05-01T14:00:00.5 +0200",
            dt.datetime(2024, 5, 1, 12, 0, 0, 500000, dt.timezone.utc),
        ),
        ("2024-05-01T14:00:00.5 +02", dt.datetime(2024, 5, 1, 12, 0, 0, 500000, dt.timezone.utc)),
        ("2024-05-01 12:00 Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
    ],
)
def test_timestamps_become_aware_datetimes(text: str, expected: dt.datetime) -> None:
    """Every timestamp shape PostHog sends becomes a timezone-aware datetime."""
    parsed = parse_datetime(text)
    assert parsed.tzinfo is not None
    assert expected == parsed


@pytest.mark.parametrize(
    "text", ["yesterday", "2024-05-01 yesterday", "2024-05-01T12:00:00Zjunk", "2024-05-01T25:00"]
)
def test_text_that_is_no_timestamp_is_refused(text: str) -> None:
    """Only a whole ISO 8601 timestamp is read: no prefix of one followed by anything."""
    with pytest.raises(ValueError, match=r"isoformat|ISO 8601|must be in"):
        parse_datetime(text)


def test_datetime_objects_become_aware() -> None:
    """A datetime object (not text) without an offset is taken as UTC too."""
    naive = dt.datetime(2024, 5, 1, 12)
    assert naive.replace(tzinfo=dt.timezone.utc) == structure(naive, dt.datetime)
    assert structure(naive, dt.datetime).tzinfo is not None
    assert structure({**CONFIG, "created_at": naive}, CustomerProfileConfig).created_at.tzinfo


def test_timestamps_unstructure_to_iso_text_with_z() -> None:
    """UTC is written `Z`, another offset as it is."""
    assert "2024-05-01T12:00:00Z" == unstructure(parse_datetime("2024-05-01T12:00:00Z"))
    assert "2024-05-01T14:00:00+02:00" == unstructure(parse_datetime("2024-05-01T14:00:00+0200"))


def test_unknown_fields_and_enum_values_survive() -> None:
    """A newer PostHog's extra field and scope decode, and stay reachable."""
    body = {**CONFIG, "scope": "group_9", "pinned_properties": ["email"]}
    config: CustomerProfileConfig = structure(body, CustomerProfileConfig)
    assert "group_9" == config.scope
    assert {"pinned_properties": ["email"]} == config.extra_fields
    assert body == unstructure(config) | {"created_at": body["created_at"]}


def test_known_enum_values_are_members() -> None:
    """A known value is the enum member, which still equals its string."""
    config: CustomerProfileConfig = structure(CONFIG, CustomerProfileConfig)
    assert ProfileScope.PERSON is config.scope
    assert "person" == config.scope  # type: ignore[comparison-overlap]  # the member is a str
    # The same through the open-enum hook itself (lists of enums, the detailed twin).
    assert ProfileScope.PERSON is structure("person", ProfileScope | str)
    assert [ProfileScope.PERSON, "group_9"] == structure(
        ["person", "group_9"], list[ProfileScope | str]
    )
    assert ProfileScope.PERSON is structure(["person"], list[ProfileScope | str])[0]
    assert structure(None, ProfileScope | str | None) is None


def test_known_fields_win_over_extra_fields_when_unstructured() -> None:
    """An extra key that names a field never overrides the field's value."""
    import attrs

    decoded: CustomerProfileConfig = structure(CONFIG, CustomerProfileConfig)
    config = attrs.evolve(decoded, extra_fields={"id": "forged", "new": 1})
    out = unstructure(config)
    assert "7b0c" == out["id"]
    assert 1 == out["new"]


def test_extra_fields_are_a_copy_of_what_was_given() -> None:
    """Changing the mapping a record was made with does not change the record."""
    import attrs

    given_extra = {"x": 1}
    decoded: CustomerProfileConfig = structure(CONFIG, CustomerProfileConfig)
    config = attrs.evolve(decoded, extra_fields=given_extra)
    given_extra["y"] = 2
    assert {"x": 1} == dict(config.extra_fields)


def test_bad_body_names_the_path_of_the_bad_field() -> None:
    """A field that does not fit raises ResponseDecodeError naming $.results[i].field."""
    results: list[dict[str, Any]] = [dict(CONFIG) for _ in range(5)]
    results[3]["created_at"] = "yesterday"
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(results, list[CustomerProfileConfig], path="$.results", request_path="/p/")
    assert ("$.results[3].created_at",) == info.value.paths
    assert "$.results[3].created_at" in str(info.value)
    assert "/p/" in str(info.value)


def test_every_bad_field_is_named() -> None:
    """Several bad fields: each path in `paths` and in the message, in body order."""
    results: list[dict[str, Any]] = [dict(CONFIG) for _ in range(4)]
    results[1]["created_at"] = "yesterday"
    results[3]["id"] = 5
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(results, list[CustomerProfileConfig], path="$.results")
    assert ("$.results[1].created_at", "$.results[3].id") == info.value.paths
    assert "$.results[1].created_at" in str(info.value)
    assert "$.results[3].id" in str(info.value)


def test_a_null_item_in_a_page_is_a_decode_error() -> None:
    """A null among the results is reported with its index, never skipped."""
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure_records([dict(CONFIG), None], CustomerProfileConfig, path="$.results")
    assert ("$.results[1]",) == info.value.paths


_EXPORT = {
    "id": "e1",
    "team_id": 1,
    "name": "n",
    "model": "events",
    "destination": {"type": "S3", "config": {}},
    "interval": "hour",
    "paused": False,
    "created_at": "2025-03-01T00:00:00Z",
    "latest_runs": [],
}


@pytest.mark.parametrize("wrong", ["", "ab", {}, {"id": "r1"}, 3, True])
def test_a_list_of_records_is_a_json_array_or_a_decode_error(wrong: object) -> None:
    """`""` or `{}` where PostHog sends an array is never read as an empty list."""
    from aposthog.models import BatchExport, BatchExportRun
    from aposthog.models.conversations import Conversation

    assert [] == structure(_EXPORT, BatchExport).latest_runs
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure({**_EXPORT, "latest_runs": wrong}, BatchExport)
    assert ("$.latest_runs",) == info.value.paths
    conversation = {"id": "c1", "status": "idle", "title": "t", "messages": wrong}
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(conversation, Conversation)
    assert ("$.messages",) == info.value.paths
    with pytest.raises(aposthog.ResponseDecodeError, match="expected a JSON array") as info:
        structure(wrong, list[BatchExportRun], path="$.runs")
    assert ("$.runs",) == info.value.paths


@given(st.lists(records(CustomerProfileConfig), max_size=4), st.integers(0, 3))
def test_structure_records_matches_structure(
    configs: list[CustomerProfileConfig], bad: int
) -> None:
    """Page results: the same records as `structure(list[...])`, the same error if one is bad."""
    wire = json.loads(json.dumps([unstructure(c) for c in configs]))
    assert configs == structure_records(wire, CustomerProfileConfig)
    if bad >= len(wire):
        return
    wire[bad]["created_at"] = "yesterday"
    errors = []
    call: Callable[[], object]
    for call in (
        lambda: structure_records(
            wire, CustomerProfileConfig, path="$.results", request_path="/p/"
        ),
        lambda: structure(wire, list[CustomerProfileConfig], path="$.results", request_path="/p/"),
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            call()
        errors.append((str(info.value), info.value.paths))
    assert errors[0] == errors[1]
    assert (f"$.results[{bad}].created_at",) == errors[0][1]


def test_missing_required_field_is_a_decode_error() -> None:
    """A missing required field is reported with its path, never as a KeyError."""
    body = {k: v for k, v in CONFIG.items() if k != "scope"}
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(body, CustomerProfileConfig)
    assert ("$.scope",) == info.value.paths


def test_scalar_content_is_a_decode_error() -> None:
    """content must be a JSON object or array."""
    with pytest.raises(aposthog.ResponseDecodeError):
        structure({**CONFIG, "content": 3}, CustomerProfileConfig)


def test_package_converter_is_not_the_global_one() -> None:
    """aposthog configures its own converter and leaves cattrs' global one alone."""
    import cattrs

    assert converter is not cattrs.global_converter


@given(records(CustomerProfileConfig))
def test_customer_profile_config_round_trips(config: CustomerProfileConfig) -> None:
    """unstructure → JSON → structure gives the same record back."""
    wire = json.loads(json.dumps(unstructure(config)))
    assert config == structure(wire, CustomerProfileConfig)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", None), ("id", 5), ("scope", None), ("created_at", 1714564800)],
)
def test_scalars_are_not_coerced(field: str, value: Any) -> None:
    """A null or a number where PostHog sends a string is an error, never the text "None"."""
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure({**CONFIG, field: value}, CustomerProfileConfig)
    assert (f"$.{field}",) == info.value.paths


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, float),
        ("3.5", float),
        (None, dict[str, Any]),
        (None, list[Any]),
        (None, list[str]),
        ("abc", list[str]),
        ("abc", list[str] | None),
        ([1], list[str] | None),
        ("x", int),
    ],
)
def test_values_that_do_not_fit_name_their_path(value: Any, kind: Any) -> None:
    """No coercion (a string is not a list of its characters, a null no object), and the
    error names the path it was given."""
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(value, kind, path="$.v")
    assert ("$.v",) == info.value.paths
    assert "@ $.v" in str(info.value)


def test_numbers_become_floats() -> None:
    """An int where a float is declared is a float, as the type says."""
    assert type(structure(2, float)) is float
    assert type(structure(2.5, float)) is float


def test_structure_hook_factories_reach_the_detailed_twin() -> None:
    """A factory's hook decides for both converters: its own error is the one reported."""

    class Celsius:
        def __init__(self, degrees: float) -> None:
            self.degrees = degrees

    def hook(value: Any, _: Any) -> Celsius:
        if type(value) is not float:
            raise TypeError("degrees must be a float")
        return Celsius(value)

    register_structure_hook_factory(lambda tp: tp is Celsius, lambda _: hook)
    assert 1.5 == structure(1.5, Celsius).degrees
    with pytest.raises(aposthog.ResponseDecodeError, match="degrees must be a float") as info:
        structure(2, Celsius, path="$.t")
    assert ("$.t",) == info.value.paths


def test_strict_int_and_bool_hooks() -> None:
    """bool("false") is True and int(3.7) is 3: the converter refuses both."""
    for value, kind in [("false", bool), (1, bool), (3.7, int), (True, int), ("3", int)]:
        with pytest.raises(aposthog.ResponseDecodeError):
            structure(value, kind)
    assert 2.0 == structure(2, float)
    assert structure(False, bool) is False


def test_structured_records_are_frozen_and_equal_to_constructed_ones() -> None:
    """The generated hook builds the same frozen record as the class's own __init__."""
    import attrs

    config: CustomerProfileConfig = structure(CONFIG, CustomerProfileConfig)
    built = CustomerProfileConfig(
        id="7b0c",
        scope=ProfileScope.PERSON,
        content={"a": 1},
        sidebar=[],
        created_at=parse_datetime("2024-05-01T12:00:00.123456Z"),
        updated_at=None,
    )
    assert built == config
    assert {} == dict(config.extra_fields)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.scope = "group_0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.extra_fields["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("extra", [{}, {"pinned_properties": ["email"]}])
def test_records_pickle_and_deep_copy_whole(extra: dict[str, Any]) -> None:
    """
    A record is plain data: a worker pool or task queue sends it between processes (as
    it sends aposthog's errors, which pickle whole), a cache pickles it, a test
    deep-copies it. Every record failed all three with "cannot pickle 'mappingproxy'
    object", one PostHog sent without a new field too: even the shared empty
    `extra_fields` is a `MappingProxyType`.
    """
    import copy
    import pickle

    config: CustomerProfileConfig = structure({**CONFIG, **extra}, CustomerProfileConfig)
    for twin in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert twin == config
        assert dict(twin.extra_fields) == extra


def test_extra_fields_still_copy_merge_and_reverse_as_a_mapping_proxy_did() -> None:
    """
    `extra_fields` became a read-only mapping of aposthog's own so that records pickle;
    the CHANGELOG says it "still reads, compares and iterates as before". Code written
    against the `types.MappingProxyType` it was (`record.extra_fields.copy()` to edit the
    unknown fields, `extra_fields | defaults`, `reversed(...)`) now fails with
    `AttributeError`/`TypeError`.
    """
    config: CustomerProfileConfig = structure(
        {**CONFIG, "pinned_properties": ["email"], "color": "red"}, CustomerProfileConfig
    )
    fields: Any = config.extra_fields
    assert {"pinned_properties": ["email"], "color": "red"} == fields.copy()
    assert {"pinned_properties": ["email"], "color": "blue"} == fields | {"color": "blue"}
    assert {"pinned_properties": ["email"], "color": "red"} == {"color": "x"} | fields
    assert ["color", "pinned_properties"] == list(reversed(fields))


@pytest.mark.parametrize("shape", ["dict in itself", "list in itself", "two in each other"])
def test_unstructuring_a_value_that_contains_itself_is_a_value_error(shape: str) -> None:
    """
    A record built by hand whose JSON field contains itself: `unstructure()` copied level
    after level for ever, filling the memory (`json.dumps` says "Circular reference
    detected"). It is a `ValueError` at once now; the record is left as it was.
    """
    config: dict[str, Any] = {"bucket_name": "b"}
    if shape == "dict in itself":
        config["self"] = config
    elif shape == "list in itself":
        items: list[Any] = [1]
        items.append(items)
        config["items"] = items
    else:
        inner: dict[str, Any] = {}
        config["inner"] = inner
        inner["outer"] = config
    destination = BatchExportDestination(type="AwsS3", config=config)
    with pytest.raises(ValueError, match="contains itself"):
        unstructure(destination)


def test_a_value_whose_parts_are_shared_or_deep_is_copied() -> None:
    """Shared parts are no cycle (each is copied where it is), and PostHog's depth copies."""
    shared = {"k": [1, 2]}
    value = {"a": shared, "b": [shared, shared]}
    copied = unstructure(BatchExportDestination(type="AwsS3", config=value)).get("config")
    assert value == copied
    assert copied["a"] is not copied["b"][0]
    deep: Any = "leaf"
    for _ in range(900):
        deep = {"d": deep}
    assert deep == unstructure(BatchExportDestination(type="AwsS3", config=deep))["config"]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_a_json_value_is_copied_whole_in_order_and_shares_nothing(value: Any) -> None:
    from aposthog._converter import _copy_json

    copied = _copy_json(value)
    assert copied == value
    assert json.dumps(copied) == json.dumps(value)  # key order kept
    stack = [(value, copied)]
    while stack:
        original, twin = stack.pop()
        if isinstance(original, (dict, list)):
            assert original is not twin
            pairs = (
                zip(original.values(), twin.values(), strict=True)
                if isinstance(original, dict)
                else zip(original, twin, strict=True)
            )
            stack.extend(pairs)


@given(
    when=st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    offset=st.timedeltas(
        min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)
@example(when=dt.datetime(2024, 1, 1), offset=dt.timedelta(seconds=30))
def test_a_record_with_any_aware_timestamp_round_trips(
    when: dt.datetime, offset: dt.timedelta
) -> None:
    """
    Records round-trip for every aware timestamp, not only UTC ones (the strategies above
    draw UTC only). `_unstructure_datetime` writes `isoformat().replace("+00:00", "Z")`,
    which also rewrites the start of an offset under a minute: `+00:00:30` becomes
    `Z:30`, which `structure()` then refuses as "expected datetime".
    """
    created = when.replace(tzinfo=dt.timezone(offset))
    read: CustomerProfileConfig = structure(CONFIG, CustomerProfileConfig)
    config = attrs.evolve(read, created_at=created)
    wire = json.loads(json.dumps(unstructure(config)))
    assert config == structure(wire, CustomerProfileConfig)


def test_records_of_hashable_values_hash() -> None:
    """
    Records are frozen attrs classes, so attrs gives each a `__hash__` (and
    `isinstance(record, collections.abc.Hashable)` is true); but the hash includes
    `extra_fields`, a `ReadOnlyFields` mapping, which has no hash. So no record ever
    hashes, even one of plain strings and timestamps with no unknown field: a set of log
    entries or runs (dropping the lines two `logs()` calls both returned), a dict keyed by
    them, or `functools.cache` fail with "unhashable type: 'ReadOnlyFields'".
    """
    from collections.abc import Hashable

    from aposthog.models import BatchExportLogEntry, BatchExportRun

    line = {
        "log_source_id": "e1",
        "instance_id": "r1",
        "timestamp": "2024-05-01T10:00:00.123456Z",
        "level": "INFO",
        "message": "Batch export finished",
    }
    entry: BatchExportLogEntry = structure(line, BatchExportLogEntry)
    again: BatchExportLogEntry = structure(dict(line), BatchExportLogEntry)
    assert entry == again
    assert isinstance(entry, Hashable)
    assert hash(entry) == hash(again)
    assert {entry, again} == {entry}
    run: BatchExportRun = structure(
        {"id": "r1", "status": "Completed", "created_at": "2024-05-01T00:05:00Z"}, BatchExportRun
    )
    assert {run: 1}[run] == 1


@pytest.mark.anyio
async def test_a_page_of_bad_records_costs_memory_bounded_by_its_size() -> None:
    """
    A hostile page whose results are all `{}` is a `ResponseDecodeError` at a cost of the
    order of the body's size (a valid page of the same size costs ~20x its bytes), not
    one explained error per bad item: at 3 bytes an item, `max_response_size`'s 32 MiB
    would be 11 million cattrs errors.
    """
    body = json.dumps(
        {"count": 4000, "next": None, "previous": None, "results": [{}] * 4000}
    ).encode()
    error = await _refused_within_its_size(body, lambda ph: ph.customer_profile_configs.list())
    assert "$.results[0].id" in str(error)
    # Three required fields missing in each of the first 10 records; the rest counted.
    assert len(error.paths) == 3 * 10, f"{len(error.paths)} paths explained"
    assert "(and 3990 more items that do not fit)" in str(error)


@pytest.mark.anyio
async def test_a_short_page_of_a_record_with_many_bad_runs_costs_memory_bounded_by_its_size() -> (
    None
):
    """
    The bound on explained items holds for a record's list inside a page of at most 10
    records too: one batch export whose `latest_runs` holds 2,000 `{}` (a 6 KB body)
    is explained for its first 10 bad runs, as the same export fetched alone (or in a
    page of 11) is; it got 4,000 detailed errors, ~9 MB (a 32 MiB body: tens of GB).
    """
    export = {
        "id": "018f0000-0000-7000-8000-000000000000",
        "name": "x",
        "model": "events",
        "destination": {"type": "S3", "config": {}},
        "interval": "hour",
        "paused": False,
        "created_at": "2024-01-01T00:00:00Z",
        "latest_runs": [{}] * 2000,
    }
    body = json.dumps({"next": None, "previous": None, "results": [export]}).encode()
    error = await _refused_within_its_size(body, lambda ph: ph.batch_exports.list())
    assert "$.results[0].latest_runs[0].id" in str(error)
    assert len(error.paths) <= 2 * 10, f"{len(error.paths)} paths explained"
    assert "more items that do not fit" in str(error)


async def _refused_within_its_size(
    body: bytes, listing: Callable[[aposthog.Client], Any]
) -> aposthog.ResponseDecodeError:
    """
    The `ResponseDecodeError` of reading `listing(ph)` whole from a server answering
    `body`, asserting its peak memory stays of the order of the body's size (the request
    itself costs about 1 MB here: aiohttp's buffers, the client's state).
    """
    import tracemalloc

    from aiohttp import web

    from .web_server import serve

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(aposthog.ResponseDecodeError) as info:
                _ = [record async for record in listing(ph)]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 2 * 2**20 + 50 * len(body), f"{peak:,} bytes to refuse a {len(body):,}-byte page"
    return info.value
