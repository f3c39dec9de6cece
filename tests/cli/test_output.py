"""Terminal output: tables whose widths come from the first chunk, JSON lines."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from aposthog._cli import main
from aposthog._cli._commands import Output
from aposthog._cli._output import Styler, cell, format_row, format_table, json_line, terminal_text


def test_format_row_pads_and_cuts() -> None:
    """Short cells are padded to their column; a longer one is cut with an ellipsis."""
    assert "ab    x" == format_row(["ab", "x"], [4, 1])
    assert "abc…  x" == format_row(["abcdefg", "x"], [4, 1])


def test_format_table_aligns_columns() -> None:
    """Every column starts at the same offset on every line."""
    lines = format_table([["a", 1], ["bbbb", 22]], ["name", "n"])
    assert ["NAME  N", "a     1", "bbbb  22"] == lines


@pytest.mark.anyio
async def test_records_print_in_chunks_with_the_first_chunks_widths() -> None:
    """Later chunks keep the first chunk's columns, cutting longer values."""

    async def items() -> AsyncIterator[SimpleNamespace]:
        for name in ("ab", "cd", "a-much-longer-name"):
            yield SimpleNamespace(name=name, n=1)

    buffer = io.StringIO()
    count = await Output(buffer, as_json=False).records(
        items(), [("name", "name"), ("n", "n")], page_rows=2
    )
    assert 3 == count
    assert ["NAME  N", "ab    1", "cd    1", "a-m…  1"] == buffer.getvalue().splitlines()


def test_cell_renders_values_for_humans() -> None:
    """None as "-", enums by value, times in whole seconds with Z, long JSON cut at 40."""
    from aposthog.models.customer_profile_configs import ProfileScope

    assert "-" == cell(None)
    assert "group_1" == cell(ProfileScope("group_1"))
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    assert "2024-05-06T07:08:09Z" == cell(moment)
    assert '{"pinned":["é"]}' == cell({"pinned": ["é"]})
    long = cell({"properties": ["email", "plan", "mrr", "company", "seats"]})
    assert 40 == len(long)
    assert long.startswith('{"properties":["email","plan"')
    assert long.endswith("…")


def test_a_header_wider_than_its_cells_sets_the_width() -> None:
    """Headers are never cut: a column is as wide as its header at least."""
    assert ["NAME  SCOPE", "a     b"] == format_table([["a", "b"]], ["name", "scope"])


def test_json_line_is_compact_and_keeps_non_ascii() -> None:
    """One compact line, characters as they are (not \\u escapes)."""
    assert '{"a":"é 🚀","b":[1,2]}' == json_line({"a": "é 🚀", "b": [1, 2]})


def test_json_line_prints_a_record_whose_json_field_the_client_parsed() -> None:
    """
    The client parses a body with JSON nested 400 levels deep (the standard library's
    parser goes to nearly 1,000, orjson's to 1,024) into a record; `--json` must print
    it, not end in a `RecursionError` traceback: cattrs walks the already JSON-ready
    `content` three Python frames per level and gives up near 335.
    """
    from aposthog._converter import structure
    from aposthog._json import loads
    from aposthog.models.customer_profile_configs import CustomerProfileConfig

    depth = 400
    body = (
        '{"id":"00000000-0000-0000-0000-000000000001","scope":"person","content":'
        + "[" * depth
        + "]" * depth
        + ',"sidebar":{},"created_at":"2026-01-01T00:00:00Z",'
        '"updated_at":"2026-01-01T00:00:00Z"}'
    )
    record: CustomerProfileConfig = structure(loads(body), CustomerProfileConfig)
    assert "[" * depth + "]" * depth in json_line(record)


def _records_holding(value: str) -> list[Any]:
    """One record of each kind `--json` prints, holding the JSON `value` in its fields."""
    from aposthog._converter import structure
    from aposthog._json import loads
    from aposthog.models.batch_exports import BatchExport
    from aposthog.models.customer_profile_configs import CustomerProfileConfig
    from aposthog.models.events import MessageEvent, UpdateEvent
    from aposthog.models.messages import message_from_dict

    messages = [
        message_from_dict(loads(text.replace("VALUE", value)))
        for text in (
            '{"type":"ai","id":"m","content":"x","meta":{"a":VALUE},"later":VALUE,'
            '"tool_calls":[{"id":"t","name":"n","args":{"q":VALUE},"later":1}]}',
            '{"type":"human","content":"hi","ui_context":VALUE}',
            '{"type":"a-newer-type","data":VALUE}',
        )
    ]
    export = (
        '{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","name":"n","interval":"hour",'
        '"created_at":"2026-01-01T00:00:00Z","later":VALUE,'
        '"destination":{"type":"S3","config":{"a":VALUE}},"latest_runs":[]}'
    )
    config = (
        '{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","scope":"person","content":VALUE,'
        '"sidebar":{"a":VALUE},"created_at":"2026-01-01T00:00:00Z","later":VALUE}'
    )
    return [
        *messages,
        *(MessageEvent(message) for message in messages),
        UpdateEvent("a", "b", {"c": loads(value)}),
        structure(loads(export.replace("VALUE", value)), BatchExport),
        structure(loads(config.replace("VALUE", value)), CustomerProfileConfig),
    ]


def test_json_line_writes_json_values_as_parsed_in_every_kind_of_record() -> None:
    """
    `--json` writes each JSON value as the parser made it, in any record: a message's
    `meta`, a tool call's `args`, an unknown field, an unknown message, a destination's
    `config`. What it writes is still the library's own unstructured record, key for key.
    """
    from aposthog._converter import unstructure

    for record in _records_holding('[1,{"b":null}]'):
        assert json.dumps(unstructure(record), separators=(",", ":")) == json_line(record)
    deep = "[" * 500 + "]" * 500
    for record in _records_holding(deep):
        assert deep in json_line(record), type(record)


def test_a_value_too_deep_to_write_is_the_clis_error_not_a_traceback() -> None:
    """
    Nested deeper than `json.dumps` goes (its C recursion limit: a few thousand levels
    before Python 3.13, more from then on), a value ends in the command line's own
    error, which `main` prints in one line with exit status 1.
    """
    from aposthog._cli._output import OutputError

    deep: list[Any] = []
    for _ in range(1_000_000):
        deep = [deep]
    with pytest.raises(OutputError, match="nested too deeply"):
        json_line({"content": deep})
    with pytest.raises(OutputError, match="nested too deeply"):
        cell(deep)


def test_main_prints_an_output_error_in_one_line_with_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What cannot be written is no usage error: status 1, one line, no traceback."""
    import aposthog._cli
    from aposthog._cli._output import OutputError

    async def fail(*_: Any) -> int:
        raise OutputError("a JSON value in PostHog's answer is nested too deeply to print")

    monkeypatch.setattr(aposthog._cli, "_api_command", fail)
    with pytest.raises(SystemExit) as exited:
        main(["profile-configs", "list", "--json"], out=io.StringIO())
    assert 1 == exited.value.code
    assert [
        "aposthog: error: a JSON value in PostHog's answer is nested too deeply to print"
    ] == capsys.readouterr().err.splitlines()


@pytest.mark.anyio
async def test_an_empty_listing_says_none_in_a_table_and_nothing_in_json() -> None:
    """No records: "(none)" for a human, no line at all for a JSON reader."""

    async def nothing() -> AsyncIterator[SimpleNamespace]:
        return
        yield

    for as_json, shown in ((False, "(none)\n"), (True, "")):
        buffer = io.StringIO()
        count = await Output(buffer, as_json=as_json).records(nothing(), [("id", "id")])
        assert (0, shown) == (count, buffer.getvalue())


def test_no_ansi_codes_unless_writing_to_a_terminal() -> None:
    """Styler leaves text plain when its stream is not a terminal (a file, a pipe)."""
    plain = Styler(io.StringIO())
    assert ["x"] * 4 == [plain.bold("x"), plain.dim("x"), plain.green("x"), plain.red("x")]


def test_a_cell_never_carries_control_characters_to_the_terminal() -> None:
    """
    Log messages and a run's `latest_error` come from the destination (multi-line
    tracebacks, a remote server's error text): printed raw, a newline starts what reads
    as a new row of the table, and ESC sequences (clear screen, set the window title)
    act on the user's terminal. One cell stays one line, its control characters shown
    escaped (C0, DEL, C1 and the Unicode line separators), the rest of the text as it is.
    """
    traceback = "Traceback:\n  File x\nValueError: boom"
    assert "Traceback:\\n  File x\\nValueError: boom" == cell(traceback)
    assert "evil \\x1b]0;pwned\\x07\\x1b[2J é" == cell("evil \x1b]0;pwned\x07\x1b[2J é")
    assert "a\\rb\\tc\\x7fd\\x9be\\u2028f" == cell("a\rb\tc\x7fd\x9be\u2028f")
    # JSON escapes C0 itself; DEL and C1 are escaped here.
    assert '{"m":"\\n\\x9b"}' == cell({"m": "\n\x9b"})
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]:
        assert chr(code) not in cell(f"x{chr(code)}y"), hex(code)
    # An open enum's value PostHog sent, unknown here, is server text too.
    assert "Fail\\x1b[2J" == cell("Fail\x1b[2J")


def test_flowing_text_keeps_its_lines_and_tabs_and_escapes_the_rest() -> None:
    """An AI answer printed as it streams: its lines and tabs are the answer's own."""
    assert "one\ntwo\tthree \\x1b[2J\\r" == terminal_text("one\ntwo\tthree \x1b[2J\r")
    assert "plain text, ünïcode" == terminal_text("plain text, ünïcode")


def test_a_lone_surrogate_is_shown_escaped_and_json_lines_stay_json() -> None:
    """`"\\ud800"` is valid JSON but no UTF-8: every way out shows it as its escape."""
    text = "a\ud800b\udfffc"
    assert "a\\ud800b\\udfffc" == cell(text) == terminal_text(text)
    assert "x\\ud800" in cell({"k": "x\ud800"})
    line = json_line({"k\udc00": text, "n": ["é"]})
    line.encode()  # writable as UTF-8
    assert {"k\udc00": text, "n": ["é"]} == json.loads(line)


def test_a_time_shows_its_offset_and_z_only_for_utc() -> None:
    """UTC reads `Z`; an offset of less than a minute is shown as it is, not as `Z:30`."""
    assert cell(datetime(2024, 1, 1, tzinfo=timezone.utc)) == "2024-01-01T00:00:00Z"
    odd = timezone(timedelta(seconds=30))
    assert cell(datetime(2024, 1, 1, tzinfo=odd)) == "2024-01-01T00:00:00+00:00:30"


@pytest.mark.anyio
async def test_a_table_whose_write_fails_prints_no_row_twice() -> None:
    """
    A row the output cannot take (here "Zoë" on an `ascii` output given to `main()`,
    reported as "cannot write the output"), met as a full chunk is printed: the rows
    before it are printed once. The flush in `finally` (a table printing its rows
    before an error) starts the same chunk again, so every row of it written before
    the failure comes out a second time.
    """

    async def items() -> AsyncIterator[SimpleNamespace]:
        for name in ("ann", "bob", "Zoë"):
            yield SimpleNamespace(name=name, n=1)

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    with pytest.raises(UnicodeEncodeError):
        await Output(out, as_json=False).records(
            items(), [("name", "name"), ("n", "n")], page_rows=3
        )
    lines = raw.getvalue().decode("ascii").splitlines()
    assert ["NAME  N", "ann   1", "bob   1"] == lines
