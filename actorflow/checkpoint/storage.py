"""Checkpoint storage: the one small interface every state backend implements.

A checkpoint is a set of named *parts* (bytes: one per operator instance, say) and a *manifest*
that lists each part with its size and SHA-256 and carries the job's metadata. Parts are written
first, in any order; :meth:`CheckpointStorage.commit` writes the manifest last, atomically, and only
then does the checkpoint exist: a crash before it leaves parts that :meth:`~CheckpointStorage.clean`
removes. Reading a part checks it against the manifest, so a damaged file is found, not loaded;
:meth:`~CheckpointStorage.load_latest` then falls back to the previous complete checkpoint.

Checkpoints (``kind="checkpoint"``) beyond the newest ``retain`` are deleted at each commit;
savepoints (``kind="savepoint"``) are kept until deleted by hand.

A manifest is checked whole before it is trusted: a schema (every field of the right type, a known
kind, the id it is stored under, each part with exactly a size and a SHA-256) and a SHA-256 of the
manifest itself (``manifest_sha256``; manifests written before it existed are checked by the schema
only). One that fails is *damaged*: it is skipped, as a damaged part is, and the restore falls back
to the one before. :meth:`~CheckpointStorage.clean` deletes what a crash left without any manifest,
and damaged checkpoints; a damaged savepoint is never deleted: it is skipped, logged, and kept.

A backend implements six primitives (``_put_part``, ``_get_part``, ``_put_manifest``,
``_manifests``, ``_drop``, ``_ids``); everything else is here, shared:

>>> storage = MemoryStorage(retain=2)
>>> storage.write_part(1, "counter[1/1]", b"state")
>>> info = storage.commit(1, {"job": "demo"})
>>> info.checkpoint_id, info.metadata
(1, {'job': 'demo'})
>>> storage.load_latest().parts
{'counter[1/1]': b'state'}
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import CheckpointError, CorruptCheckpointError

__all__ = ["CheckpointInfo", "CheckpointStorage", "LoadedCheckpoint", "MemoryStorage"]

log = logging.getLogger(__name__)

KINDS = ("checkpoint", "savepoint")


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint's manifest: its parts' sizes and checksums, and the job's metadata."""

    checkpoint_id: int
    kind: str
    created_ms: int
    #: ``{part name: {"size": int, "sha256": str}}``
    parts: dict[str, dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The manifest: its fields and ``manifest_sha256``, the SHA-256 of the fields' canonical
        JSON (sorted keys), which :meth:`from_json` checks."""
        fields = {
            "checkpoint_id": self.checkpoint_id,
            "kind": self.kind,
            "created_ms": self.created_ms,
            "parts": self.parts,
            "metadata": self.metadata,
        }
        return json.dumps({**fields, _SEAL: _seal(fields)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CheckpointInfo:
        """Parse and check a manifest; raises :class:`CorruptCheckpointError` saying what is wrong
        if it is not a whole, undamaged one (see the module docstring).

        >>> info = CheckpointInfo(3, "savepoint", 0, {"a/0": {"size": 1, "sha256": "0" * 64}})
        >>> CheckpointInfo.from_json(info.to_json()) == info
        True
        >>> CheckpointInfo.from_json(info.to_json().replace(b'"size": 1', b'"size": 3'))
        Traceback (most recent call last):
        ...
        actorflow.errors.CorruptCheckpointError: damaged manifest: its SHA-256 does not match its content
        """
        try:
            raw = json.loads(data)
        except ValueError as error:
            raise CorruptCheckpointError(f"unreadable manifest: {error}") from None
        if not isinstance(raw, dict):
            raise CorruptCheckpointError("damaged manifest: not a JSON object")
        sealed = raw.pop(_SEAL, None)
        if sealed is not None and sealed != _seal(raw):
            raise CorruptCheckpointError("damaged manifest: its SHA-256 does not match its content")
        problem = _schema_problem(raw)
        if problem is not None:
            raise CorruptCheckpointError(f"damaged manifest: {problem}")
        return cls(
            raw["checkpoint_id"], raw["kind"], raw["created_ms"], raw["parts"], raw.get("metadata") or {}
        )


_SEAL = "manifest_sha256"
_FIELDS = {"checkpoint_id", "kind", "created_ms", "parts", "metadata"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _seal(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _is_int(value: Any) -> bool:
    return type(value) is int


def _schema_problem(raw: dict[str, Any]) -> str | None:
    """What makes ``raw`` (a manifest's fields) not a manifest, or None."""
    if not set(raw) <= _FIELDS or not {"checkpoint_id", "kind", "created_ms", "parts"} <= set(raw):
        return f"fields {sorted(raw)}, expected {sorted(_FIELDS)}"
    if not _is_int(raw["checkpoint_id"]) or raw["checkpoint_id"] < 0:
        return f"checkpoint_id {raw['checkpoint_id']!r}"
    if raw["kind"] not in KINDS:
        return f"kind {raw['kind']!r}, expected one of {', '.join(KINDS)}"
    if not _is_int(raw["created_ms"]):
        return f"created_ms {raw['created_ms']!r}"
    if not isinstance(raw["parts"], dict):
        return "parts is not an object"
    for name, part in raw["parts"].items():
        if (
            not isinstance(part, dict)
            or set(part) != {"size", "sha256"}
            or not _is_int(part["size"])
            or part["size"] < 0
            or not isinstance(part["sha256"], str)
            or not _SHA256.match(part["sha256"])
        ):
            return f"part {name!r} is {part!r}, expected a size and a sha256"
    metadata = raw.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata is not an object"
    saved = metadata.get("max_parallelism", 1)
    return None if _is_int(saved) and saved >= 1 else f"max_parallelism {saved!r}"


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read back whole: its manifest and every part, checksums verified."""

    info: CheckpointInfo
    parts: dict[str, bytes]


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CheckpointStorage(ABC):
    """Where checkpoints are kept (see the module docstring). Methods block: call them from a
    thread (``asyncio.to_thread``) when the event loop must not wait."""

    def __init__(self, retain: int = 3) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1: the newest complete checkpoint is needed")
        self.retain = retain
        # Parts written for checkpoints not committed yet: {checkpoint id: {name: (size, sha256)}}.
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}

    # -- primitives a backend implements -------------------------------------------------------

    @abstractmethod
    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        """Store one part durably (it need not be visible to readers before the manifest)."""

    @abstractmethod
    def _get_part(self, info: CheckpointInfo, name: str) -> bytes:
        """The stored bytes of a part; raises :class:`CorruptCheckpointError` if it is missing."""

    @abstractmethod
    def _put_manifest(self, info: CheckpointInfo) -> None:
        """Store the manifest atomically: after this returns the checkpoint exists, before not."""

    @abstractmethod
    def _manifests(self) -> dict[int, bytes | CorruptCheckpointError]:
        """Every stored manifest's bytes (or the error reading it), by the id it is stored under."""

    def _kind_of(self, checkpoint_id: int) -> str | None:
        """The kind of ``checkpoint_id`` as the backend stores it, without its manifest
        (:class:`FileSystemStorage`: the directory's name), or None when only the manifest says."""
        return None

    @abstractmethod
    def _drop(self, checkpoint_id: int) -> None:
        """Delete everything stored for ``checkpoint_id``, complete or not."""

    @abstractmethod
    def _ids(self) -> set[int]:
        """The ids that have anything stored, complete or not."""

    # -- the shared logic ----------------------------------------------------------------------

    def write_part(self, checkpoint_id: int, name: str, data: bytes, *, kind: str = "checkpoint") -> None:
        """Store part ``name`` of checkpoint ``checkpoint_id`` (not visible until :meth:`commit`)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        parts = self._pending.setdefault(checkpoint_id, {})
        if name in parts:
            raise CheckpointError(f"checkpoint {checkpoint_id} already has a part {name!r}")
        self._put_part(checkpoint_id, kind, name, data)
        parts[name] = {"size": len(data), "sha256": checksum(data)}

    def commit(
        self, checkpoint_id: int, metadata: dict[str, Any] | None = None, *, kind: str = "checkpoint"
    ) -> CheckpointInfo:
        """Write the manifest of ``checkpoint_id`` over the parts written for it: now it is complete.

        Then prunes checkpoints beyond the newest ``retain``. Raises :class:`CheckpointError` if the
        id is already complete.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if any(info.checkpoint_id == checkpoint_id for info in self._read_manifests()[0]):
            raise CheckpointError(f"checkpoint {checkpoint_id} is already complete")
        info = CheckpointInfo(
            checkpoint_id,
            kind,
            int(time.time() * 1000),
            self._pending.pop(checkpoint_id, {}),
            dict(metadata or {}),
        )
        self._put_manifest(info)
        self._prune()
        return info

    def abort(self, checkpoint_id: int) -> None:
        """Forget an uncommitted checkpoint and delete its parts."""
        self._pending.pop(checkpoint_id, None)
        self._drop(checkpoint_id)

    def delete(self, checkpoint_id: int) -> None:
        """Delete a checkpoint or savepoint, complete or not."""
        self.abort(checkpoint_id)

    def completed(self) -> list[CheckpointInfo]:
        """The complete checkpoints and savepoints, oldest first; damaged manifests are skipped,
        with a warning (see :meth:`damaged`)."""
        infos, damaged = self._read_manifests()
        for checkpoint_id, error in sorted(damaged.items()):
            kind = self._kind_of(checkpoint_id)
            kept = " (kept: delete it by hand)" if kind == "savepoint" else ""
            log.warning("skipping %s %d: %s%s", kind or "checkpoint", checkpoint_id, error, kept)
        return infos

    def damaged(self) -> dict[int, CorruptCheckpointError]:
        """The ids whose manifest is there but damaged, and why."""
        return self._read_manifests()[1]

    def _read_manifests(self) -> tuple[list[CheckpointInfo], dict[int, CorruptCheckpointError]]:
        infos: list[CheckpointInfo] = []
        damaged: dict[int, CorruptCheckpointError] = {}
        for checkpoint_id, manifest in self._manifests().items():
            try:
                if isinstance(manifest, CorruptCheckpointError):
                    raise manifest
                info = CheckpointInfo.from_json(manifest)
                if info.checkpoint_id != checkpoint_id:
                    raise CorruptCheckpointError(
                        f"damaged manifest: it names checkpoint {info.checkpoint_id}"
                    )
                stored_as = self._kind_of(checkpoint_id)
                if stored_as is not None and info.kind != stored_as:
                    raise CorruptCheckpointError(
                        f"damaged manifest: kind {info.kind!r}, stored as a {stored_as}"
                    )
            except CorruptCheckpointError as error:
                damaged[checkpoint_id] = error
                continue
            infos.append(info)
        return sorted(infos, key=lambda info: info.checkpoint_id), damaged

    def latest(self) -> CheckpointInfo | None:
        """The newest complete checkpoint or savepoint, or None."""
        infos = self.completed()
        return infos[-1] if infos else None

    def next_id(self) -> int:
        """An id above every id stored, complete or not (ids only grow, also across restarts)."""
        return max(self._ids() | set(self._pending), default=0) + 1

    def read_part(self, info: CheckpointInfo, name: str) -> bytes:
        """One part of a complete checkpoint, verified; raises :class:`CorruptCheckpointError`."""
        expected = info.parts.get(name)
        if expected is None:
            raise CheckpointError(f"checkpoint {info.checkpoint_id} has no part {name!r}")
        data = self._get_part(info, name)
        if len(data) != expected["size"] or checksum(data) != expected["sha256"]:
            raise CorruptCheckpointError(
                f"part {name!r} of checkpoint {info.checkpoint_id} does not match its checksum"
            )
        return data

    def load(self, info: CheckpointInfo) -> LoadedCheckpoint:
        """Every part of ``info``, verified; raises :class:`CorruptCheckpointError`."""
        return LoadedCheckpoint(info, {name: self.read_part(info, name) for name in info.parts})

    def load_latest(self) -> LoadedCheckpoint | None:
        """The newest checkpoint that loads whole; damaged newer ones are skipped (and logged)."""
        for info in reversed(self.completed()):
            try:
                return self.load(info)
            except CorruptCheckpointError as error:
                log.warning("checkpoint %d is damaged, trying an older one: %s", info.checkpoint_id, error)
        return None

    def clean(self) -> list[int]:
        """Delete what incomplete checkpoints left behind (a crash between parts and manifest), and
        checkpoints whose manifest is damaged; returns their ids. A savepoint is never deleted here,
        damaged or not (nor anything whose kind only its damaged manifest could tell)."""
        infos, damaged = self._read_manifests()
        leftovers = self._ids() - {info.checkpoint_id for info in infos} - set(self._pending)
        dropped = []
        for checkpoint_id in sorted(leftovers):
            if checkpoint_id in damaged and self._kind_of(checkpoint_id) != "checkpoint":
                log.warning(
                    "%s %d is damaged (%s): kept, not used; delete it by hand",
                    self._kind_of(checkpoint_id) or "checkpoint or savepoint",
                    checkpoint_id,
                    damaged[checkpoint_id],
                )
                continue
            self._drop(checkpoint_id)
            dropped.append(checkpoint_id)
        return dropped

    def _prune(self) -> None:
        checkpoints = [info for info in self._read_manifests()[0] if info.kind == "checkpoint"]
        for info in checkpoints[: -self.retain]:
            self._drop(info.checkpoint_id)


class MemoryStorage(CheckpointStorage):
    """Checkpoints in a dict: for tests, and for jobs that only need to survive a restart in-process."""

    def __init__(self, retain: int = 3) -> None:
        super().__init__(retain)
        self._parts: dict[int, dict[str, bytes]] = {}
        self._manifest_bytes: dict[int, bytes] = {}

    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        self._parts.setdefault(checkpoint_id, {})[name] = bytes(data)

    def _get_part(self, info: CheckpointInfo, name: str) -> bytes:
        try:
            return self._parts[info.checkpoint_id][name]
        except KeyError:
            raise CorruptCheckpointError(
                f"part {name!r} of checkpoint {info.checkpoint_id} is missing"
            ) from None

    def _put_manifest(self, info: CheckpointInfo) -> None:
        self._manifest_bytes[info.checkpoint_id] = info.to_json()

    def _manifests(self) -> dict[int, bytes | CorruptCheckpointError]:
        return dict(self._manifest_bytes)

    def _drop(self, checkpoint_id: int) -> None:
        self._parts.pop(checkpoint_id, None)
        self._manifest_bytes.pop(checkpoint_id, None)

    def _ids(self) -> set[int]:
        return set(self._parts) | set(self._manifest_bytes)
