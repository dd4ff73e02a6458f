"""An iterative job for the checkpoint and crash tests: Collatz sequences round a loop.

Each input record ``{"id": i, "n": n}`` goes round the loop once per Collatz step; a keyed process
function (keyed by the record's id, so its state is on the flow's state backend) counts the steps
in keyed state and lets the record out when it reaches 1, as ``{"id": i, "steps": s}``. The
failure-free output is therefore known in advance (:func:`expected`), and any record lost in the
loop, fed back twice or counted twice in state changes it.

``python -m tests.iteration_job INPUT OUTPUT CHECKPOINTS INTERVAL_MS PARALLELISM forward|keyed``
runs it with checkpoints and the exactly-once file sink, resuming from the newest checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from actorflow import Flow, JsonLinesSource, KeyedProcessFunction, ValueStateDescriptor
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, RuntimeContext
from actorflow.operators.sources import Source


def collatz(n: int) -> int:
    return n // 2 if n % 2 == 0 else 3 * n + 1


def steps_to_one(n: int) -> int:
    steps = 0
    while n != 1:
        n = collatz(n)
        steps += 1
    return steps


def records(count: int) -> list[dict[str, int]]:
    """The input: ``count`` records whose starts spread over 2..2,001."""
    return [{"id": i, "n": 2 + (i * 7_919) % 2_000} for i in range(count)]


def write_input(path: Path, count: int) -> None:
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records(count)))


def expected(count: int) -> dict[int, int]:
    return {record["id"]: steps_to_one(record["n"]) for record in records(count)}


def read_output(path: Path) -> list[tuple[int, int]]:
    """The output's ``(id, steps)`` pairs, sorted (the loop's order is not the input's)."""
    lines = path.read_bytes().splitlines() if path.exists() else []
    return sorted((row["id"], row["steps"]) for row in map(orjson.loads, lines))


class Step(KeyedProcessFunction[dict[str, int], dict[str, int]]):
    """One Collatz step per visit, counted in the key's value state."""

    def open(self, ctx: RuntimeContext) -> None:
        self.steps = ctx.get_state(ValueStateDescriptor[int]("steps"))

    def process_element(self, value: dict[str, int], ctx: Context, out: Collector) -> None:
        steps = (self.steps.value() or 0) + 1
        n = collatz(value["n"])
        if n == 1:
            self.steps.clear()
            out.collect({"id": value["id"], "n": 1, "steps": steps})
        else:
            self.steps.update(steps)
            out.collect({"id": value["id"], "n": n})


def build(flow: Flow, source: Source, output: Path, *, keyed_feedback: bool = False) -> None:
    """The loop: the head, the step keyed by id, the feedback forward (or keyed by id, so that
    every head instance reads a back edge from every step instance), the finished records out."""
    it = flow.from_source(source).iterate()
    stepped = it.key_by("id").process(Step(), name="step")
    again = stepped.filter(lambda record: record["n"] != 1, name="again")
    it.close_with(again.key_by("id") if keyed_feedback else again)
    done = stepped.filter(lambda record: record["n"] == 1, name="done")
    done.map(lambda record: {"id": record["id"], "steps": record["steps"]}).sink_to_json_lines(
        output, exactly_once=True
    )


def main(argv: list[str]) -> int:
    source, output, checkpoints, interval_ms, parallelism, feedback = argv
    flow = Flow("collatz", parallelism=int(parallelism), batch_size=64)
    flow.enable_checkpointing(checkpoints, interval_ms=int(interval_ms))
    build(flow, JsonLinesSource(source), Path(output), keyed_feedback=feedback == "keyed")
    flow.execute()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
