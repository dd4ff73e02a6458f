"""An exactly-once JSON-lines file: records reach the file once, however often the job restarts.

Each transaction writes its lines to a hidden part file next to the target
(``.NAME.part-00000007``). Pre-commit flushes it to disk and notes where it goes: at byte
``offset`` of the target, ``length`` bytes long (parts are committed in order, so the offset of the
next part is known). Commit appends the part to the target and removes it; it is idempotent
because it first compares the target's size with ``offset + length`` (already there: nothing to do)
and truncates to ``offset`` before appending (a commit cut short by a crash is redone whole).

After a restore, the checkpoint's parts are committed again, then the target is cut back to where
that checkpoint's parts end, and every part file it does not know is deleted: a checkpoint that
never completed leaves no trace. A fresh start (no checkpoint) starts the file afresh.

One instance (a single file). Readers see whole records only up to the last completed checkpoint.

>>> import tempfile, pathlib
>>> from actorflow import Flow
>>> target = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
>>> flow = Flow()
>>> _ = flow.from_iterable([{"n": 1}, {"n": 2}]).sink(ExactlyOnceJsonLinesSink(target))
>>> flow.execute()
>>> target.read_text()
'{"n":1}\\n{"n":2}\\n'
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from actorflow.checkpoint.filesystem import sync_directory
from actorflow.errors import CheckpointError
from actorflow.operators.base import OperatorContext
from actorflow.operators.two_phase import TwoPhaseCommitSink

__all__ = ["ExactlyOnceJsonLinesSink", "PartHandle"]

COPY_CHUNK = 1 << 20
"""Bytes copied at a time from a part into the target when it is committed."""


@dataclass(frozen=True)
class PartHandle:
    """A pre-committed part: its file name (in the target's folder), where it goes, how long."""

    name: str
    offset: int
    length: int


@dataclass
class _Part:
    name: str
    file: IO[bytes]


class ExactlyOnceJsonLinesSink(TwoPhaseCommitSink[_Part, PartHandle]):
    """Writes every record as a line of JSON to ``path``, exactly once (see the module docstring)."""

    max_parallelism = 1
    # A commit copies a part into the target and fsyncs it: the job goes on meanwhile (it writes
    # the next part, another file).
    commit_in_thread = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__("json-lines-exactly-once")
        self.path = Path(path)

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sequence = 0
        self._next_offset = 0
        self._pattern = re.compile(rf"^\.{re.escape(self.path.name)}\.part-\d+$")
        self._clean = False

    # -- transactions --------------------------------------------------------------------------

    def begin(self) -> _Part:
        if not self._clean:  # a fresh start: nothing restored, so nothing of before counts
            self.abort_leftovers([], None)
        name = f".{self.path.name}.part-{self._sequence:08d}"
        self._sequence += 1
        return _Part(name, open(self.path.parent / name, "wb"))

    def write_to(self, txn: _Part, values: list[Any]) -> None:
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE
        txn.file.write(b"".join([dumps(value, option=newline) for value in values]))

    def pre_commit(self, txn: _Part) -> PartHandle | None:
        file = txn.file
        length = file.tell()
        file.flush()
        os.fsync(file.fileno())
        file.close()
        if length == 0:
            (self.path.parent / txn.name).unlink(missing_ok=True)
            return None
        sync_directory(self.path.parent)
        handle = PartHandle(txn.name, self._next_offset, length)
        self._next_offset += length
        return handle

    def commit(self, handle: PartHandle) -> None:
        part = self.path.parent / handle.name
        end = handle.offset + handle.length
        with open(self.path, "a+b") as target:
            size = target.seek(0, os.SEEK_END)
            if size < end:
                if size < handle.offset:
                    raise CheckpointError(
                        f"{self.path} is {size} bytes, shorter than the {handle.offset} bytes "
                        "committed before this part: the file was changed outside the flow"
                    )
                try:
                    source = open(part, "rb")  # noqa: SIM115 - closed by the with below
                except FileNotFoundError:
                    raise CheckpointError(
                        f"part {handle.name} of {self.path} is missing: it cannot be committed"
                    ) from None
                with source:
                    target.truncate(handle.offset)
                    _append(source, target, self.path, handle.length)
                target.flush()
                if target.seek(0, os.SEEK_END) != end:
                    raise CheckpointError(
                        f"part {handle.name} of {self.path} is shorter than the {handle.length} "
                        "bytes pre-committed: it was damaged outside the flow"
                    )
                os.fsync(target.fileno())
        part.unlink(missing_ok=True)

    def abort(self, txn: _Part) -> None:
        txn.file.close()
        (self.path.parent / txn.name).unlink(missing_ok=True)

    # -- restore -------------------------------------------------------------------------------

    def sink_state(self) -> dict[str, Any]:
        return {"sequence": self._sequence, "next_offset": self._next_offset}

    def abort_leftovers(self, recovered: list[PartHandle], state: dict[str, Any] | None) -> None:
        self._clean = True
        if state is not None:
            self._sequence = max(self._sequence, state["sequence"])
            self._next_offset = state["next_offset"]
        known = {handle.name for handle in recovered}
        for entry in self.path.parent.iterdir():
            if self._pattern.match(entry.name) and entry.name not in known:
                entry.unlink(missing_ok=True)
        # Cut what a checkpoint after the restored one committed (it is being redone now).
        with open(self.path, "a+b") as target:
            if target.seek(0, os.SEEK_END) > self._next_offset:
                target.truncate(self._next_offset)
                os.fsync(target.fileno())


def _append(source: IO[bytes], target: IO[bytes], path: Path, length: int) -> None:
    """Append ``length`` bytes of ``source`` to ``target`` (the file ``path``, opened to append):
    inside the kernel where the system allows it (``copy_file_range``: no copy through this
    process, none at all on a file system that shares blocks), else in chunks, never the whole part
    in memory (a part holds a checkpoint interval's output, which may be far bigger than the memory
    the job otherwise needs)."""
    target.flush()
    offset = target.seek(0, os.SEEK_END)
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        done = 0
        # copy_file_range refuses a file opened to append: write through a descriptor of our own.
        out = os.open(path, os.O_WRONLY)
        try:
            while done < length:
                copied = copy_range(source.fileno(), out, length - done, done, offset + done)
                if copied == 0:
                    break  # the part ends early: the caller's size check reports it
                done += copied
        except OSError:
            done = -1  # not between these files: copy through the process instead
        finally:
            os.close(out)
        if done >= 0:
            target.seek(0, os.SEEK_END)
            return
        target.truncate(offset)
        source.seek(0)
    shutil.copyfileobj(source, target, COPY_CHUNK)
