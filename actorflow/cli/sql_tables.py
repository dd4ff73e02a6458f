"""A query's rows as the client prints them: a table with a header, then how many rows.

Values print as Flink's SQL client shows them: timestamps as ``2023-11-14 22:13:20.000`` (UTC),
NULL as ``NULL``, booleans as ``TRUE``/``FALSE``; numbers are aligned right, the rest left.

>>> from actorflow.sql.types import SqlType, Kind
>>> columns = {"card": SqlType(Kind.STRING), "start": SqlType(Kind.TIMESTAMP_LTZ), "n": SqlType(Kind.INT)}
>>> rows = [{"card": "c1", "start": 1_700_000_000_000, "n": 12},
...         {"card": None, "start": 1_700_000_010_000, "n": 3}]
>>> print("\\n".join(render(columns, rows)))
+------+-------------------------+----+
| card | start                   |  n |
+------+-------------------------+----+
| c1   | 2023-11-14 22:13:20.000 | 12 |
| NULL | 2023-11-14 22:13:30.000 |  3 |
+------+-------------------------+----+
2 rows
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from actorflow.sql.types import SqlType, format_timestamp

__all__ = ["format_value", "render"]


def format_value(value: Any, kind: SqlType) -> str:
    """One value as the table shows it."""
    if value is None:
        return "NULL"
    if kind.is_timestamp and isinstance(value, int):
        return format_timestamp(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def render(
    columns: Mapping[str, SqlType],
    rows: Sequence[Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """The lines of the table of ``rows`` (dicts by column name), the count of rows last;
    ``headers`` renames columns in the header."""
    names = list(columns)
    titles = [(headers or {}).get(name, name) for name in names]
    cells = [[format_value(row.get(name), columns[name]) for name in names] for row in rows]
    widths = [max([len(title), *(len(line[i]) for line in cells)]) for i, title in enumerate(titles)]
    right = [columns[name].is_numeric for name in names]

    def line(values: Sequence[str]) -> str:
        padded = (
            value.rjust(width) if align else value.ljust(width)
            for value, width, align in zip(values, widths, right, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    count = f"{len(rows)} row" + ("" if len(rows) == 1 else "s")
    if not names:
        return [count]
    return [rule, line(titles), rule, *(line(values) for values in cells), rule, count]
