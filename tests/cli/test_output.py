"""Terminal output: tables whose widths come from the first chunk, JSON lines."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from aposthog._cli._commands import Output
from aposthog._cli._output import format_row, format_table


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
