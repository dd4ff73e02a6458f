"""``actorflow sql FILE.sql``: a SQL script as a job.

The script's statements run against a new flow named after the file (``spend.sql`` is the job
``spend``): ``CREATE TABLE`` registers its tables, ``INSERT INTO`` and ``CREATE TABLE ... AS
SELECT`` add their pipelines, and the lines ``SHOW``, ``DESCRIBE`` and ``EXPLAIN`` give are
printed. The command then runs the flow exactly as ``actorflow run`` runs one (settings, signals,
savepoints, HTTP endpoint, progress). Paths in ``WITH`` options are relative to the working
directory, as in Flink.

A mistake in the SQL is bad usage: one line naming the file, line and column, exit 2 (the
traceback only at ``--log-level debug``); so is a script that adds nothing to run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from actorflow.api.flow import Flow
from actorflow.cli.errors import UsageError
from actorflow.errors import PlanError, SqlError

__all__ = ["NOTHING_TO_RUN", "load_sql_flow", "sink_count", "sql_usage_error"]

log = logging.getLogger("actorflow.cli")

NOTHING_TO_RUN = "nothing to run: the script has no INSERT INTO or CREATE TABLE ... AS SELECT"


def sink_count(flow: Flow) -> int:
    """How many sinks ``flow`` has (an INSERT or a CTAS adds one).

    The SQL layer does not say which statements added a pipeline; the sinks in the flow's graph do.
    """
    return sum(1 for node in flow.graph.nodes if node.kind == "sink")


def sql_usage_error(where: str, error: SqlError) -> UsageError:
    """The one line of a mistake in SQL, its traceback logged at debug."""
    log.debug("the SQL error's traceback:", exc_info=error)
    return UsageError(f"{where}: {error}")


def load_sql_flow(path: str) -> tuple[Flow, list[str]]:
    """The flow the script at ``path`` builds, and the lines its statements gave.

    Raises :class:`UsageError` for a missing or unreadable file, a mistake in the SQL (``spend.sql:
    line 3, column 8: unknown column 'amout' ...``), a script that adds nothing to run, or a missing
    ``sql`` extra.
    """
    file = Path(path)
    try:
        script = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    flow = Flow(file.stem or "sql")
    try:
        lines = flow.sql(script)
    except SqlError as error:
        raise sql_usage_error(path, error) from None
    except PlanError as error:  # the sql extra is missing: flow.sql() says how to install it
        raise UsageError(f"{path}: {error}") from None
    if sink_count(flow) == 0:
        raise UsageError(f"{path}: {NOTHING_TO_RUN}")
    return flow, lines
