"""Two-phase commit sinks: output that becomes visible exactly once, when a checkpoint completes.

A :class:`TwoPhaseCommitSink` writes into a *transaction* that nobody can see yet. At a checkpoint's
barrier it *pre-commits* it (everything durable, still invisible), records the resulting *handle* in
its checkpointed state, and opens the next transaction. When the checkpoint completes, it commits
every handle pre-committed so far. After a failure, the restored state lists the handles of the
restored checkpoint: they are committed again (a commit must be idempotent: it may already have
happened before the crash), and whatever a later, never completed checkpoint left behind is aborted
(:meth:`TwoPhaseCommitSink.abort_leftovers`). So each record's effect is committed once, however
often the job fails.

Without checkpoints the sink commits once, when its input ends. At most one checkpoint is in
flight at a time, so the handles pending when checkpoint ``n`` completes all belong to ``n`` or
an earlier one that was aborted (its data stays pending and commits with ``n``, as in Flink).

Subclasses implement :meth:`~TwoPhaseCommitSink.begin`, :meth:`~TwoPhaseCommitSink.write_to`,
:meth:`~TwoPhaseCommitSink.pre_commit`, :meth:`~TwoPhaseCommitSink.commit` and
:meth:`~TwoPhaseCommitSink.abort` (and the ``_async`` forms when ``is_async``). A checkpoint may
complete after the sink's input has ended and :meth:`~TwoPhaseCommitSink.close` has run, so
:meth:`~TwoPhaseCommitSink.commit` must not need what ``close`` released (a connection: open one
for that commit, as ``examples/search_index.py`` does).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from actorflow.operators.base import OperatorContext
from actorflow.operators.sinks import Sink

__all__ = ["TwoPhaseCommitSink"]

TXN = TypeVar("TXN")
HANDLE = TypeVar("HANDLE")


class TwoPhaseCommitSink(Sink, Generic[TXN, HANDLE]):
    """The transaction bookkeeping of an exactly-once sink (see the module docstring)."""

    #: Commit in a worker thread, so the event loop (the job) goes on while a commit blocks on
    #: I/O such as ``fsync``. Only for a :meth:`commit` that shares nothing with the other methods
    #: but its handle: the next transaction is written meanwhile.
    commit_in_thread: ClassVar[bool] = False

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._pending: list[HANDLE] = []
        self._recovered = False
        self._txn: TXN | None = None

    # -- what a subclass implements ------------------------------------------------------------

    @abstractmethod
    def begin(self) -> TXN:
        """Open a new transaction."""

    @abstractmethod
    def write_to(self, txn: TXN, values: list[Any]) -> None:
        """Add ``values`` to ``txn`` (invisible until committed)."""

    @abstractmethod
    def pre_commit(self, txn: TXN) -> HANDLE | None:
        """Make ``txn`` durable and return a picklable handle to commit it by (None: it is empty)."""

    @abstractmethod
    def commit(self, handle: HANDLE) -> None:
        """Make a pre-committed transaction visible. Must be idempotent (see the module docstring)."""

    @abstractmethod
    def abort(self, txn: TXN) -> None:
        """Drop an open transaction (the job stops or fails before it was pre-committed)."""

    def abort_leftovers(self, recovered: list[HANDLE], state: dict[str, Any] | None) -> None:
        """After a restore: drop what transactions of a never completed checkpoint left behind.
        ``recovered`` are the restored checkpoint's handles (already committed again)."""

    def sink_state(self) -> dict[str, Any] | None:
        """Extra state of the sink to checkpoint with its handles (None: none)."""
        return None

    # -- the protocol --------------------------------------------------------------------------

    def write(self, values: list[Any]) -> None:
        if self._txn is None:
            self._txn = self.begin()
        self.write_to(self._txn, values)

    def _pre_commit_current(self) -> None:
        if self._txn is not None:
            handle = self.pre_commit(self._txn)
            self._txn = None
            if handle is not None:
                self._pending.append(handle)

    def snapshot_state(self) -> dict[str, Any]:
        self._pre_commit_current()
        return {"pending": list(self._pending), "sink": self.sink_state()}

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        pending, self._pending = self._pending, []
        if self.commit_in_thread:
            await asyncio.to_thread(self._commit_all, pending)
        else:
            self._commit_all(pending)

    def _commit_all(self, handles: list[HANDLE]) -> None:
        for handle in handles:
            self.commit(handle)

    def restore_state(self, states: list[Any]) -> None:
        # A transactional sink has one instance per restored state (files: one instance).
        recovered: list[HANDLE] = [handle for state in states for handle in state["pending"]]
        self._commit_all(recovered)
        sink_states = [state["sink"] for state in states if state.get("sink") is not None]
        self.abort_leftovers(recovered, sink_states[0] if sink_states else None)
        self._recovered = True

    def finish(self) -> None:
        if not self.context.checkpointing:
            # No checkpoints: the end of the input is the one commit point.
            self._pre_commit_current()
            pending, self._pending = self._pending, []
            self._commit_all(pending)

    def close(self) -> None:
        # Pre-committed handles stay pending: a restore commits them or cleans them up.
        if self._txn is not None:
            txn, self._txn = self._txn, None
            self.abort(txn)
