"""Operators whose state may be checkpointed natively (RocksDB's own, incremental checkpoints):
the local checkpoint directory of each checkpoint stays until the checkpoint completes or aborts.

Keyed process, window and pattern operators take their :class:`NativeCheckpoints` from their
RocksDB tables when the flow keeps state in RocksDB; on the heap it stays None.

>>> import asyncio
>>> asyncio.run(NativeCheckpointing("op").checkpoint_complete(1))  # on the heap: nothing to release
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actorflow.operators.base import Operator

if TYPE_CHECKING:
    from actorflow.state.rocksdb_checkpoint import NativeCheckpoints  # needs rocksdict

__all__ = ["NativeCheckpointing"]


class NativeCheckpointing(Operator):
    """An :class:`Operator` that releases its native checkpoints' local directories when the
    coordinator says a checkpoint completed or aborted."""

    #: The native checkpoints of the operator's RocksDB state (None on the heap).
    native_checkpoints: NativeCheckpoints | None = None

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.native_checkpoints is not None:
            self.native_checkpoints.release(checkpoint_id)

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.native_checkpoints is not None:
            self.native_checkpoints.release(checkpoint_id)
