"""Sources and sinks: iterables, JSON lines (with dead letters), print, callbacks, push sources."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import (
    BrokenResourceError,
    ClosedResourceError,
    DeadLetter,
    Flow,
    InputError,
    JsonLinesSource,
    PushSource,
    WatermarkStrategy,
    WouldBlock,
)

N = 30


def records(n: int = N) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"r{i}", "tags": [i % 2, i % 3]} for i in range(n)]


def by_id(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(values, key=lambda r: r["id"])


# -- iterables ---------------------------------------------------------------------------------------


async def test_from_iterable_reads_every_item(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).rebalance().map(lambda n: n).collect()
    await flow.run()
    assert sorted(out.values) == list(range(N))


async def test_from_iterable_keeps_order_through_a_single_chain() -> None:
    flow = Flow(parallelism=1, batch_size=3)
    out = flow.from_iterable(n for n in range(N)).collect()
    await flow.run()
    assert out.values == list(range(N))


async def test_from_iterable_of_nothing_ends_at_once(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    out = flow.from_iterable([]).map(lambda n: n).collect()
    await flow.run()
    assert out.values == []


# -- JSON lines --------------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


async def test_from_json_lines_reads_records_and_skips_blank_lines(
    tmp_path: Path, parallelism: int
) -> None:
    data = records()
    lines = []
    for record in data:
        lines.append(orjson.dumps(record) + b"\n")
        if record["id"] % 4 == 0:
            lines.append(b"\n" if record["id"] % 8 else b"   \t\r\n")
    path = write_lines(tmp_path / "in.jsonl", lines)
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_json_lines(path).map(lambda r: r).collect()
    await flow.run()
    assert by_id(out.values) == data


async def test_from_json_lines_reads_a_last_line_without_newline(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [b'{"id": 0}\n', b'{"id": 1}'])
    flow = Flow()
    out = flow.from_json_lines(path).collect()
    await flow.run()
    assert out.values == [{"id": 0}, {"id": 1}]


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20], ids=["small-chunks", "one-chunk"])
async def test_a_bad_json_line_fails_the_job_naming_file_and_line(
    tmp_path: Path, parallelism: int, chunk_bytes: int
) -> None:
    lines = [orjson.dumps(r) + b"\n" for r in records(10)]
    lines.insert(3, b"\n")  # blank lines still count as lines
    lines.insert(7, b'{"id": 99, oops}\n')  # line 8 of the file
    path = write_lines(tmp_path / "bad.jsonl", lines)
    flow = Flow(parallelism=parallelism, batch_size=4)
    flow.from_source(JsonLinesSource(path, chunk_bytes=chunk_bytes)).map(lambda r: r).collect()
    with pytest.raises(ValueError) as caught:
        await flow.run()
    assert f"{path}:8" in str(caught.value)


async def test_dead_letters_receive_bad_lines_and_good_ones_flow_on(
    tmp_path: Path, parallelism: int
) -> None:
    data = records(10)
    lines = [orjson.dumps(r) + b"\n" for r in data]
    lines.insert(2, b"not json at all\n")  # line 3
    lines.insert(6, b'{"id": \xff}\r\n')  # line 7, not even UTF-8
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    dead: list[DeadLetter] = []
    flow = Flow(parallelism=parallelism, batch_size=4)
    source = JsonLinesSource(path, dead_letters=dead.append)
    out = flow.from_source(source).map(lambda r: r).collect()
    await flow.run()
    assert by_id(out.values) == data
    assert source.dead_letter_count == 2  # what the dead-letter metric reads
    assert [(d.raw, d.origin) for d in dead] == [
        (b"not json at all", f"{path}:3"),
        (b'{"id": \xff}', f"{path}:7"),
    ]
    assert all(isinstance(d.error, str) and d.error for d in dead)


async def test_a_line_without_its_event_time_is_a_dead_letter_with_file_and_line(
    tmp_path: Path, parallelism: int
) -> None:
    lines = [b'{"ts": 1}\n', b'{"n": 2}\n', b'{"ts": "soon"}\n', b"[3]\n", b'{"ts": 4}\n']
    path = write_lines(tmp_path / "times.jsonl", lines)
    dead: list[DeadLetter] = []
    flow = Flow(parallelism=parallelism, batch_size=2)
    source = JsonLinesSource(path, dead_letters=dead.append)
    by_ts = WatermarkStrategy.punctuated("ts", lag_ms=0)
    out = flow.from_source(source, watermarks=by_ts).map(lambda r: r).collect()
    await flow.run()
    assert sorted(r["ts"] for r in out.values) == [1, 4]
    assert [(d.raw, d.origin) for d in dead] == [
        (b'{"n": 2}', f"{path}:2"),
        (b'{"ts": "soon"}', f"{path}:3"),
        (b"[3]", f"{path}:4"),
    ]
    assert dead[0].error == "no event time in the record: KeyError: 'ts'"
    assert "must be a number" in dead[1].error
    assert source.dead_letter_count == 3


async def test_a_line_without_its_event_time_fails_the_job_naming_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "times.jsonl", [b'{"ts": 1}\n', b'{"amount": 2}\n'])
    flow = Flow()
    by_ts = WatermarkStrategy.punctuated("ts", lag_ms=0)
    flow.from_source(JsonLinesSource(path), watermarks=by_ts).collect()
    with pytest.raises(ValueError, match=rf"{path}:2: no event time in the record"):
        await flow.run()


async def test_an_event_time_beyond_64_bits_is_a_dead_letter(tmp_path: Path) -> None:
    # 2**63 + 5 is still an int to orjson (the fast path), 2**70 arrives as a float.
    lines = [
        b'{"ts": 1}\n',
        f'{{"ts": {2**63 + 5}}}\n'.encode(),
        f'{{"ts": {2**70}}}\n'.encode(),
        b'{"ts": 4}\n',
    ]
    path = write_lines(tmp_path / "times.jsonl", lines)
    dead: list[DeadLetter] = []
    flow = Flow()
    source = JsonLinesSource(path, dead_letters=dead.append)
    out = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0)).collect()
    await flow.run()
    assert [r["ts"] for r in out.values] == [1, 4]
    assert [(d.origin, d.error) for d in dead] == [
        (f"{path}:2", f"the event time {2**63 + 5} is out of range (epoch ms within 64 bits)"),
        (f"{path}:3", f"the event time {float(2**70)!r} is out of range (epoch ms within 64 bits)"),
    ]


async def test_a_missing_file_fails_the_run_before_any_actor_starts(tmp_path: Path) -> None:
    seen: list[int] = []
    flow = Flow()
    flow.from_iterable([1, 2]).sink_to_callback(seen.append)
    flow.from_json_lines(tmp_path / "missing.jsonl").collect()
    with pytest.raises(InputError, match=r"missing.jsonl: no such file$"):
        await flow.run()
    assert seen == []  # the other source never ran


async def test_bad_lines_raise_input_errors_that_say_what_is_wrong_where(tmp_path: Path) -> None:
    cases = [
        (b'{"id": 1}\n{"id": \xff}\n', "bad.jsonl:2: not UTF-8 at byte 8 of the line (b'\\xff')"),
        (b'\n\n{"id": 1,\n', "bad.jsonl:3: not valid JSON (unexpected end of data at column 11)"),
        (b'{"id": 1} x\n', "bad.jsonl:1: not valid JSON (unexpected content after document at column 11)"),
    ]
    for content, message in cases:
        path = write_lines(tmp_path / "bad.jsonl", [content])
        flow = Flow()
        flow.from_json_lines(path).collect()
        with pytest.raises(InputError) as caught:
            await flow.run()
        assert str(caught.value) == f"{tmp_path}/{message}"
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_json_lines_sink_round_trips_through_the_json_lines_source(
    tmp_path: Path, parallelism: int
) -> None:
    data = records()
    path = tmp_path / "out.jsonl"
    writer = Flow(parallelism=parallelism, batch_size=4)
    writer.from_iterable(data).rebalance().map(lambda r: r).sink_to_json_lines(path)
    await writer.run()
    assert len(path.read_bytes().splitlines()) == N

    reader = Flow(parallelism=parallelism, batch_size=4)
    out = reader.from_json_lines(path).collect()
    await reader.run()
    assert by_id(out.values) == data


# -- print, collect, callbacks -----------------------------------------------------------------------


async def test_print_writes_one_line_per_record(
    capsys: pytest.CaptureFixture[str], parallelism: int
) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    flow.from_iterable(range(N)).rebalance().map(lambda n: n * 10).print(prefix="> ")
    await flow.run()
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(f"> {n * 10}" for n in range(N))


async def test_collect_sees_records_of_every_instance(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    sink = flow.from_iterable(range(N)).rebalance().map(lambda n: -n).collect()
    assert sink.values == []  # nothing runs before run()
    await flow.run()
    assert sorted(sink.values) == sorted(-n for n in range(N))


async def test_sink_to_callback_with_a_plain_function(parallelism: int) -> None:
    seen: list[int] = []
    flow = Flow(parallelism=parallelism, batch_size=4)
    flow.from_iterable(range(N)).rebalance().map(lambda n: n + 1).sink_to_callback(seen.append)
    await flow.run()
    assert sorted(seen) == list(range(1, N + 1))


async def test_sink_to_callback_awaits_an_async_function(parallelism: int) -> None:
    seen: list[int] = []
    finished: list[int] = []

    async def slow(record: int) -> None:
        seen.append(record)
        await asyncio.sleep(0)  # give up the loop mid-record: the sink must still await us
        finished.append(record)

    flow = Flow(parallelism=parallelism, batch_size=4)
    flow.from_iterable(range(N)).rebalance().map(lambda n: n).sink_to_callback(slow)
    await flow.run()
    assert sorted(seen) == sorted(finished) == list(range(N))


# -- push sources ------------------------------------------------------------------------------------


async def test_push_source_feeds_an_embedded_flow_until_closed(parallelism: int) -> None:
    source = PushSource(capacity=4)
    flow = Flow(parallelism=parallelism, batch_size=3)
    out = flow.from_source(source).rebalance().map(lambda n: n * 2).collect()

    async def feed() -> None:
        for n in range(N):
            await source.send(n)
        source.close()

    async with asyncio.TaskGroup() as group:
        running = group.create_task(flow.run())
        group.create_task(feed())
    assert running.done()
    assert sorted(out.values) == [n * 2 for n in range(N)]


async def test_push_source_send_all_and_buffered_records_before_the_flow_starts(parallelism: int) -> None:
    source = PushSource(capacity=N)
    for n in range(5):
        source.send_nowait(n)
    assert source.pending == 5
    flow = Flow(parallelism=parallelism, batch_size=3)
    out = flow.from_source(source).rebalance().map(lambda n: n).collect()

    async def feed() -> None:
        await source.send_all(range(5, N))
        source.close()

    async with asyncio.TaskGroup() as group:
        group.create_task(flow.run())
        group.create_task(feed())
    assert sorted(out.values) == list(range(N))
    assert source.pending == 0


async def test_push_source_send_after_the_flow_failed_is_broken(parallelism: int) -> None:
    source = PushSource(capacity=4)
    flow = Flow(parallelism=parallelism, batch_size=2)

    def explode(n: int) -> int:
        if n == 3:
            raise ValueError("no threes")
        return n

    flow.from_source(source).rebalance().map(explode).collect()
    running = asyncio.create_task(flow.run())
    for n in range(4):
        await source.send(n)
    with pytest.raises(ValueError, match="no threes"):
        await running
    with pytest.raises(BrokenResourceError):
        await source.send(4)
    with pytest.raises(BrokenResourceError):
        source.send_nowait(4)


async def test_a_sender_parked_on_a_full_push_source_is_woken_by_the_failure(parallelism: int) -> None:
    source = PushSource(capacity=1)
    flow = Flow(parallelism=parallelism, batch_size=1, mailbox_capacity=1)
    gate = asyncio.Event()

    async def explode(n: int) -> None:
        await gate.wait()
        raise ValueError("sink broke")

    flow.from_source(source).sink_to_callback(explode)
    running = asyncio.create_task(flow.run())

    parked = asyncio.Event()

    async def feed_forever() -> None:
        n = 0
        while True:
            try:
                source.send_nowait(n)
            except WouldBlock:
                parked.set()
                await source.send(n)
            n += 1

    feeder = asyncio.create_task(feed_forever())
    # The sink holds its first record; everything behind it fills up until the feeder parks.
    await parked.wait()
    gate.set()
    with pytest.raises(ValueError, match="sink broke"):
        await running
    with pytest.raises(BrokenResourceError):
        await feeder


def test_push_source_send_nowait_on_a_full_buffer_would_block() -> None:
    source = PushSource(capacity=2)
    source.send_nowait("a")
    source.send_nowait("b")
    with pytest.raises(WouldBlock):
        source.send_nowait("c")
    assert source.pending == 2


async def test_push_source_send_waits_for_room_in_the_buffer() -> None:
    source = PushSource(capacity=1)
    source.send_nowait("a")
    sending = asyncio.create_task(source.send("b"))
    await asyncio.sleep(0)
    assert not sending.done()  # parked: the buffer is full and no flow reads it
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert source.pending == 1


def test_push_source_send_after_close_is_closed() -> None:
    source = PushSource()
    source.close()
    with pytest.raises(ClosedResourceError):
        source.send_nowait(1)


def test_push_source_needs_a_positive_capacity() -> None:
    with pytest.raises(ValueError):
        PushSource(capacity=0)
