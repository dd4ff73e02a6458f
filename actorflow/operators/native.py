"""Operators whose state may be checkpointed natively (RocksDB's own, incremental checkpoints) or
incrementally on the heap: the local files of each checkpoint stay until the checkpoint completes
or aborts.

Keyed process, window and pattern operators take their :class:`NativeCheckpoints` from their
RocksDB tables when the flow keeps state in RocksDB; on the heap it stays None.

>>> import asyncio
>>> asyncio.run(NativeCheckpointing("op").checkpoint_complete(1))  # on the heap: nothing to release
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actorflow.operators.base import Operator
from actorflow.state.heap_checkpoint import HeapCheckpoints

if TYPE_CHECKING:
    from actorflow.state.rocksdb_checkpoint import NativeCheckpoints  # needs rocksdict

__all__ = ["NativeCheckpointing"]


class NativeCheckpointing(Operator):
    """An :class:`Operator` that releases its native checkpoints' local directories (and its
    incremental heap checkpoints' local files) when the coordinator says a checkpoint completed
    or aborted."""

    #: The native checkpoints of the operator's RocksDB state (None on the heap).
    native_checkpoints: NativeCheckpoints | None = None
    #: The incremental checkpoints of its heap state (None unless the flow asked for them).
    heap_checkpoints: HeapCheckpoints | None = None

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.native_checkpoints is not None:
            self.native_checkpoints.release(checkpoint_id)
        if self.heap_checkpoints is not None:
            self.heap_checkpoints.release(checkpoint_id)

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.native_checkpoints is not None:
            self.native_checkpoints.release(checkpoint_id)
        if self.heap_checkpoints is not None:
            self.heap_checkpoints.release(checkpoint_id, aborted=True)
