"""What a state backend's restore reads a checkpoint's shared files through.

A checkpoint's storage hands a restore its shared files (RocksDB's SST files, the heap's bases and
changes) as :class:`~actorflow.checkpoint.storage.SharedFiles`; the state layer, below the
checkpoint layer, knows them by this protocol only.

>>> class Here:
...     def path(self, key: str) -> str | None:
...         return f"/checkpoints/shared/{key}"
...     def copy(self, key: str, dest: str) -> None:
...         raise NotImplementedError
>>> isinstance(Here(), RestoredFiles)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["RestoredFiles"]


@runtime_checkable
class RestoredFiles(Protocol):
    """The shared files of the checkpoint being restored (the storage's ``SharedFiles``)."""

    def path(self, key: str) -> str | None:
        """A local file holding ``key`` (never to be changed), or None if the storage is remote."""
        ...

    def copy(self, key: str, dest: str) -> None:
        """Write ``key`` to ``dest``, checked."""
        ...
