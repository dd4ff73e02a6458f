"""Checkpoints in one SQLite database file.

Parts and manifests are rows; the manifest row is inserted in its own transaction after the parts,
so a checkpoint exists exactly when its manifest row does. SQLite's journal makes each write atomic
and durable (``synchronous=FULL``). One connection, guarded by a lock, so the storage can be used
from the worker threads that write snapshots.

>>> storage = SqliteStorage(":memory:")
>>> storage.write_part(3, "window[2/3]", b"...")
>>> _ = storage.commit(3)
>>> [info.checkpoint_id for info in storage.completed()]
[3]
"""

from __future__ import annotations

import os
import sqlite3
import threading

from actorflow.checkpoint.storage import CheckpointInfo, CheckpointStorage, checksum
from actorflow.errors import CorruptCheckpointError

__all__ = ["SqliteStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (
    checkpoint_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (checkpoint_id, name)
);
CREATE TABLE IF NOT EXISTS manifests (
    checkpoint_id INTEGER PRIMARY KEY,
    manifest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS shared (
    owner INTEGER NOT NULL,  -- a savepoint's id, or -1: the space checkpoints share
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

_CHECKPOINTS = -1


class SqliteStorage(CheckpointStorage):
    """Checkpoints in the SQLite database at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str], retain: int = 3) -> None:
        super().__init__(retain)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _write(self, statement: str, *parameters: object) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(statement, parameters)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        self._write("INSERT INTO parts VALUES (?, ?, ?)", checkpoint_id, name, data)

    def _get_part(self, info: CheckpointInfo, name: str) -> bytes:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM parts WHERE checkpoint_id = ? AND name = ?", (info.checkpoint_id, name)
            ).fetchone()
        if row is None:
            raise CorruptCheckpointError(f"part {name!r} of checkpoint {info.checkpoint_id} is missing")
        return bytes(row[0])

    def _put_manifest(self, info: CheckpointInfo) -> None:
        self._write("INSERT INTO manifests VALUES (?, ?)", info.checkpoint_id, info.to_json())

    def _manifests(self) -> dict[int, bytes | CorruptCheckpointError]:
        with self._lock:
            rows = self._db.execute("SELECT checkpoint_id, manifest FROM manifests").fetchall()
        return {int(row[0]): bytes(row[1]) for row in rows}

    def _drop(self, checkpoint_id: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM manifests WHERE checkpoint_id = ?", (checkpoint_id,))
            self._db.execute("DELETE FROM parts WHERE checkpoint_id = ?", (checkpoint_id,))
            self._db.execute("DELETE FROM shared WHERE owner = ?", (checkpoint_id,))
            self._db.execute("COMMIT")

    def _ids(self) -> set[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT checkpoint_id FROM parts UNION SELECT checkpoint_id FROM manifests"
            ).fetchall()
        return {int(row[0]) for row in rows}

    def _put_shared(self, checkpoint_id: int | None, key: str, source: str) -> tuple[int, str]:
        with open(source, "rb") as file:
            data = file.read()
        owner = _CHECKPOINTS if checkpoint_id is None else checkpoint_id
        self._write("INSERT OR REPLACE INTO shared VALUES (?, ?, ?)", owner, key, data)
        return len(data), checksum(data)

    def _copy_shared(self, info: CheckpointInfo, key: str, dest: str) -> None:
        owner = info.checkpoint_id if info.kind == "savepoint" else _CHECKPOINTS
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM shared WHERE owner = ? AND key = ?", (owner, key)
            ).fetchone()
        if row is None:
            raise CorruptCheckpointError(
                f"shared file {key!r} of checkpoint {info.checkpoint_id} is missing"
            )
        with open(dest, "wb") as file:
            file.write(row[0])

    def _shared_keys(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM shared WHERE owner = ?", (_CHECKPOINTS,)).fetchall()
        return {str(row[0]) for row in rows}

    def _drop_shared(self, key: str) -> None:
        self._write("DELETE FROM shared WHERE owner = ? AND key = ?", _CHECKPOINTS, key)
