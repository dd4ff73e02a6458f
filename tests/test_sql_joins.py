"""SQL joins end to end, checked against DuckDB: regular (inner, LEFT, RIGHT, FULL), interval and
window joins, joins with the rest of a query (WHERE, GROUP BY, windows over a join), several joins
in one query, and the changes an updating join emits.

Three small tables over JSON-lines files, in event-time order (nothing late), with NULL keys (which
never match): transactions ``tx``, ``alerts`` on the same cards, and ``cards`` (no time attribute,
a card twice, a card without transactions). An updating result is compared by its final state: the
changes applied in order give DuckDB's rows.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import orjson
import pytest

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from actorflow.errors import SqlError  # noqa: E402
from actorflow.sql.dialect import parse  # noqa: E402
from actorflow.sql.joins import plan_joins  # noqa: E402
from actorflow.sql.planner import CHANGE, Planner  # noqa: E402

TABLES = {
    "tx": ("tx_id BIGINT, card_id STRING, amount DOUBLE, ts BIGINT", True),
    "alerts": ("alert_id BIGINT, card_id STRING, level INT, ts BIGINT", True),
    "cards": ("card_id STRING, owner STRING, tier INT", False),
}


def _rows() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(14)
    cards = [f"c{i}" for i in range(8)]

    def card() -> str | None:
        return None if rng.random() < 0.1 else rng.choice(cards)

    start = 1_700_000_000_000
    tx = [
        {"tx_id": i, "card_id": card(), "amount": rng.randint(1, 4000) / 8, "ts": start + i * 150}
        for i in range(300)
    ]
    alerts = [
        {"alert_id": i, "card_id": card(), "level": rng.randint(1, 3), "ts": start + i * 420 + 37}
        for i in range(100)
    ]
    owners = [{"card_id": c, "owner": f"o{i % 5}", "tier": i % 3} for i, c in enumerate(cards[:6])] + [
        {"card_id": "c1", "owner": "twin", "tier": 9},  # a card twice: each row joins
        {"card_id": "c99", "owner": "nobody", "tier": 1},  # no transactions
        {"card_id": None, "owner": "null", "tier": 0},  # a NULL key joins nothing
    ]
    return {"tx": tx, "alerts": alerts, "cards": owners}


ROWS = _rows()


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CREATE TABLE statements of the three tables, over their files."""
    folder = tmp_path_factory.mktemp("joins")
    statements = []
    for name, (columns, timed) in TABLES.items():
        path = folder / f"{name}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in ROWS[name]))
        rowtime = (
            ", rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND"
            if timed
            else ""
        )
        statements.append(
            f"CREATE TABLE {name} ({columns}{rowtime}) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
        )
    return "\n".join(statements)


def oracle(query: str) -> list[dict[str, Any]]:
    """DuckDB's answer over the same rows (``rowtime`` is ``ts``)."""
    connection = duckdb.connect()
    for name, (columns, _) in TABLES.items():
        connection.execute(f"CREATE TABLE {name} ({columns.replace('STRING', 'VARCHAR')})")
        names = [part.split()[0] for part in columns.split(", ")]
        connection.executemany(
            f"INSERT INTO {name} VALUES ({', '.join('?' * len(names))})",
            [[row[n] for n in names] for row in ROWS[name]],
        )
    result = connection.execute(query)
    names = [column[0] for column in result.description]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


def run(tables: str, query: str, parallelism: int = 1, *, batch: bool = False) -> list[dict[str, Any]]:
    flow = Flow("joins", parallelism=parallelism)
    flow.sql(tables + ("SET 'execution.runtime-mode' = 'batch';" if batch else ""))
    found = flow.sql_query(query).collect()
    flow.execute()
    return found.values


def join_changes(tables: str, query: str, parallelism: int = 1) -> tuple[list[str], list[dict[str, Any]]]:
    """The joined relation of ``query``'s FROM ... JOIN part alone (qualified columns), and its
    rows: an updating join's changes, which a query cannot project yet."""
    flow = Flow("joins", parallelism=parallelism)
    flow.sql(tables)
    planner = Planner(flow, flow._sql_session.catalog)  # type: ignore[attr-defined]
    relation, residual = plan_joins(planner, parse(query)[0])
    assert not residual
    found = relation.stream.collect()
    flow.execute()
    return list(relation.columns), found.values


def _key(row: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in row.items() if k != CHANGE}, option=orjson.OPT_SORT_KEYS)


def final(changes: list[dict[str, Any]]) -> collections.Counter[bytes]:
    """The rows a changelog leaves: +I/+U add a row, -U/-D take one away (it must be there)."""
    rows: collections.Counter[bytes] = collections.Counter()
    for change in changes:
        key = _key(change)
        if change.get(CHANGE, "+I") in ("+I", "+U"):
            rows[key] += 1
        else:
            assert rows[key] > 0, f"retracts a row that is not there: {change}"
            rows[key] -= 1
    return +rows


def same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert final(got) == collections.Counter(map(_key, expected))


def qualified(columns: list[str]) -> str:
    """DuckDB's select list naming each column as the joined relation does (``a.x``)."""
    return ", ".join(f'{name.replace(".rowtime", ".ts")} AS "{name}"' for name in columns)


# -- 1. joins compose with the rest of a query --------------------------------------------------------


def test_an_interval_join_under_where_and_group_by(tables: str) -> None:
    """The join is planned alone; WHERE, GROUP BY (an updating result) and the select list plan
    over it as over a table. Replaying the aggregation's changes gives DuckDB's groups."""
    query = """SELECT t.card_id, COUNT(*) AS n, MAX(a.level) AS worst, SUM(t.amount) AS total
               FROM tx t JOIN alerts a ON t.card_id = a.card_id
                 AND a.rowtime BETWEEN t.rowtime - INTERVAL '2' SECOND AND t.rowtime
               WHERE t.amount > 50 GROUP BY t.card_id"""
    got = run(tables, query, 3)
    expected = oracle(
        query.replace("a.rowtime", "a.ts")
        .replace("t.rowtime - INTERVAL '2' SECOND", "t.ts - 2000")
        .replace("AND t.rowtime", "AND t.ts")
    )
    assert len(expected) > 3
    latest = {}
    for row in got:
        if row[CHANGE] in ("+I", "+U"):
            latest[row["card_id"]] = {k: v for k, v in row.items() if k != CHANGE}
        elif row[CHANGE] == "-D":
            del latest[row["card_id"]]
    same(list(latest.values()), expected)


def test_output_names_are_flinks(tables: str) -> None:
    """``a.x`` is named ``x``; a name given twice without an alias becomes ``x0``; ``t.*``."""
    flow = Flow("names")
    flow.sql(tables)
    planner = Planner(flow, flow._sql_session.catalog)  # type: ignore[attr-defined]
    on = "FROM tx t JOIN cards c ON t.card_id = c.card_id"
    columns = planner.query(parse(f"SELECT t.tx_id, c.owner, t.card_id, c.card_id {on}")[0]).columns
    assert list(columns) == ["tx_id", "owner", "card_id", "card_id0"]
    columns = planner.query(parse(f"SELECT * {on}")[0]).columns
    assert list(columns) == [
        "tx_id", "card_id", "amount", "ts", "rowtime", "card_id0", "owner", "tier"
    ]  # fmt: skip
    columns = planner.query(parse(f"SELECT c.*, amount AS card_id0, t.card_id {on}")[0]).columns
    assert list(columns) == ["card_id", "owner", "tier", "card_id0", "card_id1"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "SELECT card_id FROM tx t JOIN cards c ON t.card_id = c.card_id",
            r"line 1, column 8: column 'card_id' is ambiguous: qualify it \(t, c\)",
        ),
        (
            "SELECT t.tx_id FROM tx t JOIN cards c ON t.amount > c.tier",
            r"line 1, column 42: a regular join needs at least one equality of the two sides' columns",
        ),
        ("SELECT t.tx_id FROM tx t JOIN cards c USING (card_id)", r"USING is not supported yet"),
        ("SELECT t.tx_id FROM tx t CROSS JOIN cards c", r"CROSS JOIN is not supported yet"),
        (
            "SELECT t.tx_id FROM tx t JOIN cards FOR SYSTEM_TIME AS OF t.rowtime AS c "
            "ON t.card_id = c.card_id",
            r"a temporal join \(FOR SYSTEM_TIME AS OF\) is not supported yet",
        ),
        (
            "SELECT t.tx_id FROM tx t JOIN tx t ON t.tx_id = t.tx_id",
            r"two sides of the JOIN are called 't'",
        ),
        ("SELECT x.* FROM tx t JOIN cards c ON t.card_id = c.card_id", r"x\.\*: no table 'x'"),
    ],
)
def test_a_mistake_in_a_join_is_one_line(tables: str, query: str, message: str) -> None:
    flow = Flow("mistakes")
    flow.sql(tables)
    with pytest.raises(SqlError, match=message) as raised:
        flow.sql_query(query)
    assert "\n" not in str(raised.value)


# -- 2, 3. regular joins, several joins in a query ------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 3])
def test_an_inner_regular_join_of_append_only_tables_is_append_only(tables: str, parallelism: int) -> None:
    query = """SELECT t.tx_id, c.owner, t.amount * c.tier AS weighted
               FROM tx t JOIN cards c ON t.card_id = c.card_id AND c.tier > 0
               WHERE t.amount > 100"""
    got = run(tables, query, parallelism)
    assert all(CHANGE not in row for row in got)
    expected = oracle(query)
    assert len(expected) > 50
    same(got, expected)


@pytest.mark.parametrize("side", ["LEFT", "RIGHT", "FULL"])
@pytest.mark.parametrize("parallelism", [1, 3])
def test_an_outer_regular_join_is_an_updating_result_ending_in_duckdbs_rows(
    tables: str, side: str, parallelism: int
) -> None:
    """An unmatched row comes padded with NULLs, and is retracted when a partner comes; the
    residual ON condition decides which pairs match (it does not filter the outer side)."""
    query = f"""SELECT t.tx_id, t.card_id, c.card_id AS card, c.owner
                FROM tx t {side} JOIN cards c ON t.card_id = c.card_id AND c.tier < 2"""
    got = run(tables, query, parallelism)
    expected = oracle(query)
    same(got, expected)
    padded = [row for row in expected if row["tx_id"] is None or row["card"] is None]
    assert padded and len(padded) < len(expected)


def test_a_join_of_an_updating_result_retracts_what_it_joined(tables: str) -> None:
    """The right side is a GROUP BY (its rows change): each change is a retraction and an
    addition on the join's state, and the final rows are DuckDB's."""
    query = """SELECT c.owner, g.card_id, g.n, g.total
               FROM cards c LEFT JOIN (SELECT card_id, COUNT(*) AS n, SUM(amount) AS total FROM tx
                                       GROUP BY card_id) g ON c.card_id = g.card_id AND g.n > 30"""
    for parallelism in (1, 3):
        got = run(tables, query, parallelism)
        assert {row[CHANGE] for row in got} == {"+I", "-D"}
        same(got, oracle(query))


def test_three_tables_join_left_deep_with_a_group_by_on_top(tables: str) -> None:
    query = """SELECT c.owner, COUNT(*) AS n, SUM(t.amount) AS total, MAX(a.level) AS worst
               FROM tx t JOIN cards c ON t.card_id = c.card_id
               LEFT JOIN alerts a ON a.card_id = c.card_id AND a.level = 3
               GROUP BY c.owner"""
    for parallelism in (1, 3):
        got = run(tables, query, parallelism)
        latest: dict[str, dict[str, Any]] = {}
        for row in got:
            if row[CHANGE] in ("+I", "+U"):
                latest[row["owner"]] = {k: v for k, v in row.items() if k != CHANGE}
            else:
                assert latest.pop(row["owner"])
        same(list(latest.values()), oracle(query))


@pytest.mark.parametrize("side", ["", "LEFT", "FULL"])
def test_in_batch_mode_a_regular_join_gives_only_the_final_rows(tables: str, side: str) -> None:
    query = f"""SELECT t.tx_id, c.owner, c.tier FROM tx t {side} JOIN cards c
                ON t.card_id = c.card_id AND t.amount > c.tier * 100"""
    got = run(tables, query, 3, batch=True)
    assert all(CHANGE not in row for row in got)
    same(got, oracle(query))


def test_the_changes_of_an_outer_join_as_flink_emits_them() -> None:
    """A hand-checked sequence on the operator itself: a padded row, retracted when its first
    partner comes and back when its last partner is retracted; a NULL key joins nothing."""
    from operator import itemgetter

    from actorflow.operators.base import OperatorContext
    from actorflow.operators.co_process import KeyedCoProcessOperator
    from actorflow.runtime.messages import Batch
    from actorflow.sql.join_operators import RegularJoin, RowShape

    shape = RowShape("a.", ["k", "v"], "b.", ["k", "w"])
    function = RegularJoin(shape, (True, False), None, 1, changelog=True, batch=False)
    op = KeyedCoProcessOperator("join", function, itemgetter("k"), itemgetter("k"))
    op.open(OperatorContext("join"))

    def send(side: int, *rows: dict[str, Any]) -> list[str]:
        out = op.process_input(Batch(list(rows)), side).values
        return [f"{row[CHANGE]}[{row['a.v']}, {row['b.w']}]" for row in out]

    assert send(0, {"k": 1, "v": "x"}) == ["+I[x, None]"]
    assert send(1, {"k": 1, "w": "p"}) == ["-D[x, None]", "+I[x, p]"]
    assert send(1, {"k": 1, "w": "q"}) == ["+I[x, q]"]
    assert send(1, {"k": 1, "w": "p", CHANGE: "-D"}) == ["-D[x, p]"]
    assert send(1, {"k": 1, "w": "q", CHANGE: "-U"}) == ["-D[x, q]", "+I[x, None]"]
    assert send(0, {"k": 1, "v": "x", CHANGE: "-D"}) == ["-D[x, None]"]
    assert send(0, {"k": None, "v": "n"}) == ["+I[n, None]"]
    assert send(1, {"k": None, "w": "n"}) == []
    assert send(1, {"k": 2, "w": "r"}, {"k": 2, "w": "r"}) == []
    assert send(0, {"k": 2, "v": "y"}) == ["+I[y, r]", "+I[y, r]"]


# -- 4. interval joins, inner and outer -------------------------------------------------------------


@pytest.mark.parametrize("side", ["", "LEFT", "RIGHT", "FULL"])
def test_an_interval_join_inner_or_outer_gives_duckdbs_rows(tables: str, side: str) -> None:
    """An outer side's row without a partner comes padded once the watermark passes its
    interval (append-only: nothing is retracted)."""
    query = f"""SELECT t.tx_id, a.alert_id, t.card_id FROM tx t {side} JOIN alerts a
                ON t.card_id = a.card_id AND a.level > 1
                AND a.rowtime BETWEEN t.rowtime - INTERVAL '1' SECOND AND t.rowtime + INTERVAL '2' SECOND"""
    expected = oracle(
        query.replace("a.rowtime", "a.ts")
        .replace("t.rowtime - INTERVAL '1' SECOND", "t.ts - 1000")
        .replace("t.rowtime + INTERVAL '2' SECOND", "t.ts + 2000")
    )
    assert len([row for row in expected if None not in row.values()]) > 20
    for parallelism in (1, 3):
        got = run(tables, query, parallelism)
        assert all(CHANGE not in row for row in got)
        same(got, expected)


# -- 5. window joins --------------------------------------------------------------------------------

WINDOWED = "(SELECT * FROM TABLE(TUMBLE(TABLE {table}, DESCRIPTOR(rowtime), INTERVAL '10' SECOND)))"
DUCK_WINDOWED = (
    "(SELECT *, ts - ts % 10000 AS window_start, ts - ts % 10000 + 10000 AS window_end FROM {table})"
)


@pytest.mark.parametrize("side", ["", "LEFT", "RIGHT", "FULL"])
def test_a_window_join_joins_each_windows_rows_when_it_fires(tables: str, side: str) -> None:
    query = """SELECT L.tx_id, R.alert_id, L.window_start, R.window_end AS r_end, L.card_id
               FROM {left} L {side} JOIN {right} R ON L.card_id = R.card_id
                 AND L.window_start = R.window_start AND L.window_end = R.window_end
                 AND L.amount > R.level * 50"""
    ours = query.format(left=WINDOWED.format(table="tx"), right=WINDOWED.format(table="alerts"), side=side)
    theirs = query.format(
        left=DUCK_WINDOWED.format(table="tx"), right=DUCK_WINDOWED.format(table="alerts"), side=side
    )
    expected = oracle(theirs)
    assert len([row for row in expected if None not in row.values()]) > 20
    for parallelism in (1, 3):
        got = run(tables, ours, parallelism)
        assert all(CHANGE not in row for row in got)
        same(got, expected)


def test_a_window_aggregation_over_a_window_joins_time_attribute(tables: str) -> None:
    """A window join's rows carry their window's window_time as a time attribute: a view of
    the join windows again."""
    flow = Flow("cascade", parallelism=2)
    flow.sql(
        tables
        + f"""CREATE VIEW pairs AS SELECT L.card_id, L.amount, R.level, L.window_time AS wt
              FROM {WINDOWED.format(table="tx")} L JOIN {WINDOWED.format(table="alerts")} R
              ON L.card_id = R.card_id AND L.window_start = R.window_start
              AND L.window_end = R.window_end;"""
    )
    found = flow.sql_query(
        """SELECT window_start, COUNT(*) AS n, SUM(amount) AS total, MAX(level) AS worst
           FROM TABLE(TUMBLE(TABLE pairs, DESCRIPTOR(wt), INTERVAL '20' SECOND))
           GROUP BY window_start, window_end"""
    ).collect()
    flow.execute()
    expected = oracle(
        f"""SELECT wt - wt % 20000 AS window_start, COUNT(*) AS n, SUM(amount) AS total,
                   MAX(level) AS worst
            FROM (SELECT L.card_id, L.amount, R.level, L.window_end - 1 AS wt
                  FROM {DUCK_WINDOWED.format(table="tx")} L JOIN {DUCK_WINDOWED.format(table="alerts")} R
                  ON L.card_id = R.card_id AND L.window_start = R.window_start)
            GROUP BY wt - wt % 20000"""
    )
    assert len(expected) > 2
    same(found.values, expected)


def test_a_window_join_of_table_functions_named_in_from(tables: str) -> None:
    """``TABLE(TUMBLE(...)) AS L`` joins as the subquery of its rows does."""
    tumble = "TABLE(TUMBLE(TABLE {table}, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))"
    query = """SELECT L.tx_id, R.alert_id FROM {left} L JOIN {right} R ON L.card_id = R.card_id
               AND L.window_start = R.window_start AND L.window_end = R.window_end"""
    got = run(tables, query.format(left=tumble.format(table="tx"), right=tumble.format(table="alerts")), 2)
    expected = oracle(
        query.format(left=DUCK_WINDOWED.format(table="tx"), right=DUCK_WINDOWED.format(table="alerts"))
    )
    assert expected
    same(got, expected)


def test_an_inner_joins_residual_holds_before_a_later_full_join(tables: str) -> None:
    """The ON conditions of an inner join go to the query's WHERE, unless a later RIGHT or FULL
    join pads rows that would not pass them: then they filter the inner join's rows."""
    query = """SELECT t.tx_id, c.owner, a.alert_id
               FROM tx t JOIN cards c ON t.card_id = c.card_id AND t.amount > c.tier * 100
               FULL JOIN alerts a ON a.card_id = c.card_id AND a.level = 3 AND a.ts < t.ts"""
    expected = oracle(query)
    assert any(row["tx_id"] is None for row in expected)
    same(run(tables, query, 3), expected)
