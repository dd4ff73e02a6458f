"""``actorflow checkpoints list`` and ``actorflow savepoint``, on a running or a stopped job.

Both read the checkpoint directory itself, which is safe while a job writes to it (a checkpoint
exists exactly when its manifest does, and manifests are written atomically).

A savepoint of a **running** job is taken by the job (see :mod:`actorflow.cli.control`). A
**stopped** job's state is its newest complete checkpoint: ``actorflow savepoint`` copies it into a
savepoint, which, unlike checkpoints, is never pruned; if the newest is already a savepoint (the one a
graceful stop takes) that one is the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.storage import CheckpointInfo
from actorflow.cli.control import ControlDir, DaemonGone
from actorflow.cli.errors import UsageError

__all__ = ["SavepointFailed", "SavepointOutcome", "list_checkpoints", "render_listing", "take_savepoint"]


class SavepointFailed(Exception):
    """The savepoint could not be taken (exit code 1)."""


@dataclass(frozen=True)
class SavepointOutcome:
    checkpoint_id: int
    path: Path
    #: How it was made: "taken by the running job", "copied from checkpoint N", "already a savepoint".
    how: str


def _storage(directory: Path) -> FileSystemStorage:
    if not directory.is_dir():
        raise UsageError(f"no such checkpoint directory: {directory}")
    # A large retain: reading must never prune anything (commit prunes; this only reads or copies).
    return FileSystemStorage(directory, retain=1_000_000)


def _row(storage: FileSystemStorage, info: CheckpointInfo) -> dict[str, Any]:
    return {
        "id": info.checkpoint_id,
        "kind": info.kind,
        "created_ms": info.created_ms,
        "created": datetime.fromtimestamp(info.created_ms / 1000)
        .astimezone()
        .isoformat(timespec="seconds"),
        "size_bytes": sum(int(part.get("size", 0)) for part in info.parts.values()),
        "parts": len(info.parts),
        "path": str(storage.path_of(info.checkpoint_id, info.kind)),
        "metadata": info.metadata,
    }


def list_checkpoints(directory: Path) -> dict[str, Any]:
    """The complete checkpoints and savepoints in ``directory`` (oldest first), and the running job."""
    storage = _storage(directory)
    running = ControlDir(directory).running()
    return {
        "directory": str(directory),
        "running": None if running is None else {k: running.get(k) for k in ("pid", "host", "job")},
        "checkpoints": [_row(storage, info) for info in storage.completed()],
    }


def render_listing(listing: dict[str, Any], form: str) -> str:
    """The listing as a table (``text``) or JSON (``json``)."""
    if form == "json":
        return json.dumps(listing, indent=2)
    running = listing["running"]
    lines = [
        f"{listing['directory']}: "
        + (f"job {running['job']!r} running (pid {running['pid']})" if running else "no job running")
    ]
    rows = [("ID", "KIND", "CREATED", "SIZE", "PARTS", "PATH")]
    rows += [
        (str(r["id"]), r["kind"], r["created"], f"{r['size_bytes']:,} B", str(r["parts"]), r["path"])
        for r in listing["checkpoints"]
    ]
    if len(rows) == 1:
        return "\n".join([*lines, "no complete checkpoint or savepoint"])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def take_savepoint(directory: Path, timeout_s: float) -> SavepointOutcome:
    """A savepoint of the job on ``directory``: asked of the job if it runs, else copied from its
    newest checkpoint. Raises :class:`SavepointFailed` with the reason when there is none."""
    storage = _storage(directory)
    control = ControlDir(directory)
    status = control.running()
    if status is not None:
        try:
            answer = control.request_savepoint(status, timeout_s)
        except DaemonGone as error:
            raise SavepointFailed(f"job {status.get('job')!r} (pid {status.get('pid')}): {error}") from None
        if not answer.get("ok"):
            raise SavepointFailed(
                f"job {status.get('job')!r} could not take a savepoint: {answer.get('error')}"
            )
        return SavepointOutcome(
            int(answer["checkpoint_id"]), Path(answer["path"]), "taken by the running job"
        )
    # No job runs: hold its lock while copying, so that none starts and writes the same ids meanwhile.
    control.acquire({"job": None, "command": "savepoint"}, wait_s=0)
    try:
        newest = storage.load_latest()
        if newest is None:
            raise SavepointFailed(f"{directory} has no complete checkpoint to make a savepoint of")
        info = newest.info
        if info.kind == "savepoint":
            return SavepointOutcome(
                info.checkpoint_id, storage.path_of(info.checkpoint_id, info.kind), "already a savepoint"
            )
        copy_id = storage.next_id()
        for name, data in newest.parts.items():
            storage.write_part(copy_id, name, data, kind="savepoint")
        storage.commit(copy_id, {**info.metadata, "copied_from": info.checkpoint_id}, kind="savepoint")
        return SavepointOutcome(
            copy_id, storage.path_of(copy_id, "savepoint"), f"copied from checkpoint {info.checkpoint_id}"
        )
    finally:
        control.release()
