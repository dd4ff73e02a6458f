"""The benchmark baseline agrees with the reference, and the generated data is what Q2/Q3 need."""

from __future__ import annotations

import doctest
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks import baseline, generate, reference, results, runner

REPO_ROOT = Path(__file__).resolve().parent.parent

SEEDS = (1, 2)
EVENTS = 10_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One generated input file per seed."""
    folder = tmp_path_factory.mktemp("data")
    files = {}
    for seed in SEEDS:
        files[seed] = folder / f"tx-{seed}.jsonl"
        generate.write(EVENTS, seed, str(files[seed]))
    return files


def write_lines(path: Path, records: Iterable[dict[str, Any]]) -> str:
    """Write ``records`` as JSON lines and return the path as a string."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return str(path)


def tx(tx_id: int, card: str, amount: float, ts: int) -> dict[str, Any]:
    """A hand-written transaction."""
    return {"tx_id": tx_id, "card_id": card, "merchant_id": "m0001", "amount": amount, "ts": ts}


# --- baseline == reference on generated data -----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("query", ["q1", "q2", "q3", "q4"])
def test_baseline_equals_reference(query: str, seed: int, data: dict[int, Path], tmp_path: Path) -> None:
    base_out = tmp_path / "baseline.jsonl"
    ref_out = tmp_path / "reference.jsonl"
    assert baseline.run(query, str(data[seed]), str(base_out), 1) == EVENTS
    assert reference.run(query, str(data[seed]), str(ref_out), 1) == EVENTS
    assert results.compare(query, str(base_out), str(ref_out)) is None
    assert results.load(query, str(ref_out)).records, "the query produced no result records"


def test_the_reference_examples_hold() -> None:
    # benchmarks/ is outside the doctest paths of pytest: its examples run here.
    failed, attempted = doctest.testmod(reference)
    assert attempted >= 6
    assert failed == 0


# --- exact semantics on hand-written edge cases ------------------------------------------------
# The generated data rarely hits these boundaries (Q3's timers never change its result there),
# so they are pinned here, for every engine.

ENGINES = ("actorflow-1", "actorflow-2", "baseline-1", "reference-1")
"""Engine and parallelism."""


def run_on(engine: str, query: str, txs: list[dict[str, Any]], tmp_path: Path) -> results.Result:
    source = write_lines(tmp_path / "in.jsonl", txs)
    output = str(tmp_path / "out.jsonl")
    name, parallelism = engine.split("-")
    try:
        events = runner.load_engine(name).run(query, source, output, int(parallelism))
    except NotImplementedError:
        pytest.skip(f"engine {engine} is not implemented yet")
    assert events == len(txs)
    return results.load(query, output)


@pytest.mark.parametrize("engine", ENGINES)
def test_q1_strictly_above_100(engine: str, tmp_path: Path) -> None:
    txs = [tx(0, "a", 100.0, 1), tx(1, "b", 100.01, 2), tx(2, "c", 5.0, 3), tx(3, "a", 999.99, 4)]
    got = run_on(engine, "q1", txs, tmp_path)
    assert got.records == ((1, "b", 100.01), (3, "a", 999.99))


@pytest.mark.parametrize("engine", ENGINES)
def test_q2_windows_fire_at_end_minus_one_and_drop_late(engine: str, tmp_path: Path) -> None:
    txs = [
        tx(0, "a", 1.10, 20_000),  # window [20000, 30000)
        tx(1, "a", 2.20, 31_999),  # W = 29999 = end - 1: [20000, 30000) fires
        tx(2, "a", 4.40, 25_000),  # late: its window has fired
        tx(3, "b", 8.80, 29_999),  # late as well (end - 1 <= W, another card)
        tx(4, "a", 0.01, 30_000),  # joins [30000, 40000) with tx 1
        tx(5, "b", 3.33, 28_000),  # late
        tx(6, "b", 0.07, 39_999),  # never fires before the end (+inf watermark)
    ]
    got = run_on(engine, "q2", txs, tmp_path)
    assert got.late == 3
    assert got.records == (
        ("a", 20_000, 30_000, 1, 110),
        ("a", 30_000, 40_000, 2, 221),
        ("b", 30_000, 40_000, 1, 7),
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_q2_record_just_before_the_watermark_is_not_late(engine: str, tmp_path: Path) -> None:
    txs = [tx(0, "a", 1.0, 31_998), tx(1, "a", 2.0, 20_000), tx(2, "a", 3.0, 41_999)]
    # W after tx 0 is 29998 < 29999: the first window is still open for tx 1.
    got = run_on(engine, "q2", txs, tmp_path)
    assert got.late == 0
    assert got.records == (
        ("a", 20_000, 30_000, 1, 200),
        ("a", 30_000, 40_000, 1, 100),
        ("a", 40_000, 50_000, 1, 300),
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_q3_pattern_timers_and_disarming(engine: str, tmp_path: Path) -> None:
    txs = [
        tx(0, "c1", 0.50, 100_000),  # arms c1, timer at 160000
        tx(1, "c3", 0.20, 100_500),  # arms c3, timer at 160500
        tx(2, "c2", 10.00, 162_000),  # W = 160000: c1's timer fires and clears its flag
        tx(3, "c1", 900.00, 159_000),  # within 60 s of tx 0, but the flag is gone: no alert
        tx(4, "c3", 700.00, 160_400),  # c3's timer has not fired: alert (c3, 1, 4)
        tx(5, "c4", 0.30, 163_000),
        tx(6, "c4", 50.00, 163_010),  # disarms c4 whatever it is
        tx(7, "c4", 800.00, 163_020),  # no alert
        tx(8, "c5", 0.10, 163_100),
        tx(9, "c5", 0.20, 163_200),  # disarms and re-arms c5
        tx(10, "c5", 600.00, 163_300),  # alert (c5, 9, 10)
        tx(11, "c6", 0.99, 163_500),
        tx(12, "c6", 600.00, 163_400),  # B.ts - A.ts < 0: no alert
        tx(13, "c7", 0.01, 163_600),
        tx(14, "c7", 500.01, 223_600),  # exactly 60 s later: alert (c7, 13, 14)
        tx(15, "c8", 0.01, 223_000),
        tx(16, "c8", 500.00, 223_001),  # not above 500.00: no alert
        tx(17, "c9", 1.00, 223_002),  # not below 1.00: does not arm
        tx(18, "c9", 900.00, 223_003),
        tx(19, "c10", 0.02, 223_100),
        tx(20, "c10", 900.00, 283_101),  # 60.001 s later: no alert
    ]
    got = run_on(engine, "q3", txs, tmp_path)
    assert got.records == (("c3", 1, 4), ("c5", 9, 10), ("c7", 13, 14))


@pytest.mark.parametrize("engine", ENGINES)
def test_q4_event_time_order_lateness_contiguity_and_within(engine: str, tmp_path: Path) -> None:
    txs = [
        tx(0, "a", 0.50, 100_000),  # W = 98000 after it
        tx(1, "b", 700.00, 102_300),  # b's B arrives before its A (W = 100300) ...
        tx(2, "b", 0.20, 102_200),  # ... which comes first in event time: match (b, 2, 1)
        tx(3, "a", 20.00, 100_100),  # late (<= W = 100300): dropped, so not between 0 and 4
        tx(4, "a", 900.00, 102_500),  # a: 0 then 4: match (a, 0, 4)
        tx(5, "c", 0.10, 101_100),
        tx(6, "c", 800.00, 101_300),
        tx(7, "c", 50.00, 101_200),  # c in event time: 5, 7, 6: 7 comes between, no match
        tx(8, "d", 0.10, 101_400),
        tx(9, "d", 0.20, 101_400),  # equal ts in arrival order: 8, 9; 9 ends 8's partial match
        tx(10, "d", 600.00, 101_500),  # and begins its own: match (d, 9, 10)
        tx(11, "e", 600.00, 101_600),
        tx(12, "e", 0.30, 101_600),  # equal ts, B arrived first: e is 11, 12, no match
        tx(13, "f", 0.40, 102_000),
        tx(14, "f", 501.00, 161_999),  # 59.999 s later: match (f, 13, 14); W = 159999
        tx(15, "g", 0.40, 160_000),  # just ahead of the watermark: on time
        tx(16, "g", 0.50, 159_999),  # at the watermark: late
        tx(17, "g", 502.00, 220_000),  # 60 s after 15: the partial match has timed out; W = 218000
        tx(18, "h", 0.60, 218_001),
        tx(19, "h", 900.00, 218_002),  # match (h, 18, 19)
        tx(20, "h", 900.00, 218_003),  # matching resumes after 19: no second match with 18
        tx(21, "h", 0.70, 218_004),
        tx(22, "h", 0.80, 218_005),  # not above 500: ends 21's partial match, begins one
        tx(23, "h", 500.01, 218_006),  # match (h, 22, 23)
        tx(24, "i", 0.99, 218_100),
        tx(25, "i", 500.00, 218_101),  # not above 500.00: no match
        tx(26, "j", 1.00, 218_200),  # not below 1.00: begins nothing
        tx(27, "j", 900.00, 218_201),
    ]
    got = run_on(engine, "q4", txs, tmp_path)
    assert got.late == 2
    assert got.records == (
        ("a", 0, 4),
        ("b", 2, 1),
        ("d", 9, 10),
        ("f", 13, 14),
        ("h", 18, 19),
        ("h", 22, 23),
    )


# --- the generator ---------------------------------------------------------------------------


def test_generator_is_deterministic(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a", "b", "c")]
    generate.write(5_000, 7, str(paths[0]))
    generate.write(5_000, 7, str(paths[1]))
    generate.write(5_000, 8, str(paths[2]))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert list(generate.generate(100, 7)) == list(generate.generate(100, 7))


def test_generated_data_has_the_documented_shape(data: dict[int, Path]) -> None:
    txs = reference.read(str(data[1]))
    assert [t["tx_id"] for t in txs] == list(range(EVENTS))
    assert all(set(t) == {"tx_id", "card_id", "merchant_id", "amount", "ts"} for t in txs)
    amounts = [t["amount"] for t in txs]
    assert all(round(a, 2) == a and a > 0 for a in amounts)
    assert 0.005 < sum(a < 1.0 for a in amounts) / EVENTS < 0.1
    assert 0.005 < sum(a > 500.0 for a in amounts) / EVENTS < 0.1
    # Skewed cards: the busiest card is far above the average.
    per_card: dict[str, int] = {}
    for t in txs:
        per_card[t["card_id"]] = per_card.get(t["card_id"], 0) + 1
    assert max(per_card.values()) > 100 * EVENTS / len(per_card)
    assert all(t["merchant_id"][0] == "m" and len(t["merchant_id"]) == 5 for t in txs)
    # ~1 ms per event (plus up to 5 s of disorder), starting near 1700000000000.
    span = max(t["ts"] for t in txs) - min(t["ts"] for t in txs)
    assert 0.8 * EVENTS < span < 1.2 * EVENTS + 5_000
    assert abs(txs[0]["ts"] - generate.START_TS) < 10_000


def test_generated_data_is_out_of_order_with_late_events(data: dict[int, Path]) -> None:
    out_of_order = behind_2s = 0
    max_ts = -1
    for t in reference.read(str(data[1])):
        out_of_order += t["ts"] < max_ts
        behind_2s += t["ts"] < max_ts - 2_000
        max_ts = max(max_ts, t["ts"])
    assert out_of_order > EVENTS // 10
    assert behind_2s > EVENTS // 500


@pytest.mark.parametrize("seed", SEEDS)
def test_q2_has_late_records_and_q3_q4_have_alerts(seed: int, data: dict[int, Path]) -> None:
    txs = reference.read(str(data[seed]))
    _, late = reference.q2(txs)
    assert late >= 5
    assert len(reference.q3(txs)) >= 20
    matches, late_events = reference.q4(txs)
    assert len(matches) >= 20
    assert late_events >= 20


def test_cards_come_from_10000_ids() -> None:
    cards = {t["card_id"] for t in generate.generate(30_000, 3)}
    assert len(cards) > 4_000  # the quiet cards show up too
    assert all(c[0] == "c" and len(c) == 7 and int(c[1:]) < 10_000 for c in cards)
    assert {t["card_id"] for t in generate.generate(1_000, 3, cards=5)} == {f"c{n:06d}" for n in range(5)}


# --- results comparison and the command line -------------------------------------------------


def test_results_detect_differences(tmp_path: Path) -> None:
    window = {"card_id": "a", "window_start": 0, "window_end": 10_000, "count": 1, "sum_cents": 5}
    one = write_lines(tmp_path / "1", [window, {"late": 0}])
    same = write_lines(tmp_path / "2", [{"late": 0}, window])
    other_late = write_lines(tmp_path / "3", [window, {"late": 1}])
    twice = write_lines(tmp_path / "4", [window, window, {"late": 0}])
    no_late = write_lines(tmp_path / "5", [window])
    assert results.equal("q2", one, same)
    assert not results.equal("q2", one, other_late)
    assert not results.equal("q2", one, twice)
    assert not results.equal("q2", one, no_late)
    alert = {"card_id": "a", "small_tx_id": 1, "large_tx_id": 2}
    extra = write_lines(tmp_path / "6", [{**alert, "extra": 1}])
    assert not results.equal("q3", write_lines(tmp_path / "7", [alert]), extra)


def test_cli_generate_then_run_prints_one_measurement(tmp_path: Path) -> None:
    source = tmp_path / "tx.jsonl"
    output = tmp_path / "out.jsonl"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    cli("generate", "--events", "2000", "--seed", "5", "--output", str(source))
    done = cli(
        "run", "--query", "q2", "--engine", "baseline",
        "--input", str(source), "--output", str(output),
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    measurement = orjson.loads(lines[0])
    assert list(measurement) == [
        "query", "engine", "events", "seconds", "events_per_s", "peak_rss_mb", "cpu_seconds"
    ]  # fmt: skip
    assert measurement["query"] == "q2"
    assert measurement["engine"] == "baseline"
    assert measurement["events"] == 2000
    assert measurement["seconds"] > 0
    assert measurement["events_per_s"] > 0
    assert measurement["peak_rss_mb"] > 1
    assert 0 < measurement["cpu_seconds"] < measurement["seconds"] + 1
    reference.run("q2", str(source), str(tmp_path / "ref.jsonl"))
    assert results.equal("q2", str(output), str(tmp_path / "ref.jsonl"))
