"""The objects Q2's paths share instead of making again.

The tumbling fast path keeps one :class:`TimeWindow` object per open window (by max timestamp), so
the dicts that hold a window find it by identity (on the heap; RocksDB decodes a key's windows anew);
the object goes when its window fires, so the operator keeps no more of them than it has timers.
The SQL window aggregation makes a flat
accumulator with the template's ``copy`` and its result row with one generated function; both are
made again when the functions are unpickled (a worker process gets them pickled).
"""

from __future__ import annotations

import pickle
from operator import itemgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from actorflow.operators.side_outputs import SideOutputs
from actorflow.operators.windows import TumblingEventTimeWindows
from actorflow.operators.windows.assigners import TimeWindow
from actorflow.operators.windows.functions import AggregateContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from actorflow.sql.aggregates import Accumulate, Aggregate, WindowRow
from actorflow.sql.expressions import compile_expression
from actorflow.sql.types import BIGINT
from tests.state_backends import chosen, operator_context
from tests.test_q2_tumbling_runs import LATE, Batches, _punctuated
from tests.test_window_paths import SumCount


@settings(max_examples=100, deadline=None)
@given(batches=_punctuated(), lateness=st.sampled_from([0, 4, 25]))
def test_an_open_window_is_one_object_kept_until_it_fires(batches: Batches, lateness: int) -> None:
    op = WindowOperator(
        "w",
        itemgetter("k"),
        TumblingEventTimeWindows.of(10),
        AggregateContents(SumCount()),
        None,
        lateness,
        LATE,
    )
    op.open(operator_context("w"))
    op.side_outputs = SideOutputs([LATE])
    heap = chosen() is None
    for values, timestamps, marks in [*batches, ([], [], [(0, MAX_WATERMARK)])]:
        op.process(Batch(values, timestamps, marks))
        kept = op._open_windows
        assert set(kept) <= {time for time, _ in op.event_timers.snapshot()}
        if heap:  # RocksDB decodes a key's windows anew each time it reads them
            for per_key in op.windows.values():
                for window in per_key:
                    if window.end - 1 in kept:
                        assert window is kept[window.end - 1]
    assert op._open_windows == {}


def _having_two(row: dict[str, Any]) -> dict[str, Any] | None:
    """A ``calc``: HAVING COUNT(*) >= 2, then the select list."""
    if row["$a0"] < 2:
        return None
    return {"card": row["card"], "start": row["window_start"], "n": row["$a0"], "total": row["$a1"]}


class _Context:
    window = TimeWindow(10, 20)


def test_sql_window_functions_make_fresh_accumulators_and_rows() -> None:
    columns = {"n": BIGINT}
    calls = [exp.Count(this=exp.Star()), exp.Sum(this=exp.column("n"))]
    accumulate = Accumulate(
        [Aggregate.of(call, columns, {}, lambda node: compile_expression(node, columns)) for call in calls]
    )
    window_row = WindowRow(["card"], 2, _having_two)
    first, second = accumulate.create_accumulator(), accumulate.create_accumulator()
    assert first == [0, None] and first is not second  # each window its own
    rows: list[Any] = []
    out = type("Out", (), {"collect": staticmethod(rows.append)})
    window_row.process("c1", _Context(), [accumulate.add({"n": 3}, first)], out)
    assert rows == [] and second == [0, None]  # HAVING dropped it; the other untouched
    window_row.process("c1", _Context(), [accumulate.add({"n": 4}, first)], out)
    assert rows == [{"card": "c1", "start": 10, "n": 2, "total": 7}]


def test_sql_window_functions_are_made_again_when_unpickled() -> None:
    accumulate = pickle.loads(pickle.dumps(Accumulate([Aggregate("count_star", None, BIGINT.not_null())])))
    window_row = pickle.loads(pickle.dumps(WindowRow(["card"], 1, dict)))
    first = accumulate.create_accumulator()
    assert first == [0] and first is not accumulate.create_accumulator()
    rows: list[Any] = []
    out = type("Out", (), {"collect": staticmethod(rows.append)})
    window_row.process("c1", _Context(), [accumulate.add({}, first)], out)
    assert rows == [{"window_start": 10, "window_end": 20, "window_time": 19, "card": "c1", "$a0": 1}]


def test_a_window_row_of_several_keys() -> None:
    rows: list[Any] = []
    out = type("Out", (), {"collect": staticmethod(rows.append)})
    WindowRow(["a", "b"], 1, dict).process(("x", 2), _Context(), [[5]], out)
    assert rows == [{"window_start": 10, "window_end": 20, "window_time": 19, "a": "x", "b": 2, "$a0": 5}]
