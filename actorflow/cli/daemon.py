"""``actorflow run``: a flow run until it ends or is stopped, with savepoints on request.

- The settings (:mod:`actorflow.cli.config`) are applied to the loaded flow first: a setting given
  by flag, environment or file **overrides** what the flow's code chose; a setting nobody gave
  leaves the flow's own choice alone (:func:`apply_config`).
- SIGTERM / SIGINT: a graceful stop, :meth:`Flow.stop() <actorflow.Flow.stop>` (a savepoint, its
  commits, then every actor stops), exit 0. Without checkpointing there is nothing to save: the job
  drains (:meth:`Flow.drain() <actorflow.Flow.drain>`: sources stop, what they read is finished,
  sinks flush, Kafka commits), exit 0. A second signal exits at once (:mod:`actorflow.cli.signals`).
- SIGUSR1, or ``actorflow savepoint`` (:mod:`actorflow.cli.control`): a savepoint, the job goes on.
- ``http_port``: the HTTP endpoint of :mod:`actorflow.web` (dashboard, metrics, health, state)
  serves while the flow runs.
- The job's life cycle is logged at ``NOTICE`` (shown by default), one line each: ``started
  fraud-detection (resumed from savepoint 19, parallelism 2)``, ``restarted ...``, ``nothing to
  do: the input ended in checkpoint 7``, ``SIGTERM: stopping ...``, ``... stopped with savepoint
  22``, ``SIGTERM: draining ...``, ``... drained: 1,200 records read``, ``fraud-detection done:
  20,000 transactions + 2 rules read``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actorflow.api.flow import Flow, RunStart
from actorflow.checkpoint.filesystem import MANIFEST, FileSystemStorage
from actorflow.checkpoint.storage import CheckpointInfo
from actorflow.cli import parsing
from actorflow.cli.config import Config
from actorflow.cli.control import ControlDir
from actorflow.cli.errors import UsageError
from actorflow.cli.logs import NOTICE
from actorflow.cli.progress import Progress, counted, records_read
from actorflow.cli.signals import DaemonSignals, exit_code
from actorflow.errors import CheckpointError, PlanError
from actorflow.state.backends import HEAP_INCREMENTAL

__all__ = ["Daemon", "apply_config"]

log = logging.getLogger("actorflow.daemon")


def apply_config(flow: Flow, config: Config) -> None:
    """Apply the settings that were given to ``flow``; raises :class:`UsageError` if they cannot be.

    ``checkpoint_interval_ms`` and ``checkpoint_timeout_ms`` alone change the checkpointing the flow
    enabled itself; with neither a ``checkpoint_dir`` nor a flow that checkpoints they are an error.
    """
    if config.parallelism is not None:
        if config.parallelism > flow.max_parallelism:
            raise UsageError(
                f"parallelism {config.parallelism} is above max_parallelism {flow.max_parallelism}"
            )
        flow.parallelism = config.parallelism
    given = [
        key
        for key in ("checkpoint_dir", "checkpoint_interval_ms", "checkpoint_timeout_ms")
        if getattr(config, key) is not None
    ]
    if given:
        storage = config.checkpoint_dir if config.checkpoint_dir is not None else flow.checkpoint_storage
        if storage is None:
            raise UsageError(
                f"{' and '.join(given)} need a checkpoint directory: set checkpoint_dir "
                "(--checkpoint-dir, $ACTORFLOW_CHECKPOINT_DIR) or enable checkpointing in the flow"
            )
        current = flow.checkpoint_config
        flow.enable_checkpointing(
            storage,
            interval_ms=config.checkpoint_interval_ms or current.interval_ms,
            timeout_ms=config.checkpoint_timeout_ms or current.timeout_ms,
            min_pause_ms=current.min_pause_ms,
        )
    _apply_state_backend(flow, config)
    if config.restart_strategy is not None:
        flow.set_restart_strategy(parsing.restart_strategy(config.restart_strategy))
    if config.from_savepoint is not None:
        if flow.checkpoint_storage is None:
            raise UsageError("from_savepoint needs checkpointing: set checkpoint_dir too")
        if not (config.from_savepoint / MANIFEST).is_file():
            raise UsageError(f"{config.from_savepoint} is not a complete savepoint or checkpoint")


def _apply_state_backend(flow: Flow, config: Config) -> None:
    """``state_backend``, ``state_dir`` and ``state_cache_mb``: the last two change a RocksDB
    backend, the flow's own or the one chosen here, and are an error with the heap."""
    if config.state_backend is None and config.state_dir is None and config.state_cache_mb is None:
        return
    current = flow.state_backend
    kind = config.state_backend or current.kind
    if kind != "rocksdb" and (config.state_dir is not None or config.state_cache_mb is not None):
        given = [key for key in ("state_dir", "state_cache_mb") if getattr(config, key) is not None]
        raise UsageError(
            f"{' and '.join(given)} need the rocksdb state backend: set state_backend = rocksdb"
        )
    incremental = kind == HEAP_INCREMENTAL or (config.state_backend is None and current.incremental)
    if kind == HEAP_INCREMENTAL:
        kind = "heap"
    same = kind == current.kind
    try:
        flow.set_state_backend(
            kind,
            path=config.state_dir if config.state_dir is not None else (current.path if same else None),
            cache_mb=config.state_cache_mb or (current.cache_mb if same else 64.0),
            cache_entries=current.cache_entries if same and config.state_cache_mb is None else None,
            incremental=incremental,
        )
    except PlanError as error:
        raise UsageError(str(error)) from None


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Daemon:
    """Runs one flow under the daemon's signals, control folder and progress line."""

    def __init__(self, flow: Flow, config: Config, target: str, progress: Progress | None = None) -> None:
        self.flow = flow
        self.config = config
        self.target = target
        self.progress = progress
        storage = flow.checkpoint_storage
        self._directory = storage.directory if isinstance(storage, FileSystemStorage) else None
        self._control = ControlDir(self._directory) if self._directory is not None else None
        self._outcome = "failed"
        self._job = self._job_factory()
        self._records = records_read(flow)
        self._nothing_to_do = False
        flow.start_listeners.append(self._log_start)

    def _job_factory(self) -> Callable[[], Awaitable[None]]:
        """What runs the flow: ``flow.run`` itself, or with the HTTP endpoint serving meanwhile.

        ``actorflow.web`` is imported only when a port is asked for: it needs the ``web`` extra.
        """
        flow, config = self.flow, self.config
        if config.http_port is None:
            return lambda: flow.run(from_savepoint=config.from_savepoint)
        try:
            from actorflow.web import HttpConfig, run_with_http
        except ImportError as error:
            raise UsageError(
                f"http_port needs the web extra (pip install 'actorflow[web]'): {error}"
            ) from None
        names = (config.http_allowed_hosts or "").split(",")
        http = HttpConfig(
            port=config.http_port,
            host=config.http_host,
            token=config.http_token,
            allowed_hosts=tuple(name.strip() for name in names if name.strip()),
        )
        return lambda: run_with_http(flow, http, from_savepoint=config.from_savepoint)

    async def run(self) -> int:
        """Run the flow; returns the exit code (0: it ended, or stopped with a savepoint).

        Raises the flow's failure (the command exits 1) and :class:`UsageError` if another job
        uses the checkpoint directory.
        """
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[int] = loop.create_future()
        doorbell = asyncio.Event()

        def on_stop(signum: int) -> None:
            if not stop.done():
                stop.set_result(signum)

        if self._control is not None:
            self._control.acquire(
                {
                    "command": "run",
                    "job": self.flow.name,
                    "target": self.target,
                    "started_ms": int(time.time() * 1000),
                }
            )
        try:
            with DaemonSignals(loop, on_stop, doorbell.set):
                return await self._supervise(stop, doorbell)
        finally:
            if self._control is not None:
                self._control.release()
            if self.progress is not None:
                self.progress.finish(self._outcome)

    async def _supervise(self, stop: asyncio.Future[int], doorbell: asyncio.Event) -> int:
        job = asyncio.ensure_future(self._job())
        helpers = [asyncio.ensure_future(self._serve_savepoints(doorbell))]
        if self.progress is not None:
            helpers.append(asyncio.ensure_future(self.progress.run()))
        try:
            first: set[asyncio.Future[Any]] = {job, stop}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if job.done():
                job.result()  # the job's failure, if it failed
                self._outcome = "done"
                if not self._nothing_to_do:
                    reading = self._records()
                    read = counted(reading.records, reading.by_source)
                    log.log(NOTICE, "%s done: %s read", self.flow.name, read)
                return 0
            return await self._stop(job, stop.result())
        finally:
            # A job that ended has been looked at above; one still running is stopped here.
            tasks = [*helpers] if job.done() else [*helpers, job]
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("while stopping job %r", self.flow.name)

    async def _stop(self, job: asyncio.Future[None], signum: int) -> int:
        name = _signal_name(signum)
        if self.flow.checkpoint_storage is None:
            return await self._drain(job, name)
        log.log(
            NOTICE,
            "%s: stopping job %r with a final savepoint (%s again stops at once)",
            name,
            self.flow.name,
            name,
        )
        stopping = asyncio.ensure_future(self.flow.stop())
        either: set[asyncio.Future[Any]] = {stopping, job}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():  # the job ended (or failed) first
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError, CheckpointError):
                await stopping
            job.result()
            self._outcome = "done"
            return 0
        try:
            info = stopping.result()
        except CheckpointError as error:
            log.warning(
                "job %r: the final savepoint failed (%s); stopping without it: the next start resumes "
                "from the newest complete checkpoint",
                self.flow.name,
                error,
            )
            self._outcome = f"stopped by {name}, the final savepoint failed"
            return exit_code(signum)
        await job  # returns once every actor has stopped
        where = self._path_of(info)
        log.log(
            NOTICE,
            "job %r stopped with savepoint %d%s",
            self.flow.name,
            info.checkpoint_id,
            f" at {where}" if where else "",
        )
        self._outcome = f"stopped with savepoint {info.checkpoint_id}"
        return 0

    async def _drain(self, job: asyncio.Future[None], name: str) -> int:
        """The graceful stop without checkpoints: nothing to save, so nothing read may be lost.
        The sources stop, what they read goes through, sinks flush, sources commit (Kafka); exit
        0. (Cancelling instead would drop what is in flight, and a Kafka source would not commit
        what was processed: the next start would process it again.) A failure while draining
        fails the job (exit 1); a second signal stops at once."""
        log.log(
            NOTICE,
            "%s: draining job %r: its sources stop, what they read is finished and written "
            "(no checkpoints to save; %s again stops at once)",
            name,
            self.flow.name,
            name,
        )
        self.flow.drain()
        await job
        reading = self._records()
        log.log(
            NOTICE, "job %r drained: %s read", self.flow.name, counted(reading.records, reading.by_source)
        )
        self._outcome = f"drained on {name}"
        return 0

    async def _serve_savepoints(self, doorbell: asyncio.Event) -> None:
        """Take a savepoint whenever the doorbell rings (SIGUSR1); answer the requests waiting."""
        while True:
            await doorbell.wait()
            doorbell.clear()
            requests = self._control.take_requests() if self._control is not None else []
            answer: dict[str, Any]
            try:
                info = await self.flow.checkpoint("savepoint")
            except CheckpointError as error:
                log.warning("job %r: savepoint failed: %s", self.flow.name, error)
                answer = {"ok": False, "error": str(error)}
            else:
                where = self._path_of(info)
                log.log(
                    NOTICE,
                    "job %r: savepoint %d written%s",
                    self.flow.name,
                    info.checkpoint_id,
                    f" to {where}" if where else "",
                )
                answer = {"ok": True, "checkpoint_id": info.checkpoint_id, "path": where}
            if self._control is not None and requests:
                await asyncio.to_thread(self._control.answer, requests, answer)

    def _path_of(self, info: CheckpointInfo) -> str | None:
        storage = self.flow.checkpoint_storage
        if isinstance(storage, FileSystemStorage):
            return str(storage.path_of(info.checkpoint_id, info.kind))
        return None

    def _log_start(self, start: RunStart) -> None:
        """One line per start of the job's actors (see the module docstring)."""
        flow = self.flow
        restored = start.restored
        if restored is not None:
            where = self._path_of(restored)
            named = f"{restored.kind} {restored.checkpoint_id}"
            if start.input_ended:
                self._nothing_to_do = True
                log.log(
                    NOTICE,
                    "%s: nothing to do: the input ended in %s%s (to read it again, start with another "
                    "checkpoint directory)",
                    flow.name,
                    named,
                    f" at {where}" if where else "",
                )
                return
            how = f"resumed from {named}"
        elif flow.checkpoint_storage is None:
            how = "no checkpoints"
        else:
            stored = (
                self._directory if self._directory is not None else type(flow.checkpoint_storage).__name__
            )
            how = f"from the beginning, checkpoints in {stored}"
        if start.restart:
            log.log(NOTICE, "restarted %s (restart %d, %s)", flow.name, start.restart, how)
        else:
            log.log(NOTICE, "started %s (%s, parallelism %d)", flow.name, how, flow.parallelism)
