"""Async I/O (``map_async``): order, watermarks, capacity and backpressure, timeouts, retries, failures.

The test decides when each request completes (it resolves the future the call waits on), never a
sleep; timeouts and retry delays run on a ManualClock. Unit tests drive the operator by hand, as a
chain does, to check what leaves with each call.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    MAX_WATERMARK,
    Collector,
    Context,
    FailedRecord,
    FailedRequest,
    Flow,
    ManualClock,
    PlanError,
    ProcessFunction,
    PushSource,
    RuntimeContext,
    WatermarkStrategy,
)
from actorflow.operators.async_io import AsyncMapOperator, AsyncMapSpec
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import Batch
from tests.recorder import Recorder
from tests.test_backpressure import Meter, in_flight_bound

N = 30
NAME = "lookup"
GUARD = 10  # seconds: a guard against a hang, never a synchronisation


class Gate:
    """An async function whose calls return only when the test releases them, in the order it likes.

    ``key(record)`` names a call; ``result(record)`` is what a released call returns.
    """

    def __init__(
        self,
        result: Callable[[Any], Any] = lambda record: record,
        key: Callable[[Any], Any] = lambda record: record,
    ) -> None:
        self._result = result
        self._key = key
        self.calls: list[Any] = []
        self.finished: list[Any] = []  # the calls that returned, in the order they did
        self.active = 0
        self.cancelled = 0
        self._gates: dict[Any, asyncio.Future[None]] = {}
        self._returned: dict[Any, asyncio.Future[None]] = {}
        self._started: list[tuple[int, asyncio.Future[None]]] = []

    def _future(self, table: dict[Any, asyncio.Future[None]], key: Any) -> asyncio.Future[None]:
        if key not in table:
            table[key] = asyncio.get_running_loop().create_future()
        return table[key]

    async def __call__(self, record: Any) -> Any:
        key = self._key(record)
        self.calls.append(key)
        self.active += 1
        for count, waiter in self._started:
            if len(self.calls) >= count and not waiter.done():
                waiter.set_result(None)
        try:
            await self._future(self._gates, key)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
        # The request ends in this same step: once the test sees this, the operator has the result.
        self.finished.append(key)
        self._future(self._returned, key).set_result(None)
        return self._result(record)

    async def started(self, count: int, running: asyncio.Task[None] | None = None) -> None:
        """Wait until ``count`` calls have started (failing at once if the flow ``running`` ends)."""
        if len(self.calls) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._started.append((count, waiter))
        await arrival(waiter, running)

    def release(self, *keys: Any) -> None:
        """Let these calls return, in this order."""
        for key in keys:
            self._future(self._gates, key).set_result(None)

    async def returned(self, *keys: Any, running: asyncio.Task[None] | None = None) -> None:
        """Wait until these calls have returned their result to the operator."""
        await arrival(asyncio.gather(*(self._future(self._returned, key) for key in keys)), running)


async def arrival(waiting: asyncio.Future[Any], running: asyncio.Task[None] | None) -> None:
    """Wait for ``waiting``; if the flow ``running`` ends first, fail with its own error."""
    async with asyncio.timeout(GUARD):
        if running is None:
            await waiting
            return
        await asyncio.wait((waiting, running), return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        running.result()
        raise AssertionError("the flow ended before the awaited calls happened")


class Seen(ProcessFunction[Any, tuple[int, Any, int | None, int]]):
    """Emits ``(instance, value, timestamp, current watermark)``: what a record met downstream."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((self.index, value, ctx.timestamp, ctx.timer_service().current_watermark()))


class Tag(ProcessFunction[Any, tuple[int, Any]]):
    """Emits ``(instance, value)``, so a lookup behind it knows which instance calls it."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((self.index, value))


def per_instance(seen: list[tuple[Any, ...]]) -> dict[int, list[Any]]:
    """The values each instance emitted, in emission order."""
    values: dict[int, list[Any]] = defaultdict(list)
    for index, value, *_ in seen:
        values[index].append(value)
    return values


def stamped(n: int = N) -> list[dict[str, int]]:
    """Records with out-of-order event timestamps (a fixed permutation)."""
    return [{"id": i, "ts": 1000 + (i * 7) % n * 10} for i in range(n)]


def completion_order(how: str, n: int = N) -> list[int]:
    if how == "reversed":
        return list(reversed(range(n)))
    order = list(range(n))
    random.Random(7).shuffle(order)
    return order


async def finished_cleanly(loop_errors: list[dict[str, Any]]) -> None:
    gc.collect()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []


# -- the plan ------------------------------------------------------------------------------------


def test_a_plain_function_is_refused_with_a_hint_to_use_map() -> None:
    stream = Flow().from_iterable(range(3))
    with pytest.raises(PlanError, match=r"coroutine function.*use map\(\)"):
        stream.map_async(lambda n: n)  # type: ignore[arg-type, return-value]


def test_an_object_with_an_async_call_is_accepted() -> None:
    stream = Flow().from_iterable(range(3))
    stream.map_async(Gate()).collect()  # a class with state, as Flink's RichAsyncFunction
    assert stream.flow.plan().describe() == "[source -> map_async -> collect] x1"


async def _echo(record: Any) -> Any:
    return record


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity": 0}, "capacity"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"retries": -1}, "retries"),
        ({"retry_delay_ms": -1}, "retry_delay_ms"),
        ({"retry_on": (KeyboardInterrupt,)}, "retry_on"),
        ({"on_timeout": lambda record: record}, "on_timeout needs a timeout_ms"),
        ({"timeout_ms": 10, "on_timeout": _echo}, "on_timeout takes a plain function"),
        ({"dead_letters": _echo}, "dead_letters takes a plain function"),
    ],
)
def test_settings_out_of_range_are_plan_errors(options: dict[str, Any], message: str) -> None:
    stream = Flow().from_iterable(range(3))
    with pytest.raises(PlanError, match=message):
        stream.map_async(_echo, **options)


# -- order ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["reversed", "shuffled"])
async def test_ordered_results_leave_in_input_order_whatever_the_completion_order(
    parallelism: int, how: str, loop_errors: list[dict[str, Any]]
) -> None:
    exhausted = asyncio.Event()

    def records() -> Iterator[int]:
        yield from range(N)
        exhausted.set()

    gate = Gate(result=lambda n: n * 10)
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(records()).rebalance().map_async(gate, capacity=N, name=NAME)
    out = stream.process(Seen()).collect()
    running = asyncio.create_task(flow.run())
    await gate.started(N, running)
    async with asyncio.timeout(GUARD):
        await exhausted.wait()
    # The input has ended with every request still running: the end waits for all of them.
    assert gate.active == N and out.values == []
    gate.release(*completion_order(how))
    await running
    values = per_instance(out.values)
    assert sorted(v for vs in values.values() for v in vs) == [n * 10 for n in range(N)]
    assert all(vs == sorted(vs) for vs in values.values())  # each instance got its input in order
    await finished_cleanly(loop_errors)


@pytest.mark.parametrize("how", ["reversed", "shuffled"])
async def test_unordered_results_leave_in_completion_order(
    parallelism: int, how: str, loop_errors: list[dict[str, Any]]
) -> None:
    gate = Gate(result=lambda n: n * 10)
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(range(N)).rebalance()
    out = stream.map_async(gate, capacity=N, ordered=False, name=NAME).process(Seen()).collect()
    running = asyncio.create_task(flow.run())
    await gate.started(N, running)
    order = completion_order(how)
    gate.release(*order)
    await running
    values = per_instance(out.values)
    assert sorted(v for vs in values.values() for v in vs) == [n * 10 for n in range(N)]
    for emitted in values.values():
        mine = set(emitted)
        assert emitted == [n * 10 for n in order if n * 10 in mine]
    await finished_cleanly(loop_errors)


async def reference_run(
    parallelism: int, records: list[dict[str, int]], strategy: WatermarkStrategy
) -> list[Any]:
    """What ``Seen`` reports behind a plain ``map``: each record's timestamp and watermark."""
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(records, watermarks=strategy).rebalance()
    out = stream.map(lambda r: r["id"]).process(Seen()).collect()
    await flow.run()
    return sorted((value, ts, wm) for _, value, ts, wm in out.values)


STRATEGIES = {
    "punctuated": WatermarkStrategy.punctuated("ts", lag_ms=15),
    # Once per batch: segments of several records, so unordered mode really reorders.
    "per_batch": WatermarkStrategy.bounded_out_of_orderness(20, "ts"),
}


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_results_keep_timestamps_and_never_overtake_a_watermark(
    parallelism: int, ordered: bool, strategy: str, loop_errors: list[dict[str, Any]]
) -> None:
    records = stamped()
    expected = await reference_run(parallelism, records, STRATEGIES[strategy])
    gate = Gate(result=lambda r: r["id"], key=lambda r: r["id"])
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(records, watermarks=STRATEGIES[strategy]).rebalance()
    stream = stream.map_async(gate, capacity=N, ordered=ordered, name=NAME)
    out = stream.process(Seen()).collect()
    running = asyncio.create_task(flow.run())
    await gate.started(N, running)
    gate.release(*reversed(range(N)))  # the newest first: the worst case for watermarks
    await running
    # Every result reaches downstream at exactly the watermark its record met upstream, with its
    # timestamp: no watermark overtook it, and it overtook none.
    assert sorted((value, ts, wm) for _, value, ts, wm in out.values) == expected
    if not ordered and strategy == "per_batch":
        assert any(vs != sorted(vs) for vs in per_instance(out.values).values())
    await finished_cleanly(loop_errors)


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_results_leave_as_soon_as_they_are_ready_without_new_input(
    parallelism: int, ordered: bool, loop_errors: list[dict[str, Any]]
) -> None:
    gate = Gate()
    source = PushSource()
    recorder = Recorder()
    flow = Flow(parallelism=parallelism, batch_size=4)
    # Keys put 0, 1, 2 on one instance and 10, 11 on one instance.
    stream = flow.from_source(source).key_by(lambda n: n // 10)
    stream.map_async(gate, ordered=ordered, name=NAME).sink_to_callback(recorder)
    running = asyncio.create_task(flow.run())
    for n in range(3):
        await source.send(n)
        await gate.started(n + 1, running)
        gate.release(n)
        # Nothing else arrives until this result is out: it has to leave on its own.
        assert await recorder.wait_for(lambda item, n=n: item == n, running) == n
    await source.send(10)
    await source.send(11)
    await gate.started(5, running)
    gate.release(11)
    if not ordered:
        await recorder.wait_for(lambda item: item == 11, running)
    gate.release(10)
    await recorder.wait_for(lambda item: item == 10, running)
    source.close()
    await running
    assert recorder.items == ([0, 1, 2, 10, 11] if ordered else [0, 1, 2, 11, 10])
    await finished_cleanly(loop_errors)


async def test_flat_results_each_keep_the_record_timestamp(parallelism: int) -> None:
    async def copies(record: dict[str, int]) -> list[int]:
        await asyncio.sleep(0)  # a round trip
        return [record["id"]] * (record["id"] % 3)  # none, one or two results

    strategy = STRATEGIES["punctuated"]
    reference = Flow(parallelism=parallelism, batch_size=4)
    expected = (
        reference.from_iterable(stamped(), watermarks=strategy)
        .rebalance()
        .flat_map(lambda r: [r["id"]] * (r["id"] % 3))
        .process(Seen())
        .collect()
    )
    await reference.run()
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(stamped(), watermarks=strategy).rebalance()
    out = stream.map_async(copies, flat=True, ordered=False).process(Seen()).collect()
    await flow.run()
    assert sorted(row[1:] for row in out.values) == sorted(row[1:] for row in expected.values)
    assert Counter(row[1] for row in out.values) == Counter({n: n % 3 for n in range(N) if n % 3})


async def test_none_is_a_result_like_any_other(parallelism: int) -> None:
    async def nothing(record: int) -> None:
        return None

    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).rebalance().map_async(nothing).collect()
    await flow.run()
    assert out.values == [None] * N


# -- capacity and backpressure -------------------------------------------------------------------


class Limited:
    """Holds the calls of an instance until ``capacity`` of them run at once (or every record has
    started), then lets them all finish a loop turn later, so that a call the operator started
    beyond the bound meanwhile would be counted: the peak reaches the bound only if the operator
    lets it, and goes above it only if the operator does."""

    def __init__(self, capacity: int, total: int) -> None:
        self.capacity = capacity
        self.total = total
        self.started = 0
        self.active: Counter[int] = Counter()
        self.peak: Counter[int] = Counter()
        self._gates: dict[int, asyncio.Event] = {}

    async def __call__(self, item: tuple[int, int]) -> int:
        index, value = item
        self.started += 1
        self.active[index] += 1
        self.peak[index] = max(self.peak[index], self.active[index])
        gate = self._gates.setdefault(index, asyncio.Event())
        loop = asyncio.get_running_loop()
        if self.active[index] == self.capacity:
            loop.call_soon(self._gates.pop(index).set)
        if self.started == self.total:
            for waiting in self._gates.values():
                loop.call_soon(waiting.set)
            self._gates.clear()
        try:
            await gate.wait()
        finally:
            self.active[index] -= 1
        return value


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_requests_in_flight_reach_the_capacity_and_never_exceed_it(
    parallelism: int, ordered: bool
) -> None:
    capacity = 4
    total = 20 * parallelism
    limited = Limited(capacity, total)
    flow = Flow(parallelism=parallelism, batch_size=8)
    stream = flow.from_iterable(range(total)).rebalance().process(Tag())
    out = stream.map_async(limited, capacity=capacity, ordered=ordered).collect()
    async with asyncio.timeout(GUARD):
        await flow.run()
    assert sorted(out.values) == list(range(total))
    assert sorted(limited.peak) == list(range(parallelism))
    assert set(limited.peak.values()) == {capacity}


async def test_a_blocked_lookup_stops_the_source_and_cancelling_the_job_cancels_it(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    batch, mailbox, capacity = 4, 2, 4
    meter = Meter()

    def endless() -> Iterator[int]:
        n = 0
        while True:
            meter.produce()
            yield n
            n += 1

    gate = Gate()  # never released
    flow = Flow(parallelism=parallelism, batch_size=batch, mailbox_capacity=mailbox)
    flow.from_iterable(endless()).rebalance().map_async(gate, capacity=capacity, name=NAME).collect()
    # Full mailboxes and one batch in hand per actor, plus the requests each instance holds.
    bound = in_flight_bound(flow.plan(), batch, mailbox) + capacity * parallelism
    running = asyncio.create_task(flow.run())
    await gate.started(capacity, running)
    await meter.until_source_parks(bound)
    assert capacity < meter.produced <= bound
    assert capacity <= gate.active <= capacity * parallelism
    assert len(gate.calls) == gate.active  # nothing started beyond the capacity
    in_flight = gate.active

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert gate.cancelled == in_flight  # every request in flight was cancelled
    await finished_cleanly(loop_errors)


# -- timeouts, retries, failures -----------------------------------------------------------------


async def test_a_timeout_fails_the_job_naming_the_record_and_the_operator(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    clock = ManualClock(0)
    gate = Gate()  # never released
    flow = Flow(parallelism=parallelism, batch_size=2, clock=clock)
    flow.from_iterable(range(6)).rebalance().map_async(gate, timeout_ms=1_000, name=NAME).collect()
    running = asyncio.create_task(flow.run())
    await gate.started(6, running)
    assert clock.waiters == 6  # one deadline per request
    clock.advance(999)
    assert clock.waiters == 6
    clock.advance(1)
    with pytest.raises(
        TimeoutError, match=r"record \d timed out after 1000 ms \(1 attempt\(s\)\)"
    ) as caught:
        async with asyncio.timeout(GUARD):
            await running
    assert f"in {NAME}[" in str(caught.value)
    assert any(f"raised in operator {NAME}[" in note for note in caught.value.__notes__)
    assert gate.cancelled == 6
    assert clock.waiters == 0
    await finished_cleanly(loop_errors)


@pytest.mark.parametrize("handler", ["on_timeout", "dead_letters"])
async def test_a_timed_out_request_can_fall_back_or_go_to_dead_letters(
    parallelism: int, handler: str, loop_errors: list[dict[str, Any]]
) -> None:
    clock = ManualClock(0)
    gate = Gate()
    letters: list[FailedRequest] = []
    options: dict[str, Any] = (
        {"on_timeout": lambda n: -n} if handler == "on_timeout" else {"dead_letters": letters.append}
    )
    flow = Flow(parallelism=parallelism, batch_size=2, clock=clock)
    stream = flow.from_iterable(range(6)).rebalance()
    out = stream.map_async(gate, timeout_ms=1_000, name=NAME, **options).process(Seen()).collect()
    running = asyncio.create_task(flow.run())
    await gate.started(6, running)
    gate.release(0, 2, 4)
    await gate.returned(0, 2, 4, running=running)
    assert clock.waiters == 3  # the deadlines of finished requests are gone
    clock.advance(1_000)
    async with asyncio.timeout(GUARD):
        await running
    values = per_instance(out.values)
    if handler == "on_timeout":
        assert sorted(v for vs in values.values() for v in vs) == [-5, -3, -1, 0, 2, 4]
        assert all(vs == sorted(vs, key=abs) for vs in values.values())  # still in input order
        assert letters == []
    else:
        assert sorted(v for vs in values.values() for v in vs) == [0, 2, 4]
        assert sorted(letter.record for letter in letters) == [1, 3, 5]
        assert all(isinstance(letter.error, TimeoutError) for letter in letters)
        assert all(letter.operator.startswith(f"{NAME}[") and letter.attempts == 1 for letter in letters)
        # One vocabulary: a failed request is a FailedRecord, its record also its value.
        assert all(isinstance(letter, FailedRecord) and letter.value == letter.record for letter in letters)
    assert gate.cancelled == 3
    await finished_cleanly(loop_errors)


async def test_a_request_that_fails_twice_then_succeeds_is_retried_after_the_delay(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    clock = ManualClock(0)
    records = 6
    attempts: dict[int, list[int]] = defaultdict(list)
    reached: list[tuple[int, asyncio.Future[None]]] = []

    async def flaky(n: int) -> int:
        attempts[n].append(clock.now())
        made = sum(len(times) for times in attempts.values())
        for count, future in reached:
            if made >= count and not future.done():
                future.set_result(None)
        if len(attempts[n]) <= 2:
            raise ConnectionError(f"attempt {len(attempts[n])} of {n} failed")
        return n * 10

    async def attempts_made(count: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reached.append((count, future))
        await arrival(future, running)

    flow = Flow(parallelism=parallelism, batch_size=2, clock=clock)
    stream = flow.from_iterable(range(records)).rebalance()
    out = stream.map_async(flaky, retries=2, retry_delay_ms=50, name=NAME).collect()
    running = asyncio.create_task(flow.run())
    await attempts_made(records)
    assert clock.waiters == records  # every request waits out its delay on the clock
    clock.advance(49)
    assert clock.waiters == records
    clock.advance(1)
    await attempts_made(2 * records)
    clock.advance(50)
    async with asyncio.timeout(GUARD):
        await running
    assert sorted(out.values) == [n * 10 for n in range(records)]
    assert dict(attempts) == {n: [0, 50, 100] for n in range(records)}
    await finished_cleanly(loop_errors)


@pytest.mark.parametrize(
    ("retry_on", "attempts"), [((Exception,), 3), ((ConnectionError,), 1)], ids=["retried", "not-retried"]
)
async def test_a_request_that_keeps_failing_fails_the_job_with_its_own_error(
    parallelism: int,
    retry_on: tuple[type[Exception], ...],
    attempts: int,
    loop_errors: list[dict[str, Any]],
) -> None:
    error = ValueError("no such user")
    calls: Counter[int] = Counter()
    cancelled = 0
    never = asyncio.Event()

    async def lookup(n: int) -> int:
        nonlocal cancelled
        calls[n] += 1
        if n == 17:
            raise error
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return n

    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(range(N)).rebalance()
    stream.map_async(lookup, retries=2, retry_delay_ms=0, retry_on=retry_on, name=NAME).collect()
    with pytest.raises(ValueError) as caught:
        await flow.run()
    assert caught.value is error
    notes = caught.value.__notes__
    assert f"actorflow: async request for record 17 failed after {attempts} attempt(s)" in notes
    assert any(note.startswith(f"actorflow: raised in operator {NAME}[") for note in notes)
    assert calls[17] == attempts
    assert cancelled == len(calls) - 1  # the other requests in flight were cancelled
    await finished_cleanly(loop_errors)


async def test_dead_letters_take_failed_requests_and_the_job_goes_on(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    letters: list[FailedRequest] = []

    async def lookup(n: int) -> int:
        await asyncio.sleep(0)
        if n % 5 == 0:
            raise LookupError(f"no user {n}")
        return n

    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(range(N)).rebalance()
    out = stream.map_async(lookup, retries=1, retry_delay_ms=0, dead_letters=letters.append).collect()
    await flow.run()
    assert sorted(out.values) == [n for n in range(N) if n % 5]
    assert sorted(letter.record for letter in letters) == list(range(0, N, 5))
    assert all(isinstance(letter.error, LookupError) and letter.attempts == 2 for letter in letters)
    assert all(letter.operator.startswith("map_async[") for letter in letters)
    # Counted per instance (what actorflow_dead_letters_total sums), and the operator's own
    # records out leave them out: its results leave through wake-ups and its end of input too.
    assert flow.metrics is not None
    instances = [entry for entry in flow.metrics.actors if "map_async" in entry.operators]
    assert sum(entry.operators["map_async"].dead_letter_count for entry in instances) == len(letters)
    counts = [c for entry in instances for c in entry.operator_metrics() if c.name == "map_async"]
    assert sum(c.records_in for c in counts) == N
    assert sum(c.records_out for c in counts) == N - len(letters)
    await finished_cleanly(loop_errors)


async def test_a_failing_dead_letter_callback_fails_the_job(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    error = OSError("dead-letter queue unreachable")

    async def lookup(n: int) -> int:
        if n == 7:
            raise LookupError(n)
        return n

    def dead_letters(letter: FailedRequest) -> None:
        raise error

    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(range(N)).rebalance()
    stream.map_async(lookup, dead_letters=dead_letters, name=NAME).collect()
    with pytest.raises(OSError) as caught:
        await flow.run()
    assert caught.value is error
    assert "actorflow: raised by dead_letters for record 7" in caught.value.__notes__
    await finished_cleanly(loop_errors)


async def test_a_cancelled_error_from_inside_fn_fails_the_request_instead_of_hanging(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    async def lookup(n: int) -> int:
        if n == 3:
            cancelled: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            cancelled.cancel()  # a library cancelled the future we wait on, not our task
            return await cancelled
        return n

    flow = Flow(parallelism=parallelism, batch_size=4)
    flow.from_iterable(range(N)).rebalance().map_async(lookup, name=NAME).collect()
    with pytest.raises(RuntimeError, match="record 3 raised CancelledError without being cancelled"):
        async with asyncio.timeout(GUARD):
            await flow.run()
    await finished_cleanly(loop_errors)


# -- the operator, driven by hand ----------------------------------------------------------------


def open_operator(
    fn: Callable[[Any], Any], index: int = 0, parallelism: int = 1, **options: Any
) -> AsyncMapOperator:
    operator = AsyncMapOperator("op", AsyncMapSpec(fn, **options))
    operator.open(OperatorContext("op", index, parallelism, clock=ManualClock(0)))
    return operator


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_finish_waits_for_every_request_then_passes_the_final_watermark(ordered: bool) -> None:
    gate = Gate(result=lambda n: n * 10)
    operator = open_operator(gate, ordered=ordered)
    batch = Batch([0, 1, 2, 3], [100, 101, 102, 103], [(2, 50), (4, MAX_WATERMARK)])
    assert await operator.process_async(batch) is None  # nothing finished, watermarks held back
    finishing = asyncio.create_task(operator.finish_async())
    await gate.started(4)
    gate.release(3, 1, 2, 0)
    async with asyncio.timeout(GUARD):
        rest = await finishing
    assert rest is not None
    expected = [0, 10, 20, 30] if ordered else [10, 0, 30, 20]  # unordered: in completion order per segment
    assert (rest.values, rest.timestamps) == (expected, [v // 10 + 100 for v in expected])
    assert rest.marks == [(2, 50), (4, MAX_WATERMARK)]
    assert operator.in_flight == 0
    await operator.close_async()


async def test_a_full_operator_waits_for_room_and_emits_what_finished_meanwhile() -> None:
    gate = Gate()
    operator = open_operator(gate, capacity=2)
    processing = asyncio.create_task(operator.process_async(Batch([0, 1, 2, 3])))
    await gate.started(2)
    assert operator.in_flight == 2 and gate.calls == [0, 1]
    gate.release(1)
    await gate.returned(1)
    # Done but behind 0 in order: it still takes room, so 2 cannot start.
    assert not processing.done() and operator.in_flight == 2 and gate.calls == [0, 1]
    gate.release(0)
    await gate.started(4)
    async with asyncio.timeout(GUARD):
        out = await processing
    assert out is not None and out.values == [0, 1]
    assert operator.in_flight == 2
    gate.release(2, 3)
    assert (await operator.finish_async()).values == [2, 3]  # type: ignore[union-attr]
    await operator.close_async()


async def test_closing_cancels_the_requests_in_flight() -> None:
    gate = Gate()
    operator = open_operator(gate)
    await operator.process_async(Batch(list(range(5))))
    await gate.started(5)
    await operator.close_async()
    assert gate.cancelled == 5
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_a_snapshot_holds_the_unanswered_input_and_a_restore_requests_it_again(
    ordered: bool,
) -> None:
    gate = Gate(result=lambda n: n * 10)
    operator = open_operator(gate, ordered=ordered)
    assert operator.snapshot_state() is None
    await operator.process_async(Batch([0, 1, 2], [100, 101, 102], [(1, 50), (3, 60)]))
    await gate.started(3)
    gate.release(0, 2)
    await gate.returned(0, 2)
    out = operator.on_wakeup()
    assert out is not None
    if ordered:  # 2 waits behind 1, and so does the watermark 60
        assert (out.values, out.marks) == ([0], [(1, 50)])
        expected_state = [("r", 1, 101), ("r", 2, 102), ("w", 60)]
    else:  # 2 left as soon as the watermark 50 had
        assert (out.values, out.marks) == ([0, 20], [(1, 50)])
        expected_state = [("r", 1, 101), ("w", 60)]
    state = operator.snapshot_state()
    assert state == expected_state
    await operator.close_async()

    again = Gate(result=lambda n: n * 10)
    restored = open_operator(again, ordered=ordered)
    restored.restore_state([state])
    records = [element[1] for element in expected_state if element[0] == "r"]
    await again.started(len(records))
    again.release(*records)
    rest = await restored.finish_async()
    assert rest is not None
    assert (rest.values, rest.timestamps) == ([n * 10 for n in records], [n + 100 for n in records])
    assert rest.marks == [(len(records), 60)]
    await restored.close_async()


async def test_a_restore_deals_the_checkpointed_instances_out_round_robin() -> None:
    states = [[("w", 40), ("r", 1, None)], [("r", 2, None)], [("r", 3, None)]]
    gates = [Gate(), Gate()]
    operators = [open_operator(gates[i], index=i, parallelism=2) for i in range(2)]
    for operator in operators:
        operator.restore_state(states)
    await gates[0].started(2)
    await gates[1].started(1)
    assert (gates[0].calls, gates[1].calls) == ([1, 3], [2])
    # The watermark restored ahead of record 1 leaves at the first wake-up, before any result.
    ready = operators[0].wakeup()
    assert ready is not None and ready.done()
    out = operators[0].on_wakeup()
    assert out is not None and (out.values, out.marks) == ([], [(0, 40)])
    for gate, operator in zip(gates, operators, strict=True):
        gate.release(*gate.calls)
        rest = await operator.finish_async()
        assert rest is not None and rest.values == gate.calls
        await operator.close_async()


# -- properties ----------------------------------------------------------------------------------

InputEvent = tuple[str, int]  # ("r", record id) or ("w", watermark)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """An input (records and watermarks) cut into batches, a completion priority, and how many
    requests complete after each batch."""
    kinds = draw(st.lists(st.booleans(), max_size=40))
    events: list[InputEvent] = []
    records = 0
    for position, is_record in enumerate(kinds):
        if is_record:
            events.append(("r", records))
            records += 1
        else:
            events.append(("w", position * 10))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=10))) if events else []
    bounds = [0, *(cut for cut in cuts if cut < len(events)), len(events)]
    pieces = [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return {
        "pieces": pieces,
        "priority": draw(st.permutations(range(records))),
        "releases": draw(st.lists(st.integers(0, 4), min_size=len(pieces), max_size=len(pieces))),
        "ordered": draw(st.booleans()),
        "flat": draw(st.booleans()),
        "stamped": draw(st.booleans()),
    }


def results_of(record: int, flat: bool) -> list[int]:
    return [record] * (record % 3) if flat else [record]


def normalised(stream: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Consecutive watermarks with no record between them say no more than the last of them."""
    out: list[tuple[Any, ...]] = []
    for item in stream:
        if item[0] == "w" and out and out[-1][0] == "w":
            out[-1] = item
        else:
            out.append(item)
    return out


async def run_scenario(scenario: dict[str, Any]) -> None:
    ordered, flat, stamped_ = scenario["ordered"], scenario["flat"], scenario["stamped"]
    gate = Gate(result=lambda n: results_of(n, True) if flat else n)
    operator = open_operator(gate, capacity=1_000, ordered=ordered, flat=flat)
    output: list[tuple[Any, ...]] = []

    def collect(batch: Batch | None) -> None:
        if batch is None:
            return
        marks = batch.marks or []
        assert [p for p, _ in marks] == sorted(p for p, _ in marks) and all(
            0 <= p <= len(batch.values) for p, _ in marks
        )
        timestamps = batch.timestamps or [None] * len(batch.values)
        pending = iter(marks)
        mark = next(pending, None)
        for position, value in enumerate([*batch.values, None]):
            while mark is not None and mark[0] == position:
                output.append(("w", mark[1]))
                mark = next(pending, None)
            if position < len(batch.values):
                output.append(("r", value, timestamps[position]))

    def wake() -> None:
        # The wake-up future is ready exactly when on_wakeup lets something out (a flat result
        # may be empty): no wake-up lost, none spurious.
        future = operator.wakeup()
        ready = future is not None and future.done()
        if future is not None:
            future.cancel()
        before = operator.in_flight
        batch = operator.on_wakeup()
        assert ready == (batch is not None or operator.in_flight < before)
        collect(batch)

    rank = {record: i for i, record in enumerate(scenario["priority"])}
    started: list[int] = []
    released: set[int] = set()
    for piece, releases in zip(scenario["pieces"], scenario["releases"], strict=True):
        values = [n for kind, n in piece if kind == "r"]
        marks: list[tuple[int, int]] = []
        before = 0  # records of the piece before the watermark
        for kind, n in piece:
            if kind == "r":
                before += 1
            else:
                marks.append((before, n))
        timestamps = [n * 10 for n in values] if stamped_ else None
        collect(await operator.process_async(Batch(values, timestamps, marks or None)))
        started.extend(values)
        now = sorted((n for n in started if n not in released), key=rank.__getitem__)[:releases]
        gate.release(*now)
        released.update(now)
        await gate.returned(*now)
        wake()
    finishing = asyncio.create_task(operator.finish_async())
    for n in sorted(set(started) - released, key=rank.__getitem__):
        gate.release(n)
        await gate.returned(n)
    collect(await finishing)
    await operator.close_async()
    assert operator.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}

    events = [event for piece in scenario["pieces"] for event in piece]

    def record(n: int) -> list[tuple[Any, ...]]:
        return [("r", value, n * 10 if stamped_ else None) for value in results_of(n, flat)]

    expected: list[tuple[Any, ...]] = []
    if ordered:  # the same as a plain (flat) map
        for kind, n in events:
            expected.extend(record(n) if kind == "r" else [("w", n)])
    else:  # the records of each watermark segment, in completion order
        when = {n: i for i, n in enumerate(gate.finished)}
        segment: list[int] = []
        for kind, n in [*events, ("end", 0)]:
            if kind == "r":
                segment.append(n)
                continue
            for m in sorted(segment, key=when.__getitem__):
                expected.extend(record(m))
            segment = []
            if kind == "w":
                expected.append(("w", n))
    assert normalised(output) == normalised(expected)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_ordered_is_a_map_and_unordered_reorders_only_within_watermark_segments(
    scenario: dict[str, Any],
) -> None:
    asyncio.run(run_scenario(scenario), debug=True)


@settings(max_examples=25, deadline=None)
@given(
    delays=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    parallelism=st.sampled_from([1, 3]),
    batch_size=st.integers(1, 6),
    capacity=st.integers(1, 6),
    ordered=st.booleans(),
    strategy=st.sampled_from(sorted(STRATEGIES)),
)
def test_any_completion_order_in_a_flow_keeps_every_record_at_its_watermark(
    delays: list[int], parallelism: int, batch_size: int, capacity: int, ordered: bool, strategy: str
) -> None:
    records = [{"id": i, "ts": 1000 + (i * 7) % len(delays) * 10} for i in range(len(delays))]

    async def lookup(record: dict[str, int]) -> int:
        for _ in range(delays[record["id"]]):  # the lookups finish in an order of their own
            await asyncio.sleep(0)
        return record["id"]

    def run(use_async: bool) -> list[tuple[int, Any, int | None, int]]:
        flow = Flow(parallelism=parallelism, batch_size=batch_size)
        stream = flow.from_iterable(records, watermarks=STRATEGIES[strategy]).rebalance()
        if use_async:
            stream = stream.map_async(lookup, capacity=capacity, ordered=ordered)
        else:
            stream = stream.map(lambda r: r["id"])
        out = stream.process(Seen()).collect()
        flow.execute()
        return out.values

    expected, actual = run(use_async=False), run(use_async=True)
    assert sorted(actual) == sorted(expected)  # same instance, timestamp and watermark per record
    if ordered:
        assert per_instance(actual) == per_instance(expected)


async def test_a_busy_chain_emits_ready_results_even_when_its_batches_stop_before_the_operator() -> None:
    # filter -> map_async -> sink in one chain: the filter empties the batch, but the empty batch
    # still reaches the async operator, so its ready results leave now, not at a quiet moment.
    from actorflow.operators.chain import Chain
    from actorflow.operators.sinks import CollectSink
    from actorflow.operators.stateless import FilterOperator

    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def lookup(record: str) -> str:
        return await answer

    sink = CollectSink()
    operators = [
        FilterOperator("filter", lambda record: record != "noise"),
        AsyncMapOperator("lookup", AsyncMapSpec(lookup)),
        sink,
    ]
    contexts = [OperatorContext(op.name, clock=ManualClock(0)) for op in operators]
    chain = Chain(operators, contexts, [], ManualClock(0))
    await chain.open()
    await chain.on_batch(Batch(["a"]))
    answer.set_result("A")
    await asyncio.sleep(0)  # the request's task sees its answer
    await chain.on_batch(Batch(["noise"]))
    assert sink.values == ["A"]
    await chain.close()
