"""Random OVER aggregates, deduplications, Top-N, window Top-N and ORDER BY / LIMIT queries against
DuckDB: actorflow's final rows (an updating result's after replaying its changes) equal DuckDB's.

Hypothesis draws the queries and runs each in two real flows (parallelism 1 and 3, batch sizes
down to one row) over a small bounded table with NULLs: ``id`` (unique), a key ``g``, ints ``a``,
doubles ``x`` (eighths: sums exact in any order) and event times ``ts``, out of order by less than
the watermark delay, so no row is late and the streaming answer is the batch one.

Where ties would make the answer depend on arrival order the grammar avoids them: timestamps are
distinct unless the query is a ``RANGE`` frame (whose peers go together), a Top-N orders by a
value and then ``id``, a window Top-N of groups by the total and then the key.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from tests.test_sql_properties import SETTINGS, same_rows  # noqa: E402
from tests.test_sql_ranking import replay  # noqa: E402


@dataclass(frozen=True)
class Data:
    seed: int
    count: int
    delay_s: int  # the watermark delay (and the most a row is out of order)
    ties: bool  # rows may share a timestamp


def make_rows(data: Data) -> list[dict[str, Any]]:
    rng = random.Random(data.seed * 7 + data.count)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    stamps, clock = [], 1_700_000_000_000 + rng.randint(0, 10**4) * 100
    for _ in range(data.count):
        # On a grid of 100 ms, so that RANGE frames often end exactly at a row (both ends count).
        clock += rng.choice([0, 100, 300, 1000, 2500] if data.ties else [100, 200, 300, 1000, 2500])
        stamps.append(clock)
    rows = [
        {
            "id": index,
            "g": maybe(rng.choice(["red", "green", "blue"])),
            "a": maybe(rng.randint(-5, 5)),
            "x": maybe(rng.randint(-400, 400) / 8),
            "ts": ts,
        }
        for index, ts in enumerate(stamps)
    ]
    # Out of order by less than the delay: sorted by time plus a jitter under it.
    jitter = {row["id"]: rng.randrange(data.delay_s * 1000) if data.delay_s else 0 for row in rows}
    return sorted(rows, key=lambda row: (row["ts"] + jitter[row["id"]], row["id"]))


@dataclass
class Table:
    path: Path
    duck: Any

    def ddl(self, data: Data) -> str:
        watermark = f"rowtime - INTERVAL '{data.delay_s}' SECOND" if data.delay_s else "rowtime"
        return (
            "CREATE TABLE t (id BIGINT, g STRING, a INT, x DOUBLE, ts BIGINT, "
            f"rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS {watermark}) "
            f"WITH ('connector' = 'jsonlines', 'path' = '{self.path}');"
        )


class Tables:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: dict[Data, Table] = {}

    def __getitem__(self, data: Data) -> Table:
        table = self.made.get(data)
        if table is None:
            rows = make_rows(data)
            path = self.directory / f"t{len(self.made)}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
            duck = duckdb.connect()
            duck.execute("CREATE TABLE t (id BIGINT, g VARCHAR, a BIGINT, x DOUBLE, ts BIGINT)")
            duck.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [tuple(row.values()) for row in rows])
            table = self.made[data] = Table(path, duck)
        return table


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tables]:
    made = Tables(tmp_path_factory.mktemp("sql-ranking"))
    yield made
    for table in made.made.values():
        table.duck.close()


@dataclass
class Case:
    data: Data
    run: tuple[int, int]  # batch sizes at parallelism 1 and 3
    flink: str
    duck: str
    changelog: bool = False
    ordered: bool = False  # the rows come in DuckDB's order
    #: LIMIT alone: at parallelism 1 the first rows of the file; at 3 (the rows cross a
    #: rebalance before the limit, as in Flink) as many rows, each one of this query's.
    candidates: str = ""

    def __repr__(self) -> str:
        return f"Case(data={self.data}, run={self.run},\n  flink={self.flink!r},\n  duck={self.duck!r})"


def datas(r: random.Random, ties: bool = False) -> Data:
    return Data(r.randint(0, 5), r.choice([30, 120]), r.choice([0, 2]), ties and r.random() < 0.5)


def runs(r: random.Random) -> tuple[int, int]:
    return r.choice([1, 5, 1024]), r.choice([1, 5, 1024])


def choices(draw: st.DrawFn) -> random.Random:
    """The grammar's choices: a random generator Hypothesis seeds (uniform over the few
    examples a run has room for, where ``sampled_from`` favours the first options)."""
    return draw(st.randoms(use_true_random=False))


def check(case: Case, tables: Tables) -> None:
    table = tables[case.data]
    result = table.duck.execute(case.duck)
    names = [column[0] for column in result.description]
    expected = [dict(zip(names, values, strict=True)) for values in result.fetchall()]
    for parallelism, batch_size in zip((1, 3), case.run, strict=True):
        flow = Flow("sql-ranking", parallelism=parallelism, batch_size=batch_size)
        flow.sql(table.ddl(case.data))
        found = flow.sql_query(case.flink).collect()
        flow.execute()
        got = replay(found.values) if case.changelog else found.values
        if case.candidates and parallelism > 1:
            assert len(got) == len(expected)
            allowed = table.duck.execute(case.candidates).fetchall()
            assert {tuple(row.values()) for row in got} <= set(allowed)
            continue
        same_rows(got, expected)
        if case.ordered:
            assert [row["id"] for row in got] == [row["id"] for row in expected]


# -- the grammar -------------------------------------------------------------------------------------

AGGREGATES = [
    ("COUNT(*)", "COUNT(*)"),
    ("COUNT(x)", "COUNT(x)"),
    ("SUM(x)", "SUM(x)"),
    ("SUM(a)", "SUM(a)"),
    ("MIN(a)", "MIN(a)"),
    ("MAX(x)", "MAX(x)"),
    ("AVG(x)", "AVG(x)"),
    ("AVG(a)", "TRUNC(AVG(a))"),  # an integer AVG truncates in Flink
]
FILTERS = [("", ""), ("WHERE a > 0", "WHERE a > 0"), ("WHERE x IS NOT NULL", "WHERE x IS NOT NULL")]


@st.composite
def over_aggregates(draw: st.DrawFn) -> Case:
    r = choices(draw)
    kind = r.choice(["rows", "rows-unbounded", "range", "range-unbounded", "default"])
    data = datas(r, ties=kind.startswith("range") or kind == "default")
    if kind == "rows":
        n = r.randint(0, 3)
        frame = duck_frame = f"ROWS BETWEEN {n} PRECEDING AND CURRENT ROW"
    elif kind == "rows-unbounded":
        frame = duck_frame = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    elif kind == "range":
        ms = r.choice([0, 300, 1000, 5000])
        frame = f"RANGE BETWEEN INTERVAL '{ms}' MILLISECOND PRECEDING AND CURRENT ROW"
        duck_frame = f"RANGE BETWEEN {ms} PRECEDING AND CURRENT ROW"
    elif kind == "range-unbounded":
        frame = duck_frame = "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    else:
        frame, duck_frame = "", "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    partition = r.choice(["", "PARTITION BY g ", "PARTITION BY a "])
    calls = r.sample(AGGREGATES, r.randint(1, 4))
    where, duck_where = r.choice(FILTERS)
    named = r.random() < 0.5
    if named:
        items = ", ".join(f"{flink} OVER w AS c{index}" for index, (flink, _) in enumerate(calls))
        flink = (
            f"SELECT id, g, ts, {items} FROM t {where} WINDOW w AS ({partition}ORDER BY rowtime {frame})"
        )
    else:
        items = ", ".join(
            f"{flink} OVER ({partition}ORDER BY rowtime {frame}) AS c{index}"
            for index, (flink, _) in enumerate(calls)
        )
        flink = f"SELECT id, g, ts, {items} FROM t {where}"
    window = f"({partition}ORDER BY ts {duck_frame})"
    duck_items = ", ".join(
        (f"TRUNC(AVG(a) OVER {window})" if duck == "TRUNC(AVG(a))" else f"{duck} OVER {window}")
        + f" AS c{index}"
        for index, (_, duck) in enumerate(calls)
    )
    return Case(data, runs(r), flink, f"SELECT id, g, ts, {duck_items} FROM t {duck_where}")


def _rank_condition(r: random.Random, last: int) -> str:
    first = r.choice([1, 2, 3])
    return r.choice(
        [f"rn <= {last}", f"rn < {last + 1}", f"rn BETWEEN {min(first, last)} AND {last}", f"{last} >= rn"]
    )


@st.composite
def deduplications(draw: st.DrawFn) -> Case:
    r = choices(draw)
    data = datas(r)
    direction = r.choice(["ASC", "DESC"])
    partition = r.choice(["g", "a", "g, a"])
    where, duck_where = r.choice(FILTERS)
    rank = r.choice(["rn = 1", "rn <= 1", "rn < 2"])
    select = r.choice(["id, g, x", "id, a, rn", "id, g, a, x, ts, rn"])
    flink = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER "
        f"(PARTITION BY {partition} ORDER BY rowtime {direction}) AS rn FROM t {where}) WHERE {rank}"
    )
    duck = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} "
        f"ORDER BY ts {direction}) AS rn FROM t {duck_where}) WHERE rn = 1"
    )
    return Case(data, runs(r), flink, duck, changelog=direction == "DESC")


def _order(column: str, direction: str) -> tuple[str, str]:
    nulls = "NULLS FIRST" if direction == "ASC" else "NULLS LAST"  # Flink's default
    return f"{column} {direction}", f"{column} {direction} {nulls}"


@st.composite
def top_ns(draw: st.DrawFn) -> Case:
    r = choices(draw)
    data = datas(r, ties=True)
    column = r.choice(["x", "a"])
    flink_key, duck_key = _order(column, r.choice(["ASC", "DESC"]))
    tie_flink, tie_duck = _order("id", r.choice(["ASC", "DESC"]))
    partition = r.choice(["", "PARTITION BY g ", "PARTITION BY a "])
    last = r.randint(1, 4)
    condition = _rank_condition(r, last)
    if r.random() < 0.3:  # a condition on the ranked rows, after the ranking
        condition += r.choice([" AND x > 0", " AND g IS NOT NULL AND rn > 1"])
    select = r.choice(["id, g, a, x", "id, x, rn", "rn, id"])
    where, duck_where = r.choice(FILTERS)
    flink = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {flink_key}, "
        f"{tie_flink}) AS rn FROM t {where}) WHERE {condition}"
    )
    duck = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {duck_key}, "
        f"{tie_duck}) AS rn FROM t {duck_where}) WHERE {condition}"
    )
    return Case(data, runs(r), flink, duck, changelog=True)


@st.composite
def updating_top_ns(draw: st.DrawFn) -> Case:
    """A Top-N of a GROUP BY's updating result: a retracted row lets the next one in."""
    r = choices(draw)
    data = datas(r)
    flink_key, duck_key = _order(r.choice(["n", "total"]), r.choice(["ASC", "DESC"]))
    partition, ties = r.choice([("", "g, a"), ("PARTITION BY g ", "a")])
    last = r.randint(1, 3)
    condition = _rank_condition(r, last)
    select = r.choice(["g, a, n, total", "g, a, n, rn"])
    where, duck_where = r.choice(FILTERS)
    groups = f"SELECT g, a, COUNT(*) AS n, SUM(x) AS total FROM t {where} GROUP BY g, a"
    duck_groups = f"SELECT g, a, COUNT(*) AS n, SUM(x) AS total FROM t {duck_where} GROUP BY g, a"
    tail = ", ".join(f"{name} NULLS FIRST" for name in ties.split(", "))
    flink = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {flink_key}, {ties}) "
        f"AS rn FROM ({groups})) WHERE {condition}"
    )
    duck = (
        f"SELECT {select} FROM (SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {duck_key}, {tail}) "
        f"AS rn FROM ({duck_groups})) WHERE {condition}"
    )
    if r.random() < 0.3:  # the same as a global ORDER BY ... LIMIT
        columns = "g, a, n, total"
        flink = f"SELECT {columns} FROM ({groups}) ORDER BY {flink_key}, {ties} LIMIT {last}"
        duck = f"SELECT {columns} FROM ({duck_groups}) ORDER BY {duck_key}, {tail} LIMIT {last}"
    return Case(data, runs(r), flink, duck, changelog=True)


@st.composite
def window_top_ns(draw: st.DrawFn) -> Case:
    r = choices(draw)
    data = datas(r, ties=True)
    size = r.choice([1000, 5000])
    last = r.randint(1, 3)
    condition = _rank_condition(r, last)
    tumble = f"TABLE(TUMBLE(TABLE t, DESCRIPTOR(rowtime), INTERVAL '{size}' MILLISECOND))"
    if r.random() < 0.5:  # groups of a window aggregation, by their total
        flink_key, duck_key = _order("total", r.choice(["ASC", "DESC"]))
        flink = (
            f"SELECT window_start, g, total, n, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
            f"window_start, window_end ORDER BY {flink_key}, g) AS rn FROM (SELECT window_start, "
            f"window_end, g, SUM(x) AS total, COUNT(*) AS n FROM {tumble} "
            f"GROUP BY window_start, window_end, g)) WHERE {condition}"
        )
        duck = (
            f"SELECT window_start, g, total, n, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
            f"window_start ORDER BY {duck_key}, g NULLS FIRST) AS rn FROM (SELECT ts - ts % {size} "
            f"AS window_start, g, SUM(x) AS total, COUNT(*) AS n FROM t GROUP BY ts - ts % {size}, g)) "
            f"WHERE {condition}"
        )
    else:  # rows of the windowing table function, by a value, then id
        flink_key, duck_key = _order("x", r.choice(["ASC", "DESC"]))
        flink = (
            f"SELECT id, x, window_start, window_end FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
            f"window_start, window_end ORDER BY {flink_key}, id) AS rn FROM {tumble}) WHERE {condition}"
        )
        duck = (
            f"SELECT id, x, window_start, window_end FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
            f"window_start ORDER BY {duck_key}, id) AS rn FROM (SELECT *, ts - ts % {size} AS "
            f"window_start, ts - ts % {size} + {size} AS window_end FROM t)) WHERE {condition}"
        )
    return Case(data, runs(r), flink, duck)


@st.composite
def orders(draw: st.DrawFn) -> Case:
    r = choices(draw)
    where, duck_where = r.choice(FILTERS)
    kind = r.choice(["time", "top", "limit"])
    if kind == "time":  # sorted as the watermark passes: the rows in DuckDB's order
        data = datas(r, ties=True)
        tie_flink, tie_duck = _order("id", r.choice(["ASC", "DESC"]))
        limit = r.choice(["", " LIMIT 5", " LIMIT 4 OFFSET 3"])
        flink = f"SELECT id, x, ts FROM t {where} ORDER BY rowtime, {tie_flink}{limit}"
        duck = f"SELECT id, x, ts FROM t {duck_where} ORDER BY ts, {tie_duck}{limit}"
        return Case(data, runs(r), flink, duck, ordered=True)
    data = datas(r)
    count = r.randint(1, 6)
    offset = r.choice(["", " OFFSET 2"])
    if kind == "top":
        flink_key, duck_key = _order(r.choice(["x", "a"]), r.choice(["ASC", "DESC"]))
        flink = f"SELECT id, a, x FROM t {where} ORDER BY {flink_key}, id LIMIT {count}{offset}"
        duck = f"SELECT id, a, x FROM t {duck_where} ORDER BY {duck_key}, id LIMIT {count}{offset}"
        return Case(data, runs(r), flink, duck, changelog=True)
    # LIMIT alone: the first rows to come (one source, in file order, whatever the parallelism)
    flink = f"SELECT id, g FROM t {where} LIMIT {count}{offset}"
    duck = f"SELECT id, g FROM t {duck_where}"
    return Case(data, runs(r), flink, f"{duck} LIMIT {count}{offset}", ordered=True, candidates=duck)


# -- the properties ----------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=50)
@given(case=over_aggregates())
def test_over_aggregates(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=15)
@given(case=deduplications())
def test_deduplication(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=25)
@given(case=top_ns())
def test_top_n(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=20)
@given(case=updating_top_ns())
def test_top_n_of_an_updating_result(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=20)
@given(case=window_top_ns())
def test_window_top_n(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=20)
@given(case=orders())
def test_order_by_and_limit(tables: Tables, case: Case) -> None:
    check(case, tables)
