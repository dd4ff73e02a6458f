"""The pattern operator's event-time buffer on the heap backend (one list in time order, appended
per batch, merged in by a sort at each watermark) against the per-key buffer of the RocksDB backend
(each key's events in its entry, a heap of each key's earliest), over random batches: any sizes
(one record each too), marks anywhere in a batch (several, none, some going back), late records,
timeouts, and a snapshot and restore between two batches (events waiting that no watermark has
sorted in yet go with it; both restored alike)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import AfterMatchSkip, OutputTag, Pattern
from actorflow.operators.base import OperatorContext
from actorflow.operators.cep import NFA, PatternOperator
from actorflow.operators.side_outputs import SideOutputs
from actorflow.runtime.messages import Batch
from actorflow.state.backends import StateBackendConfig

pytest.importorskip("rocksdict")

LATE: OutputTag[Any] = OutputTag("late")

PATTERNS = {
    # Q4's shape: a strict pair within a window.
    "pair": Pattern.begin("a").where(lambda r: r["v"] < 3).next("b").where(lambda r: r["v"] > 6).within(8),
    # The general automaton: a loop, relaxed contiguity.
    "loop": (
        Pattern.begin("a").where(lambda r: r["v"] < 2)
        .followed_by("b").where(lambda r: 2 <= r["v"] < 5).one_or_more()
        .followed_by("c").where(lambda r: r["v"] >= 8)
        .within(12)
    ),
}  # fmt: skip


def operator(pattern: str, backend: StateBackendConfig | None) -> PatternOperator:
    op = PatternOperator(
        "pattern",
        NFA(PATTERNS[pattern], AfterMatchSkip.skip_past_last_event()),
        lambda r: r["k"],
        lambda m, ctx, out: out.collect(("match", sorted((s, [r["id"] for r in m[s]]) for s in m))),
        lambda m, ctx, out: out.collect(("timeout", ctx.timestamp, sorted(m))),
        late=LATE,
    )
    op.side_outputs = SideOutputs([LATE])
    op.open(OperatorContext("pattern", state_backend=backend))
    return op


@st.composite
def batches(draw: st.DrawFn) -> list[Batch]:
    """Records ``{"id", "k", "v", "ts"}`` roughly in time order, cut into batches with marks."""
    out: list[Batch] = []
    ts = 0
    ident = 0
    for _ in range(draw(st.integers(1, 12))):
        records = []
        for _ in range(draw(st.integers(0, 8))):
            ts += draw(st.integers(0, 3))
            late_by = draw(st.integers(0, 6))
            records.append(
                {
                    "id": ident,
                    "k": draw(st.sampled_from("pq")),
                    "v": draw(st.integers(0, 9)),
                    "ts": ts - late_by,
                }
            )
            ident += 1
        positions = sorted(draw(st.lists(st.integers(0, len(records)), max_size=3)))
        marks = [(position, ts - draw(st.integers(0, 8))) for position in positions]
        out.append(Batch(records, [r["ts"] for r in records], marks or None))
    return out


def run(op: PatternOperator, part: list[Batch]) -> list[Any]:
    found: list[Any] = []
    for batch in part:
        result = op.process(batch)
        found += [] if result is None else result.values
        late = op.side_outputs.take(LATE, None)
        found += [] if late is None else [("late", value["id"]) for value in late.values]
    return found


def drain(op: PatternOperator) -> list[Any]:
    return run(op, [Batch([], [], [(0, 1 << 60)])])


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pattern=st.sampled_from(sorted(PATTERNS)), stream=batches(), cut=st.integers(0, 12))
def test_the_heaps_time_ordered_list_releases_as_the_per_key_buffer_does(
    tmp_path: Path, pattern: str, stream: list[Batch], cut: int
) -> None:
    rocks = StateBackendConfig("rocksdb", path=str(tmp_path / f"rocks-{id(stream)}"), cache_entries=2)
    outputs = []
    for backend in (rocks, None):
        op = operator(pattern, backend)
        try:
            found = run(op, stream[:cut])
            snapshot = pickle.loads(pickle.dumps(op.snapshot_state()))
        finally:
            op.close()
        # Restored (the watermark comes again from upstream, so it starts over)
        op = operator(pattern, backend)
        try:
            op.restore_state([snapshot])
            outputs.append(found + run(op, stream[cut:]) + drain(op))
        finally:
            op.close()
    expected, found = outputs
    assert found == expected
