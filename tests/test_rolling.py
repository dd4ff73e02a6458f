"""Rolling aggregations of a keyed stream (``reduce``, ``sum``, ``min``, ``max``, ``min_by``,
``max_by``): equal to a plain loop per key, Flink's rule for the other fields, every record shape,
bad records, and through a savepoint at another parallelism."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import Flow
from actorflow.operators.side_outputs import OutputTag
from tests.faults import StoppingSource

KINDS = ["sum", "min", "max", "min_by", "max_by"]


def reference(records: list[dict[str, Any]], kind: str, first: bool = True) -> dict[str, list[Any]]:
    """What each key's rolling ``kind`` of ``"n"`` emits, record by record, by a plain loop."""
    results: dict[str, list[Any]] = {}
    so_far: dict[str, dict[str, Any]] = {}
    for record in records:
        key, n = record["k"], record["n"]
        old = so_far.get(key)
        if old is None:
            new = record
        elif kind == "sum":
            new = {**old, "n": old["n"] + n}
        elif kind in ("min", "max"):
            best = min(old["n"], n) if kind == "min" else max(old["n"], n)
            new = {**old, "n": best}
        else:
            better = n < old["n"] if kind == "min_by" else n > old["n"]
            new = record if better or (not first and n == old["n"]) else old
        so_far[key] = new
        results.setdefault(key, []).append(new)
    return results


def per_key(values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The outputs of each key in order (keys interleave across instances; one key's do not)."""
    grouped: dict[str, list[Any]] = {}
    for value in values:
        grouped.setdefault(value["k"], []).append(value)
    return grouped


RECORDS = st.lists(
    st.fixed_dictionaries({"k": st.sampled_from("abc"), "n": st.integers(-5, 5), "tag": st.integers(0, 9)}),
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(
    records=RECORDS, kind=st.sampled_from(KINDS), first=st.booleans(), parallelism=st.sampled_from([1, 2])
)
def test_each_rolling_aggregation_emits_what_a_plain_loop_does_per_key(
    records: list[dict[str, Any]], kind: str, first: bool, parallelism: int
) -> None:
    flow = Flow("rolling", parallelism=parallelism, batch_size=4)
    keyed = flow.from_iterable(records).key_by("k")
    stream = (
        keyed.min_by("n", first=first)
        if kind == "min_by"
        else keyed.max_by("n", first=first)
        if kind == "max_by"
        else getattr(keyed, kind)("n")
    )
    out = stream.collect()
    flow.execute()
    assert per_key(out.values) == reference(records, kind, first)


@settings(max_examples=20, deadline=None)
@given(words=st.lists(st.text("abc", min_size=1, max_size=4), max_size=30))
def test_reduce_combines_each_record_with_the_keys_result_so_far(words: list[str]) -> None:
    flow = Flow("reduce", parallelism=2, batch_size=3)
    out = (
        flow.from_iterable(words)
        .key_by(lambda w: w[0])
        .reduce(lambda so_far, w: so_far + "|" + w)
        .collect()
    )
    flow.execute()
    expected: dict[str, list[str]] = {}
    for word in words:
        runs = expected.setdefault(word[0], [])
        runs.append(runs[-1] + "|" + word if runs else word)
    got: dict[str, list[str]] = {}
    for value in out.values:
        got.setdefault(value[0], []).append(value)
    assert got == expected


def test_sum_min_and_max_keep_the_first_records_other_fields_as_flink_does() -> None:
    rows = [{"k": "a", "n": 3, "shop": "first"}, {"k": "a", "n": 1, "shop": "second"}]
    for kind, last in (("sum", 4), ("min", 1), ("max", 3)):
        flow = Flow("rolling")
        out = getattr(flow.from_iterable(rows).key_by("k"), kind)("n").collect()
        flow.execute()
        assert out.values[-1] == {"k": "a", "n": last, "shop": "first"}, kind
    flow = Flow("rolling")
    out = flow.from_iterable(rows).key_by("k").min_by("n").collect()
    flow.execute()
    assert out.values[-1] == rows[1]  # min_by keeps the whole record


Point = namedtuple("Point", ["k", "n"])


@dataclasses.dataclass(frozen=True)
class Spend:
    k: str
    n: int


@pytest.mark.parametrize(
    ("records", "field", "expected"),
    [
        pytest.param([("a", 1), ("a", 2)], 1, ("a", 3), id="tuple"),
        pytest.param([["a", 1], ["a", 2]], 1, ["a", 3], id="list"),
        pytest.param([Point("a", 1), Point("a", 2)], "n", Point("a", 3), id="namedtuple-by-name"),
        pytest.param([Point("a", 1), Point("a", 2)], 1, Point("a", 3), id="namedtuple-by-position"),
        pytest.param([Spend("a", 1), Spend("a", 2)], "n", Spend("a", 3), id="dataclass"),
    ],
)
def test_a_field_is_a_position_a_name_or_an_attribute(
    records: list[Any], field: Any, expected: Any
) -> None:
    flow = Flow("rolling")
    out = flow.from_iterable(records).key_by(lambda r: "a").sum(field).collect()
    flow.execute()
    assert out.values[-1] == expected
    assert records[0] == (["a", 1] if isinstance(records[0], list) else records[0])  # not changed


def test_a_record_without_the_field_fails_naming_operator_field_and_record() -> None:
    flow = Flow("rolling")
    flow.from_iterable([{"k": "a", "n": 1}, {"k": "a", "amount": 2}]).key_by("k").sum("n").collect()
    with pytest.raises(ValueError) as raised:
        flow.execute()
    (line,) = str(raised.value).splitlines()
    assert line.startswith("sum[1/1]: sum('n') of a record without it: ") and "'amount': 2" in line


def test_values_that_cannot_be_added_fail_naming_them_and_bad_records_can_go_to_dead_letters() -> None:
    flow = Flow("rolling")
    flow.from_iterable([{"k": "a", "n": 1}, {"k": "a", "n": "2"}]).key_by("k").max("n").collect()
    with pytest.raises(ValueError, match=r"^max\[1/1\]: max\('n'\) cannot take '2' after 1 "):
        flow.execute()
    flow = Flow("rolling")
    bad = OutputTag[Any]("bad")
    stream = (
        flow.from_iterable([1, 2, None, 4]).key_by(lambda n: 0).reduce(lambda a, b: a + b, dead_letters=bad)
    )
    out = stream.collect()
    failed = stream.get_side_output(bad).collect()
    flow.execute()
    assert out.values == [1, 3, 7]
    assert [letter.record for letter in failed.values] == [None]


# -- through savepoints ------------------------------------------------------------------------

N = 600


def build(
    parallelism: int, checkpoints: Path, target: Path, stop_at: int | None
) -> tuple[Flow, StoppingSource]:
    flow = Flow("rolling-restore", parallelism=parallelism, batch_size=20)
    flow.enable_checkpointing(checkpoints)
    items = [{"k": f"card-{i % 17}", "n": (i * 7) % 23, "i": i} for i in range(N)]
    source = StoppingSource(items, flow, stop_at)
    keyed = flow.from_source(source).key_by("k")
    totals = keyed.sum("n").map(lambda r: ["sum", r["k"], r["n"]])
    biggest = keyed.max_by("n").map(lambda r: ["max_by", r["k"], r["i"]])
    totals.union(biggest).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def test_results_continue_through_a_savepoint_restored_at_another_parallelism(tmp_path: Path) -> None:
    def lines(path: Path) -> list[Any]:
        return sorted(orjson.loads(line) for line in path.read_bytes().splitlines())

    whole = tmp_path / "whole.jsonl"
    build(2, tmp_path / "whole-checkpoints", whole, None)[0].execute()
    target = tmp_path / "out.jsonl"
    for parallelism, stop_at in ((1, N // 3), (3, 2 * N // 3), (2, None)):
        flow, source = build(parallelism, tmp_path / "checkpoints", target, stop_at)
        flow.execute()
        assert source.stopped == (stop_at is not None)
    assert len(lines(whole)) == 2 * N
    assert lines(target) == lines(whole)
