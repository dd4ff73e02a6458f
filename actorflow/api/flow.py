"""The flow: sources, defaults for the whole job, and running it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from actorflow.api import nodes
from actorflow.api.stream import DataStream
from actorflow.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator, CheckpointStats
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.restart import NoRestart, RestartStrategy
from actorflow.checkpoint.storage import CheckpointInfo, CheckpointStorage, LoadedCheckpoint
from actorflow.errors import CheckpointError, CorruptCheckpointError, PlanError, StateError
from actorflow.operators.chain import SourceActor
from actorflow.operators.snapshots import ended_at, states_of
from actorflow.operators.sources import DeadLetter, IterableSource, JsonLinesSource, Source, TaskRunner
from actorflow.plan.deploy import deploy
from actorflow.plan.graph import LogicalGraph
from actorflow.plan.physical import PhysicalPlan, compile_graph
from actorflow.runtime import forked
from actorflow.runtime.job import run_actors
from actorflow.runtime.metrics import JobMetrics
from actorflow.state import removal
from actorflow.state.backends import StateBackendConfig
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM
from actorflow.time.clock import Clock, SystemClock
from actorflow.time.watermarks import WatermarkStrategy

uvloop: ModuleType | None
try:  # with the module, not in a run: its import (and asyncio's thread pool's) is a one-time cost
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a default dependency where it exists
    uvloop = None

__all__ = ["Flow", "RunStart", "deferring_execute", "new_event_loop"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RunStart:
    """What a start of the job's actors begins from, told to :attr:`Flow.start_listeners`."""

    #: The checkpoint or savepoint restored, or None (the beginning of the input).
    restored: CheckpointInfo | None
    #: 0 for the first start of :meth:`Flow.run`, n for its n-th restart after a failure.
    restart: int
    #: Every source had ended in the restored checkpoint: nothing is left to read.
    input_ended: bool


# Set while a command (``actorflow run|plan``) imports a flow's file: execute() then hands the flow
# over instead of running it (see deferring_execute).
_deferred: ContextVar[list[Flow] | None] = ContextVar("actorflow_deferred_execute", default=None)


#: Parts of actorflow above this layer that a Flow offers as methods (``flow.sql``), registered
#: by the top-level package: ``{name: factory(flow) -> the part's object for that flow}``.
EXTENSIONS: dict[str, Callable[[Any], Any]] = {}


def _extension(name: str, flow: Any) -> Any:
    factory = EXTENSIONS.get(name)
    if factory is None:
        raise PlanError(f"flow.{name}() needs actorflow's {name} extra: pip install 'actorflow[{name}]'")
    return factory(flow)


class Flow:
    """A streaming job: add sources, chain operators onto them, end in sinks, then run it.

    ``parallelism`` is the default number of instances per operator; ``batch_size`` the most records
    a batch carries; ``mailbox_capacity`` the bound, in batches, of every mailbox; ``clock`` the
    source of processing time (a :class:`~actorflow.time.clock.ManualClock` in tests).

    >>> flow = Flow("doubler")
    >>> doubled = flow.from_iterable([1, 2, 3]).map(lambda n: n * 2).collect()
    >>> flow.execute()
    >>> doubled.values
    [2, 4, 6]
    """

    def __init__(
        self,
        name: str = "flow",
        *,
        parallelism: int = 1,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        batch_size: int = 1024,
        mailbox_capacity: int = 8,
        clock: Clock | None = None,
    ) -> None:
        if parallelism < 1 or max_parallelism < parallelism:
            raise PlanError("need 1 <= parallelism <= max_parallelism")
        if batch_size < 1 or mailbox_capacity < 1:
            raise PlanError("batch_size and mailbox_capacity must be at least 1")
        self.name = name
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.batch_size = batch_size
        self.mailbox_capacity = mailbox_capacity
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._graph = LogicalGraph()
        self._running = False
        self._storage: CheckpointStorage | None = None
        self._checkpoint_config = CheckpointConfig()
        self._restart: RestartStrategy = NoRestart()
        #: Where keyed state lives: $ACTORFLOW_STATE_BACKEND, else the heap (see set_state_backend).
        self.state_backend = StateBackendConfig.from_env()
        self._coordinator: CheckpointCoordinator | None = None
        self._stop: asyncio.Event | None = None
        self._actors: list[Any] = []
        self._draining = False
        #: How many times the running (or last) job restarted after a failure.
        self.restarts = 0
        #: The actors and channels of the current (or last) run, for metrics; None before a run.
        self.metrics: JobMetrics | None = None
        #: Checkpoints of the running (or last) job, across its restarts.
        self.checkpoint_stats = CheckpointStats()
        #: Called with a :class:`RunStart` each time :meth:`run` deploys the actors (the first
        #: start and every restart), once the checkpoint to restore is chosen (the daemon logs it).
        self.start_listeners: list[Callable[[RunStart], None]] = []

    # -- checkpoints and restarts --------------------------------------------------------------

    def enable_checkpointing(
        self,
        storage: CheckpointStorage | str | os.PathLike[str],
        *,
        interval_ms: int | None = None,
        timeout_ms: int = 60_000,
        min_pause_ms: int = 0,
    ) -> Flow:
        """Take checkpoints into ``storage`` (a directory means :class:`FileSystemStorage`):
        every ``interval_ms`` if given, on :meth:`checkpoint`, and a final one when the input ends.

        ``run()`` then resumes from the newest complete checkpoint in the storage, and a restart
        after a failure (see :meth:`set_restart_strategy`) resumes from the newest one at that time.
        """
        if not isinstance(storage, CheckpointStorage):
            storage = FileSystemStorage(storage)
        self._storage = storage
        self._checkpoint_config = CheckpointConfig(interval_ms, timeout_ms, min_pause_ms)
        return self

    def set_checkpoint_interval(self, interval_ms: int | None) -> Flow:
        """Take a checkpoint every ``interval_ms`` once checkpointing is on, whether the flow turns
        it on (:meth:`enable_checkpointing`) or the daemon does (``--checkpoint-dir``); the SQL
        option ``'execution.checkpointing.interval'`` sets it.

        >>> Flow("doc").set_checkpoint_interval(10_000).checkpoint_config.interval_ms
        10000
        """
        config = self._checkpoint_config
        self._checkpoint_config = CheckpointConfig(interval_ms, config.timeout_ms, config.min_pause_ms)
        return self

    @property
    def checkpoint_storage(self) -> CheckpointStorage | None:
        """Where checkpoints go, or None while checkpointing is off (the daemon reads it)."""
        return self._storage

    @property
    def checkpoint_config(self) -> CheckpointConfig:
        """When checkpoints are taken, as :meth:`enable_checkpointing` set it."""
        return self._checkpoint_config

    def set_state_backend(
        self,
        kind: str = "heap",
        *,
        path: str | os.PathLike[str] | None = None,
        cache_mb: float = 64.0,
        cache_entries: int | None = None,
        incremental: bool = False,
    ) -> Flow:
        """Keep the keyed state of every keyed operator (process functions, SQL aggregations, joins,
        OVER, Top-N...) on the ``"heap"`` (the default, the fastest) or in an embedded
        ``"rocksdb"`` (state larger than memory; needs ``pip install 'actorflow[rocksdb]'``). No
        change to the flow's code; checkpoints and savepoints restore on either backend.

        RocksDB: every operator instance gets a fresh directory under ``path`` (default: the
        system's temporary directory), deleted when the job ends; ``cache_mb`` bounds the cache of
        live objects in front of it (counted as about 512 bytes per entry), ``cache_entries`` sets
        it in entries instead. Raises :class:`PlanError` for an unknown kind or a missing rocksdict.
        The default backend comes from ``$ACTORFLOW_STATE_BACKEND`` (heap when unset).

        ``incremental=True`` on the heap: a checkpoint after the first writes only the keys that
        changed since the previous one, as RocksDB's always do (the keyed process functions' state;
        see :mod:`actorflow.state.heap_checkpoint`); ``$ACTORFLOW_STATE_BACKEND=heap-incremental``
        chooses it for flows that do not call this. Savepoints stay whole.

        >>> Flow("doc").set_state_backend("heap").state_backend.kind
        'heap'
        """
        try:
            config = StateBackendConfig(
                kind,
                None if path is None else os.fspath(path),
                cache_mb,
                cache_entries,
                incremental,
            )
        except StateError as error:
            raise PlanError(str(error)) from None
        if kind == "rocksdb" and not _installed("rocksdict"):
            raise PlanError("the rocksdb state backend needs rocksdict: pip install 'actorflow[rocksdb]'")
        self.state_backend = config
        return self

    def set_restart_strategy(self, strategy: RestartStrategy) -> Flow:
        """Restart from the last checkpoint after a failure, as ``strategy`` allows (default: never)."""
        if not isinstance(strategy, RestartStrategy):
            raise PlanError(f"set_restart_strategy() takes a RestartStrategy, got {strategy!r}")
        self._restart = strategy
        return self

    async def checkpoint(self, kind: str = "checkpoint") -> CheckpointInfo:
        """Take a checkpoint (or ``kind="savepoint"``) of the running flow and wait for it.

        Raises :class:`CheckpointError` if the flow is not running with checkpoints enabled, or
        if the checkpoint fails.
        """
        coordinator = self._coordinator
        if coordinator is None:
            raise CheckpointError("the flow is not running with checkpoints enabled")
        return await coordinator.trigger(kind)

    async def stop(self) -> CheckpointInfo:
        """Stop the running flow gracefully: a savepoint, its commits, then every actor stops.

        ``run()`` returns normally; the next ``run()`` resumes from the savepoint. What the sources
        read after the savepoint is read again then (its effects were never committed).
        """
        coordinator = self._coordinator
        if coordinator is not None:
            coordinator.stopping = True  # the savepoint is the last checkpoint of this run
        info = await self.checkpoint("savepoint")
        assert self._stop is not None
        self._stop.set()
        return info

    def drain(self) -> None:
        """End the running flow as if every input had ended now: sources read no more (each
        after the batch it has in hand), what they read goes through every operator (timers and
        windows fire at the end of input, as at the end of a file), sinks flush, and a source
        commits its position (Kafka without checkpoints). ``run()`` then returns normally.

        The graceful stop without checkpoints (``actorflow run`` on SIGTERM): nothing read is
        lost and nothing is read twice. With checkpoints, :meth:`stop` (a savepoint) is the one
        to use: a drain ends the input, so a restored job would find it ended.
        """
        self._draining = True
        for node in self._graph.nodes:
            if node.kind == "source" and node.source is not None:
                node.source.stop()  # partition tasks too: their runner ends when its source stops
        for actor in self._actors:
            if isinstance(actor, SourceActor):
                actor.drain()

    # -- sources -------------------------------------------------------------------------------

    def from_source(
        self,
        source: Source,
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Read ``source``; with ``watermarks``, its records carry event time."""
        return nodes.add_source(self, source, name, watermarks=watermarks, parallelism=parallelism)

    def from_iterable(
        self,
        items: Iterable[T],
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> DataStream[T]:
        """The records of ``items``, in order (a bounded stream if ``items`` ends)."""
        return self.from_source(IterableSource(items), name=name, watermarks=watermarks)

    def from_json_lines(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
        dead_letters: Callable[[DeadLetter], None] | None = None,
    ) -> DataStream[Any]:
        """One record per line of a JSON-lines file; see :class:`JsonLinesSource` for bad lines."""
        return self.from_source(
            JsonLinesSource(path, dead_letters=dead_letters), name=name, watermarks=watermarks
        )

    # -- running -------------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """Raises :class:`~actorflow.errors.InputError` if a source cannot read its input at all
        (a missing file); :meth:`run` calls it before any actor starts."""
        for node in self._graph.nodes:
            if node.kind == "source":
                assert node.source is not None
                node.source.check()

    def sql(self, script: str) -> list[str]:
        """Run SQL statements (Flink SQL's streaming dialect) against this flow: ``CREATE TABLE``
        registers a table (its ``WITH`` options name a connector), ``INSERT INTO`` (or ``CREATE
        TABLE ... AS SELECT``) adds a query's operators and the table's sink to the flow, which
        :meth:`execute` then runs with the rest of it. Returns the lines ``SHOW``, ``DESCRIBE``
        and ``EXPLAIN`` give. Needs the ``sql`` extra; see docs/sql.md.

        Raises :class:`~actorflow.errors.SqlError` (one line, with the line and column) for a
        mistake in the SQL.
        """
        return _extension("sql", self).execute(script)  # type: ignore[no-any-return]

    def sql_query(self, query: str) -> DataStream[Any]:
        """The rows of one SQL query (a SELECT over this flow's tables) as a stream of dicts."""
        return _extension("sql", self).query(query)  # type: ignore[no-any-return]

    def from_table(self, name: str) -> DataStream[Any]:
        """The rows of SQL table (or view) ``name`` of this flow as a stream of dicts."""
        return _extension("sql", self).table_rows(name)  # type: ignore[no-any-return]

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Make ``function`` callable from this flow's SQL as ``name(...)``."""
        _extension("sql", self).catalog.functions[name.upper()] = function

    @property
    def graph(self) -> LogicalGraph:
        """The operators as wired, before planning (for runners that plan the flow themselves,
        as partition tasks do)."""
        return self._graph

    def plan(self, *, one_instance: bool = False) -> PhysicalPlan:
        """Compile the flow: chains, their parallelism and the partitioners between them.

        ``one_instance``: every operator at one instance, as a partition task runs the flow.
        """
        return compile_graph(self._graph, self.parallelism, one_instance=one_instance)

    def _task_runner(self) -> TaskRunner | None:
        """What runs the flow when a source asks to run it as partition tasks, else None."""
        for node in self._graph.nodes:
            if node.kind == "source" and node.source is not None:
                runner = node.source.task_runner(self)
                if runner is not None:
                    return runner
        return None

    async def run(self, *, from_savepoint: str | os.PathLike[str] | None = None) -> None:
        """Run the flow in the running event loop until every source has ended (or :meth:`stop`).

        With checkpoints enabled, resumes from ``from_savepoint`` (a savepoint or checkpoint
        directory) or else from the newest complete checkpoint in the storage. Raises
        :class:`~actorflow.errors.InputError` before it starts if an input cannot be read (see
        :meth:`check_inputs`), and otherwise the first
        exception a user function raised (with a note naming the operator), after every actor
        has stopped, once the restart strategy gives up.
        """
        if self._running:
            raise PlanError(f"flow {self.name!r} is already running")
        tasks = self._task_runner()
        if tasks is not None:
            self._running = True
            try:
                await tasks.run()
            finally:
                self._running = False
            return
        plan = self.plan()
        self.check_inputs()
        savepoint = FileSystemStorage.load_path(from_savepoint) if from_savepoint is not None else None
        if savepoint is not None and self._storage is None:
            raise PlanError("from_savepoint needs enable_checkpointing()")
        self._running = True
        self._draining = False
        self.restarts = 0
        self.checkpoint_stats = CheckpointStats()
        try:
            while True:
                coordinator = self._new_coordinator()
                restore = None
                if coordinator is not None:
                    restore = await self._choose_restore(coordinator)
                    if restore is None or (savepoint is not None and self.restarts == 0):
                        restore = savepoint or restore
                    self._check_compatible(restore)
                self._tell_start(restore)
                self.metrics = JobMetrics()
                actors = deploy(
                    plan,
                    clock=self.clock,
                    batch_size=self.batch_size,
                    mailbox_capacity=self.mailbox_capacity,
                    max_parallelism=self.max_parallelism,
                    checkpoints=coordinator,
                    restore=restore.parts if restore is not None else None,
                    metrics=self.metrics,
                    state_backend=self.state_backend,
                    restored_files=restore.files if restore is not None else None,
                )
                self._actors = actors
                # What exists now lives as long as this attempt: out of the collector's sight, so
                # that full collections walk only what the records make (SQL's Q2: a fifth less
                # CPU). After a restart the failed attempt's objects go first (thawed as it failed).
                if self.restarts:
                    gc.collect()
                forked.freeze()
                if self._draining:  # asked while starting or restarting
                    self.drain()
                try:
                    await self._run_once(actors, coordinator)
                    return
                except Exception as error:
                    delay = self._restart.delay_before(self.restarts + 1)
                    if delay is None:
                        raise
                    self.restarts += 1
                    self._coordinator = None  # nothing keeps the failed attempt's actors alive
                    forked.thaw()
                    log.warning(
                        "flow %r failed (%s: %s); restart %d from the last checkpoint in %d ms",
                        self.name,
                        type(error).__name__,
                        str(error),  # not the error: a kept log record would keep its frames
                        self.restarts,
                        delay,
                    )
                    await self.clock.sleep_until(self.clock.now() + delay)
        finally:
            self._running = False
            self._coordinator = None
            self._actors = []
            forked.thaw()  # what forked snapshots froze goes back to the collector
            await removal.removed()  # closed stores' directories, deleted in a worker thread

    def _tell_start(self, restore: LoadedCheckpoint | None) -> None:
        sources = [node.name for node in self._graph.nodes if node.kind == "source"]
        ended = restore is not None and all(ended_at(name, restore.parts) for name in sources)
        start = RunStart(restore.info if restore is not None else None, self.restarts, ended)
        for listener in self.start_listeners:
            listener(start)

    def _new_coordinator(self) -> CheckpointCoordinator | None:
        if self._storage is None:
            return None
        metadata = {"flow": self.name, "max_parallelism": self.max_parallelism}
        coordinator = CheckpointCoordinator(self._storage, self._checkpoint_config, self.clock, metadata)
        coordinator.stats = self.checkpoint_stats  # one history across restarts
        return coordinator

    async def _choose_restore(self, coordinator: CheckpointCoordinator) -> LoadedCheckpoint | None:
        """The newest intact checkpoint every source accepts (see ``Source.accepts_restore``)."""
        storage = coordinator.storage
        await asyncio.to_thread(storage.clean)
        sources = [node for node in self._graph.nodes if node.kind == "source"]
        for info in reversed(await asyncio.to_thread(storage.completed)):
            try:
                loaded = await asyncio.to_thread(storage.load, info)
            except CorruptCheckpointError as error:
                log.warning("checkpoint %d is damaged, trying an older one: %s", info.checkpoint_id, error)
                continue
            accepted = True
            for node in sources:
                assert node.source is not None
                if not await node.source.accepts_restore(states_of(node.name, loaded.parts)):
                    log.info("checkpoint %d is not the one %s committed", info.checkpoint_id, node.name)
                    accepted = False
                    break
            if accepted:
                return loaded
        return None

    def _check_compatible(self, restore: LoadedCheckpoint | None) -> None:
        if restore is None:
            return
        saved = restore.info.metadata.get("max_parallelism")
        if saved is not None and saved != self.max_parallelism:
            raise CheckpointError(
                f"checkpoint {restore.info.checkpoint_id} was taken with max_parallelism {saved}, "
                f"this flow has {self.max_parallelism}: key groups would not match"
            )

    async def _run_once(self, actors: list[Any], coordinator: CheckpointCoordinator | None) -> None:
        if coordinator is None:
            await run_actors(actors)
            return
        self._coordinator = coordinator
        self._stop = stop = asyncio.Event()
        job = asyncio.ensure_future(run_actors(actors))
        periodic = asyncio.ensure_future(coordinator.run_periodic())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                waits = {job, stopping} if periodic.done() else {job, stopping, periodic}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if periodic.done() and not periodic.cancelled():
                    failure = periodic.exception()  # a commit failed in a sink or source
                    if failure is not None:
                        raise failure
                if job.done():
                    job.result()  # the job's own failure
                    break
                if stop.is_set():
                    return  # stopped after a savepoint: the finally below cancels the actors
            periodic.cancel()
            await coordinator.complete_final()
        finally:
            for task in (job, periodic, stopping):
                task.cancel()
            for task in (job, periodic, stopping):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def execute(self) -> None:
        """Run the flow to its end in a new event loop (uvloop when installed).

        Inside :func:`deferring_execute` (while ``actorflow run`` or ``actorflow plan`` imports
        the flow's file) it only hands the flow to the command, which runs it once, with its own
        settings. Raises :class:`PlanError` when called from a running event loop: await
        :meth:`run` there.
        """
        deferred = _deferred.get()
        if deferred is not None:
            deferred.append(self)
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise PlanError(
                f"flow {self.name!r}: execute() cannot run inside a running event loop; await flow.run()"
            )
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.run())


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules as None: blocked
        return False


@contextlib.contextmanager
def deferring_execute() -> Iterator[list[Flow]]:
    """While the block runs, :meth:`Flow.execute` runs nothing: it appends its flow to the list
    this yields and returns at once, so a file that ends in ``flow.execute()`` can be imported
    by a command that runs the flow itself.

    >>> with deferring_execute() as executed:
    ...     flow = Flow("deferred")
    ...     doubled = flow.from_iterable([1, 2]).map(lambda n: n * 2).collect()
    ...     flow.execute()
    >>> [f.name for f in executed], doubled.values
    (['deferred'], [])
    """
    executed: list[Flow] = []
    token = _deferred.set(executed)
    try:
        yield executed
    finally:
        _deferred.reset(token)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, else asyncio's default."""
    if uvloop is None:  # pragma: no cover - uvloop is a default dependency where it exists
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
