"""Queries over updating results: projections, filters, unions and aggregations of changelogs,
DISTINCT, and where such results may go.

Small inputs give hand-checked changelogs (the exact ``+I``/``-U``/``+U``/``-D`` sequence at
parallelism 1, as Flink gives it); the transactions of ``tests/test_sql.py`` give final rows
(the changelog applied, :class:`Changelog`) compared with DuckDB's answer at parallelism 1 and 3.
A ``changes`` connector (this module's) reads a JSON-lines file of change rows, as an upsert
source gives them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from actorflow.errors import SqlError  # noqa: E402
from actorflow.sql import connectors  # noqa: E402
from actorflow.sql.changelog import Changelog  # noqa: E402
from actorflow.sql.relation import CHANGE  # noqa: E402
from tests import test_sql  # noqa: E402
from tests.test_sql import create_tx, oracle, same_rows  # noqa: E402

#: The transactions of tests/test_sql.py (a module fixture).
transactions = test_sql.transactions

Rows = tuple[Path, list[dict[str, Any]]]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def small(tmp_path: Path, cards: list[tuple[str, float | None]]) -> str:
    """A table ``tx (card_id, amount, ts)`` of ``cards`` in order, a second apart."""
    rows = [{"card_id": c, "amount": a, "ts": 1000 * i} for i, (c, a) in enumerate(cards)]
    path = write(tmp_path / "small.jsonl", rows)
    return (
        "CREATE TABLE tx (card_id STRING, amount DOUBLE, ts BIGINT) "
        f"WITH ('connector' = 'jsonlines', 'path' = '{path}');"
    )


def changes(ddl: str, query: str, parallelism: int = 1, setup: str = "") -> list[tuple[Any, ...]]:
    """The rows of ``query`` as ``(change, *values)``, in the order they came."""
    flow = Flow("changelog", parallelism=parallelism)
    flow.sql(ddl + setup)
    found = flow.sql_query(query).collect()
    flow.execute()
    return [(row.get(CHANGE), *(v for k, v in row.items() if k != CHANGE)) for row in found.values]


def final(path: Path, query: str, parallelism: int, setup: str = "") -> list[dict[str, Any]]:
    """The rows ``query``'s changelog leaves over the transactions."""
    flow = Flow("changelog", parallelism=parallelism)
    flow.sql(create_tx(path) + setup)
    found = flow.sql_query(query).collect()
    flow.execute()
    log = Changelog()
    log.apply(found.values)
    return log.rows()


COUNTS = "(SELECT card_id, COUNT(*) AS n FROM tx GROUP BY card_id)"


# -- hand-checked changelogs --------------------------------------------------------------------


def test_cards_per_transaction_count_is_flinks_changelog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flink's classic: a GROUP BY over a GROUP BY. Each inner update retracts the card from
    its old count (deleting that group when it was the last card there) and adds it to the
    new one; the print sink shows each change."""
    ddl = small(tmp_path, [("c1", 1.0), ("c1", 2.0), ("c2", 3.0), ("c1", 4.0)])
    query = f"SELECT n, COUNT(*) AS cards FROM {COUNTS} GROUP BY n"
    assert changes(ddl, query) == [
        ("+I", 1, 1),
        ("-D", 1, 1),
        ("+I", 2, 1),
        ("+I", 1, 1),
        ("-D", 2, 1),
        ("+I", 3, 1),
    ]
    flow = Flow("print")
    flow.sql(
        ddl + "CREATE TABLE shown (n BIGINT, cards BIGINT) WITH ('connector' = 'print');"
        f"INSERT INTO shown {query};"
    )
    flow.execute()
    assert capsys.readouterr().out.splitlines() == [
        "+I[1, 1]", "-D[1, 1]", "+I[2, 1]", "+I[1, 1]", "-D[2, 1]", "+I[3, 1]"
    ]  # fmt: skip


def test_a_filter_and_a_projection_keep_each_change(tmp_path: Path) -> None:
    """A WHERE filters each change on its own (Flink's Calc): the -U of c1's count 1 passes and
    its +U (count 2) does not, so c1 leaves the result."""
    ddl = small(tmp_path, [("c1", 1.0), ("c1", 2.0), ("c2", 3.0)])
    query = f"SELECT UPPER(card_id) AS card, n * 10 AS tens FROM {COUNTS} WHERE n <= 1"
    assert changes(ddl, query) == [("+I", "C1", 10), ("-U", "C1", 10), ("+I", "C2", 10)]


def test_aggregates_retract_and_sum_is_null_again_when_its_values_go(tmp_path: Path) -> None:
    """COUNT(x), SUM, MIN, MAX and AVG over an updating input: c1's old row goes from group 1,
    which keeps c2's row with a NULL top only, so its SUM, MIN and MAX are NULL again."""
    ddl = small(tmp_path, [("c1", 5.0), ("c2", None), ("c1", 7.0)])
    inner = "(SELECT card_id, COUNT(*) AS n, MAX(amount) AS top FROM tx GROUP BY card_id)"
    query = (
        "SELECT n, COUNT(*) AS cards, COUNT(top) AS tops, SUM(top) AS total, MIN(top) AS low, "
        f"MAX(top) AS high, AVG(top) AS mean FROM {inner} GROUP BY n"
    )
    assert changes(ddl, query) == [
        ("+I", 1, 1, 1, 5.0, 5.0, 5.0, 5.0),
        ("-U", 1, 1, 1, 5.0, 5.0, 5.0, 5.0),
        ("+U", 1, 2, 1, 5.0, 5.0, 5.0, 5.0),
        ("-U", 1, 2, 1, 5.0, 5.0, 5.0, 5.0),
        ("+U", 1, 1, 0, None, None, None, None),
        ("+I", 2, 1, 1, 7.0, 7.0, 7.0, 7.0),
    ]


def test_min_and_max_come_back_to_the_next_value_when_theirs_is_retracted(tmp_path: Path) -> None:
    """MIN/MAX keep every value with its count: taking out the extreme gives the next one,
    and a value there twice stays until both go."""
    ddl = small(tmp_path, [("a", 1.0), ("b", 1.0), ("a", 1.0), ("a", 1.0), ("b", 1.0)])
    # The counts per card: {1, 1}, {1, 2}, {1}, {1, 3}, {3}, {2, 3} (one change at a time).
    query = f"SELECT MIN(n) AS low, MAX(n) AS high, COUNT(DISTINCT n) AS kinds FROM {COUNTS}"
    assert changes(ddl, query) == [
        ("+I", 1, 1, 1),
        ("-U", 1, 1, 1),
        ("+U", 1, 2, 2),
        ("-U", 1, 2, 2),
        ("+U", 1, 1, 1),
        ("-U", 1, 1, 1),
        ("+U", 1, 3, 2),
        ("-U", 1, 3, 2),
        ("+U", 3, 3, 1),
        ("-U", 3, 3, 1),
        ("+U", 2, 3, 2),
    ]


def test_select_distinct_emits_each_new_row_and_deletes_the_last_copy(tmp_path: Path) -> None:
    ddl = small(tmp_path, [("c1", 1.0), ("c2", 1.0), ("c1", 2.0), ("c1", 2.0)])
    assert changes(ddl, "SELECT DISTINCT card_id FROM tx") == [("+I", "c1"), ("+I", "c2")]
    assert changes(ddl, "SELECT DISTINCT amount, card_id FROM tx WHERE amount > 1") == [("+I", 2.0, "c1")]
    # Over an updating input: count 1 stays when c1's count moves to 2 (c2 still has 1); count 2
    # goes when c1's moves to 3.
    assert changes(ddl, f"SELECT DISTINCT n FROM {COUNTS}") == [("+I", 1), ("+I", 2), ("-D", 2), ("+I", 3)]
    ddl = small(tmp_path, [("c1", 1.0), ("c1", 2.0)])
    assert changes(ddl, f"SELECT DISTINCT n FROM {COUNTS}") == [("+I", 1), ("-D", 1), ("+I", 2)]


def test_count_distinct_in_a_group_aggregation_over_an_updating_input(tmp_path: Path) -> None:
    """The distinct counts of cards per count: a value counts while one copy of it is there."""
    ddl = small(tmp_path, [("c1", 1.0), ("c2", 1.0), ("c1", 2.0)])
    inner = "(SELECT card_id, COUNT(*) AS n, MIN(amount) AS low FROM tx GROUP BY card_id)"
    query = f"SELECT low, COUNT(DISTINCT n) AS counts, SUM(DISTINCT n) AS total FROM {inner} GROUP BY low"
    # c2's count 1 is there twice (c1's too) and c1's goes: no change, nothing emitted for it.
    assert changes(ddl, query) == [("+I", 1.0, 1, 1), ("-U", 1.0, 1, 1), ("+U", 1.0, 2, 3)]


def test_a_union_all_of_an_updating_result_and_an_append_only_one(tmp_path: Path) -> None:
    """The append-only side's rows are inserts; the union is an updating result."""
    ddl = small(tmp_path, [("c1", 1.0), ("c1", 9.0)])
    query = f"SELECT card_id, n FROM {COUNTS} UNION ALL SELECT card_id, 0 AS n FROM tx WHERE amount > 5"
    got = changes(ddl, query)
    assert sorted(got, key=str) == sorted(
        [("+I", "c1", 1), ("-U", "c1", 1), ("+U", "c1", 2), ("+I", "c1", 0)], key=str
    )
    assert [row for row in got if row[2] != 0] == [("+I", "c1", 1), ("-U", "c1", 1), ("+U", "c1", 2)]


# -- a changelog source -------------------------------------------------------------------------


class _Changes(connectors.Connector):
    """A JSON-lines file of change rows (``"$change"`` beside the columns), as an upsert table."""

    changelog = True

    def source(self, flow: Flow, table: Any, watermarks: Any) -> Any:
        return flow.from_json_lines(
            connectors.option(table, "path"), name=table.name, watermarks=watermarks
        )


@pytest.fixture
def change_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(connectors._BUILT_IN, "changes", _Changes())
    rows = [
        {"id": 1, "g": "a", "v": 10, CHANGE: "+I"},
        {"id": 2, "g": "a", "v": 20, CHANGE: "+I"},
        {"id": 3, "g": "b", "v": 5, CHANGE: "+I"},
        {"id": 1, "g": "a", "v": 10, CHANGE: "-U"},
        {"id": 1, "g": "b", "v": 15, CHANGE: "+U"},
        {"id": 3, "g": "b", "v": 5, CHANGE: "-D"},
        {"id": 2, "g": "a", "v": 20, CHANGE: "-D"},
    ]
    path = write(tmp_path / "changes.jsonl", rows)
    return (
        f"CREATE TABLE u (id BIGINT, g STRING, v BIGINT) WITH ('connector' = 'changes', 'path' = '{path}');"
    )


def test_a_group_aggregation_of_a_changelog_source_deletes_a_group_whose_rows_all_went(
    change_source: str,
) -> None:
    query = "SELECT g, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top FROM u GROUP BY g"
    assert changes(change_source, query) == [
        ("+I", "a", 1, 10, 10),
        ("-U", "a", 1, 10, 10),
        ("+U", "a", 2, 30, 20),
        ("+I", "b", 1, 5, 5),
        ("-U", "a", 2, 30, 20),
        ("+U", "a", 1, 20, 20),
        ("-U", "b", 1, 5, 5),
        ("+U", "b", 2, 20, 15),
        ("-U", "b", 2, 20, 15),
        ("+U", "b", 1, 15, 15),
        ("-D", "a", 1, 20, 20),
    ]


def test_in_batch_mode_an_aggregation_of_a_changelog_gives_the_final_rows(change_source: str) -> None:
    query = "SELECT g, COUNT(*) AS n, SUM(v) AS total FROM u GROUP BY g"
    setup = "SET 'execution.runtime-mode' = 'batch';"
    assert changes(change_source, query, parallelism=3, setup=setup) == [(None, "b", 1, 15)]
    nested = f"SELECT n, COUNT(*) AS groups FROM ({query}) GROUP BY n"
    assert changes(change_source, nested, setup=setup) == [(None, 1, 1)]


# -- final rows against DuckDB -----------------------------------------------------------------


#: (Flink's query, DuckDB's when it differs: an integer AVG truncates in Flink).
FINAL_CASES: list[tuple[str, str | None]] = [
    (f"SELECT n, COUNT(*) AS cards FROM {COUNTS} GROUP BY n", None),
    (
        "SELECT n, COUNT(*) AS cards, MIN(total) AS low, MAX(total) AS high, SUM(total) AS s, "
        "AVG(top) AS mean FROM (SELECT card_id, COUNT(*) AS n, SUM(amount) AS total, "
        "CAST(MAX(amount) AS BIGINT) AS top FROM tx GROUP BY card_id) "
        "WHERE total > 100 GROUP BY n HAVING COUNT(*) > 1",
        "SELECT n, COUNT(*) AS cards, MIN(total) AS low, MAX(total) AS high, SUM(total) AS s, "
        "CAST(trunc(AVG(top)) AS BIGINT) AS mean FROM (SELECT card_id, COUNT(*) AS n, "
        "SUM(amount) AS total, CAST(trunc(MAX(amount)) AS BIGINT) AS top FROM tx GROUP BY card_id) "
        "WHERE total > 100 GROUP BY n HAVING COUNT(*) > 1",
    ),
    ("SELECT DISTINCT card_id, merchant_id FROM tx WHERE amount > 300", None),
    (f"SELECT DISTINCT n FROM {COUNTS}", None),
    (
        "SELECT card_id, COUNT(DISTINCT merchant_id) AS merchants, SUM(DISTINCT tx_id % 7) AS s, "
        "AVG(DISTINCT tx_id % 5) AS a FROM tx GROUP BY card_id",
        "SELECT card_id, COUNT(DISTINCT merchant_id) AS merchants, SUM(DISTINCT tx_id % 7) AS s, "
        "CAST(trunc(AVG(DISTINCT tx_id % 5)) AS BIGINT) AS a FROM tx GROUP BY card_id",
    ),
    (
        f"SELECT m, COUNT(DISTINCT n) AS kinds, SUM(DISTINCT n) AS total, COUNT(*) AS cards "
        f"FROM (SELECT n % 3 AS m, n FROM {COUNTS}) GROUP BY m",
        None,
    ),
    ("SELECT card_id FROM tx WHERE amount > 700 UNION SELECT card_id FROM tx WHERE amount < 2", None),
    (f"SELECT card_id, n * 2 AS twice FROM {COUNTS} WHERE n BETWEEN 70 AND 80", None),
]


@pytest.mark.parametrize("parallelism", [1, 3])
@pytest.mark.parametrize(("query", "duck"), FINAL_CASES)
def test_updating_results_end_as_duckdbs_rows(
    transactions: Rows, parallelism: int, query: str, duck: str | None
) -> None:
    """Nested aggregations, DISTINCT, COUNT/SUM/AVG(DISTINCT), UNION and a filter of an updating
    result: the changelog applied gives DuckDB's rows."""
    path, rows = transactions
    expected = oracle(rows, duck or query)
    assert expected
    same_rows(final(path, query, parallelism), expected)


def test_count_distinct_in_window_aggregations(transactions: Rows) -> None:
    """A set of values per window accumulator; session windows merge theirs."""
    path, rows = transactions
    flow = Flow("distinct-windows", parallelism=2)
    flow.sql(create_tx(path))
    tumbling = flow.sql_query(
        """SELECT window_start, COUNT(DISTINCT card_id) AS cards, COUNT(*) AS n,
                  SUM(DISTINCT tx_id % 4) AS s, AVG(DISTINCT tx_id % 3) AS a
           FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end"""
    ).collect()
    sessions = flow.sql_query(
        """SELECT card_id, window_start, COUNT(DISTINCT merchant_id) AS merchants, COUNT(*) AS n
           FROM TABLE(SESSION(TABLE tx PARTITION BY card_id, DESCRIPTOR(rowtime), INTERVAL '2' SECOND))
           GROUP BY card_id, window_start, window_end"""
    ).collect()
    flow.execute()
    same_rows(
        tumbling.values,
        oracle(
            rows,
            """SELECT ts - ts % 10000 AS window_start, COUNT(DISTINCT card_id) AS cards, COUNT(*) AS n,
                      SUM(DISTINCT tx_id % 4) AS s, CAST(trunc(AVG(DISTINCT tx_id % 3)) AS BIGINT) AS a
               FROM tx GROUP BY ts - ts % 10000""",
        ),
    )
    gap = 2000
    expected = []
    by_card: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # in time order
        by_card.setdefault(row["card_id"], []).append(row)
    for card, txs in by_card.items():
        session = [txs[0]]
        for tx in [*txs[1:], None]:
            if tx is not None and tx["ts"] < session[-1]["ts"] + gap:
                session.append(tx)
                continue
            merchants = len({t["merchant_id"] for t in session})
            expected.append({"card_id": card, "window_start": session[0]["ts"], "merchants": merchants,
                             "n": len(session)})  # fmt: skip
            if tx is not None:
                session = [tx]
    assert any(row["n"] > row["merchants"] > 1 for row in expected)
    same_rows(sessions.values, expected)


# -- where an updating result may go ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT card_id, n FROM {COUNTS} WHERE n > 1",
        f"SELECT card_id, n FROM {COUNTS} UNION ALL SELECT card_id, 1 AS n FROM tx",
        "SELECT DISTINCT card_id, tx_id FROM tx",
        "SELECT card_id, tx_id FROM tx UNION SELECT card_id, tx_id FROM tx",
        "SELECT card_id, n FROM v",
        "SELECT a.card_id, b.tx_id FROM tx a LEFT JOIN tx b ON a.tx_id = b.tx_id",
    ],
)
def test_a_sink_that_cannot_take_updates_refuses_every_updating_query(
    transactions: Rows, tmp_path: Path, query: str
) -> None:
    path, _ = transactions
    flow = Flow("refused")
    flow.sql(create_tx(path) + f"CREATE VIEW v AS SELECT card_id, n FROM {COUNTS};")
    with pytest.raises(SqlError, match=r"doesn't support consuming update changes") as raised:
        flow.sql(
            "CREATE TABLE out (card STRING, n BIGINT) "
            f"WITH ('connector' = 'jsonlines', 'path' = '{tmp_path}/o');"
            f"INSERT INTO out {query};"
        )
    assert "\n" not in str(raised.value)


def test_a_window_over_an_updating_result_is_refused(transactions: Rows) -> None:
    path, _ = transactions
    flow = Flow("refused")
    flow.sql(
        create_tx(path) + "CREATE VIEW v AS SELECT card_id, COUNT(*) AS n, MAX(rowtime) AS rowtime "
        "FROM tx GROUP BY card_id;"
    )
    with pytest.raises(SqlError, match=r"TUMBLE doesn't support consuming update changes") as raised:
        flow.sql_query(
            "SELECT window_start, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE v, DESCRIPTOR(rowtime), "
            "INTERVAL '10' SECOND)) GROUP BY window_start, window_end"
        )
    assert "\n" not in str(raised.value)


def test_distinct_mistakes_are_one_line(transactions: Rows) -> None:
    path, _ = transactions
    flow = Flow("mistakes")
    flow.sql(create_tx(path))
    with pytest.raises(SqlError, match=r"COUNT\(DISTINCT \.\.\.\) of several columns is not supported yet"):
        flow.sql_query("SELECT COUNT(DISTINCT card_id, merchant_id) FROM tx GROUP BY tx_id")
    with pytest.raises(SqlError, match=r"DISTINCT ON is not supported"):
        flow.sql_query("SELECT DISTINCT ON (card_id) card_id FROM tx")


def test_retracting_accumulators_survive_a_checkpoint(transactions: Rows) -> None:
    """The state of a retracting group (MIN/MAX's sorted multiset, a DISTINCT call's counts)
    pickles as keyed state does at a checkpoint."""
    from sqlglot import exp

    from actorflow.sql.aggregates import Aggregate
    from actorflow.sql.changelog import RetractAccumulate
    from actorflow.sql.expressions import compile_expression
    from actorflow.sql.types import BIGINT

    columns = {"n": BIGINT}
    calls = [
        exp.Min(this=exp.column("n")),
        exp.Count(this=exp.Distinct(expressions=[exp.column("n")])),
        exp.Avg(this=exp.column("n")),
    ]
    accumulate = RetractAccumulate(
        [Aggregate.of(call, columns, {}, lambda node: compile_expression(node, columns)) for call in calls]
    )
    acc = accumulate.create_accumulator()
    for n in (4, 2, 2, 9):
        accumulate.add({"n": n}, acc)
    acc = pickle.loads(pickle.dumps(acc))
    accumulate.retract({"n": 2}, acc)
    assert accumulate.get_result(acc) == [2, 3, 5]
    accumulate.retract({"n": 2}, acc)
    assert accumulate.get_result(acc) == [4, 2, 6]
