"""A window aggregation whose select list only names columns (Q2's) builds its result row directly
(``WindowRow`` with ``renames``); any other goes through the compiled calc. Both must give the same
rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from actorflow.sql.aggregates import WindowRow
from actorflow.sql.expressions import compile_calc
from actorflow.sql.types import BIGINT, STRING, SqlType


def _columns(keys: list[str], aggregates: int) -> dict[str, SqlType]:
    columns: dict[str, SqlType] = dict.fromkeys(keys, STRING)
    columns.update(dict.fromkeys(["window_start", "window_end", "window_time"], BIGINT))
    columns.update({f"$a{index}": BIGINT for index in range(aggregates)})
    return columns


@st.composite
def _shapes(draw: st.DrawFn) -> tuple[list[str], int, list[tuple[str, str]]]:
    keys = draw(st.sampled_from([["card_id"], ["card_id", "merchant"], []]))
    aggregates = draw(st.integers(1, 3))
    available = list(_columns(keys, aggregates))
    chosen = draw(st.lists(st.sampled_from(available), min_size=1, max_size=len(available), unique=True))
    return keys, aggregates, [(f"out_{column.strip('$')}", column) for column in chosen]


@given(
    shape=_shapes(),
    key=st.tuples(st.text(max_size=3), st.text(max_size=3)),
    start=st.integers(0, 10**13),
    values=st.lists(st.one_of(st.none(), st.integers()), min_size=3, max_size=3),
)
def test_renamed_columns_give_the_calc_s_row(
    shape: tuple[list[str], int, list[tuple[str, str]]], key: tuple[str, str], start: int, values: list[Any]
) -> None:
    keys, aggregates, renames = shape
    items: list[tuple[str, exp.Expression]] = [(name, exp.column(column)) for name, column in renames]
    calc, _ = compile_calc(items, None, _columns(keys, aggregates))
    direct = WindowRow(keys, aggregates, calc, renames)
    general = WindowRow(keys, aggregates, calc)
    window_key: Any = key[0] if len(keys) == 1 else (key if keys else None)
    context = SimpleNamespace(window=SimpleNamespace(start=start, end=start + 10_000))
    rows: dict[str, list[Any]] = {"direct": [], "general": []}
    for name, row in (("direct", direct), ("general", general)):
        row.process(window_key, context, [values[:aggregates]], SimpleNamespace(collect=rows[name].append))
    assert rows["direct"] == rows["general"]
    assert list(rows["direct"][0]) == [name for name, _ in renames]


def test_having_or_an_expression_keeps_the_calc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Q2's SQL plans a direct row; a HAVING or a computed column goes through the calc."""
    import actorflow.sql.planner as planner
    from actorflow import Flow

    made: list[WindowRow] = []

    def recorded(*args: Any) -> WindowRow:
        made.append(WindowRow(*args))
        return made[-1]

    monkeypatch.setattr(planner, "WindowRow", recorded)
    flow = Flow("w")
    flow.sql(
        "CREATE TABLE tx (card_id STRING, amount DOUBLE, ts BIGINT, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
        "WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND) "
        "WITH ('connector' = 'jsonlines', 'path' = '/dev/null')"
    )
    window = "FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND)) "
    group = "GROUP BY card_id, window_start, window_end"
    for query in (
        f"SELECT card_id, window_start, COUNT(*) AS n {window}{group}",
        f"SELECT card_id, COUNT(*) AS n {window}{group} HAVING COUNT(*) > 1",
        f"SELECT card_id, COUNT(*) + 1 AS n {window}{group}",
    ):
        flow.sql_query(query)
    assert [row.renames for row in made] == [
        [("card_id", "card_id"), ("window_start", "window_start"), ("n", "$a0")],
        None,
        None,
    ]
