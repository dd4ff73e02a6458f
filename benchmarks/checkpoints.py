"""Checkpoint storage that meters itself, for the checkpoint numbers of ``run`` and ``report``.

:class:`MeteredStorage` is the ordinary :class:`~actorflow.checkpoint.filesystem.FileSystemStorage`
(same layout, same ``fsync`` discipline, so a directory it wrote resumes with the plain one) that
also counts the checkpoints it completed, the bytes of state it wrote and the time its writes took.
The coordinator calls the storage from worker threads, several parts at once, so the counters are
guarded by a lock.

>>> import tempfile
>>> storage = MeteredStorage(tempfile.mkdtemp())
>>> storage.write_part(1, "source/0", b"offset 42")
>>> _ = storage.commit(1)
>>> storage.commits, storage.bytes_written
(1, 9)
"""

from __future__ import annotations

import os
import threading
import time

from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.storage import CheckpointInfo

__all__ = ["MeteredStorage"]


class MeteredStorage(FileSystemStorage):
    """A :class:`FileSystemStorage` counting what this process wrote into it."""

    def __init__(self, directory: str | os.PathLike[str], retain: int = 3) -> None:
        super().__init__(directory, retain)
        self._lock = threading.Lock()
        #: Checkpoints committed (made complete) by this process.
        self.commits = 0
        #: Bytes of parts and of shared files (RocksDB's SST files) written by this process
        #: (manifests not included; a shared file the storage already held costs nothing).
        self.bytes_written = 0
        #: Seconds spent writing parts and manifests, summed over threads.
        self.write_seconds = 0.0

    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        started = time.perf_counter()
        super()._put_part(checkpoint_id, kind, name, data)
        with self._lock:
            self.bytes_written += len(data)
            self.write_seconds += time.perf_counter() - started

    def _put_shared(self, checkpoint_id: int | None, key: str, source: str) -> tuple[int, str]:
        started = time.perf_counter()
        size, digest = super()._put_shared(checkpoint_id, key, source)
        with self._lock:
            self.bytes_written += size
            self.write_seconds += time.perf_counter() - started
        return size, digest

    def _put_manifest(self, info: CheckpointInfo) -> None:
        started = time.perf_counter()
        super()._put_manifest(info)
        with self._lock:
            self.commits += 1
            self.write_seconds += time.perf_counter() - started
