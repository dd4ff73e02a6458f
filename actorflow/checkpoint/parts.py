"""A checkpoint part as an operator may hand it over: serialized by itself, perhaps still being
serialized off the event loop, with files it shares with other checkpoints.

Most operators return plain state, which their chain pickles; the coordinator stores either kind.

>>> part = SnapshotPart(b"rows", {"rocksdb/7c1e/000012.sst": "/tmp/chk-3/000012.sst"})
>>> sorted(part.shared)
['rocksdb/7c1e/000012.sst']
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

__all__ = ["SnapshotPart"]


@dataclass(frozen=True)
class SnapshotPart:
    """A checkpoint part an operator serialized itself, or is still serializing off the event loop
    (``data``: its bytes, or an awaitable of them), with the files it shares with other
    checkpoints (``shared``: storage key -> a local file, or an awaitable of its path while it is
    still being written; see :meth:`~actorflow.checkpoint.storage.CheckpointStorage.write_shared`).
    The coordinator awaits the data and the paths and stores the part and the files in worker
    threads; each local file must stay until the checkpoint completes or aborts (the operator
    hears which).
    """

    data: bytes | Awaitable[bytes]
    shared: Mapping[str, str | Awaitable[str]] = field(default_factory=dict)
