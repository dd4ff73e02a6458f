"""The one line a failed job ends with: the cause, where it was raised, the record.

``actorflow run`` does not end a failure with a traceback (the user's error is one line among 40 of
actorflow's frames); it ends with one line that names the cause::

    actorflow: transactions.jsonl:6: not valid JSON (unexpected end of data at column 32)
    actorflow: operator amounts[1/1] failed on record {'tx_id': 0}: KeyError: 'amount' (flow.py:12)

The traceback comes before that line at ``--log-level debug``; with ``--log-format json`` the line
is the message of one JSON object whose ``exception`` field holds the traceback.
"""

from __future__ import annotations

import logging
import sys

from actorflow.cli.config import Config
from actorflow.errors import InputError
from actorflow.operators.failures import user_location

__all__ = ["describe_failure", "report_failure"]

log = logging.getLogger("actorflow.cli")


def describe_failure(error: BaseException) -> str:
    """The cause of ``error`` in one line (see the module docstring)."""
    if isinstance(error, InputError):
        return str(error)  # it names the file and line itself
    text = str(error)
    what = f"{type(error).__name__}: {text}" if text else type(error).__name__
    operator = getattr(error, "_actorflow_operator", None) or getattr(error, "_actorflow_actor", None)
    record = getattr(error, "_actorflow_record", None)
    head = f"operator {operator} failed" if operator else "failed"
    if record is not None:
        head += f" on record {record}"
    where = user_location(error)
    return f"{head}: {what}" + (f" ({where})" if where else "")


def report_failure(error: BaseException, config: Config) -> None:
    """Tell the user why the command failed: the traceback only at ``debug``, then the line."""
    line = describe_failure(error)
    if config.log_format == "json":
        log.error("%s", line, exc_info=error)
        return
    log.debug("the failure's traceback:", exc_info=error)
    print(f"actorflow: {line}", file=sys.stderr, flush=True)
