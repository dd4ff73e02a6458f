"""The checkpoint coordinator on its own: triggering, completion, abort, timeouts, the periodic timer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actorflow.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator
from actorflow.checkpoint.parts import SnapshotPart
from actorflow.checkpoint.storage import CheckpointInfo, MemoryStorage
from actorflow.errors import CheckpointError
from actorflow.time.clock import ManualClock


class Source:
    """Records barrier requests; the test acknowledges for the actors."""

    def __init__(self) -> None:
        self.requested: list[int] = []
        self.event = asyncio.Event()

    def request_barrier(self, checkpoint_id: int) -> None:
        self.requested.append(checkpoint_id)
        self.event.set()

    async def next_request(self) -> int:
        await self.event.wait()
        self.event.clear()
        return self.requested[-1]


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.completed = asyncio.Event()

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        self.events.append(("complete", checkpoint_id))
        self.completed.set()

    async def next_complete(self) -> None:
        await self.completed.wait()
        self.completed.clear()

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        self.events.append(("aborted", checkpoint_id))


def make(
    config: CheckpointConfig | None = None, storage: MemoryStorage | None = None
) -> tuple[CheckpointCoordinator, Source, Listener, ManualClock]:
    clock = ManualClock()
    coordinator = CheckpointCoordinator(storage or MemoryStorage(), config or CheckpointConfig(), clock)
    source = Source()
    listener = Listener()
    coordinator.begin_run(["a", "b"], [source])
    coordinator.add_participant(listener)
    return coordinator, source, listener, clock


async def test_a_checkpoint_completes_when_every_actor_acknowledged() -> None:
    coordinator, source, listener, _ = make()
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": b"1"})
    await asyncio.sleep(0)
    assert not triggered.done() and listener.events == []
    coordinator.acknowledge(checkpoint_id, "b", {"b/0": b"22", "b/1": b"333"})
    info = await triggered
    assert isinstance(info, CheckpointInfo) and info.checkpoint_id == checkpoint_id
    assert listener.events == [("complete", checkpoint_id)]
    loaded = coordinator.restore_point()
    assert loaded is not None and loaded.parts == {"a/0": b"1", "b/0": b"22", "b/1": b"333"}
    assert coordinator.stats.completed == 1 and coordinator.stats.history[0][3] == 6


async def test_a_checkpoint_that_takes_too_long_is_aborted_and_cleaned_up() -> None:
    coordinator, source, listener, clock = make(CheckpointConfig(timeout_ms=500))
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": b"1"})
    clock.advance(500)
    with pytest.raises(CheckpointError, match="not complete after 500 ms"):
        await triggered
    assert listener.events == [("aborted", checkpoint_id)]
    assert coordinator.storage.completed() == [] and coordinator.storage.clean() == []
    coordinator.acknowledge(checkpoint_id, "b", {"b/0": b"late"})  # ignored: already aborted
    assert coordinator.stats.failed == 1


async def test_a_declined_checkpoint_is_aborted_and_the_next_one_works() -> None:
    coordinator, source, _, _ = make()
    first = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.decline(checkpoint_id, "the sink is reconnecting")
    with pytest.raises(CheckpointError, match="reconnecting"):
        await first
    second = asyncio.create_task(coordinator.trigger())
    next_id = await source.next_request()
    assert next_id > checkpoint_id
    for actor in ("a", "b"):
        coordinator.acknowledge(next_id, actor, {})
    assert (await second).checkpoint_id == next_id


class FailingStorage(MemoryStorage):
    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        raise OSError("disk full")


async def test_a_failed_write_aborts_the_checkpoint() -> None:
    coordinator, source, listener, _ = make(storage=FailingStorage())
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": b"1"})
    coordinator.acknowledge(checkpoint_id, "b", {})
    with pytest.raises(CheckpointError, match="disk full"):
        await triggered
    assert listener.events == [("aborted", checkpoint_id)]


async def test_acknowledging_twice_is_an_error() -> None:
    coordinator, source, _, _ = make()
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {})
    with pytest.raises(CheckpointError, match="twice"):
        coordinator.acknowledge(checkpoint_id, "a", {})
    coordinator.acknowledge(checkpoint_id, "b", {})
    await triggered


async def test_no_checkpoint_starts_after_every_source_ended() -> None:
    coordinator, _, _, _ = make()
    coordinator.source_finished()
    with pytest.raises(CheckpointError, match="every source has ended"):
        await coordinator.trigger()


class FinishedParticipant(Listener):
    """A participant whose actor has finished (a chain sets ``finished`` at its end)."""

    finished = True


def make_two_sources(
    storage: MemoryStorage | None = None,
) -> tuple[CheckpointCoordinator, Source, Source, Listener, FinishedParticipant]:
    coordinator = CheckpointCoordinator(storage or MemoryStorage(), CheckpointConfig(), ManualClock())
    running, ended = Source(), Source()
    coordinator.begin_run(["a", "b"], [running, ended])
    live, finished = Listener(), FinishedParticipant()
    coordinator.add_participant(live)
    coordinator.add_participant(finished)
    return coordinator, running, ended, live, finished


async def test_after_one_source_ended_a_checkpoint_takes_the_final_state_of_finished_actors() -> None:
    coordinator, running, _, live, finished = make_two_sources()
    coordinator.source_finished()
    coordinator.actor_finished("b", {"b/0": b"final"})
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await running.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": b"at the barrier"})
    info = await triggered
    loaded = coordinator.restore_point()
    assert loaded is not None and loaded.parts == {"a/0": b"at the barrier", "b/0": b"final"}
    # A finished sink commits what it pre-committed at its end when a checkpoint completes.
    assert live.events == finished.events == [("complete", info.checkpoint_id)]


async def test_an_actor_that_finishes_during_a_checkpoint_acknowledges_with_its_final_state() -> None:
    coordinator, running, _, _, _ = make_two_sources()
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await running.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": b"1"})
    await _settle()
    assert not triggered.done()
    coordinator.actor_finished("b", {"b/0": b"final"})  # no barrier reached it: its input ended
    info = await triggered
    assert info.checkpoint_id == checkpoint_id
    loaded = coordinator.restore_point()
    assert loaded is not None and loaded.parts == {"a/0": b"1", "b/0": b"final"}


async def test_a_finished_participant_hears_only_the_final_checkpoints_abort() -> None:
    coordinator, running, _, live, finished = make_two_sources()
    coordinator.actor_finished("b", {"b/0": b"final"})
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await running.next_request()
    coordinator.decline(checkpoint_id, "no")
    with pytest.raises(CheckpointError, match="no"):
        await triggered
    # Its last transaction stays pending: it commits with the next completed checkpoint.
    assert live.events == [("aborted", checkpoint_id)] and finished.events == []


async def _settle() -> None:
    """Let every ready task run until none is (the coordinator's work is all in-process)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_checkpoints_are_triggered_periodically_with_a_minimum_pause() -> None:
    coordinator, source, listener, clock = make(CheckpointConfig(interval_ms=1_000, min_pause_ms=800))
    periodic = asyncio.create_task(coordinator.run_periodic())
    await _settle()
    starts = []
    # Each checkpoint takes 600 ms, so the next starts at max(start + 1000, end + 800) = start + 1400
    # (the first at 1000: one interval after the timer started).
    for expected_start in (1_000, 2_400, 3_800):
        clock.set(expected_start - 1)
        await _settle()
        assert len(source.requested) == len(starts), f"triggered before {expected_start}"
        clock.set(expected_start)
        checkpoint_id = await source.next_request()
        starts.append(clock.now())
        clock.advance(600)
        for actor in ("a", "b"):
            coordinator.acknowledge(checkpoint_id, actor, {})
        await listener.next_complete()
    periodic.cancel()
    with pytest.raises(asyncio.CancelledError):
        await periodic
    assert starts == [1_000, 2_400, 3_800]


async def test_a_stopping_job_takes_its_savepoint_but_no_further_checkpoint() -> None:
    coordinator, source, _, clock = make(CheckpointConfig(interval_ms=1_000))
    periodic = asyncio.create_task(coordinator.run_periodic())
    await _settle()
    coordinator.stopping = True  # what Flow.stop() sets before its savepoint
    savepoint = asyncio.create_task(coordinator.trigger("savepoint"))
    checkpoint_id = await source.next_request()
    clock.advance(1_000)  # the periodic timer is due while the savepoint is in flight
    await _settle()
    for actor in ("a", "b"):
        coordinator.acknowledge(checkpoint_id, actor, {})
    assert (await savepoint).kind == "savepoint"
    await periodic  # it saw the stop and ended instead of triggering
    assert source.requested == [checkpoint_id]
    with pytest.raises(CheckpointError, match="stopping"):
        await coordinator.trigger()


class FailingCommit(Listener):
    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        raise RuntimeError("the sink could not commit")


async def test_a_failed_commit_reaches_the_trigger_and_keeps_the_checkpoint(
    loop_errors: list[dict[str, Any]],
) -> None:
    coordinator, source, _, _ = make()
    coordinator.add_participant(FailingCommit())
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    for actor in ("a", "b"):
        coordinator.acknowledge(checkpoint_id, actor, {})
    with pytest.raises(RuntimeError, match="could not commit"):
        await triggered
    # The manifest was written before the commit: the checkpoint stays, a restore commits again.
    assert [info.checkpoint_id for info in coordinator.storage.completed()] == [checkpoint_id]
    await _settle()
    assert loop_errors == []


async def test_a_finished_participant_hears_when_the_final_checkpoint_fails() -> None:
    coordinator, _, _, _, finished = make_two_sources(FailingStorage())
    for actor in ("a", "b"):
        coordinator.actor_finished(actor, {f"{actor}/0": b"final"})
    with pytest.raises(CheckpointError, match="disk full"):
        await coordinator.complete_final()
    assert [event for event, _ in finished.events] == ["aborted"]


async def test_a_snapshot_part_is_stored_when_its_data_is_ready_with_its_files(tmp_path: Any) -> None:
    coordinator, source, _, _ = make()
    sst = tmp_path / "000012.sst"
    sst.write_bytes(b"s" * 1000)
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    assert coordinator.kind_of(checkpoint_id) == "checkpoint"
    data: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": SnapshotPart(data, {"db/000012.sst": str(sst)})})
    coordinator.acknowledge(checkpoint_id, "b", {"b/0": SnapshotPart(b"22")})
    await asyncio.sleep(0)
    assert not triggered.done()  # the part's data is still being made
    data.set_result(b"forked")
    info = await triggered
    assert sorted(info.parts) == ["a/0", "b/0"] and list(info.shared) == ["db/000012.sst"]
    assert coordinator.stats.history[0][3] == len(b"forked") + 2 + 1000
    loaded = coordinator.restore_point()
    assert loaded is not None and loaded.parts["a/0"] == b"forked"
    # The next checkpoint lists the file again without copying it: it costs its own bytes only.
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()
    coordinator.acknowledge(checkpoint_id, "a", {"a/0": SnapshotPart(b"meta", {"db/000012.sst": str(sst)})})
    coordinator.acknowledge(checkpoint_id, "b", {"b/0": b"22"})
    info = await triggered
    assert list(info.shared) == ["db/000012.sst"] and coordinator.stats.history[1][3] == 6


async def test_a_snapshot_part_whose_data_fails_aborts_the_checkpoint() -> None:
    coordinator, source, listener, _ = make()
    triggered = asyncio.create_task(coordinator.trigger())
    checkpoint_id = await source.next_request()

    async def failing() -> bytes:
        raise RuntimeError("the child died")

    coordinator.acknowledge(checkpoint_id, "a", {"a/0": SnapshotPart(failing())})
    coordinator.acknowledge(checkpoint_id, "b", {"b/0": b"1"})
    with pytest.raises(CheckpointError, match="the child died"):
        await triggered
    assert listener.events == [("aborted", checkpoint_id)]


async def test_a_savepoint_in_progress_is_known_as_one() -> None:
    coordinator, source, _, _ = make()
    triggered = asyncio.create_task(coordinator.trigger("savepoint"))
    checkpoint_id = await source.next_request()
    assert coordinator.kind_of(checkpoint_id) == "savepoint"
    coordinator.acknowledge(checkpoint_id, "a", {})
    coordinator.acknowledge(checkpoint_id, "b", {})
    assert (await triggered).kind == "savepoint"
