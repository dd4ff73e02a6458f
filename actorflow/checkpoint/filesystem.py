"""Checkpoints in a directory: the embedded default.

Layout: one directory per checkpoint, ``chk-0000000012`` (or ``sp-0000000012`` for a savepoint),
holding one file per part and ``MANIFEST.json``; the files checkpoints share go in ``shared/`` (a
savepoint's in its own ``shared/``), each under its key as a relative path. Every file is written
to a temporary name, flushed to disk (``fsync``) and renamed into place, and the directory is
synced after the rename, so a crash leaves either the old state or the new one. The manifest is
written last: a directory without one is an incomplete checkpoint (cleaned up by
:meth:`~actorflow.checkpoint.storage.CheckpointStorage.clean`), and a part whose bytes do not match
the manifest's SHA-256 makes the checkpoint unusable, so a restore falls back to the one before.

>>> import tempfile
>>> storage = FileSystemStorage(tempfile.mkdtemp())
>>> storage.write_part(7, "source[1/1]", b"offset=42")
>>> _ = storage.commit(7)
>>> storage.load_latest().parts
{'source[1/1]': b'offset=42'}
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from actorflow.checkpoint.storage import (
    CheckpointInfo,
    CheckpointStorage,
    LoadedCheckpoint,
    file_checksum,
)
from actorflow.errors import CorruptCheckpointError

__all__ = ["FileSystemStorage", "sync_directory", "write_atomically"]

MANIFEST = "MANIFEST.json"
SHARED = "shared"
_PREFIX = {"checkpoint": "chk", "savepoint": "sp"}
_DIRECTORY = re.compile(r"^(chk|sp)-(\d{10})$")


def _file_name(part: str) -> str:
    """A file name for a part name: readable, safe on any file system, and unique per part."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", part)[:60]
    return f"{readable}-{hashlib.sha256(part.encode()).hexdigest()[:12]}.part"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, never a mix."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FileSystemStorage(CheckpointStorage):
    """Checkpoints under ``directory`` (created if missing); keeps the newest ``retain``."""

    def __init__(self, directory: str | os.PathLike[str], retain: int = 3) -> None:
        super().__init__(retain)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_of(self, checkpoint_id: int, kind: str = "checkpoint") -> Path:
        """The directory of a checkpoint (or savepoint)."""
        return self.directory / f"{_PREFIX[kind]}-{checkpoint_id:010d}"

    @staticmethod
    def load_path(path: str | os.PathLike[str]) -> LoadedCheckpoint:
        """Load one checkpoint or savepoint directory by its path (``--from-savepoint PATH``).

        Raises :class:`CorruptCheckpointError` if it is incomplete or damaged.
        """
        directory = Path(path)
        match = _DIRECTORY.match(directory.name)
        if match is None:
            raise CorruptCheckpointError(f"{directory} is not a checkpoint or savepoint directory")
        storage = FileSystemStorage(directory.parent, retain=1_000_000)
        manifest = directory / MANIFEST
        try:
            info = CheckpointInfo.from_json(manifest.read_bytes())
        except OSError as error:
            raise CorruptCheckpointError(f"{directory} has no readable manifest: {error}") from error
        except CorruptCheckpointError as error:
            raise CorruptCheckpointError(f"{directory}: {error}") from None
        if info.checkpoint_id != int(match.group(2)) or _PREFIX[info.kind] != match.group(1):
            raise CorruptCheckpointError(
                f"{directory}: damaged manifest: it names {info.kind} {info.checkpoint_id}"
            )
        return storage.load(info)

    # -- primitives ----------------------------------------------------------------------------

    def _directories(self) -> dict[int, Path]:
        found: dict[int, Path] = {}
        for entry in self.directory.iterdir():
            match = _DIRECTORY.match(entry.name)
            if match is not None and entry.is_dir():
                found[int(match.group(2))] = entry
        return found

    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        directory = self.path_of(checkpoint_id, kind)
        directory.mkdir(exist_ok=True)
        write_atomically(directory / _file_name(name), data)

    def _get_part(self, info: CheckpointInfo, name: str) -> bytes:
        path = self.path_of(info.checkpoint_id, info.kind) / _file_name(name)
        try:
            return path.read_bytes()
        except OSError as error:
            raise CorruptCheckpointError(
                f"part {name!r} of checkpoint {info.checkpoint_id} is unreadable: {error}"
            ) from error

    def _put_manifest(self, info: CheckpointInfo) -> None:
        directory = self.path_of(info.checkpoint_id, info.kind)
        directory.mkdir(exist_ok=True)
        write_atomically(directory / MANIFEST, info.to_json())

    def _manifests(self) -> dict[int, bytes | CorruptCheckpointError]:
        manifests: dict[int, bytes | CorruptCheckpointError] = {}
        for checkpoint_id, directory in self._directories().items():
            path = directory / MANIFEST
            if not path.exists():
                continue  # incomplete: not a checkpoint (yet)
            try:
                manifests[checkpoint_id] = path.read_bytes()
            except OSError as error:
                manifests[checkpoint_id] = CorruptCheckpointError(f"{path} is unreadable: {error}")
        return manifests

    def _kind_of(self, checkpoint_id: int) -> str | None:
        directory = self._directories().get(checkpoint_id)
        if directory is None:
            return None
        return "savepoint" if directory.name.startswith(_PREFIX["savepoint"]) else "checkpoint"

    def _drop(self, checkpoint_id: int) -> None:
        directory = self._directories().get(checkpoint_id)
        if directory is not None:
            # The manifest first: a crash half-way leaves an incomplete checkpoint, not a damaged one.
            (directory / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)

    def _ids(self) -> set[int]:
        return set(self._directories())

    def _shared_root(self, savepoint: int | None) -> Path:
        if savepoint is None:
            return self.directory / SHARED
        return self.path_of(savepoint, "savepoint") / SHARED

    def _put_shared(self, checkpoint_id: int | None, key: str, source: str) -> tuple[int, str]:
        path = self._shared_root(checkpoint_id) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        shutil.copyfile(source, temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
        sync_directory(path.parent)
        return file_checksum(path)

    def _shared_path(self, info: CheckpointInfo, key: str) -> str | None:
        savepoint = info.checkpoint_id if info.kind == "savepoint" else None
        path = self._shared_root(savepoint) / key
        if not path.is_file():
            raise CorruptCheckpointError(
                f"shared file {key!r} of checkpoint {info.checkpoint_id} is missing"
            )
        return str(path)

    def _copy_shared(self, info: CheckpointInfo, key: str, dest: str) -> None:
        source = self._shared_path(info, key)
        assert source is not None
        shutil.copyfile(source, dest)

    def _shared_keys(self) -> set[str]:
        root = self.directory / SHARED
        if not root.is_dir():
            return set()
        return {
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.is_file() and not path.name.endswith(".tmp")
        }

    def _drop_shared(self, key: str) -> None:
        path = self.directory / SHARED / key
        path.unlink(missing_ok=True)
        parent = path.parent
        root = self.directory / SHARED
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # directories that held only dropped files
            parent = parent.parent
