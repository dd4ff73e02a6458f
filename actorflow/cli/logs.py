"""Log lines of the ``actorflow`` command: readable text, or one JSON object per line.

Every record gets the job's name and, when it is logged from inside an actor (a user function, an
operator, the runtime working for it), the actor's name: the chain of operators it runs and its
instance, ``small-then-large -> describe -> print[2/4]``, as Flink names a task. The actor is the
asyncio task the record was logged from (``run_actors`` names each task after its actor), so user
code gets this context with no change, from plain ``logging`` calls.

Text::

    2024-05-01 12:00:00,123 WARNING [fraud-detection | small-then-large[1/2]] mylogger: message

The default level is ``notice`` (:data:`NOTICE`): warnings, errors and the daemon's life cycle.

JSON (``--log-format json``): ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``job``, ``operator`` (null outside actors), ``pid``, and ``exception`` (the traceback, with notes)
when there is one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

__all__ = [
    "NOTICE",
    "ContextFilter",
    "JsonFormatter",
    "LogHandler",
    "TextFormatter",
    "configure_logging",
    "set_job",
]

#: Between INFO and WARNING, as syslog's notice: the job's life cycle (started, resumed, stopped,
#: done), shown at the default level, where libraries' INFO chatter (aiohttp's access log, Kafka
#: clients' group protocol) is not.
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

# Actor tasks are named after their chain instance, "name[i/p]"; other tasks are not actors.
_ACTOR_TASK = re.compile(r"\[\d+/\d+\]$")


def current_operator() -> str | None:
    """The name of the actor whose task is running, or None outside actors."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread (a worker thread, or before the run)
        return None
    if task is None:
        return None
    name = task.get_name()
    return name if _ACTOR_TASK.search(name) else None


class ContextFilter(logging.Filter):
    """Adds ``job`` and ``operator`` to every record it sees (it never drops one)."""

    def __init__(self, job: str | None = None) -> None:
        super().__init__()
        self.job = job

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = self.job
        record.operator = current_operator()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL [job | operator] logger: message`` (the context part only where known)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s%(context)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = " | ".join(
            str(part) for part in (getattr(record, "job", None), getattr(record, "operator", None)) if part
        )
        record.context = f" [{context}]" if context else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job": getattr(record, "job", None),
            "operator": getattr(record, "operator", None),
            "pid": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class LogHandler(logging.StreamHandler[TextIO]):
    """A stream handler that lets a progress line get out of the way before each log line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.before_emit: Callable[[], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.before_emit is not None:
            self.before_emit()
        super().emit(record)


def configure_logging(form: str, level: str, job: str | None, stream: TextIO | None = None) -> LogHandler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``form`` (text|json),
    with ``job`` as context; replaces handlers set before. Returns the handler (the progress line
    hooks into it)."""
    handler = LogHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    handler.addFilter(ContextFilter(job))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler


def set_job(handler: logging.Handler, job: str) -> None:
    """Name the job in every later record (once the flow is loaded and its name is known)."""
    for found in handler.filters:
        if isinstance(found, ContextFilter):
            found.job = job
