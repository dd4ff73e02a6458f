"""A failing user function fails the job with its own error, names the operator, leaves no task behind."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ProcessFunction,
    PushSource,
    RuntimeContext,
    WatermarkStrategy,
)

NAME = "exploding"
N = 40


def by_ts() -> WatermarkStrategy:
    return WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=0)


def records() -> list[dict[str, Any]]:
    return [{"k": i % 5, "ts": i, "id": i} for i in range(N)]


def raise_on(error: BaseException, record_id: int) -> Callable[[dict[str, Any]], Any]:
    def function(record: dict[str, Any]) -> Any:
        if record["id"] == record_id:
            raise error
        return record

    return function


def thrower(error: BaseException) -> Callable[[], None]:
    """A function raising ``error`` itself: functions survive the deep copy each instance gets."""

    def throw() -> None:
        raise error

    return throw


class FailingTimer(KeyedProcessFunction[dict[str, Any], Any]):
    def __init__(self, error: BaseException) -> None:
        self.throw = thrower(error)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        ctx.timer_service().register_event_time_timer(value["ts"] + 10)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        if timestamp == 25:
            self.throw()
        out.collect(timestamp)


class FailingElement(KeyedProcessFunction[dict[str, Any], Any]):
    def __init__(self, error: BaseException) -> None:
        self.throw = thrower(error)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        if value["id"] == 17:
            self.throw()
        out.collect(value)


def build(where: str, flow: Flow, error: BaseException) -> None:
    """Wire a flow whose operator ``NAME`` raises ``error`` once, at ``where``."""
    if where == "source":

        def failing() -> Iterator[dict[str, Any]]:
            yield from records()[:10]
            raise error

        flow.from_iterable(failing(), name=NAME).rebalance().map(lambda r: r).collect()
        return
    stream = flow.from_iterable(records(), watermarks=by_ts())
    if where == "map":
        stream.rebalance().map(raise_on(error, 17), name=NAME).collect()
    elif where == "filter":
        stream.rebalance().filter(raise_on(error, 17), name=NAME).collect()
    elif where == "flat_map":
        stream.rebalance().flat_map(lambda r: [raise_on(error, 17)(r)], name=NAME).collect()
    elif where == "process_element":
        stream.key_by(lambda r: r["k"]).process(FailingElement(error), name=NAME).collect()
    elif where == "on_timer":
        stream.key_by(lambda r: r["k"]).process(FailingTimer(error), name=NAME).collect()
    elif where == "sink":
        stream.rebalance().map(lambda r: r).sink_to_callback(raise_on(error, 17), name=NAME)
    elif where == "async_sink":

        async def failing_sink(record: dict[str, Any]) -> None:
            await asyncio.sleep(0)
            raise_on(error, 17)(record)

        stream.rebalance().map(lambda r: r).sink_to_callback(failing_sink, name=NAME)
    else:  # pragma: no cover
        raise AssertionError(where)


WHERE = ["source", "map", "filter", "flat_map", "process_element", "on_timer", "sink", "async_sink"]


def assert_located(error: BaseException) -> None:
    notes = getattr(error, "__notes__", [])
    assert any(f"{NAME}[" in note for note in notes), notes


@pytest.mark.parametrize("where", WHERE)
async def test_a_user_error_fails_the_run_with_that_error(
    where: str, parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    error = ValueError(f"boom in {where}")
    flow = Flow(parallelism=parallelism, batch_size=4)
    build(where, flow, error)
    with pytest.raises(ValueError) as caught:
        await flow.run()
    assert caught.value is error
    assert_located(caught.value)
    gc.collect()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []


@pytest.mark.parametrize("where", WHERE)
async def test_the_note_names_the_record_a_user_function_failed_on(where: str, parallelism: int) -> None:
    error = ValueError(f"boom in {where}")
    flow = Flow(parallelism=parallelism, batch_size=4)
    build(where, flow, error)
    with pytest.raises(ValueError) as caught:
        await flow.run()
    [note] = [note for note in caught.value.__notes__ if f"{NAME}[" in note]
    if where in ("source", "on_timer"):  # no record in hand: the operator only
        assert note.endswith("]") and "record" not in note, note
        assert not hasattr(caught.value, "_actorflow_record")
    else:
        assert note.endswith(" on record {'k': 2, 'ts': 17, 'id': 17}"), note
        assert caught.value._actorflow_record == "{'k': 2, 'ts': 17, 'id': 17}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["source", "map", "on_timer", "async_sink"])
def test_execute_raises_the_same_error(where: str, parallelism: int) -> None:
    error = ValueError(f"boom in {where}")
    flow = Flow(parallelism=parallelism, batch_size=4)
    build(where, flow, error)
    with pytest.raises(ValueError) as caught:
        flow.execute()
    assert caught.value is error
    assert_located(caught.value)


async def test_an_error_in_open_fails_the_run_naming_the_operator(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    error = ValueError("cannot open")

    class FailingOpen(ProcessFunction[Any, Any]):
        def open(self, ctx: RuntimeContext) -> None:
            raise error

        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect(value)

    flow = Flow(parallelism=parallelism)
    flow.from_iterable(range(N)).rebalance().process(FailingOpen(), name=NAME).collect()
    with pytest.raises(ValueError) as caught:
        await flow.run()
    assert caught.value is error
    assert_located(caught.value)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []


async def test_a_failure_ends_the_job_while_other_branches_are_blocked(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    produced = 0
    blocked_sink_entered = asyncio.Event()
    never = asyncio.Event()

    def endless() -> Iterator[int]:
        nonlocal produced
        n = 0
        while True:
            produced += 1
            yield n
            n += 1

    async def stuck(record: Any) -> None:
        blocked_sink_entered.set()
        await never.wait()

    error = ValueError("bad record")
    trigger = PushSource()
    silent = PushSource()  # never fed, never closed: its actor waits for data all along
    flow = Flow(parallelism=parallelism, batch_size=4, mailbox_capacity=1)
    flow.from_iterable(endless(), name="endless").rebalance().sink_to_callback(stuck, name="stuck")
    flow.from_source(trigger, name="trigger").rebalance().map(raise_on(error, 1), name=NAME).collect()
    flow.from_source(silent, name="silent").map(lambda r: r).collect(name="silent-out")
    running = asyncio.create_task(flow.run())

    # Wait until the endless branch is stuck behind its full mailboxes.
    await blocked_sink_entered.wait()
    quiet_turns = turns = 0
    last = produced
    while quiet_turns < 100:
        await asyncio.sleep(0)  # one event-loop turn
        quiet_turns = quiet_turns + 1 if produced == last else 0
        last = produced
        turns += 1
        assert turns < 20_000, "the endless source never parked"

    await trigger.send({"id": 0})
    await trigger.send({"id": 1})
    async with asyncio.timeout(10):  # a guard against a hang, not a synchronisation
        with pytest.raises(ValueError) as caught:
            await running
    assert caught.value is error
    assert_located(caught.value)
    gc.collect()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []


async def test_cancelling_a_run_propagates_the_cancellation(loop_errors: list[dict[str, Any]]) -> None:
    started = asyncio.Event()
    source = PushSource()

    def mark(record: Any) -> Any:
        started.set()
        return record

    flow = Flow(parallelism=2)
    flow.from_source(source).rebalance().map(mark).collect()
    running = asyncio.create_task(flow.run())
    await source.send(1)
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []
