"""OVER aggregates, deduplication, Top-N, window Top-N, ORDER BY and LIMIT, as Flink runs them.

The cases of Flink's documentation pages run over their small tables with the output checked by
hand, changelogs row for row; the same queries over the generated transactions are compared with
DuckDB's answer (an updating result by replaying its changes first), at parallelism 1 and 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from actorflow.errors import SqlError  # noqa: E402
from actorflow.sql.relation import CHANGE  # noqa: E402
from actorflow.sql.types import parse_timestamp  # noqa: E402
from benchmarks.generate import generate  # noqa: E402
from tests.test_sql import create_tx, oracle, same_rows  # noqa: E402


@pytest.fixture(scope="module")
def transactions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The generated transactions in time order (as tests/test_sql.py's), fewer of them."""
    rows: list[dict[str, Any]] = [dict(tx) for tx in generate(1_500, seed=4, cards=40)]
    rows.sort(key=lambda row: row["ts"])
    return write(tmp_path_factory.mktemp("ranking") / "tx.jsonl", rows), rows


def replay(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows an updating result ends with: each ``+I``/``+U`` adds its row, each ``-U``/``-D``
    takes out a row that is there (else the changelog is wrong)."""
    live: list[dict[str, Any]] = []
    for change in changes:
        row = {k: v for k, v in change.items() if k != CHANGE}
        if change[CHANGE] in ("+I", "+U"):
            live.append(row)
        else:
            assert change[CHANGE] in ("-U", "-D"), change
            assert row in live, f"{change} retracts a row that is not there"
            live.remove(row)
    return live


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def run(ddl: str, query: str, parallelism: int = 1, batch_size: int = 1024) -> list[dict[str, Any]]:
    flow = Flow("ranking", parallelism=parallelism, batch_size=batch_size)
    flow.sql(ddl)
    found = flow.sql_query(query).collect()
    flow.execute()
    return found.values


def at(text: str) -> int:
    """Epoch milliseconds of ``'2020-04-15 08:05'``."""
    stamp = parse_timestamp(text + ":00")
    assert stamp is not None
    return stamp


def changes(rows: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [(row[CHANGE], *(row[name] for name in names)) for row in rows]


# -- OVER aggregates -------------------------------------------------------------------------------

ORDERS = [  # Flink's "Over Aggregation" page: Orders (order_id, product, amount, order_time)
    {"order_id": 1, "product": "A", "amount": 10, "order_time": "2020-04-15 08:05:00"},
    {"order_id": 2, "product": "B", "amount": 5, "order_time": "2020-04-15 08:20:00"},
    {"order_id": 4, "product": "A", "amount": 3, "order_time": "2020-04-15 08:50:00"},
    # out of order by less than the watermark's 10 minutes: ordered by time all the same
    {"order_id": 3, "product": "A", "amount": 7, "order_time": "2020-04-15 08:45:00"},
    {"order_id": 5, "product": "A", "amount": 1, "order_time": "2020-04-15 09:40:00"},
    {"order_id": 7, "product": "A", "amount": 4, "order_time": "2020-04-15 09:40:00"},  # a peer of 5
    {"order_id": 6, "product": "B", "amount": 2, "order_time": "2020-04-15 10:30:00"},
    {"order_id": 8, "product": "A", "amount": 100, "order_time": "2020-04-15 09:00:00"},  # late
    {"order_id": 9, "product": "A", "amount": 6, "order_time": "2020-04-15 11:00:00"},
]


def orders_table(tmp_path: Path) -> str:
    path = write(tmp_path / "orders.jsonl", ORDERS)
    return (
        "CREATE TABLE Orders (order_id BIGINT, product STRING, amount BIGINT, order_time TIMESTAMP(3), "
        "WATERMARK FOR order_time AS order_time - INTERVAL '10' MINUTE) "
        f"WITH ('connector' = 'jsonlines', 'path' = '{path}', 'scan.watermark.emit.strategy' = 'on-event');"
    )


def test_a_range_over_window_sums_the_hour_before_each_row(tmp_path: Path) -> None:
    """Flink's example: per product, the sum of the amounts of the hour up to each order (both
    ends in), rows of one time together; order 8 comes after the watermark passed 09:00 (late,
    dropped); the time attribute stays one."""
    got = run(
        orders_table(tmp_path),
        """SELECT order_id, order_time, amount,
             SUM(amount) OVER (PARTITION BY product ORDER BY order_time
                               RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW) AS one_hour_sum
           FROM Orders""",
        batch_size=1,
    )
    by_product: dict[str, list[tuple[int, int]]] = {}
    for row in got:
        product = str(next(o["product"] for o in ORDERS if o["order_id"] == row["order_id"]))
        by_product.setdefault(product, []).append((row["order_id"], row["one_hour_sum"]))
    # A: 1 (10), 3 at 08:45 (17), 4 at 08:50 (20), 5 and 7 at 09:40 (08:40.. : 7+3+1+4 = 15), 9 (6)
    assert by_product == {"A": [(1, 10), (3, 17), (4, 20), (5, 15), (7, 15), (9, 6)], "B": [(2, 5), (6, 2)]}
    assert {row["order_id"]: row["order_time"] for row in got}[3] == at("2020-04-15 08:45")


def test_a_rows_over_window_named_in_a_window_clause(tmp_path: Path) -> None:
    """Flink's second example: the same window for SUM and AVG, ``WINDOW w AS (... ROWS BETWEEN 2
    PRECEDING AND CURRENT ROW)``; peers in time go one by one, in the order they came."""
    got = run(
        orders_table(tmp_path),
        """SELECT order_id, amount, SUM(amount) OVER w AS sum_amount, AVG(amount) OVER w AS avg_amount,
                  COUNT(*) OVER w AS n, MIN(amount) OVER w AS low, MAX(amount) OVER w AS high
           FROM Orders WHERE product = 'A'
           WINDOW w AS (PARTITION BY product ORDER BY order_time
                        ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)""",
    )
    assert [tuple(row.values()) for row in got] == [
        (1, 10, 10, 10, 1, 10, 10),
        (3, 7, 17, 8, 2, 7, 10),  # an integer AVG truncates, as in Flink
        (4, 3, 20, 6, 3, 3, 10),
        (5, 1, 11, 3, 3, 1, 7),
        (7, 4, 8, 2, 3, 1, 4),
        (9, 6, 11, 3, 3, 1, 6),
    ]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_over_aggregates_give_duckdbs_rows(
    transactions: tuple[Path, list[dict[str, Any]]], parallelism: int
) -> None:
    path, rows = transactions
    ddl = create_tx(path)
    for flink, duck in [
        (
            "RANGE BETWEEN INTERVAL '3' SECOND PRECEDING AND CURRENT ROW",
            "RANGE BETWEEN 3000 PRECEDING AND CURRENT ROW",
        ),
        ("RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW", "RANGE UNBOUNDED PRECEDING"),
    ]:
        query = """SELECT tx_id, card_id, ts, COUNT(*) OVER w AS n, SUM(amount) OVER w AS total,
                          MAX(amount) OVER w AS high, AVG(amount) OVER w AS mean
                   FROM tx WHERE amount > 20 WINDOW w AS (PARTITION BY card_id ORDER BY {} {})"""
        got = run(ddl, query.format("rowtime", flink), parallelism, batch_size=64)
        same_rows(got, oracle(rows, query.format("ts", duck)))


def test_over_refuses_what_flink_refuses(tmp_path: Path) -> None:
    ddl = orders_table(tmp_path)
    for query, message in [
        ("SUM(amount) OVER (ORDER BY amount)",
         r"ORDER BY must be the time attribute ascending \(order_time\)"),
        ("SUM(amount) OVER (ORDER BY order_time DESC)", "time attribute ascending"),
        ("SUM(amount) OVER (ORDER BY order_time ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)",
         "at the CURRENT ROW"),
        ("SUM(amount) OVER w, COUNT(*) OVER (PARTITION BY product ORDER BY order_time)",
         "must use the same window"),
        ("ROW_NUMBER() OVER (ORDER BY order_time) AS rn",
         r"ROW_NUMBER needs a filter on its rank \(WHERE rn <= n\)"),
        ("SUM(amount) OVER v", "no WINDOW v"),
    ]:  # fmt: skip
        query = f"SELECT {query} FROM Orders WINDOW w AS (ORDER BY order_time)"
        flow = Flow("refused")
        flow.sql(ddl)
        with pytest.raises(SqlError, match=message) as raised:
            flow.sql_query(query)
        assert str(raised.value).startswith("line 1, column ") and "\n" not in str(raised.value)


# -- deduplication ---------------------------------------------------------------------------------

DEDUP = [  # Flink's "Deduplication" page: Orders (order_id, user, product, num), by event time here
    {"order_id": "o1", "user": "u1", "product": "p1", "num": 1, "ts": 1000},
    {"order_id": "o2", "user": "u2", "product": "p1", "num": 2, "ts": 2000},
    {"order_id": "o2", "user": "u2", "product": "p4", "num": 5, "ts": 1500},  # earlier than o2's first
    {"order_id": "o1", "user": "u1", "product": "p2", "num": 3, "ts": 3000},
    {"order_id": "o1", "user": "u1", "product": "p3", "num": 4, "ts": 2500},  # out of order
    {"order_id": "o3", "user": "u3", "product": "p5", "num": 6, "ts": 9000},
]


def dedup_table(tmp_path: Path) -> str:
    path = write(tmp_path / "dedup.jsonl", DEDUP)
    return (
        "CREATE TABLE Orders (order_id STRING, `user` STRING, product STRING, num BIGINT, ts BIGINT, "
        "rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND) "
        f"WITH ('connector' = 'jsonlines', 'path' = '{path}', 'scan.watermark.emit.strategy' = 'on-event');"
    )


def test_deduplication_keeping_the_first_row_is_append_only(tmp_path: Path) -> None:
    """Each order's earliest row, emitted once the watermark passed it (append-only, the time
    attribute kept): o2's row at 1.5 s came after its 2 s row, before the watermark passed it."""
    got = run(
        dedup_table(tmp_path),
        """SELECT order_id, product, num, rowtime FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY rowtime ASC) AS row_num
             FROM Orders)
           WHERE row_num = 1""",
        batch_size=1,
    )
    assert [(r["order_id"], r["product"], r["rowtime"]) for r in got] == [
        ("o1", "p1", 1000), ("o2", "p4", 1500), ("o3", "p5", 9000)
    ]  # fmt: skip
    assert all(CHANGE not in row for row in got)


def test_deduplication_keeping_the_last_row_is_an_updating_result(tmp_path: Path) -> None:
    """Each order's latest row: +I first, then -U/+U for a later row; an earlier row changes
    nothing."""
    got = run(
        dedup_table(tmp_path),
        """SELECT order_id, product FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY rowtime DESC) AS row_num
             FROM Orders)
           WHERE row_num = 1""",
    )
    assert changes(got, "order_id", "product") == [
        ("+I", "o1", "p1"), ("+I", "o2", "p1"), ("-U", "o1", "p1"), ("+U", "o1", "p2"), ("+I", "o3", "p5")
    ]  # fmt: skip


def test_deduplication_gives_duckdbs_rows(transactions: tuple[Path, list[dict[str, Any]]]) -> None:
    path, rows = transactions
    ddl = create_tx(path)
    for direction in ("ASC", "DESC"):
        query = """SELECT tx_id, card_id, amount FROM (
                     SELECT *, ROW_NUMBER() OVER (PARTITION BY merchant_id ORDER BY {} {}) AS rn FROM tx)
                   WHERE rn = 1"""
        # The transactions have timestamps in common: only merchants whose first (last) time is
        # one row's have one answer.
        expected = oracle(rows, query.format("ts", direction))
        unique = {
            r["merchant_id"]
            for r in oracle(
                rows,
                f"""SELECT merchant_id FROM (
                      SELECT merchant_id, ts, {"MIN" if direction == "ASC" else "MAX"}(ts)
                      OVER (PARTITION BY merchant_id) AS edge FROM tx) WHERE ts = edge
                    GROUP BY merchant_id HAVING COUNT(*) = 1""",
            )
        }
        owners = {r["tx_id"]: r["merchant_id"] for r in rows}
        for parallelism in (1, 3):
            got = run(ddl, query.format("rowtime", direction), parallelism, batch_size=100)
            final = replay(got) if direction == "DESC" else got
            same_rows(
                [r for r in final if owners[r["tx_id"]] in unique],
                [r for r in expected if owners[r["tx_id"]] in unique],
            )
            assert len(final) == len(expected)


# -- Top-N -------------------------------------------------------------------------------------------

SALES = [  # Flink's "Top-N" page: ShopSales (product_id, category, product_name, sales)
    {"product_id": "p1", "category": "books", "product_name": "b1", "sales": 10, "ts": 1},
    {"product_id": "p2", "category": "books", "product_name": "b2", "sales": 30, "ts": 2},
    {"product_id": "p3", "category": "toys", "product_name": "t1", "sales": 5, "ts": 3},
    {"product_id": "p4", "category": "books", "product_name": "b3", "sales": 20, "ts": 4},
    {"product_id": "p5", "category": "books", "product_name": "b4", "sales": 1, "ts": 5},
    {"product_id": "p6", "category": "books", "product_name": "b5", "sales": 40, "ts": 6},
]


def sales_table(tmp_path: Path) -> str:
    path = write(tmp_path / "sales.jsonl", SALES)
    return (
        "CREATE TABLE ShopSales (product_id STRING, category STRING, product_name STRING, sales BIGINT, "
        f"ts BIGINT) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
    )


def test_top_n_with_the_rank_updates_every_rank_that_changed(tmp_path: Path) -> None:
    """With row_num in the rows, a row entering the top 3 updates its rank and each rank below it
    (-U the old row, +U the new one at that rank), a new rank is +I: Flink's output."""
    got = run(
        sales_table(tmp_path),
        """SELECT * FROM (
             SELECT product_id, category, sales,
                    ROW_NUMBER() OVER (PARTITION BY category ORDER BY sales DESC) AS row_num
             FROM ShopSales)
           WHERE row_num <= 3""",
    )
    assert changes(got, "product_id", "row_num") == [
        ("+I", "p1", 1),
        ("-U", "p1", 1), ("+U", "p2", 1), ("+I", "p1", 2),
        ("+I", "p3", 1),
        ("-U", "p1", 2), ("+U", "p4", 2), ("+I", "p1", 3),
        # p5 (1) is not in the top 3: nothing
        ("-U", "p2", 1), ("+U", "p6", 1), ("-U", "p4", 2), ("+U", "p2", 2),
        ("-U", "p1", 3), ("+U", "p4", 3),
    ]  # fmt: skip
    assert sorted((r["product_id"], r["row_num"]) for r in replay(got)) == [
        ("p2", 2), ("p3", 1), ("p4", 3), ("p6", 1)
    ]  # fmt: skip


def test_top_n_without_the_rank_emits_the_rows_coming_in_and_going_out(tmp_path: Path) -> None:
    """Flink's "no ranking output" optimization: without row_num in the select list only the row
    entering the top N (+I) and the one it pushes out (-D) change."""
    got = run(
        sales_table(tmp_path),
        """SELECT product_id, sales FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY category ORDER BY sales DESC) AS row_num
             FROM ShopSales)
           WHERE row_num <= 2""",
    )
    assert changes(got, "product_id") == [
        ("+I", "p1"), ("+I", "p2"), ("+I", "p3"), ("-D", "p1"), ("+I", "p4"), ("-D", "p4"), ("+I", "p6")
    ]  # fmt: skip


def test_a_top_n_of_an_updating_result_lets_the_next_row_in_when_one_is_retracted(
    tmp_path: Path,
) -> None:
    """The best category by its running total: each -U of the aggregation takes its row out of
    the ranks (the next row moves up, or the rank is gone: -D), each +U puts the new one in."""
    ddl = sales_table(tmp_path)
    groups = "SELECT category, SUM(sales) AS total FROM ShopSales GROUP BY category"
    got = run(
        ddl,
        f"""SELECT category, total, rn FROM (
              SELECT *, ROW_NUMBER() OVER (ORDER BY total DESC) AS rn FROM ({groups}))
            WHERE rn <= 1""",
    )
    assert changes(got, "category", "total") == [
        ("+I", "books", 10),
        ("-D", "books", 10), ("+I", "books", 40),
        # toys (5) comes in second: no rank changes
        ("-U", "books", 40), ("+U", "toys", 5), ("-U", "toys", 5), ("+U", "books", 60),
        ("-U", "books", 60), ("+U", "toys", 5), ("-U", "toys", 5), ("+U", "books", 61),
        ("-U", "books", 61), ("+U", "toys", 5), ("-U", "toys", 5), ("+U", "books", 101),
    ]  # fmt: skip
    got = run(ddl, f"SELECT category, total FROM ({groups}) ORDER BY total DESC LIMIT 1")
    assert changes(got, "category", "total") == [
        ("+I", "books", 10),
        ("-D", "books", 10), ("+I", "books", 40),
        ("-D", "books", 40), ("+I", "toys", 5), ("-D", "toys", 5), ("+I", "books", 60),
        ("-D", "books", 60), ("+I", "toys", 5), ("-D", "toys", 5), ("+I", "books", 61),
        ("-D", "books", 61), ("+I", "toys", 5), ("-D", "toys", 5), ("+I", "books", 101),
    ]  # fmt: skip


@pytest.mark.parametrize("parallelism", [1, 3])
def test_top_n_gives_duckdbs_rows(
    transactions: tuple[Path, list[dict[str, Any]]], parallelism: int
) -> None:
    path, rows = transactions
    ddl = create_tx(path)
    for select, condition in [
        ("tx_id, card_id, amount, rn", "rn <= 3"),
        ("tx_id, amount", "rn BETWEEN 2 AND 4"),
        ("card_id, tx_id, rn", "rn < 2"),
    ]:
        query = f"""SELECT {select} FROM (
                      SELECT *, ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY amount DESC, tx_id) AS rn
                      FROM tx WHERE merchant_id > 'm5')
                    WHERE {condition}"""
        got = run(ddl, query, parallelism, batch_size=128)
        assert {row[CHANGE] for row in got} <= {"+I", "-U", "+U", "-D"}
        same_rows(replay(got), oracle(rows, query))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_a_query_over_a_top_n_runs_over_its_changes(
    transactions: tuple[Path, list[dict[str, Any]]], parallelism: int
) -> None:
    """Another condition in the WHERE filters the ranking's rows (Flink's Calc after the Rank,
    not before), and a GROUP BY over a Top-N aggregates its changes."""
    path, rows = transactions
    ranked = """(SELECT *, ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY amount DESC, tx_id) AS rn
                 FROM tx) top"""
    for query in [
        f"SELECT tx_id, card_id, rn FROM {ranked} WHERE rn <= 3 AND merchant_id > 'm5'",
        f"SELECT card_id, COUNT(*) AS n, SUM(rn) AS ranks FROM {ranked} WHERE rn <= 2 GROUP BY card_id",
        f"SELECT top.card_id, MAX(amount) AS best FROM {ranked} WHERE rn BETWEEN 2 AND 3 "
        "GROUP BY top.card_id",
    ]:
        got = run(create_tx(path), query, parallelism, batch_size=128)
        same_rows(replay(got), oracle(rows, query))


def test_in_batch_mode_a_top_n_gives_its_final_rows(
    transactions: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, rows = transactions
    query = """SELECT card_id, tx_id, rn FROM (
                 SELECT *, ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY amount, tx_id) AS rn FROM tx)
               WHERE rn <= 2"""
    got = run(create_tx(path) + "SET 'execution.runtime-mode' = 'batch';", query, 3)
    same_rows(got, oracle(rows, query))


def test_a_ranking_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    ddl = sales_table(tmp_path)
    ranked = (
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY category ORDER BY sales) AS rn "
        "FROM ShopSales)"
    )
    for query, message in [
        (ranked + " WHERE rn >= 2", r"needs an upper bound on its rank \(WHERE rn <= n\)"),
        (ranked + " WHERE rn <= 2 OR sales > 3", "a condition on the rank compares it with a whole"),
        (ranked + " WHERE rn <= 'x'", "compared with a whole number"),
    ]:  # fmt: skip
        flow = Flow("refused")
        flow.sql(ddl)
        with pytest.raises(SqlError, match=message) as raised:
            flow.sql_query(query)
        assert "\n" not in str(raised.value)


# -- window Top-N ------------------------------------------------------------------------------------

BIDS = [  # Flink's "Window Top-N" page: Bid (bidtime, price, item, supplier_id)
    ("2020-04-15 08:05", 4.00, "A", "supplier1"),
    ("2020-04-15 08:06", 4.00, "C", "supplier2"),
    ("2020-04-15 08:07", 2.00, "G", "supplier1"),
    ("2020-04-15 08:08", 2.00, "B", "supplier3"),
    ("2020-04-15 08:09", 5.00, "D", "supplier4"),
    ("2020-04-15 08:11", 2.00, "B", "supplier3"),
    ("2020-04-15 08:13", 1.00, "E", "supplier1"),
    ("2020-04-15 08:15", 3.00, "H", "supplier2"),
    ("2020-04-15 08:17", 6.00, "F", "supplier5"),
]


def bid_table(tmp_path: Path) -> str:
    path = write(
        tmp_path / "bid.jsonl",
        [{"bidtime": t + ":00", "price": p, "item": i, "supplier_id": s} for t, p, i, s in BIDS],
    )
    return (
        "CREATE TABLE Bid (bidtime TIMESTAMP(3), price DOUBLE, item STRING, supplier_id STRING, "
        "WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND) "
        f"WITH ('connector' = 'jsonlines', 'path' = '{path}');"
    )


@pytest.mark.parametrize("parallelism", [1, 3])
def test_window_top_n_over_a_window_aggregation(tmp_path: Path, parallelism: int) -> None:
    """The page's first example, "top 3 suppliers per window": append-only, rows with their rank
    once the window ends."""
    got = run(
        bid_table(tmp_path),
        """SELECT * FROM (
             SELECT *,
               ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum
             FROM (
               SELECT window_start, window_end, supplier_id, SUM(price) AS price, COUNT(*) AS cnt
               FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
               GROUP BY window_start, window_end, supplier_id))
           WHERE rownum <= 3""",
        parallelism,
    )
    assert sorted(tuple(row.values()) for row in got) == [
        (at("2020-04-15 08:00"), at("2020-04-15 08:10"), "supplier1", 6.0, 2, 1),
        (at("2020-04-15 08:00"), at("2020-04-15 08:10"), "supplier2", 4.0, 1, 3),
        (at("2020-04-15 08:00"), at("2020-04-15 08:10"), "supplier4", 5.0, 1, 2),
        (at("2020-04-15 08:10"), at("2020-04-15 08:20"), "supplier2", 3.0, 1, 2),
        (at("2020-04-15 08:10"), at("2020-04-15 08:20"), "supplier3", 2.0, 1, 3),
        (at("2020-04-15 08:10"), at("2020-04-15 08:20"), "supplier5", 6.0, 1, 1),
    ]
    assert all(CHANGE not in row for row in got)


def test_window_top_n_over_a_window_table_function(tmp_path: Path) -> None:
    """The page's second example: the top 3 bids of each window straight from TUMBLE (A and C
    tie at 4.00: the first to come ranks first, as in Flink's example output)."""
    got = run(
        bid_table(tmp_path),
        """SELECT * FROM (
             SELECT bidtime, price, item, supplier_id, window_start, window_end,
                    ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum
             FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES)))
           WHERE rownum <= 3""",
    )
    first, second = at("2020-04-15 08:00"), at("2020-04-15 08:10")
    assert [(row["item"], row["rownum"], row["window_start"]) for row in got] == [
        ("D", 1, first), ("A", 2, first), ("C", 3, first),
        ("F", 1, second), ("H", 2, second), ("B", 3, second),
    ]  # fmt: skip


def test_top_merchants_per_window_give_duckdbs_rows(
    transactions: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, rows = transactions
    query = """SELECT window_start, merchant_id, total, rn FROM (
                 SELECT *,
                   ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY total DESC) AS rn
                 FROM (SELECT window_start, window_end, merchant_id, SUM(amount) AS total
                       FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
                       GROUP BY window_start, window_end, merchant_id))
               WHERE rn <= 3"""
    expected = oracle(
        rows,
        """SELECT window_start, merchant_id, total, rn FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY total DESC) AS rn
             FROM (SELECT ts - ts % 10000 AS window_start, merchant_id, SUM(amount) AS total
                   FROM tx GROUP BY ts - ts % 10000, merchant_id))
           WHERE rn <= 3""",
    )
    for parallelism in (1, 3):
        same_rows(run(create_tx(path), query, parallelism), expected)


# -- ORDER BY and LIMIT ------------------------------------------------------------------------------


def test_order_by_the_time_attribute_sorts_as_the_watermark_passes(tmp_path: Path) -> None:
    """Out-of-order rows come out in time order, then by the next key; a late row is dropped."""
    got = run(
        orders_table(tmp_path),
        "SELECT order_id, amount FROM Orders ORDER BY order_time, amount DESC",
        batch_size=1,
    )
    assert [row["order_id"] for row in got] == [1, 2, 3, 4, 7, 5, 6, 9]


def test_order_by_a_column_with_a_limit_is_a_global_top_n(tmp_path: Path) -> None:
    got = run(sales_table(tmp_path), "SELECT product_id, sales FROM ShopSales ORDER BY sales DESC LIMIT 2")
    assert changes(got, "product_id") == [
        ("+I", "p1"), ("+I", "p2"), ("-D", "p1"), ("+I", "p4"), ("-D", "p4"), ("+I", "p6")
    ]  # fmt: skip


def test_limit_passes_the_first_rows(tmp_path: Path) -> None:
    assert run(sales_table(tmp_path), "SELECT product_id FROM ShopSales LIMIT 2") == [
        {"product_id": "p1"}, {"product_id": "p2"}
    ]  # fmt: skip
    assert run(sales_table(tmp_path), "SELECT product_id FROM ShopSales LIMIT 2 OFFSET 3") == [
        {"product_id": "p4"}, {"product_id": "p5"}
    ]  # fmt: skip


@pytest.mark.parametrize("parallelism", [1, 3])
def test_order_by_and_limit_give_duckdbs_rows(
    transactions: tuple[Path, list[dict[str, Any]]], parallelism: int
) -> None:
    path, rows = transactions
    ddl = create_tx(path)
    query = "SELECT tx_id, amount FROM tx ORDER BY amount DESC, tx_id LIMIT 10"
    same_rows(replay(run(ddl, query, parallelism, 64)), oracle(rows, query))
    got = run(ddl, "SELECT tx_id, ts FROM tx WHERE amount > 100 ORDER BY rowtime, tx_id DESC", parallelism)
    assert got == oracle(rows, "SELECT tx_id, ts FROM tx WHERE amount > 100 ORDER BY ts, tx_id DESC")
    batch = ddl + "SET 'execution.runtime-mode' = 'batch';"
    query = "SELECT card_id, amount FROM tx ORDER BY card_id DESC, amount LIMIT 20 OFFSET 5"
    assert run(batch, query, parallelism) == oracle(rows, query)


def test_order_by_refuses_a_streaming_sort_on_another_column(tmp_path: Path) -> None:
    flow = Flow("refused")
    flow.sql(orders_table(tmp_path))
    with pytest.raises(SqlError, match=r"must start with the time attribute ascending \(order_time\)"):
        flow.sql_query("SELECT order_id, order_time FROM Orders ORDER BY amount")
    with pytest.raises(SqlError, match=r"ORDER BY takes the query's columns"):
        flow.sql_query("SELECT order_id FROM Orders ORDER BY amount + 1 LIMIT 3")


def test_a_top_n_prints_its_changes_as_flink_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = Flow("printed")
    flow.sql(
        sales_table(tmp_path)
        + """CREATE TABLE shown (product_id STRING, sales BIGINT, rn BIGINT) WITH ('connector' = 'print');
             INSERT INTO shown SELECT product_id, sales, rn FROM (
               SELECT *, ROW_NUMBER() OVER (ORDER BY sales DESC) AS rn FROM ShopSales) WHERE rn <= 1;"""
    )
    flow.execute()
    assert capsys.readouterr().out.splitlines() == [
        "+I[p1, 10, 1]", "-U[p1, 10, 1]", "+U[p2, 30, 1]", "-U[p2, 30, 1]", "+U[p6, 40, 1]"
    ]  # fmt: skip


# -- state across a savepoint --------------------------------------------------------------------------


def test_rankings_and_over_aggregates_resume_from_a_savepoint_at_another_parallelism(
    tmp_path: Path,
) -> None:
    """Stopped with a savepoint at parallelism 1 with rows waiting for the watermark, a top 3 and
    frames in keyed state, resumed at 3, stopped again, finished at 1: the rows (and the final
    rows of the updating result) of a run without stops."""
    from actorflow import WatermarkStrategy
    from tests.faults import StoppingSource

    n = 3_000
    records = [{"k": i % 7, "v": (i * 37) % 101, "ts": 1_000 * i + (i * 13) % 5} for i in range(n)]
    queries = {
        "over": """SELECT k, v, SUM(v) OVER w AS s, MAX(v) OVER w AS m FROM t
                   WINDOW w AS (PARTITION BY k ORDER BY rowtime
                                ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)""",
        "top": """SELECT k, v, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, ts)
                  AS rn FROM t) WHERE rn <= 3""",
        "first": """SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY rowtime) AS rn
                    FROM t) WHERE rn = 1""",
        "sorted": "SELECT k, v, ts FROM t ORDER BY rowtime",
    }

    def run_all(parallelism: int, stop_at: int | None, checkpoints: Path) -> tuple[dict[str, Any], bool]:
        flow = Flow("ranking-rescale", parallelism=parallelism, batch_size=50)
        flow.enable_checkpointing(checkpoints)
        source = StoppingSource(records, flow, stop_at)
        stream = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=3_000))
        stream.to_table("t", {"k": "BIGINT", "v": "BIGINT", "ts": "BIGINT"}, rowtime="rowtime")
        found = {name: flow.sql_query(query).collect() for name, query in queries.items()}
        flow.execute()
        return {name: sink.values for name, sink in found.items()}, source.stopped

    reference, _ = run_all(1, None, tmp_path / "reference")
    resumed: dict[str, list[Any]] = {name: [] for name in queries}
    for parallelism, stop_at in ((1, n // 3), (3, 2 * n // 3), (1, None)):
        got, stopped = run_all(parallelism, stop_at, tmp_path / "checkpoints")
        assert stopped == (stop_at is not None)
        for name, rows in got.items():
            resumed[name] += rows
    for name in ("over", "first"):
        assert sorted(map(orjson.dumps, resumed[name])) == sorted(map(orjson.dumps, reference[name]))
    assert resumed["sorted"] == reference["sorted"]
    assert [row["ts"] for row in resumed["sorted"]] == sorted(row["ts"] for row in records)
    final = sorted(map(orjson.dumps, replay(resumed["top"])))
    assert final == sorted(map(orjson.dumps, replay(reference["top"])))
    assert len(final) == 21


def test_order_by_and_limit_of_a_union_all_sort_its_rows(tmp_path: Path) -> None:
    """``a UNION ALL b ORDER BY ... LIMIT n`` (sqlglot hangs the ORDER BY on the union): the
    global Top-N over both sides' rows."""
    flow = Flow("union")
    flow.sql(sales_table(tmp_path))
    found = flow.sql_query(
        "SELECT product_id, sales FROM ShopSales UNION ALL SELECT product_id, sales * 10 FROM ShopSales "
        "ORDER BY sales DESC LIMIT 3"
    ).collect()
    flow.execute()
    assert sorted((row["product_id"], row["sales"]) for row in replay(found.values)) == [
        ("p2", 300), ("p4", 200), ("p6", 400)
    ]  # fmt: skip
