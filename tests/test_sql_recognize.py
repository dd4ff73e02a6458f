"""MATCH_RECOGNIZE end to end: Flink's documented examples (conditions over other rows with
``LAST``, ``PREV`` and aggregates), ``ALL ROWS PER MATCH`` with running measures, a variable twice,
groups written out, and each refusal, at parallelism 1 and 2; a random ticker against a
plain-Python reference of the same queries."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import Flow
from actorflow.errors import SqlError

TICKER = (
    "CREATE TABLE Ticker (symbol STRING, price DOUBLE, tax INT, ts BIGINT, "
    "rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND) "
    "WITH ('connector' = 'jsonlines', 'path' = '{path}')"
)


def ticker(prices: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Rows of ``symbol -> prices``, one a second per symbol, the symbols interleaved."""
    rows = [
        {"symbol": symbol, "price": float(price), "tax": index % 3, "ts": 1_000 * index}
        for symbol, series in prices.items()
        for index, price in enumerate(series)
    ]
    rows.sort(key=lambda row: (row["ts"], row["symbol"]))
    return rows


def run(
    tmp_path: Path, rows: list[dict[str, Any]], query: str, parallelism: int = 1
) -> list[dict[str, Any]]:
    path = tmp_path / f"ticker-{parallelism}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    flow = Flow("recognize", parallelism=parallelism)
    flow.sql(TICKER.format(path=path))
    found = flow.sql_query(query).collect()
    flow.execute()
    return found.values


def plan(query: str) -> None:
    """Plan ``query`` over the ticker (raises what the planner raises)."""
    flow = Flow("recognize")
    flow.sql(TICKER.format(path="unused.jsonl"))
    flow.sql_query(query)


def by_symbol(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in a stable order: per symbol, the order each symbol's rows came in."""
    order = {id(row): index for index, row in enumerate(rows)}
    return sorted(rows, key=lambda row: (row["symbol"], order[id(row)]))


# The "V shape" of Flink's documentation (section "Pattern Navigation" / "Logical Offsets").
V_SHAPE = """
SELECT * FROM Ticker MATCH_RECOGNIZE (
    PARTITION BY symbol
    ORDER BY rowtime
    MEASURES
        START_ROW.ts AS start_ts,
        LAST(PRICE_DOWN.ts) AS bottom_ts,
        LAST(PRICE_UP.ts) AS end_ts
    ONE ROW PER MATCH
    AFTER MATCH SKIP TO LAST PRICE_UP
    PATTERN (START_ROW PRICE_DOWN+ PRICE_UP)
    DEFINE
        PRICE_DOWN AS
            (LAST(PRICE_DOWN.price, 1) IS NULL AND PRICE_DOWN.price < START_ROW.price) OR
                PRICE_DOWN.price < LAST(PRICE_DOWN.price, 1),
        PRICE_UP AS
            PRICE_UP.price > LAST(PRICE_DOWN.price, 1)
) MR
"""

# The average price example of Flink's documentation (section "Aggregations").
AVERAGE = """
SELECT * FROM Ticker MATCH_RECOGNIZE (
    PARTITION BY symbol
    ORDER BY rowtime
    MEASURES
        FIRST(A.ts) AS start_ts,
        LAST(A.ts) AS end_ts,
        AVG(A.price) AS avg_price
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A+ B)
    DEFINE
        A AS AVG(A.price) < 15
) MR
"""

ACME_V = [12, 17, 19, 21, 25, 18, 15, 14, 24, 25, 19]
ACME_AVERAGE = [12, 17, 13, 16, 25, 2, 4, 10, 15, 25, 25, 30]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_the_v_shape_of_flinks_documentation(tmp_path: Path, parallelism: int) -> None:
    """25 at 4s, down to 14 at 7s (each price below the one before), up to 24 at 8s: 24 is above
    the last-but-one fall (15). Starting at 5s would match too (to 8s), but SKIP TO LAST PRICE_UP
    drops what began before 8s; from 8s nothing falls and rises again. The same prices ten
    higher, shifted by two seconds, for a second symbol."""
    rows = ticker({"ACME": ACME_V, "BETA": [30, 30, *(price + 10 for price in ACME_V)]})
    found = run(tmp_path, rows, V_SHAPE, parallelism)
    assert by_symbol(found) == [
        {"symbol": "ACME", "start_ts": 4_000, "bottom_ts": 7_000, "end_ts": 8_000},
        {"symbol": "BETA", "start_ts": 6_000, "bottom_ts": 9_000, "end_ts": 10_000},
    ]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_an_average_in_a_condition(tmp_path: Path, parallelism: int) -> None:
    """A takes rows while the average of A's rows, the current one included, stays under 15
    (12, 14.5, 14, 14.5, then 25 makes it 16.6: B); skipping past 25, from 2 the averages stay
    under 15 up to the second 25 (81 / 6 = 13.5), and 30 is B. The match from 10 (10, 15, then 25
    is B) completes first, at 9s, but waits, as in Flink, for the one from 2, which began before it
    and prunes it when it completes (as it does the one from 4, complete at 10s)."""
    rows = ticker({"ACME": ACME_AVERAGE, "BETA": [20, *ACME_AVERAGE[:6]]})
    found = run(tmp_path, rows, AVERAGE, parallelism)
    assert by_symbol(found) == [
        {"symbol": "ACME", "start_ts": 0, "end_ts": 3_000, "avg_price": 14.5},
        {"symbol": "ACME", "start_ts": 5_000, "end_ts": 10_000, "avg_price": 13.5},
        {"symbol": "BETA", "start_ts": 1_000, "end_ts": 4_000, "avg_price": 14.5},
    ]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_all_rows_per_match_with_running_measures(tmp_path: Path, parallelism: int) -> None:
    """Every row of each match: the partition key, the time attribute, the measures as of that
    row (running: FIRST, LAST, AVG, PREV and CLASSIFIER see the match up to it), then the rest of
    the input's columns. B+? falls (each price below the previous row's), C rises above the
    last-but-one B."""
    rows = ticker({"ACME": [25, 18, 15, 14, 24, 25], "BETA": [7, 9, 8, 10]})
    found = run(
        tmp_path,
        rows,
        """SELECT * FROM Ticker MATCH_RECOGNIZE (
             PARTITION BY symbol ORDER BY rowtime
             MEASURES CLASSIFIER() AS var, FIRST(price) AS first_price, LAST(B.price) AS last_b,
                      AVG(price) AS average, PREV(price) AS previous, COUNT(B.*) AS bs
             ALL ROWS PER MATCH
             PATTERN (A B+? C)
             DEFINE B AS B.price < PREV(B.price), C AS C.price > LAST(B.price, 1)
           )""",
        parallelism,
    )
    columns = ["symbol", "rowtime", "var", "first_price", "last_b", "average", "previous", "bs"]
    assert list(found[0]) == [*columns, "price", "tax", "ts"]
    assert [(*(row[c] for c in columns[2:]), row["ts"]) for row in by_symbol(found)] == [
        ("A", 25.0, None, 25.0, None, 0, 0),
        ("B", 25.0, 18.0, 21.5, 25.0, 1, 1_000),
        ("B", 25.0, 15.0, 58 / 3, 18.0, 2, 2_000),
        ("B", 25.0, 14.0, 18.0, 15.0, 3, 3_000),
        ("C", 25.0, 14.0, 19.2, 14.0, 3, 4_000),
    ]
    assert {row["rowtime"] for row in found} == {0, 1_000, 2_000, 3_000, 4_000}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_variable_twice_and_a_group_written_out(tmp_path: Path, parallelism: int) -> None:
    """``LOW HIGH LOW``: the second LOW's rows count as LOW's (FIRST, LAST, COUNT over both), and
    a condition reads LOW's last row so far (the first LOW's, for the second). ``(LOW HIGH){2}``
    is ``LOW HIGH LOW HIGH``."""
    rows = ticker({"ACME": [1, 20, 2, 30, 3, 40, 50], "BETA": [5, 51, 6, 60, 4], "GAMMA": [5, 60, 4]})
    twice = run(
        tmp_path,
        rows,
        """SELECT * FROM Ticker MATCH_RECOGNIZE (
             PARTITION BY symbol ORDER BY rowtime
             MEASURES FIRST(LOW.price) AS first_low, LAST(LOW.price) AS last_low,
                      COUNT(LOW.price) AS lows, HIGH.price AS high
             PATTERN (LOW HIGH LOW)
             DEFINE LOW AS LOW.price < 10
                        AND (LAST(LOW.price, 1) IS NULL OR LOW.price > LAST(LOW.price, 1)),
                    HIGH AS HIGH.price > 10 * LOW.price
           )""",
        parallelism,
    )
    # ACME: 3 40 50 fails at 50; GAMMA: 5 60 4 fails at 4, not above the first LOW (5).
    assert by_symbol(twice) == [
        {"symbol": "ACME", "first_low": 1.0, "last_low": 2.0, "lows": 2, "high": 20.0},
        {"symbol": "BETA", "first_low": 5.0, "last_low": 6.0, "lows": 2, "high": 51.0},
    ]
    group = run(
        tmp_path,
        rows,
        """SELECT * FROM Ticker MATCH_RECOGNIZE (
             PARTITION BY symbol ORDER BY rowtime
             MEASURES FIRST(LOW.price) AS first_low, LAST(HIGH.price) AS last_high, COUNT(*) AS n
             PATTERN ((LOW HIGH){2})
             DEFINE LOW AS LOW.price < 10, HIGH AS HIGH.price >= 10
           )""",
        parallelism,
    )
    assert by_symbol(group) == [
        {"symbol": "ACME", "first_low": 1.0, "last_high": 30.0, "n": 4},
        {"symbol": "BETA", "first_low": 5.0, "last_high": 60.0, "n": 4},
    ]


def recognize(
    pattern: str, define: str = "A AS A.price > 0", measures: str = "A.price AS a", **more: str
) -> str:
    """A MATCH_RECOGNIZE query over the ticker with these clauses."""
    rows = more.get("rows", "ONE ROW PER MATCH")
    after = more.get("after", "AFTER MATCH SKIP PAST LAST ROW")
    return (
        f"SELECT * FROM Ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime MEASURES {measures} "
        f"{rows} {after} PATTERN ({pattern}) DEFINE {define})"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (recognize("(A B)+ C"), r"a group with the quantifier \+ is not supported yet"),
        (recognize("(A B){2,3}? C"), r"a group with the quantifier \{2,3\}\? is not supported yet"),
        (recognize("A | B"), r"an alternation '\|', which Flink does not support"),
        (recognize("PERMUTE(A, B)"), r"PERMUTE, which Flink does not support"),
        (recognize("A B{0}"), r"the quantifier \{0\} takes no row"),
        (recognize("A B+"), r"a greedy quantifier cannot end the pattern \(B\)"),
        (recognize("A B", measures="MATCH_NUMBER() AS n"), r"MATCH_NUMBER\(\) is not supported yet"),
        (recognize("A B", define="B AS B.price > NEXT(A.price)"), r"NEXT\(\.\.\.\) is not supported"),
        (recognize("A B", define="C AS C.price > 1"), r"DEFINE C: the pattern has no variable C"),
        (recognize("A B", define="B AS B.price > Z.price"), r"Z\.price: the pattern has no variable Z"),
        (recognize("A B", define="B AS B.price > LAST(A.price, tax)"), r"offset of LAST.* a whole number"),
        (recognize("A B", define="B AS B.price > LAST(A.cost)"), r"unknown column 'cost'"),
        (recognize("A B", measures="SUM(B.*) AS s"), r"SUM\(\.\.\.\) reads a column"),
        (
            recognize("A B A", after="AFTER MATCH SKIP TO LAST A"),
            r"SKIP TO LAST A: A appears more than once in the pattern \(not supported yet\)",
        ),
        (
            recognize("A B", measures="A.price AS price", rows="ALL ROWS PER MATCH"),
            r"the measure 'price' has the name of a column the match outputs too",
        ),
    ],
)
def test_what_is_refused(query: str, message: str) -> None:
    """Each a one-line SqlError when the query is planned."""
    with pytest.raises(SqlError, match=message) as raised:
        plan(query)
    assert "\n" not in str(raised.value)


# -- against a plain-Python reference ------------------------------------------------------------

#: What a partial match begun at a row comes to: its match (the index of its last row and the
#: result), "died" (a row refused it) or "alive" (the input ended first).
Outcome = tuple[int, dict[str, Any]] | str


def v_shape_from(prices: list[float], ts: list[int], start: int) -> Outcome:
    """The V_SHAPE query's partial match begun at ``start``: falling prices (the first below the
    start's, each below the one before; greedy), then a price above the last-but-one fall."""
    downs: list[int] = []
    for index in range(start + 1, len(prices)):
        price = prices[index]
        if (not downs and price < prices[start]) or (downs and price < prices[downs[-1]]):
            downs.append(index)
        elif len(downs) >= 2 and price > prices[downs[-2]]:
            return index, {"start_ts": ts[start], "bottom_ts": ts[downs[-1]], "end_ts": ts[index]}
        else:
            return "died"
    return "alive"


def average_from(prices: list[float], ts: list[int], start: int) -> Outcome:
    """The AVERAGE query's partial match begun at ``start``: rows while their average stays
    under 15 (greedy), then any row."""
    taken: list[float] = []
    for index in range(start, len(prices)):
        if sum([*taken, prices[index]]) / (len(taken) + 1) < 15:
            taken.append(prices[index])
        elif not taken:
            return "died"
        else:
            average = sum(taken) / len(taken)
            return index, {"start_ts": ts[start], "end_ts": ts[index - 1], "avg_price": average}
    return "alive"


def reference(
    rows: list[dict[str, Any]],
    partial_from: Callable[[list[float], list[int], int], Outcome],
    resume: Callable[[int], int],
) -> list[dict[str, Any]]:
    """Per symbol, Flink's matches: the earliest start that completes a match is emitted (a match
    that completes sooner but began later waits for it, and is pruned); the next search begins at
    ``resume(last row)``. A partial match still alive at the end holds back every later one."""
    found = []
    for symbol in sorted({row["symbol"] for row in rows}):
        mine = [row for row in rows if row["symbol"] == symbol]
        prices, ts = [row["price"] for row in mine], [row["ts"] for row in mine]
        start = 0
        while start < len(mine):
            outcome = partial_from(prices, ts, start)
            if outcome == "alive":
                break
            if outcome == "died":
                start += 1
                continue
            assert not isinstance(outcome, str)
            found.append({"symbol": symbol, **outcome[1]})
            start = resume(outcome[0])
    return found


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_tickers_against_a_reference(tmp_path: Path, seed: int, parallelism: int) -> None:
    generator = random.Random(seed)
    rows = ticker({symbol: [generator.randint(1, 30) for _ in range(40)] for symbol in "ABC"})
    v_shapes = reference(rows, v_shape_from, lambda end: end)  # SKIP TO LAST PRICE_UP
    averages = reference(rows, average_from, lambda end: end + 1)  # SKIP PAST LAST ROW
    assert v_shapes and averages
    assert by_symbol(run(tmp_path, rows, V_SHAPE, parallelism)) == v_shapes
    assert by_symbol(run(tmp_path, rows, AVERAGE, parallelism)) == averages
