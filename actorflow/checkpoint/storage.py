"""Checkpoint storage: the one small interface every state backend implements.

A checkpoint is a set of named *parts* (bytes: one per operator instance, say) and a *manifest*
that lists each part with its size and SHA-256 and carries the job's metadata. Parts are written
first, in any order; :meth:`CheckpointStorage.commit` writes the manifest last, atomically, and only
then does the checkpoint exist: a crash before it leaves parts that :meth:`~CheckpointStorage.clean`
removes. Reading a part checks it against the manifest, so a damaged file is found, not loaded;
:meth:`~CheckpointStorage.load_latest` then falls back to the previous complete checkpoint.

Checkpoints (``kind="checkpoint"``) beyond the newest ``retain`` are deleted at each commit;
savepoints (``kind="savepoint"``) are kept until deleted by hand.

*Shared files* make checkpoints incremental: a part may come with files that later checkpoints
share (a RocksDB checkpoint's SST files, immutable once written). :meth:`CheckpointStorage.write_shared`
stores a file under a key unless the storage already holds that key, and the manifest lists every
shared key the checkpoint needs (``shared``: size and SHA-256 each), copied or not. A shared file is
deleted when no checkpoint or savepoint kept any more lists it. A savepoint copies its shared files
into itself: it is self-contained, whatever is pruned.

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
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import CheckpointError, CorruptCheckpointError

__all__ = [
    "CheckpointInfo",
    "CheckpointStorage",
    "LoadedCheckpoint",
    "MemoryStorage",
    "SharedFiles",
    "file_checksum",
    "is_shared_key",
]

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
    #: ``{shared key: {"size": int, "sha256": str}}``: the shared files this checkpoint needs.
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if self.shared:  # manifests without shared files read as before
            fields["shared"] = self.shared
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
            raw["checkpoint_id"],
            raw["kind"],
            raw["created_ms"],
            raw["parts"],
            raw.get("metadata") or {},
            raw.get("shared") or {},
        )


_SEAL = "manifest_sha256"
_FIELDS = {"checkpoint_id", "kind", "created_ms", "parts", "metadata", "shared"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A shared file's key: ``/``-separated segments of letters, digits, ``.``, ``_`` and ``-``.
_SHARED_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")


def _seal(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_size_and_checksum(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"size", "sha256"}
        and _is_int(entry["size"])
        and entry["size"] >= 0
        and isinstance(entry["sha256"], str)
        and _SHA256.match(entry["sha256"]) is not None
    )


def is_shared_key(key: str) -> bool:
    """Whether ``key`` may name a shared file: ``/``-separated segments of letters, digits, ``.``,
    ``_`` and ``-``, none starting with a dot (so no segment is ``..``).

    >>> is_shared_key("rocksdb/3f2a/000012.sst"), is_shared_key("../etc"), is_shared_key("a//b")
    (True, False, False)
    """
    return _SHARED_KEY.match(key) is not None


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
    for field_name in ("parts", "shared"):
        entries = raw.get(field_name, {})
        if not isinstance(entries, dict):
            return f"{field_name} is not an object"
        for name, part in entries.items():
            if not _is_size_and_checksum(part):
                return f"{field_name[:-1]} {name!r} is {part!r}, expected a size and a sha256"
            if field_name == "shared" and not is_shared_key(name):
                return f"shared key {name!r}"
    metadata = raw.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata is not an object"
    saved = metadata.get("max_parallelism", 1)
    return None if _is_int(saved) and saved >= 1 else f"max_parallelism {saved!r}"


class SharedFiles:
    """The shared files of one complete checkpoint, for a restore to read (see the module
    docstring). ``path(key)`` is a local file holding it (the storage's own: hard-link or copy it,
    never change it) or None when the storage keeps it elsewhere; ``copy(key, dest)`` writes it
    to ``dest``. Both check its size and SHA-256 against the manifest first.

    >>> import tempfile
    >>> from pathlib import Path
    >>> storage, scratch = MemoryStorage(), Path(tempfile.mkdtemp())
    >>> _ = (scratch / "a.sst").write_bytes(b"immutable")
    >>> storage.write_shared(1, "db/a.sst", scratch / "a.sst")  # bytes copied
    9
    >>> info = storage.commit(1)
    >>> storage.load(info).files.copy("db/a.sst", scratch / "restored.sst")
    >>> (scratch / "restored.sst").read_bytes()
    b'immutable'
    """

    def __init__(self, storage: CheckpointStorage, info: CheckpointInfo) -> None:
        self.storage = storage
        self.info = info

    def _expected(self, key: str) -> dict[str, Any]:
        expected = self.info.shared.get(key)
        if expected is None:
            raise CheckpointError(f"checkpoint {self.info.checkpoint_id} has no shared file {key!r}")
        return expected

    def _check(self, key: str, data_or_path: bytes | str) -> None:
        expected = self._expected(key)
        if isinstance(data_or_path, bytes):
            size, digest = len(data_or_path), checksum(data_or_path)
        else:
            size, digest = file_checksum(data_or_path)
        if size != expected["size"] or digest != expected["sha256"]:
            raise CorruptCheckpointError(
                f"shared file {key!r} of checkpoint {self.info.checkpoint_id} does not match its checksum"
            )

    def path(self, key: str) -> str | None:
        """A local file holding shared file ``key``, checked; None if the storage is not local."""
        path = self.storage._shared_path(self.info, key)
        if path is not None:
            self._check(key, path)
        return path

    def copy(self, key: str, dest: str | os.PathLike[str]) -> None:
        """Write shared file ``key`` to ``dest``, checked; raises :class:`CorruptCheckpointError`."""
        self._expected(key)
        self.storage._copy_shared(self.info, key, os.fspath(dest))
        self._check(key, os.fspath(dest))


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read back: its manifest, every part (checksums verified) and its shared files
    (read when a restore asks, see :class:`SharedFiles`)."""

    info: CheckpointInfo
    parts: dict[str, bytes]
    files: SharedFiles | None = None


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_checksum(path: str | os.PathLike[str]) -> tuple[int, str]:
    """The size and SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class CheckpointStorage(ABC):
    """Where checkpoints are kept (see the module docstring). Methods block: call them from a
    thread (``asyncio.to_thread``) when the event loop must not wait."""

    def __init__(self, retain: int = 3) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1: the newest complete checkpoint is needed")
        self.retain = retain
        # Parts written for checkpoints not committed yet: {checkpoint id: {name: (size, sha256)}}.
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}
        # The shared files they list: {checkpoint id: {key: (size, sha256)}}.
        self._pending_shared: dict[int, dict[str, dict[str, Any]]] = {}
        # Shared files of checkpoints known to be stored: {key: (size, sha256)}; None until read.
        self._known_shared: dict[str, dict[str, Any]] | None = None
        self._shared_lock = threading.Lock()

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
        """Delete everything stored for ``checkpoint_id``, complete or not (a savepoint's own
        shared files too)."""

    @abstractmethod
    def _ids(self) -> set[int]:
        """The ids that have anything stored, complete or not."""

    # Shared files: checkpoints share one space; a savepoint keeps its own (inside it).

    def _put_shared(self, checkpoint_id: int | None, key: str, source: str) -> tuple[int, str]:
        """Store the file ``source`` as shared file ``key`` (of savepoint ``checkpoint_id``, or of
        the checkpoints' space when None) durably; return its size and SHA-256."""
        raise CheckpointError(f"{type(self).__name__} cannot store shared files")

    def _shared_path(self, info: CheckpointInfo, key: str) -> str | None:
        """A local file holding ``info``'s shared file ``key``, or None if not local."""
        return None

    def _copy_shared(self, info: CheckpointInfo, key: str, dest: str) -> None:
        """Write ``info``'s shared file ``key`` to ``dest``; raises CorruptCheckpointError if missing."""
        raise CheckpointError(f"{type(self).__name__} cannot store shared files")

    def _shared_keys(self) -> set[str]:
        """The keys stored in the checkpoints' shared space."""
        return set()

    def _drop_shared(self, key: str) -> None:  # noqa: B027 (optional: nothing to drop without _put_shared)
        """Delete a file of the checkpoints' shared space."""

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

    def write_shared(
        self, checkpoint_id: int, key: str, source: str | os.PathLike[str], *, kind: str = "checkpoint"
    ) -> int:
        """List shared file ``key`` in checkpoint ``checkpoint_id``, copying ``source`` unless a
        checkpoint already stored that key (a key must name the same content forever: a RocksDB
        SST file's name within one database's lineage). A savepoint always copies, into itself.
        Returns the bytes copied (0 when the key was there). Safe to call from several threads."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not is_shared_key(key):
            raise ValueError(f"not a shared file key: {key!r}")
        with self._shared_lock:
            listed = self._pending_shared.setdefault(checkpoint_id, {})
            known = self._known() if kind == "checkpoint" else {}
            entry = known.get(key)
        copied = 0
        if entry is None:
            copied, digest = self._put_shared(
                checkpoint_id if kind == "savepoint" else None, key, os.fspath(source)
            )
            entry = {"size": copied, "sha256": digest}
        with self._shared_lock:
            listed[key] = entry
        return copied

    def _known(self) -> dict[str, dict[str, Any]]:
        """Shared files stored for checkpoints: of complete ones, and written for pending ones
        (called under the lock)."""
        if self._known_shared is None:
            self._known_shared = {}
            for info in self._read_manifests()[0]:
                if info.kind == "checkpoint":
                    self._known_shared.update(info.shared)
        known = dict(self._known_shared)
        for listed in self._pending_shared.values():
            known.update(listed)
        return known

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
            self._pending_shared.get(checkpoint_id, {}),
        )
        self._put_manifest(info)
        with self._shared_lock:
            self._pending_shared.pop(checkpoint_id, None)
            if self._known_shared is not None and kind == "checkpoint":
                self._known_shared.update(info.shared)
        self._prune()
        return info

    def abort(self, checkpoint_id: int) -> None:
        """Forget an uncommitted checkpoint and delete its parts (and the shared files only it
        had written)."""
        self._pending.pop(checkpoint_id, None)
        with self._shared_lock:
            self._pending_shared.pop(checkpoint_id, None)
        self._drop(checkpoint_id)
        self._drop_unlisted_shared(self._read_manifests()[0])

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
        """Every part of ``info``, verified, and its shared files' reader; raises
        :class:`CorruptCheckpointError`. A shared file that is missing makes the checkpoint
        damaged (its content is checked when a restore reads it)."""
        parts = {name: self.read_part(info, name) for name in info.parts}
        if not info.shared:
            return LoadedCheckpoint(info, parts)
        if info.kind == "checkpoint":
            missing = sorted(set(info.shared) - self._shared_keys())
            if missing:
                raise CorruptCheckpointError(
                    f"checkpoint {info.checkpoint_id} lacks {len(missing)} shared files ({missing[0]}, ...)"
                )
        return LoadedCheckpoint(info, parts, SharedFiles(self, info))

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
        self._drop_unlisted_shared(infos)
        return dropped

    def _prune(self) -> None:
        infos = self._read_manifests()[0]
        checkpoints = [info for info in infos if info.kind == "checkpoint"]
        dropped = checkpoints[: -self.retain]
        for info in dropped:
            self._drop(info.checkpoint_id)
        if any(info.shared for info in dropped):
            kept = {info.checkpoint_id for info in dropped}
            self._drop_unlisted_shared([info for info in infos if info.checkpoint_id not in kept])

    def _drop_unlisted_shared(self, infos: list[CheckpointInfo]) -> None:
        """Delete the shared files no checkpoint in ``infos`` lists and none in progress does."""
        with self._shared_lock:
            listed = {key for info in infos if info.kind == "checkpoint" for key in info.shared}
            for pending in self._pending_shared.values():
                listed.update(pending)
            unlisted = self._shared_keys() - listed
            for key in unlisted:
                self._drop_shared(key)
            if self._known_shared is not None:
                for key in unlisted:
                    self._known_shared.pop(key, None)


class MemoryStorage(CheckpointStorage):
    """Checkpoints in a dict: for tests, and for jobs that only need to survive a restart in-process."""

    def __init__(self, retain: int = 3) -> None:
        super().__init__(retain)
        self._parts: dict[int, dict[str, bytes]] = {}
        self._manifest_bytes: dict[int, bytes] = {}
        #: Shared files by (savepoint id, or None for the checkpoints' space) and key.
        self._shared: dict[tuple[int | None, str], bytes] = {}

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
        for owner, key in [entry for entry in self._shared if entry[0] == checkpoint_id]:
            del self._shared[owner, key]

    def _ids(self) -> set[int]:
        return set(self._parts) | set(self._manifest_bytes)

    def _put_shared(self, checkpoint_id: int | None, key: str, source: str) -> tuple[int, str]:
        with open(source, "rb") as file:
            data = file.read()
        self._shared[checkpoint_id, key] = data
        return len(data), checksum(data)

    def _shared_data(self, info: CheckpointInfo, key: str) -> bytes:
        owner = info.checkpoint_id if info.kind == "savepoint" else None
        try:
            return self._shared[owner, key]
        except KeyError:
            raise CorruptCheckpointError(
                f"shared file {key!r} of checkpoint {info.checkpoint_id} is missing"
            ) from None

    def _copy_shared(self, info: CheckpointInfo, key: str, dest: str) -> None:
        with open(dest, "wb") as file:
            file.write(self._shared_data(info, key))

    def _shared_keys(self) -> set[str]:
        return {key for owner, key in self._shared if owner is None}

    def _drop_shared(self, key: str) -> None:
        self._shared.pop((None, key), None)
