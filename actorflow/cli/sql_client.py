"""``actorflow sql`` without a file: the SQL client, interactive on a terminal, else reading stdin.

Each statement runs when its ``;`` arrives:

- ``CREATE TABLE``/``VIEW``/``FUNCTION``, ``SET``, ``SHOW TABLES``, ``DESCRIBE``, ``EXPLAIN`` at once
  (their lines printed), against one catalog that lasts the session;
- a ``SELECT`` runs as a job of its own. On a terminal its result shows live while the job runs
  (:mod:`actorflow.cli.sql_live`): by default the current result, an updating one's changes
  applied (Flink's ``table`` result mode), or with ``SET 'sql-client.execution.result-mode' =
  'changelog'`` every change, its kind (``+I``, ``-U``, ``+U``, ``-D``) in a first column ``op``.
  Once the job has ended the whole result prints as a table (:mod:`actorflow.cli.sql_tables`);
  Ctrl-C stops a job that does not end (an unbounded table) and leaves the last picture. With
  ``'tableau'``, and always when reading stdin, nothing shows until the job has ended (or Ctrl-C
  stopped it); then its rows print, an updating result's changes with their ``op``;
- ``INSERT INTO`` and ``CREATE TABLE ... AS SELECT`` run as a job of their own, to their end;
- ``quit;`` or ``exit;`` (or the end of the input, Ctrl-D) ends the session.

A mistake prints one line and the session goes on. On a terminal the prompt is ``actorflow> ``
(``         > `` while a statement goes on), lines are edited and remembered by ``readline``
(``~/.actorflow_sql_history``), and Ctrl-C stops the running query or cancels the line being
typed. Reading stdin there is no prompt; a mistake prints ``actorflow: <stdin>: line 3, column 8:
...`` (the line and column in the input) and the exit code says how it went: 0 when every
statement ran, 2 when one had a mistake, 1 when one failed while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from sqlglot import exp

from actorflow.api.flow import Flow, new_event_loop
from actorflow.cli.config import Config
from actorflow.cli.failures import describe_failure
from actorflow.cli.sql_live import (
    RESULT_MODE,
    ChangeLog,
    ChangeTable,
    LiveView,
    Result,
    can_redraw,
    result_mode,
)
from actorflow.cli.sql_statements import Statement, StatementReader
from actorflow.cli.sql_tables import render
from actorflow.errors import InputError, SqlError
from actorflow.sql.accessors import error_at, set_option
from actorflow.sql.catalog import Catalog
from actorflow.sql.dialect import parse
from actorflow.sql.planner import CHANGE, Planner, Relation
from actorflow.sql.session import SqlSession, session_of
from actorflow.sql.types import STRING

__all__ = [
    "CONTINUATION",
    "HISTORY",
    "PROMPT",
    "QueryCancelled",
    "SqlClient",
    "StatementFailed",
    "run_client",
]

log = logging.getLogger("actorflow.cli")

PROMPT = "actorflow> "
CONTINUATION = " " * (len(PROMPT) - 2) + "> "
HISTORY = Path("~/.actorflow_sql_history")
_QUIT = frozenset({"quit", "exit"})


class QueryCancelled(Exception):
    """Ctrl-C cancelled a running query; ``lines`` are the table of the rows it had given (none
    when the live view left them on the screen), ``note`` says what the screen shows."""

    def __init__(self, lines: list[str], note: str = "the rows above are those it gave") -> None:
        super().__init__("the query was cancelled")
        self.lines = lines
        self.note = note


class StatementFailed(Exception):
    """A statement could not run; ``code`` is the exit code it stands for (2: a mistake in the
    statement, 1: its job failed)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _session_on(flow: Flow, catalog: Catalog) -> SqlSession:
    """A SQL session of ``flow`` over the client's catalog (each query is a flow of its own)."""
    return session_of(flow, catalog)


def _is_job(statement: exp.Expression) -> bool:
    """INSERT INTO, or CREATE TABLE ... AS SELECT: a statement that adds a pipeline."""
    if isinstance(statement, exp.Insert):
        return True
    return isinstance(statement, exp.Create) and isinstance(statement.expression, exp.Query)


def is_quit(text: str) -> bool:
    """``quit``, ``exit``, with or without their ``;``."""
    return text.strip().rstrip(";").strip().lower() in _QUIT


class SqlClient:
    """Runs the client's statements against one catalog; each query or INSERT is a flow of its own.

    With a ``screen`` (a terminal that can redraw: :func:`~actorflow.cli.sql_live.can_redraw`), a
    SELECT shows its result there live while its job runs, as the result mode says; ``keys`` is
    the terminal's input, whose echo is off meanwhile.
    """

    def __init__(
        self,
        runner: asyncio.Runner,
        parallelism: int | None = None,
        *,
        screen: TextIO | None = None,
        keys: TextIO | None = None,
    ) -> None:
        self._runner = runner
        self._parallelism = parallelism
        self._screen = screen
        self._keys = keys
        self._session = _session_on(self._flow("sql-client"), Catalog())

    def _flow(self, name: str) -> Flow:
        return Flow(name) if self._parallelism is None else Flow(name, parallelism=self._parallelism)

    def execute(self, text: str) -> list[str]:
        """Run the statement in ``text``; returns the lines to print. Raises
        :class:`StatementFailed` with the one line that says why not; when Ctrl-C cancelled its
        job, :class:`QueryCancelled` (a SELECT: the rows so far) or KeyboardInterrupt."""
        try:
            statements = parse(text)
            if len(statements) == 1 and isinstance(statements[0], exp.Query):
                return self._select(statements[0])
            if len(statements) == 1 and _is_job(statements[0]):
                flow = self._flow("sql-client")
                _session_on(flow, self._session.catalog).execute(text)
                self._run(flow)
                return []
            for statement in statements:
                _check_option(statement)
            return self._session.execute(text)
        except SqlError as error:
            log.debug("the SQL error's traceback:", exc_info=error)
            raise StatementFailed(str(error), 2) from None

    def _select(self, query: exp.Query) -> list[str]:
        flow = self._flow("sql-client")
        planner = Planner(flow, self._session.catalog)
        relation = planner.rows(planner.query(query))
        mode = result_mode(self._session.catalog.options) if self._screen is not None else "tableau"
        if mode != "tableau":
            return self._live(flow, relation, mode == "changelog")
        rows = relation.stream.collect(name="result")
        columns = relation.columns
        if relation.changelog:  # an updating result: each row's change first, as Flink's client
            columns = {CHANGE: STRING.not_null(), **columns}
        try:
            self._run(flow)
        except KeyboardInterrupt:
            raise QueryCancelled(render(columns, rows.values, {CHANGE: "op"})) from None
        return render(columns, rows.values, {CHANGE: "op"})

    def _live(self, flow: Flow, relation: Relation, changes: bool) -> list[str]:
        """Run the query's job with its result live on the screen (every change, or the current
        rows); returns the whole result's table once the job has ended."""
        assert self._screen is not None
        columns = relation.columns
        result: Result = ChangeTable()
        if changes:
            columns, result = {CHANGE: STRING.not_null(), **columns}, ChangeLog()
        view = LiveView(self._screen, columns, result, headers={CHANGE: "op"})
        relation.stream.sink(view.sink(), name="result")
        with view.showing(self._keys):
            try:
                self._run(flow, view.follow)
            except KeyboardInterrupt:
                view.draw()  # the last picture stays, its count under it
                what = "changes above are those" if changes else "table above is the result"
                raise QueryCancelled([], f"the {what} it gave") from None
            except BaseException:  # the job failed: its one line, without the table
                view.erase()
                raise
            view.erase()  # the whole table prints in its place
        return render(columns, result.rows(), {CHANGE: "op"})

    def _run(
        self, flow: Flow, around: Callable[[Awaitable[None]], Coroutine[Any, Any, None]] | None = None
    ) -> None:
        """Run ``flow`` (inside ``around(job)`` when given: what awaits the job)."""
        try:
            flow.check_inputs()
        except InputError as error:
            raise StatementFailed(str(error), 2) from None
        job = flow.run()
        try:
            self._runner.run(around(job) if around is not None else job)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise KeyboardInterrupt from None
        except Exception as error:
            log.debug("the job's traceback:", exc_info=error)
            raise StatementFailed(describe_failure(error), 1) from None


def _check_option(statement: exp.Expression) -> None:
    """Raises :class:`SqlError` for a ``SET`` of the client's result mode to an unknown mode."""
    option = set_option(statement) if isinstance(statement, exp.Set) else None
    if option is not None and option[0] == RESULT_MODE:
        try:
            result_mode({RESULT_MODE: option[1]})
        except ValueError as error:
            raise error_at(statement, str(error)) from None


def _print(lines: list[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out)
    out.flush()


def read_stdin(client: SqlClient, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """The statements of ``stdin`` one after the other; returns the exit code (see the module)."""
    reader = StatementReader()
    code = 0

    def run(statement: Statement) -> bool:
        nonlocal code
        if is_quit(statement.text):
            return False
        try:
            _print(client.execute(statement.positioned()), out)
        except StatementFailed as error:
            where = "" if str(error).startswith("line ") else f"line {statement.line}: "
            print(f"actorflow: <stdin>: {where}{error}", file=err, flush=True)
            code = max(code, error.code)
        return True

    for line in stdin:
        for statement in reader.feed(line):
            if not run(statement):
                return code
    last = reader.finish()
    if last is not None:
        run(last)
    return code


def interactive(client: SqlClient, history: Path, out: TextIO, err: TextIO) -> int:
    """The prompt on a terminal, until ``quit;``, ``exit;`` or Ctrl-D; returns 0."""
    import readline

    history = history.expanduser()
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(history)
    readline.set_history_length(1000)
    reader = StatementReader()
    lines: list[str] = []  # of the statement being typed, for one history entry
    print("actorflow SQL client: statements end with ';', quit; (or Ctrl-D) leaves.", file=out)
    try:
        while True:
            try:
                line = input(CONTINUATION if reader.pending else PROMPT)
            except KeyboardInterrupt:  # Ctrl-C drops the line and the statement begun
                print(file=out)
                reader.reset()
                lines.clear()
                continue
            except EOFError:
                print(file=out)
                return 0
            if not reader.pending and is_quit(line):
                return 0
            lines.append(line)
            statements = reader.feed(line + "\n")
            if statements and not reader.pending:
                _one_history_entry(readline, lines)
                lines.clear()
            for statement in statements:
                if is_quit(statement.text):
                    return 0
                try:
                    _print(client.execute(statement.text) or ["OK"], out)
                except StatementFailed as error:
                    print(f"[ERROR] {error}", file=err, flush=True)
                except QueryCancelled as cancelled:
                    _print(cancelled.lines, out)
                    print(f"[CANCELLED] the query was cancelled: {cancelled.note}", file=err, flush=True)
                except KeyboardInterrupt:
                    print("[CANCELLED] the statement was cancelled", file=err, flush=True)
    finally:
        try:
            readline.write_history_file(history)
        except OSError as error:
            log.warning("cannot write the history to %s: %s", history, error.strerror)


def _one_history_entry(readline: Any, lines: list[str]) -> None:
    """A statement typed over several lines becomes one entry of the history, not one per line."""
    typed = [line for line in lines if line.strip()]
    if len(typed) < 2:
        return
    length = readline.get_current_history_length()
    for position in range(length - 1, max(length - len(typed), 0) - 1, -1):
        readline.remove_history_item(position)
    readline.add_history(" ".join(line.strip() for line in typed))


def run_client(config: Config) -> int:
    """The client: on a terminal, the prompt; else the statements of stdin. Returns the exit code."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        if sys.stdin.isatty():
            screen = sys.stdout if can_redraw(sys.stdout) else None
            client = SqlClient(runner, config.parallelism, screen=screen, keys=sys.stdin)
            return interactive(client, HISTORY, sys.stdout, sys.stderr)
        return read_stdin(SqlClient(runner, config.parallelism), sys.stdin, sys.stdout, sys.stderr)
