"""How ``actorflow savepoint`` reaches a running daemon: a control folder in the checkpoint directory.

The daemon keeps ``<checkpoint dir>/daemon/``:

- ``lock``: locked (``flock``) by the running daemon for its whole life. The OS releases it when the
  process ends, however it ends, so whether it can be locked tells whether a job runs there: no
  stale pid file can fool it. It also keeps two daemons from sharing one checkpoint directory.
- ``status.json``: the daemon's pid, host, job name, target and start time.
- ``requests/``: a client writes ``<id>.request`` and sends SIGUSR1 (the doorbell). The daemon takes
  every request there, takes one savepoint that starts after it found them, and answers each with
  ``<id>.json``: ``{"ok": true, "checkpoint_id": 7, "path": "..."}`` or ``{"ok": false, "error": ...}``.

A plain ``kill -USR1 <pid>`` also takes a savepoint (with nobody to answer). Locks and signals need
the client on the same host as the daemon (``docker compose exec`` is); the status file says which.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from actorflow.checkpoint.filesystem import write_atomically
from actorflow.cli.errors import UsageError

__all__ = ["ControlDir", "DaemonGone"]

#: How often a waiting client looks for its answer.
POLL_S = 0.05


class DaemonGone(Exception):
    """The daemon stopped (or never answered) before the request was served."""


class ControlDir:
    """The control folder of the checkpoint directory ``checkpoints`` (see the module docstring)."""

    def __init__(self, checkpoints: Path) -> None:
        self.root = checkpoints / "daemon"
        self.lock_path = self.root / "lock"
        self.status_path = self.root / "status.json"
        self.requests = self.root / "requests"
        self._lock_fd: int | None = None

    # -- the daemon's side ---------------------------------------------------------------------

    def acquire(self, status: dict[str, Any], wait_s: float = 1.0) -> None:
        """Lock the folder for this process and publish ``status`` (pid and host are added).

        Waits up to ``wait_s`` (a client probing the lock holds it for an instant). Raises
        :class:`UsageError` if another daemon holds it.
        """
        self.requests.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    other = self.read_status() or {}
                    raise UsageError(
                        f"{self.root.parent} is in use by another running job "
                        f"(pid {other.get('pid', '?')} on {other.get('host', '?')})"
                    ) from None
                time.sleep(POLL_S)
        self._lock_fd = descriptor
        for leftover in self.requests.iterdir():  # from a daemon that did not end cleanly
            leftover.unlink(missing_ok=True)
        write_atomically(
            self.status_path,
            json.dumps({**status, "pid": os.getpid(), "host": socket.gethostname()}).encode(),
        )

    def release(self) -> None:
        """Remove the status and unlock (the lock file stays: removing it would race other lockers)."""
        if self._lock_fd is None:
            return
        self.status_path.unlink(missing_ok=True)
        os.close(self._lock_fd)  # closing the descriptor releases the lock
        self._lock_fd = None

    def take_requests(self) -> list[str]:
        """The ids of the requests waiting, which are removed."""
        taken = []
        for path in sorted(self.requests.glob("*.request")):
            path.unlink(missing_ok=True)
            taken.append(path.stem)
        return taken

    def answer(self, request_ids: list[str], answer: dict[str, Any]) -> None:
        """Give every request in ``request_ids`` the same ``answer``."""
        data = json.dumps(answer).encode()
        for request_id in request_ids:
            write_atomically(self.requests / f"{request_id}.json", data)

    # -- a client's side -----------------------------------------------------------------------

    def read_status(self) -> dict[str, Any] | None:
        try:
            status = json.loads(self.status_path.read_bytes())
        except (OSError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def is_locked(self) -> bool:
        """Whether a daemon holds the lock now (tried without waiting; never creates anything)."""
        try:
            descriptor = os.open(self.lock_path, os.O_RDONLY)  # flock needs no write access
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)  # releases the lock if the probe took it
        return False

    def running(self) -> dict[str, Any] | None:
        """The status of the daemon running on this directory, or None if none runs.

        Raises :class:`UsageError` if it runs on another host (signals cannot reach it from here).
        """
        if not self.is_locked():
            return None
        deadline = time.monotonic() + 2.0
        status = self.read_status()
        while status is None and time.monotonic() < deadline:  # locked but not published yet
            time.sleep(POLL_S)
            status = self.read_status()
        if status is None:
            raise UsageError(f"a job holds {self.lock_path} but publishes no status")
        if status.get("command") != "run":
            raise UsageError(
                f"{self.root.parent} is busy: actorflow {status.get('command')} (pid {status.get('pid')})"
            )
        if status.get("host") != socket.gethostname():
            raise UsageError(
                f"the job on {self.root.parent} runs on host {status.get('host')} "
                f"(pid {status.get('pid')}): run this command there"
            )
        return status

    def request_savepoint(self, status: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Ask the daemon of ``status`` for a savepoint and wait for its answer.

        Raises :class:`DaemonGone` if it stops or does not answer within ``timeout_s``.
        """
        request_id = uuid.uuid4().hex
        request = self.requests / f"{request_id}.request"
        answer_path = self.requests / f"{request_id}.json"
        write_atomically(request, b"savepoint\n")
        try:
            os.kill(int(status["pid"]), signal.SIGUSR1)
        except ProcessLookupError:
            request.unlink(missing_ok=True)
            raise DaemonGone("the job stopped before it was asked") from None
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    answer: dict[str, Any] = json.loads(answer_path.read_bytes())
                    return answer
                except FileNotFoundError:
                    pass
                if not self.is_locked():
                    raise DaemonGone("the job stopped before it answered")
                if time.monotonic() >= deadline:
                    raise DaemonGone(f"no answer within {timeout_s:g} s")
                time.sleep(POLL_S)
        finally:
            request.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                answer_path.unlink()
