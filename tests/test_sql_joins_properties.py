"""Random SQL joins against DuckDB: the final rows of a join (applied changes, for an updating
result) equal DuckDB's answer, row for row.

Hypothesis draws two tables (the rows of ``tests/test_sql_properties.py``: ints, doubles and
strings with NULLs, some written as ``null``, some left out of the record; timestamps in order or
out of order within the watermark's delay) and a query over them:

- a regular join (inner, LEFT, RIGHT, FULL) on one or two equalities of small-domain columns
  (many matches, NULL keys that never match), or an interval join (random bounds on the time
  attributes), with or without a residual ON condition and a WHERE, and sometimes a regular join
  of a third table after it;
- the joined columns as they are, or a GROUP BY on top (COUNT, SUM, MIN, MAX of either side);
- in streaming mode (an updating result, replayed) or, for regular joins, in batch mode (final
  rows only).

Each query runs at parallelism 1 and 3, batch sizes down to one row.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from actorflow.sql.relation import CHANGE  # noqa: E402
from tests.test_sql_properties import COLUMNS, SETTINGS, Data, make_rows, same_rows  # noqa: E402

#: Equalities of columns with few values (so that rows match), by kind.
KEYS = [("a", "a"), ("b", "b"), ("g", "g"), ("b", "a"), ("g", "s")]
RESIDUALS = ["l.x < r.y", "r.a > l.b", "l.s IS NOT NULL", "r.x > 0", "l.id + r.id > 20"]
WHERES = ["l.a > 0", "r.b IS NULL", "l.x IS NOT NULL OR r.y < 1", "l.g <> 'red'"]


@dataclass(frozen=True)
class JoinCase:
    left: Data
    right: Data
    third: Data
    flink: str
    duck: str
    batch: bool
    run: tuple[int, int]  # batch sizes at parallelism 1 and 3


def _data(seed: int) -> st.SearchStrategy[Data]:
    return st.builds(
        Data,
        seed=st.just(seed),
        count=st.sampled_from([30, 90]),
        delay_s=st.sampled_from([0, 2]),
        disorder=st.booleans(),
        on_event=st.just(False),
    )


@st.composite
def joins(draw: st.DrawFn) -> JoinCase:
    left = draw(_data(draw(st.integers(0, 3))))
    right = draw(_data(draw(st.integers(4, 7))))
    side = draw(st.sampled_from(["", "LEFT", "RIGHT", "FULL"]))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True))
    conditions = [f"l.{a} = r.{b}" for a, b in keys]
    interval = draw(st.booleans())
    flink_conditions, duck_conditions = list(conditions), list(conditions)
    if interval:
        low, high = sorted(draw(st.lists(st.integers(-6000, 6000), min_size=2, max_size=2)))
        flink_conditions.append(
            f"r.rowtime BETWEEN l.rowtime - INTERVAL '{-low}' MILLISECOND "
            f"AND l.rowtime + INTERVAL '{high}' MILLISECOND"
            if low <= 0
            else f"r.rowtime BETWEEN l.rowtime + INTERVAL '{low}' MILLISECOND "
            f"AND l.rowtime + INTERVAL '{high}' MILLISECOND"
        )
        duck_conditions.append(f"r.ts BETWEEN l.ts + {low} AND l.ts + {high}")
    if draw(st.booleans()):
        residual = draw(st.sampled_from(RESIDUALS))
        flink_conditions.append(residual)
        duck_conditions.append(residual)
    third = draw(_data(draw(st.integers(8, 9))))
    more = ""
    if draw(st.booleans()):  # a third table, joined left-deep
        kind = draw(st.sampled_from(["", "LEFT", "RIGHT", "FULL"]))
        a, b = draw(st.sampled_from(KEYS))
        more = f" {kind} JOIN c ON {draw(st.sampled_from(['l', 'r']))}.{a} = c.{b}"
        if draw(st.booleans()):
            more += " AND c.x > l.y"
    where = f" WHERE {draw(st.sampled_from(WHERES))}" if draw(st.booleans()) else ""
    aggregate = draw(st.booleans())
    if aggregate:
        group = draw(st.sampled_from(["l.g", "r.g", "l.b, r.g"]))
        select = (
            f"{group}, COUNT(*) AS n, COUNT(r.id) AS nr, SUM(l.a) AS sa, MIN(r.x) AS lo, MAX(l.y) AS hi"
            + (", COUNT(c.id) AS nc" if more else "")
        )
        tail = f" GROUP BY {group}"
    else:
        select = "l.id AS lid, r.id AS rid, l.a, r.g, l.x + r.y AS xy, r.s" + (
            ", c.id AS cid" if more else ""
        )
        tail = ""
    query = "SELECT {select} FROM l {side} JOIN r ON {on}{more}{where}{tail}"
    flink = query.format(
        select=select, side=side, on=" AND ".join(flink_conditions), more=more, where=where, tail=tail
    )
    duck = query.format(
        select=select, side=side, on=" AND ".join(duck_conditions), more=more, where=where, tail=tail
    )
    batch = not interval and draw(st.booleans())
    sizes = st.sampled_from([1, 7, 1024])
    return JoinCase(left, right, third, flink, duck, batch, (draw(sizes), draw(sizes)))


class Files:
    """One JSON-lines file per drawn :class:`Data`, made once for the module."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: dict[Data, Path] = {}

    def __getitem__(self, data: Data) -> Path:
        path = self.made.get(data)
        if path is None:
            path = self.made[data] = self.directory / f"t{len(self.made)}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in make_rows(data)))
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("sql-joins"))


def ddl(name: str, data: Data, path: Path) -> str:
    columns = ", ".join(f"{column} {flink}" for column, (flink, _, _) in COLUMNS.items())
    watermark = f"rowtime - INTERVAL '{data.delay_s}' SECOND" if data.delay_s else "rowtime"
    return (
        f"CREATE TABLE {name} ({columns}, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
        f"WATERMARK FOR rowtime AS {watermark}) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
    )


def ask_duckdb(case: JoinCase, files: Files) -> list[dict[str, Any]]:
    duck = duckdb.connect()
    types = ", ".join(f"{name}: '{kind}'" for name, (_, kind, _) in COLUMNS.items())
    for name, data in (("l", case.left), ("r", case.right), ("c", case.third)):
        duck.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_json('{files[data]}', "
            f"format = 'newline_delimited', columns = {{{types}}})"
        )
    result = duck.execute(case.duck)
    names = [column[0] for column in result.description]
    rows = [dict(zip(names, values, strict=True)) for values in result.fetchall()]
    duck.close()
    return rows


def final(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a changelog leaves (each retraction must take away a row that is there)."""
    live: collections.Counter[bytes] = collections.Counter()
    rows: dict[bytes, dict[str, Any]] = {}
    for change in changes:
        row = {k: v for k, v in change.items() if k != CHANGE}
        key = orjson.dumps(list(row.items()))
        if change.get(CHANGE, "+I") in ("+I", "+U"):
            live[key] += 1
            rows[key] = row
        else:
            assert live[key] > 0, f"retracts a row that is not there: {change}"
            live[key] -= 1
    return [rows[key] for key, count in live.items() for _ in range(count)]


def run_flow(case: JoinCase, files: Files, parallelism: int, batch_size: int) -> list[dict[str, Any]]:
    flow = Flow("sql-joins", parallelism=parallelism, batch_size=batch_size)
    mode = "SET 'execution.runtime-mode' = 'batch';" if case.batch else ""
    flow.sql(
        "".join(ddl(n, d, files[d]) for n, d in (("l", case.left), ("r", case.right), ("c", case.third)))
        + mode
    )
    found = flow.sql_query(case.flink).collect()
    flow.execute()
    if case.batch:
        assert all(CHANGE not in row for row in found.values)
    return final(found.values)


@settings(SETTINGS, max_examples=80)
@given(case=joins())
def test_random_joins_give_duckdbs_rows(files: Files, case: JoinCase) -> None:
    expected = ask_duckdb(case, files)
    for parallelism, batch_size in zip((1, 3), case.run, strict=True):
        same_rows(run_flow(case, files, parallelism, batch_size), expected)
