"""The ``datagen`` connector: seeded runs repeat, values keep their bounds, sequences end the table,
NULLs come at their rate, the rate is paced on the flow's clock, a restored source goes on where its
snapshot was, and a bad option is one line naming the table and the option."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actorflow import Flow
from actorflow.errors import SqlError
from actorflow.operators.base import OperatorContext
from actorflow.sql.datagen import DataGenSource, datagen_source
from actorflow.sql.session import session_of
from actorflow.time.clock import ManualClock


def datagen(columns: str, **options: str) -> str:
    pairs = {"connector": "datagen", **options}
    listed = ", ".join(f"'{key}' = '{value}'" for key, value in pairs.items())
    return f"CREATE TABLE g ({columns}) WITH ({listed});"


def rows_of(
    columns: str, *option_sets: dict[str, str], parallelism: int = 1, query: str = "SELECT * FROM g"
) -> list[Any]:
    options = {key: value for options in option_sets for key, value in options.items()}
    flow = Flow("datagen", parallelism=parallelism)
    flow.sql(datagen(columns, **options))
    out = flow.sql_query(query).collect()
    flow.execute()
    return out.values


def fields(**per_column: dict[str, str]) -> dict[str, str]:
    return {
        f"fields.{column}.{key}": value
        for column, options in per_column.items()
        for key, value in options.items()
    }


def test_a_seed_makes_the_same_rows_every_run(parallelism: int) -> None:
    columns = "id INT, price DOUBLE, name STRING, ok BOOLEAN, amount DECIMAL(8, 2)"
    first = rows_of(columns, {"number-of-rows": "200", "seed": "42"}, parallelism=parallelism)
    again = rows_of(columns, {"number-of-rows": "200", "seed": "42"}, parallelism=parallelism)
    other = rows_of(columns, {"number-of-rows": "200", "seed": "43"}, parallelism=parallelism)
    assert len(first) == 200
    assert first == again
    assert first != other


def test_random_values_keep_their_bounds() -> None:
    rows = rows_of(
        "small INT, big BIGINT, ratio DOUBLE, money DECIMAL(6, 2), code STRING, tag VARCHAR(4), "
        "word STRING, seen TIMESTAMP_LTZ(3)",
        {"number-of-rows": "500", "seed": "7"},
        fields(
            small={"min": "-3", "max": "3"},
            big={"min": "1000000000000", "max": "1000000000002"},
            ratio={"min": "0.5", "max": "0.75"},
            money={"min": "1", "max": "2"},
            code={"length": "6"},
            word={"length": "5", "var-len": "true"},
            seen={"max-past": "10 s"},
        ),
    )
    assert {row["small"] for row in rows} == set(range(-3, 4))
    assert {row["big"] for row in rows} == {1000000000000, 1000000000001, 1000000000002}
    assert all(0.5 <= row["ratio"] <= 0.75 for row in rows)
    assert all(1 <= row["money"] <= 2 and round(row["money"], 2) == row["money"] for row in rows)
    assert all(len(row["code"]) == 6 and int(row["code"], 16) >= 0 for row in rows)
    assert all(len(row["tag"]) == 4 for row in rows)  # a VARCHAR(4)'s length, not 100
    assert {len(row["word"]) for row in rows} == set(range(6))
    times = [row["seen"] for row in rows]
    assert max(times) - min(times) <= 10_000 and max(times) - min(times) > 5_000


def test_a_sequence_ends_the_table_and_number_of_rows_cuts_it_shorter(parallelism: int) -> None:
    sequence = fields(
        id={"kind": "sequence", "start": "5", "end": "104"},
        label={"kind": "sequence", "start": "1", "end": "1000"},
    )
    rows = rows_of("id BIGINT, label STRING, x INT", sequence, parallelism=parallelism)
    assert sorted(row["id"] for row in rows) == list(range(5, 105))
    assert sorted(int(row["label"]) for row in rows) == list(range(1, 101))
    assert all(row["label"] == str(row["id"] - 4) for row in rows)
    shorter = rows_of(
        "id BIGINT, label STRING, x INT", sequence, {"number-of-rows": "10"}, parallelism=parallelism
    )
    assert sorted(row["id"] for row in shorter) == list(range(5, 15))


def test_nulls_come_at_their_rate() -> None:
    rows = rows_of(
        "a INT, b STRING, c INT, id BIGINT",
        {"number-of-rows": "2000", "seed": "3"},
        fields(
            a={"null-rate": "0.25"},
            b={"null-rate": "1"},
            id={"kind": "sequence", "start": "1", "end": "2000", "null-rate": "0.5"},
        ),
    )
    nulls = sum(row["a"] is None for row in rows)
    assert 400 < nulls < 600  # 500 expected; the seed makes it the same every run
    assert all(row["b"] is None for row in rows)
    assert all(row["c"] is not None for row in rows)
    ids = [row["id"] for row in rows if row["id"] is not None]
    assert 800 < len(ids) < 1200 and ids == sorted(ids)  # the sequence goes on under its NULLs


def test_computed_columns_and_a_watermark_over_made_up_rows(parallelism: int) -> None:
    rows = rows_of(
        "id BIGINT, ts BIGINT, doubled AS id * 2, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
        "WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND",
        fields(
            id={"kind": "sequence", "start": "1", "end": "5000"},
            ts={"kind": "sequence", "start": "0", "end": "4999"},
        ),
        parallelism=parallelism,
        query="SELECT window_start, COUNT(*) AS n, SUM(doubled) AS total "
        "FROM TABLE(TUMBLE(TABLE g, DESCRIPTOR(rowtime), INTERVAL '1' SECOND)) "
        "GROUP BY window_start, window_end",
    )
    assert sorted((row["window_start"], row["n"]) for row in rows) == [(s * 1000, 1000) for s in range(5)]
    assert sum(row["total"] for row in rows) == 5000 * 5001


async def test_the_rate_is_paced_on_the_flow_clock_without_blocking_the_loop() -> None:
    clock = ManualClock(start=1_000_000)
    flow = Flow("paced", clock=clock)
    flow.sql(
        datagen(
            "id INT",
            **{"rows-per-second": "10", "number-of-rows": "35"},
            **fields(id={"kind": "sequence", "start": "1", "end": "100"}),
        )
    )
    seen: list[tuple[int, int]] = []
    flow.from_table("g").sink_to_callback(lambda row: seen.append((row["id"], clock.now())))
    run = asyncio.ensure_future(flow.run())
    while not run.done():
        if clock.waiters:
            clock.advance(100)  # the loop goes on meanwhile: the flow waits on a future, not in a sleep
        await asyncio.sleep(0)
    await run
    assert [n for n, _ in seen] == list(range(1, 36))
    # Ten rows a second: rows 1-10 at once, 11-20 a second later, and so on.
    assert [(n, now - 1_000_000) for n, now in seen if n % 10 == 1] == [
        (1, 0),
        (11, 1000),
        (21, 2000),
        (31, 3000),
    ]
    assert {now for n, now in seen if 11 <= n <= 20} == {1_001_000}


async def read_batches(source: DataGenSource, batches: int | None) -> tuple[list[Any], Any]:
    context = OperatorContext("g", batch_size=7)
    records: list[Any] = []
    reader = source.read(context)
    try:
        count = 0
        async for batch in reader:
            records.extend(batch)
            count += 1
            if count == batches:
                break
        return records, source.snapshot_state(context)
    finally:
        await reader.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("cut", [0, 1, 3, 8])
async def test_a_restored_source_goes_on_where_its_snapshot_was(cut: int) -> None:
    flow = Flow("datagen")
    flow.sql(
        datagen(
            "id BIGINT, score INT, name STRING",
            **{"seed": "11", "rows-per-second": "1000000"},
            **fields(id={"kind": "sequence", "start": "1", "end": "50"}),
        )
    )
    table = session_of(flow).catalog.table("g")
    whole, _ = await read_batches(datagen_source(table), None)
    before, state = await read_batches(datagen_source(table), cut)
    restored = datagen_source(table)
    restored.restore_state(OperatorContext("g"), [state])
    after, _ = await read_batches(restored, None)
    assert len(whole) == 50
    assert before + after == whole
    assert restored.read_progress() is not None and restored.read_progress().share == 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"rows-per-sec": "5"},
            r"^line \d+, column \d+: table 'g': unknown option 'rows-per-sec' for the datagen connector",
        ),
        (
            {"fields.nope.kind": "random"},
            r"table 'g': option 'fields.nope.kind': no physical column 'nope' \(columns: id, name\)$",
        ),
        (
            {"fields.id.kind": "counter"},
            r"table 'g': 'fields.id.kind' = 'counter': 'random' or 'sequence'$",
        ),
        (
            {"fields.id.length": "3"},
            r"table 'g': option 'fields.id.length' does not go with a random INT column",
        ),
        (
            {"fields.name.min": "3"},
            r"table 'g': option 'fields.name.min' does not go with a random STRING column",
        ),
        (
            {"fields.id.kind": "sequence", "fields.id.start": "1"},
            r"table 'g': a sequence needs 'fields.id.end'$",
        ),
        ({"fields.id.min": "ten"}, r"table 'g': 'fields.id.min' = 'ten': not an integer$"),
        ({"fields.id.null-rate": "2"}, r"table 'g': 'fields.id.null-rate' = '2': between 0.0 and 1.0$"),
        ({"number-of-rows": "-1"}, r"table 'g': 'number-of-rows' = '-1': cannot be negative$"),
        ({"rows-per-second": "0"}, r"table 'g': 'rows-per-second' = '0': must be positive$"),
        (
            {"fields.id.min": "5", "fields.id.max": "1"},
            r"table 'g': 'fields.id.max' = 1 is below 'fields.id.min' = 5$",
        ),
    ],
)
def test_a_bad_option_is_one_line_naming_the_table_and_the_option(
    options: dict[str, str], message: str
) -> None:
    flow = Flow("datagen")
    flow.sql(datagen("id INT, name STRING", **options))
    with pytest.raises(SqlError, match=message) as raised:
        flow.sql_query("SELECT * FROM g")
    assert "\n" not in str(raised.value)


def test_a_primary_key_must_name_a_physical_column() -> None:
    with pytest.raises(
        SqlError, match=r"PRIMARY KEY \(nope\): 'nope' is no physical column \(columns: id\)"
    ):
        Flow("pk").sql(
            "CREATE TABLE t (id INT, PRIMARY KEY (nope) NOT ENFORCED) WITH ('connector' = 'print');"
        )
    flow = Flow("pk")
    flow.sql(
        "CREATE TABLE t (id INT, name STRING, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'print');"
    )
    assert session_of(flow).catalog.table("t").primary_key == ("id",)


def test_a_projection_and_a_filter_of_an_updating_result_keep_each_change() -> None:
    rows = rows_of(
        "id BIGINT, card STRING",
        fields(
            id={"kind": "sequence", "start": "1", "end": "5"},
            card={"kind": "sequence", "start": "1", "end": "5"},
        ),
        query="SELECT n * 10 AS tens, card FROM (SELECT card, COUNT(*) AS n FROM "
        "(SELECT CASE WHEN id < 4 THEN 'a' ELSE 'b' END AS card FROM g) GROUP BY card) WHERE card = 'a'",
    )
    assert [(row["$change"], row["tens"]) for row in rows] == [
        ("+I", 10), ("-U", 10), ("+U", 20), ("-U", 20), ("+U", 30)
    ]  # fmt: skip
