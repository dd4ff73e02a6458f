"""Helpers of the tests that kill a flow's process (SIGKILL) and start it again: which checkpoints
a run has completed, and waiting for the next one.

The process is another one, so there is no event to wait on: :func:`wait_for` polls its checkpoint
directory, with a deadline, and returns as soon as the process exits.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["DEADLINE_S", "complete_checkpoints", "newest_checkpoint", "wait_for"]

#: How long any one wait for a process may take before the test fails.
DEADLINE_S = 40.0


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """The manifests of the complete checkpoints in the directory, oldest first."""
    return sorted(checkpoints.glob("chk-*/MANIFEST.json"))


def newest_checkpoint(checkpoints: Path) -> int:
    """The id of the newest complete checkpoint (0: none yet)."""
    manifests = complete_checkpoints(checkpoints)
    return int(manifests[-1].parent.name.removeprefix("chk-")) if manifests else 0


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> bool:
    """Poll until ``condition()`` holds (True) or ``process`` exits (False); fail the test after
    :data:`DEADLINE_S` naming ``what`` it waited for."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S:g} s")
        time.sleep(0.002)  # another process's files: nothing to await
    return True
