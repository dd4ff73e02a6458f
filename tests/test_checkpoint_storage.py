"""The checkpoint storage contract, run against every backend: memory, filesystem and SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.checkpoint.filesystem import MANIFEST, FileSystemStorage, _file_name
from actorflow.checkpoint.sqlite import SqliteStorage
from actorflow.checkpoint.storage import CheckpointStorage, MemoryStorage
from actorflow.errors import CheckpointError, CorruptCheckpointError

Factory = Callable[..., CheckpointStorage]


@pytest.fixture(params=["memory", "filesystem", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.param)


@pytest.fixture
def open_storage(backend: str, tmp_path: Path) -> Factory:
    """Opens the backend's storage; a second call opens the same place again (a restart)."""
    memory: list[MemoryStorage] = []

    def factory(retain: int = 3) -> CheckpointStorage:
        if backend == "filesystem":
            return FileSystemStorage(tmp_path / "checkpoints", retain=retain)
        if backend == "sqlite":
            return SqliteStorage(tmp_path / "checkpoints.db", retain=retain)
        if not memory:
            memory.append(MemoryStorage(retain=retain))
        memory[0]._pending.clear()  # what a restarted process forgets
        return memory[0]

    return factory


def corrupt(storage: CheckpointStorage, checkpoint_id: int, part: str) -> None:
    """Flip the bytes of one stored part behind the storage's back (a damaged disk)."""
    if isinstance(storage, FileSystemStorage):
        target = storage.path_of(checkpoint_id) / _file_name(part)
        target.write_bytes(bytes(b ^ 0xFF for b in target.read_bytes()))
    elif isinstance(storage, SqliteStorage):
        db = sqlite3.connect(storage.path)
        db.execute(
            "UPDATE parts SET data = ? WHERE checkpoint_id = ? AND name = ?",
            (b"garbage", checkpoint_id, part),
        )
        db.commit()
        db.close()
    else:
        assert isinstance(storage, MemoryStorage)
        storage._parts[checkpoint_id][part] = b"garbage"


def write(storage: CheckpointStorage, checkpoint_id: int, *, kind: str = "checkpoint") -> None:
    storage.write_part(checkpoint_id, "source[1/1]", f"offset {checkpoint_id}".encode(), kind=kind)
    storage.write_part(checkpoint_id, "count[1/2]", bytes(range(256)) * checkpoint_id, kind=kind)


def test_a_committed_checkpoint_loads_back_whole(open_storage: Factory) -> None:
    storage = open_storage()
    write(storage, 1)
    info = storage.commit(1, {"parallelism": 2})
    loaded = open_storage().load_latest()  # reopened: it is durable, not just in this object
    assert loaded is not None
    assert loaded.info == info
    assert loaded.info.metadata == {"parallelism": 2}
    assert loaded.parts == {"source[1/1]": b"offset 1", "count[1/2]": bytes(range(256))}


def test_parts_without_a_manifest_are_not_a_checkpoint(open_storage: Factory) -> None:
    storage = open_storage()
    write(storage, 1)
    storage.commit(1)
    write(storage, 2)  # the process dies here, before the commit
    restarted = open_storage()
    latest = restarted.latest()
    assert latest is not None and latest.checkpoint_id == 1
    assert restarted.next_id() == 3, "an id is never reused, even one that never completed"
    assert restarted.clean() == [2]
    assert restarted.next_id() == 2
    loaded = restarted.load_latest()
    assert loaded is not None and loaded.info.checkpoint_id == 1


def test_only_the_newest_checkpoints_are_kept_but_every_savepoint(open_storage: Factory) -> None:
    storage = open_storage(retain=2)
    for checkpoint_id in range(1, 6):
        kind = "savepoint" if checkpoint_id == 2 else "checkpoint"
        write(storage, checkpoint_id, kind=kind)
        storage.commit(checkpoint_id, kind=kind)
    assert [(i.checkpoint_id, i.kind) for i in storage.completed()] == [
        (2, "savepoint"),
        (4, "checkpoint"),
        (5, "checkpoint"),
    ]


def test_a_damaged_part_is_detected_and_the_previous_checkpoint_is_used(open_storage: Factory) -> None:
    storage = open_storage()
    for checkpoint_id in (1, 2):
        write(storage, checkpoint_id)
        storage.commit(checkpoint_id)
    corrupt(storage, 2, "count[1/2]")
    info = storage.completed()[-1]
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        storage.load(info)
    loaded = open_storage().load_latest()
    assert loaded is not None and loaded.info.checkpoint_id == 1


def test_aborting_removes_the_parts(open_storage: Factory) -> None:
    storage = open_storage()
    write(storage, 1)
    storage.abort(1)
    assert storage.completed() == []
    assert storage.clean() == []
    assert storage.next_id() == 1


def test_misuse_is_a_clear_error(open_storage: Factory) -> None:
    storage = open_storage()
    write(storage, 1)
    with pytest.raises(CheckpointError, match="already has a part"):
        storage.write_part(1, "source[1/1]", b"again")
    info = storage.commit(1)
    with pytest.raises(CheckpointError, match="already complete"):
        storage.commit(1)
    with pytest.raises(CheckpointError, match="no part 'nope'"):
        storage.read_part(info, "nope")
    with pytest.raises(ValueError, match="kind"):
        storage.write_part(2, "x", b"", kind="backup")
    with pytest.raises(ValueError, match="retain"):
        MemoryStorage(retain=0)


def test_an_unreadable_manifest_is_skipped(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    for checkpoint_id in (1, 2):
        write(storage, checkpoint_id)
        storage.commit(checkpoint_id)
    (storage.path_of(2) / MANIFEST).write_text("{not json")
    assert [info.checkpoint_id for info in storage.completed()] == [1]


def test_a_savepoint_loads_from_its_path(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    write(storage, 4, kind="savepoint")
    storage.commit(4, {"reason": "stop"}, kind="savepoint")
    loaded = FileSystemStorage.load_path(storage.path_of(4, "savepoint"))
    assert loaded.info.kind == "savepoint" and loaded.parts["source[1/1]"] == b"offset 4"
    with pytest.raises(CorruptCheckpointError, match="not a checkpoint"):
        FileSystemStorage.load_path(tmp_path)
    write(storage, 5)
    with pytest.raises(CorruptCheckpointError, match="no readable manifest"):
        FileSystemStorage.load_path(storage.path_of(5))


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["commit", "abort", "crash", "corrupt"]), st.integers(1, 3)), max_size=12
    ),
    retain=st.integers(1, 3),
)
def test_load_latest_is_the_newest_intact_committed_checkpoint(
    steps: list[tuple[str, int]], retain: int
) -> None:
    # A model run against the memory backend: the contract logic is shared by all backends.
    storage = MemoryStorage(retain=retain)
    kept: list[int] = []  # committed and not pruned (retention cannot know what is damaged)
    damaged: set[int] = set()
    for action, parts in steps:
        checkpoint_id = storage.next_id()
        for index in range(parts):
            storage.write_part(checkpoint_id, f"p{index}", bytes([checkpoint_id, index]))
        if action in ("commit", "corrupt"):
            storage.commit(checkpoint_id)
            kept = [*kept, checkpoint_id][-retain:]
            if action == "corrupt":
                corrupt(storage, checkpoint_id, "p0")
                damaged.add(checkpoint_id)
        elif action == "abort":
            storage.abort(checkpoint_id)
        else:
            storage._pending.clear()  # the process died before the manifest
    intact = [i for i in kept if i not in damaged]
    loaded = storage.load_latest()
    assert (loaded.info.checkpoint_id if loaded else None) == (intact[-1] if intact else None)


# -- damaged manifests (issue 12, items 13 and 14) -------------------------------------------------


def test_every_single_bit_flip_of_a_manifest_falls_back_to_the_previous_checkpoint() -> None:
    storage = MemoryStorage()
    for checkpoint_id in (1, 2):
        write(storage, checkpoint_id)
        storage.commit(checkpoint_id, {"flow": "demo", "max_parallelism": 128})
    manifest = storage._manifest_bytes[2]
    for bit in range(len(manifest) * 8):
        flipped = bytearray(manifest)
        flipped[bit // 8] ^= 1 << (bit % 8)
        storage._manifest_bytes[2] = bytes(flipped)
        loaded = storage.load_latest()  # never raises, never takes the damaged one
        assert loaded is not None and loaded.info.checkpoint_id == 1, (bit, bytes(flipped))
        assert [info.checkpoint_id for info in storage.completed()] == [1]
        assert set(storage.damaged()) == {2}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: {**m, "kind": "checkpoinu"}, "its SHA-256 does not match"),
        (
            lambda m: {**m, "metadata": {**m["metadata"], "max_parallelism": 64}},
            "its SHA-256 does not match",
        ),
        (lambda m: {**m, "parts": {"source[1/1]": None}}, "its SHA-256 does not match"),
        # Without the manifest's own checksum (as written before it existed) the schema still says.
        (lambda m: {k: v for k, v in m.items() if k != "manifest_sha256"} | {"kind": "x"}, "kind 'x'"),
        (
            lambda m: (
                {k: v for k, v in m.items() if k != "manifest_sha256"}
                | {"parts": {"source[1/1]": {"sise": 3, "sha256": "0" * 64}}}
            ),
            "part 'source[1/1]'",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "manifest_sha256"} | {"checkpoint_id": 7}, "names"),
    ],
)
def test_a_manifest_that_is_json_but_damaged_is_skipped_saying_why(
    tmp_path: Path, change: Callable[[dict[str, object]], dict[str, object]], problem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import json

    storage = FileSystemStorage(tmp_path)
    for checkpoint_id in (1, 2):
        write(storage, checkpoint_id)
        storage.commit(checkpoint_id, {"max_parallelism": 128})
    path = storage.path_of(2) / MANIFEST
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    loaded = storage.load_latest()
    assert loaded is not None and loaded.info.checkpoint_id == 1
    assert problem in str(storage.damaged()[2])
    assert any("skipping checkpoint 2: damaged manifest" in r.getMessage() for r in caplog.records)


def test_a_manifest_written_before_its_checksum_existed_still_loads(tmp_path: Path) -> None:
    import json

    storage = FileSystemStorage(tmp_path)
    write(storage, 1)
    storage.commit(1)
    path = storage.path_of(1) / MANIFEST
    old = json.loads(path.read_text())
    del old["manifest_sha256"]
    path.write_text(json.dumps(old))
    loaded = storage.load_latest()
    assert loaded is not None and loaded.parts["source[1/1]"] == b"offset 1"


def test_clean_never_deletes_a_savepoint_whose_manifest_is_damaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FileSystemStorage(tmp_path)
    for checkpoint_id, kind in ((1, "checkpoint"), (2, "savepoint"), (3, "checkpoint")):
        write(storage, checkpoint_id, kind=kind)
        storage.commit(checkpoint_id, kind=kind)
    write(storage, 4)  # a crash before its manifest
    (storage.path_of(2, "savepoint") / MANIFEST).write_text('{"kind": "savepoint", "checkpoint_id": 2')
    (storage.path_of(3) / MANIFEST).write_text("{not json")
    again = FileSystemStorage(tmp_path)  # the next start
    assert again.clean() == [3, 4]  # the damaged checkpoint and the leftovers; not the savepoint
    assert (tmp_path / "sp-0000000002" / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chk-0000000001", "sp-0000000002"]
    assert "savepoint 2 is damaged (unreadable manifest: " in caplog.text
    assert "kept, not used; delete it by hand" in caplog.text
    assert [info.checkpoint_id for info in again.completed()] == [1]
    assert (
        "skipping savepoint 2: unreadable manifest" in caplog.text
        and "(kept: delete it by hand)" in caplog.text
    )


# -- shared files (incremental checkpoints) -------------------------------------------------------


def _file(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def test_a_shared_file_is_copied_once_and_listed_by_every_checkpoint_that_needs_it(
    open_storage: Factory, tmp_path: Path
) -> None:
    storage = open_storage(retain=2)
    first = _file(tmp_path, "1.sst", b"one" * 100)
    second = _file(tmp_path, "2.sst", b"two" * 10)
    assert storage.write_shared(1, "db/1.sst", first) == 300
    storage.write_part(1, "op/0", b"meta")
    storage.commit(1)
    assert storage.write_shared(2, "db/1.sst", first) == 0  # already stored: not copied again
    assert storage.write_shared(2, "db/2.sst", second) == 30
    storage.write_part(2, "op/0", b"meta")
    info = storage.commit(2)
    assert sorted(info.shared) == ["db/1.sst", "db/2.sst"]
    assert info.shared["db/1.sst"]["size"] == 300
    loaded = storage.load_latest()
    assert loaded is not None and loaded.files is not None
    loaded.files.copy("db/1.sst", tmp_path / "restored")
    assert (tmp_path / "restored").read_bytes() == b"one" * 100


def test_a_shared_file_goes_when_no_kept_checkpoint_lists_it(open_storage: Factory, tmp_path: Path) -> None:
    storage = open_storage(retain=1)
    old = _file(tmp_path, "old.sst", b"old")
    kept = _file(tmp_path, "kept.sst", b"kept")
    storage.write_shared(1, "db/old.sst", old)
    storage.write_shared(1, "db/kept.sst", kept)
    storage.commit(1)
    storage.write_shared(2, "db/kept.sst", kept)
    storage.commit(2)  # prunes checkpoint 1, and the file only it listed
    assert storage._shared_keys() == {"db/kept.sst"}
    reopened = open_storage(retain=1)  # a restart: what is stored is known from the manifests
    assert reopened.write_shared(3, "db/kept.sst", kept) == 0
    reopened.abort(3)
    assert reopened._shared_keys() == {"db/kept.sst"}


def test_an_aborted_checkpoint_leaves_no_shared_file_behind(open_storage: Factory, tmp_path: Path) -> None:
    storage = open_storage()
    storage.write_shared(1, "db/1.sst", _file(tmp_path, "1.sst", b"x"))
    storage.abort(1)
    assert storage._shared_keys() == set()
    assert storage.completed() == []


def test_a_savepoint_keeps_its_shared_files_whatever_is_pruned(
    open_storage: Factory, tmp_path: Path
) -> None:
    storage = open_storage(retain=1)
    sst = _file(tmp_path, "1.sst", b"sst")
    storage.write_shared(1, "db/1.sst", sst)
    storage.commit(1)
    assert storage.write_shared(2, "db/1.sst", sst, kind="savepoint") == 3  # copied into itself
    storage.commit(2, kind="savepoint")
    for checkpoint_id in (3, 4):
        write(storage, checkpoint_id)
        storage.commit(checkpoint_id)
    assert storage._shared_keys() == set()
    savepoint = storage.load(storage.completed()[0])
    assert savepoint.info.kind == "savepoint" and savepoint.files is not None
    savepoint.files.copy("db/1.sst", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"sst"


def test_a_damaged_or_missing_shared_file_is_found(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints")
    storage.write_shared(1, "db/1.sst", _file(tmp_path, "1.sst", b"good"))
    storage.commit(1)
    stored = tmp_path / "checkpoints" / "shared" / "db" / "1.sst"
    stored.write_bytes(b"evil")
    files = storage.load(storage.completed()[0]).files
    assert files is not None
    with pytest.raises(CorruptCheckpointError, match="does not match its checksum"):
        files.path("db/1.sst")
    stored.unlink()
    with pytest.raises(CorruptCheckpointError, match="lacks 1 shared files"):
        storage.load(storage.completed()[0])
    assert storage.load_latest() is None


def test_shared_keys_are_checked(open_storage: Factory, tmp_path: Path) -> None:
    storage = open_storage()
    with pytest.raises(ValueError, match="not a shared file key"):
        storage.write_shared(1, "../escape", _file(tmp_path, "x", b"x"))
