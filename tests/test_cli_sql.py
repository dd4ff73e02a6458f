"""``actorflow sql``: a script run as a job, and the client fed through stdin, as a user sees them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlglot")

from actorflow.cli.sql_live import ChangeLog, ChangeTable, LiveView, frame
from actorflow.sql.types import INT, STRING

ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    {"tx_id": 1, "card_id": "c1", "amount": 10.5, "ts": 1_700_000_000_000},
    {"tx_id": 2, "card_id": "c2", "amount": 20.0, "ts": 1_700_000_003_000},
    {"tx_id": 3, "card_id": "c1", "amount": 5.25, "ts": 1_700_000_011_000},
    {"tx_id": 4, "card_id": None, "amount": 7.0, "ts": 1_700_000_012_000},
    {"tx_id": 5, "card_id": "c1", "amount": 1.0, "ts": 1_700_000_014_000},
]

CREATE_TX = textwrap.dedent(
    """\
    CREATE TABLE tx (
      tx_id BIGINT, card_id STRING, amount DOUBLE, ts BIGINT,
      rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
      WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
    ) WITH ('connector' = 'jsonlines', 'path' = 'tx.jsonl');
    """
)

SPEND = textwrap.dedent(
    """\
    CREATE TABLE spend WITH ('connector' = 'jsonlines', 'path' = 'spend.jsonl') AS
    SELECT card_id, window_start, COUNT(*) AS n, SUM(amount) AS total
    FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
    WHERE amount > 2
    GROUP BY card_id, window_start, window_end;
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tx.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return tmp_path


def actorflow_sql(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``actorflow sql ARGS`` of this checkout, with ``stdin`` as its input (not a terminal)."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
    return subprocess.run(
        [sys.executable, "-m", "actorflow", "sql", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": path, "HOME": str(cwd)},
    )


def test_a_script_runs_as_a_job(project: Path) -> None:
    (project / "spend.sql").write_text(CREATE_TX + "\n" + SPEND)
    done = actorflow_sql("spend.sql", cwd=project)
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in (project / "spend.jsonl").read_text().splitlines()]
    assert sorted(written, key=lambda row: (row["window_start"], row["card_id"] or "")) == [
        {"card_id": "c1", "window_start": "2023-11-14 22:13:20.000", "n": 1, "total": 10.5},
        {"card_id": "c2", "window_start": "2023-11-14 22:13:20.000", "n": 1, "total": 20.0},
        {"card_id": None, "window_start": "2023-11-14 22:13:30.000", "n": 1, "total": 7.0},
        {"card_id": "c1", "window_start": "2023-11-14 22:13:30.000", "n": 1, "total": 5.25},
    ]
    # The job is named after the file, and its life cycle is the daemon's.
    assert "started spend (no checkpoints, parallelism 1)" in done.stderr
    assert "spend done: 5 records read" in done.stderr


def test_a_script_takes_the_daemon_settings(project: Path) -> None:
    (project / "spend.sql").write_text(CREATE_TX + SPEND)
    done = actorflow_sql("spend.sql", "--checkpoint-dir", "state", "--log-level", "warning", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len((project / "spend.jsonl").read_text().splitlines()) == 4
    assert any(path.name.startswith(("chk-", "sp-")) for path in (project / "state").iterdir())


def test_a_mistake_is_one_line_and_exit_2(project: Path) -> None:
    (project / "spend.sql").write_text(CREATE_TX + SPEND.replace("SUM(amount)", "SUM(amout)"))
    done = actorflow_sql("spend.sql", cwd=project)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "actorflow: spend.sql: line 7, column 50: unknown column 'amout' "
        "(columns: tx_id, card_id, amount, ts)\n"
    )
    assert not (project / "spend.jsonl").exists()


def test_the_traceback_of_a_mistake_at_debug(project: Path) -> None:
    (project / "spend.sql").write_text(CREATE_TX + SPEND.replace("SUM(amount)", "SUM(amout)"))
    done = actorflow_sql("spend.sql", "--log-level", "debug", cwd=project)
    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert done.stderr.endswith(
        "actorflow: spend.sql: line 7, column 50: unknown column 'amout' "
        "(columns: tx_id, card_id, amount, ts)\n"
    )


def test_a_script_without_an_insert_is_bad_usage(project: Path) -> None:
    (project / "tables.sql").write_text(CREATE_TX + "SHOW TABLES;\n")
    done = actorflow_sql("tables.sql", cwd=project)
    assert done.returncode == 2
    assert done.stderr == (
        "actorflow: tables.sql: nothing to run: "
        "the script has no INSERT INTO or CREATE TABLE ... AS SELECT\n"
    )


def test_a_missing_script(project: Path) -> None:
    done = actorflow_sql("nope.sql", cwd=project)
    assert (done.returncode, done.stderr) == (2, "actorflow: no such file: nope.sql\n")


CLIENT_INPUT = CREATE_TX + textwrap.dedent(
    """\
        SHOW TABLES;
        SELECT tx_id, card_id, amount, rowtime FROM tx WHERE amount > 6;
        SELECT card_id, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total
        FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
        WHERE card_id IS NOT NULL
        GROUP BY card_id, window_start, window_end;
        """
)

CLIENT_OUTPUT = """\
tx
+-------+---------+--------+-------------------------+
| tx_id | card_id | amount | rowtime                 |
+-------+---------+--------+-------------------------+
|     1 | c1      |   10.5 | 2023-11-14 22:13:20.000 |
|     2 | c2      |   20.0 | 2023-11-14 22:13:23.000 |
|     4 | NULL    |    7.0 | 2023-11-14 22:13:32.000 |
+-------+---------+--------+-------------------------+
3 rows
+---------+-------------------------+-------------------------+---+-------+
| card_id | window_start            | window_end              | n | total |
+---------+-------------------------+-------------------------+---+-------+
| c1      | 2023-11-14 22:13:20.000 | 2023-11-14 22:13:30.000 | 1 |  10.5 |
| c2      | 2023-11-14 22:13:20.000 | 2023-11-14 22:13:30.000 | 1 |  20.0 |
| c1      | 2023-11-14 22:13:30.000 | 2023-11-14 22:13:40.000 | 2 |  6.25 |
+---------+-------------------------+-------------------------+---+-------+
3 rows
"""


def test_the_client_reads_statements_from_stdin(project: Path) -> None:
    done = actorflow_sql(cwd=project, stdin=CLIENT_INPUT)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == CLIENT_OUTPUT


def test_the_client_goes_on_after_a_mistake(project: Path) -> None:
    statements = CREATE_TX + "SELECT amout FROM tx; DESCRIBE tx;\nSELECT * FROM nope\n"
    done = actorflow_sql(cwd=project, stdin=statements)
    assert done.returncode == 2
    # Lines and columns are those of the input; the last statement needs no ';'.
    assert done.stderr == (
        "actorflow: <stdin>: line 6, column 8: unknown column 'amout' "
        "(columns: tx_id, card_id, amount, ts)\n"
        "actorflow: <stdin>: line 7, column 15: unknown table 'nope' (tables: tx)\n"
    )
    assert done.stdout.splitlines() == [
        "tx_id BIGINT",
        "card_id STRING",
        "amount DOUBLE",
        "ts BIGINT",
        "rowtime TIMESTAMP_LTZ(3)",
    ]


def test_the_client_runs_an_insert_and_stops_at_quit(project: Path) -> None:
    statements = CREATE_TX + SPEND + "SELECT COUNT(*) AS n, window_start FROM TABLE(TUMBLE(TABLE tx, "
    statements += "DESCRIPTOR(rowtime), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;\n"
    statements += "quit;\nSHOW TABLES;\n"
    done = actorflow_sql(cwd=project, stdin=statements)
    assert (done.returncode, done.stderr) == (0, "")
    assert len((project / "spend.jsonl").read_text().splitlines()) == 4
    assert done.stdout.splitlines()[-2:] == ["+---+-------------------------+", "1 row"]


def test_the_client_shows_an_updating_result_as_changes(project: Path) -> None:
    statements = CREATE_TX + "SELECT card_id, COUNT(*) AS n FROM tx WHERE tx_id < 4 GROUP BY card_id;\n"
    statements += "SET 'execution.runtime-mode' = 'batch';\n" + statements.splitlines()[-1] + "\n"
    done = actorflow_sql(cwd=project, stdin=statements)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == textwrap.dedent(
        """\
        +----+---------+---+
        | op | card_id | n |
        +----+---------+---+
        | +I | c1      | 1 |
        | +I | c2      | 1 |
        | -U | c1      | 1 |
        | +U | c1      | 2 |
        +----+---------+---+
        4 rows
        +---------+---+
        | card_id | n |
        +---------+---+
        | c1      | 2 |
        | c2      | 1 |
        +---------+---+
        2 rows
        """
    )


#: Runs the client on the terminal. SIGINT goes back to its default first: a shell starts a
#: background job (`bash .ci/run &`) with SIGINT ignored, the ignore survives exec, and a Python
#: started so installs no KeyboardInterrupt handler, so Ctrl-C would not reach the client.
_ON_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "terminal = os.open(sys.argv[1], os.O_RDWR); "
    "[os.dup2(terminal, n) for n in (0, 1, 2)]; "
    "os.execv(sys.executable, [sys.executable, '-m', 'actorflow', 'sql'])"
)


class Terminal:
    """``actorflow sql`` on a pseudo-terminal: type lines, read what the screen shows.

    ``term``: the terminal's type (``dumb`` cannot redraw: no live view); ``size``: its lines and
    columns; ``path``: more folders for the client's PYTHONPATH.
    """

    def __init__(
        self, cwd: Path, *, term: str = "dumb", size: tuple[int, int] = (24, 80), path: tuple[str, ...] = ()
    ) -> None:
        import pty

        folders = (*path, str(ROOT), os.environ.get("PYTHONPATH"))
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(folder for folder in folders if folder),
            "HOME": str(cwd),
            "TERM": term,
        }
        environment.pop("LINES", None)
        environment.pop("COLUMNS", None)
        self.fd, terminal = pty.openpty()
        self.terminal = terminal  # open until the end: reading a pty nobody holds fails (EIO)
        self.resize(*size)
        # A session of its own whose controlling terminal is the pseudo-terminal (opened after
        # setsid), so that Ctrl-C there is its SIGINT; no fork() of this multi-threaded process.
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_TERMINAL, os.ttyname(terminal)],
            cwd=cwd,
            env=environment,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.screen = ""
        self.seen = ""

    def read_until(self, text: str, timeout: float = 20.0) -> str:
        """What the screen shows until ``text`` appears (and with it)."""
        import select

        deadline = time.monotonic() + timeout
        while text not in self.screen:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"waited for {text!r}; the screen shows {self.screen!r} after {self.seen!r}"
            self.screen += os.read(self.fd, 65536).decode().replace("\r\n", "\n")
        shown, _, self.screen = self.screen.partition(text)
        self.seen = shown[-300:] + text
        return shown + text

    def resize(self, lines: int, columns: int) -> None:
        """Make the terminal ``lines`` high and ``columns`` wide."""
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def exit_code(self) -> int:
        return self.process.wait(timeout=20)

    def close(self) -> None:
        """Kill the client if it still runs (a failed test), and close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.terminal)
        os.close(self.fd)


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_the_interactive_client(project: Path) -> None:
    terminal = Terminal(project)
    try:
        terminal.read_until("actorflow> ")
        terminal.type(CREATE_TX.replace("\n", " "))
        assert terminal.read_until("actorflow> ").endswith("OK\nactorflow> ")
        terminal.type("SELECT tx_id, amount")
        terminal.read_until("         > ")
        terminal.type("FROM tx WHERE amount > 6;")
        shown = terminal.read_until("actorflow> ")
        assert shown.endswith("|     4 |    7.0 |\n+-------+--------+\n3 rows\nactorflow> ")
        terminal.type("SELECT amout FROM tx;")
        assert "[ERROR] line 1, column 8: unknown column 'amout'" in terminal.read_until("actorflow> ")
        terminal.type("SHOW")
        terminal.read_until("         > ")
        # Ctrl-C drops the statement begun. (Not at once: CPython's readline misses a SIGINT that comes
        # between writing the prompt and waiting for a key, until the next key; a person is slower.)
        time.sleep(0.5)
        os.write(terminal.fd, b"\x03")
        terminal.read_until("actorflow> ")
        terminal.type("quit;")
        assert terminal.exit_code() == 0
    finally:
        terminal.close()
    history = (project / ".actorflow_sql_history").read_text().splitlines()
    assert "SELECT tx_id, amount FROM tx WHERE amount > 6;" in history


# -- the live view of a query that does not end --------------------------------------------------

#: A connector for the tests: a table over a named pipe (FIFO) that never ends. The source opens
#: the pipe for writing too, so that it never reads an end of file: the table is unbounded, and
#: each line the test writes into the pipe is a row.
FIFO_CONNECTOR = """\
import asyncio
import json
import os

from actorflow.operators.sources import Source
from actorflow.sql.connectors import Connector, option


class FifoSource(Source):
    def __init__(self, path):
        self.path = path

    async def read(self, context):
        pipe = os.fdopen(os.open(self.path, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)
        lines = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), pipe)
        try:
            while True:
                yield [json.loads(await lines.readline())]
        finally:
            transport.close()


class Fifo(Connector):
    def source(self, flow, table, watermarks):
        return flow.from_source(FifoSource(option(table, "path")), name=table.name, watermarks=watermarks)


CONNECTOR = Fifo()
"""


@pytest.fixture
def fifo_connector(tmp_path: Path) -> str:
    """A folder to put on the client's PYTHONPATH: the ``fifo`` connector, and the distribution
    metadata whose entry point adds it to the SQL connectors."""
    folder = tmp_path / "plugins"
    info = folder / "fifo_connector-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fifo-connector\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[actorflow.sql.connectors]\nfifo = fifo_connector:CONNECTOR\n")
    (folder / "fifo_connector.py").write_text(FIFO_CONNECTOR)
    return str(folder)


CREATE_CARDS = (
    "CREATE TABLE cards (card_id STRING, amount DOUBLE) WITH ('connector' = 'fifo', 'path' = 'cards.fifo');"
)
COUNT_CARDS = "SELECT card_id, COUNT(*) AS n FROM cards GROUP BY card_id;"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(shown: str) -> list[str]:
    """The lines of terminal output without its cursor and erase codes."""
    return ANSI.sub("", shown).replace("\r", "").split("\n")


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal and a named pipe")
def test_a_query_that_does_not_end_shows_its_result_live(project: Path, fifo_connector: str) -> None:
    os.mkfifo(project / "cards.fifo")
    # Open for writing and reading, so that this end never blocks and rows wait in the pipe
    # until the query's source reads them.
    pipe = os.open(project / "cards.fifo", os.O_RDWR)
    terminal = Terminal(project, term="xterm", size=(12, 100), path=(fifo_connector,))

    def send(*cards: str) -> None:
        os.write(
            pipe, "".join(json.dumps({"card_id": card, "amount": 1.0}) + "\n" for card in cards).encode()
        )

    try:
        terminal.read_until("actorflow> ")
        terminal.type(CREATE_CARDS)
        terminal.read_until("OK\nactorflow> ")
        terminal.type(COUNT_CARDS)
        send("c1")
        shown = terminal.read_until("(running, Ctrl-C to stop)")
        assert "\x1b[?25l" in shown  # no cursor while the table is live
        send("c2", "c1")
        # The table mode applies the changes: c1's count goes from 1 to 2 in place.
        terminal.read_until("| c1      | 2 |")
        frame = terminal.read_until("(running, Ctrl-C to stop)")
        assert screen_lines(frame)[-3:] == [
            "| c2      | 1 |",
            "+---------+---+",
            "2 rows (running, Ctrl-C to stop)",
        ]
        os.write(terminal.fd, b"\x03")  # Ctrl-C: stop the query, leave its last table
        shown = terminal.read_until("actorflow> ")
        assert "\x1b[?25h" in shown  # the cursor is back
        final = screen_lines(shown)
        table = [line for line in final if line.startswith(("|", "+")) or line.endswith("rows")]
        assert table == [
            "+---------+---+",
            "| card_id | n |",
            "+---------+---+",
            "| c1      | 2 |",
            "| c2      | 1 |",
            "+---------+---+",
            "2 rows",
        ]
        assert "[CANCELLED] the query was cancelled: the table above is the result it gave" in final

        # The changelog mode shows every change, in a first column op; a smaller terminal shows
        # the last ones and says how many it does not show.
        terminal.resize(9, 100)
        terminal.type("SET 'sql-client.execution.result-mode' = 'changelog';")
        terminal.read_until("OK\nactorflow> ")
        terminal.type(COUNT_CARDS)
        send("c3", "c3", "c3", "c4")
        shown = terminal.read_until("| +I | c4      | 1 |")
        frame = screen_lines(shown + terminal.read_until("(running, Ctrl-C to stop)"))
        assert frame[-8:] == [
            "+----+---------+---+",
            "| op | card_id | n |",
            "+----+---------+---+",
            "| -U | c3      | 2 |",
            "| +U | c3      | 3 |",
            "| +I | c4      | 1 |",
            "+----+---------+---+",
            "6 rows, 3 not shown (running, Ctrl-C to stop)",
        ]
        os.write(terminal.fd, b"\x03")
        final = screen_lines(terminal.read_until("actorflow> "))
        assert "6 rows, 3 not shown" in final
        assert "[CANCELLED] the query was cancelled: the changes above are those it gave" in final
        terminal.type("quit;")
        assert terminal.exit_code() == 0
    finally:
        terminal.close()
        os.close(pipe)


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_a_query_that_ends_prints_its_whole_result_on_a_terminal(project: Path) -> None:
    # On a terminal that can redraw, the table mode's result of an updating query is its final
    # rows (the changes applied), all of them, once the job has ended.
    terminal = Terminal(project, term="xterm", size=(7, 80))
    try:
        terminal.read_until("actorflow> ")
        terminal.type(CREATE_TX.replace("\n", " "))
        terminal.read_until("OK\nactorflow> ")
        terminal.type("SELECT card_id, COUNT(*) AS n FROM tx GROUP BY card_id;")
        assert screen_lines(terminal.read_until("actorflow> "))[-9:] == [
            "+---------+---+",
            "| card_id | n |",
            "+---------+---+",
            "| c1      | 3 |",
            "| c2      | 1 |",
            "| NULL    | 1 |",
            "+---------+---+",
            "3 rows",
            "actorflow> ",
        ]
        # The changelog mode, and the tableau mode (nothing live), print every change.
        changes = [
            "+----+---------+---+",
            "| op | card_id | n |",
            "+----+---------+---+",
            "| +I | c1      | 1 |",
            "| +I | c2      | 1 |",
            "| -U | c1      | 1 |",
            "| +U | c1      | 2 |",
            "+----+---------+---+",
            "4 rows",
            "actorflow> ",
        ]
        for mode in ("changelog", "tableau"):
            terminal.type(f"SET 'sql-client.execution.result-mode' = '{mode}';")
            terminal.read_until("OK\nactorflow> ")
            terminal.type("SELECT card_id, COUNT(*) AS n FROM tx WHERE tx_id < 4 GROUP BY card_id;")
            assert screen_lines(terminal.read_until("actorflow> "))[-10:] == changes
        terminal.type("quit;")
        assert terminal.exit_code() == 0
    finally:
        terminal.close()


def test_a_change_table_applies_the_changes() -> None:
    table = ChangeTable()

    def change(kind: str, card: str | None, n: int) -> dict[str, Any]:
        return {"card_id": card, "n": n, "$change": kind}

    table.add([change("+I", "c1", 1), change("+I", "c2", 1), change("+I", None, 1)])
    assert [row["card_id"] for row in table.rows()] == ["c1", "c2", None]
    # An update keeps its row's place, in one batch or split over two.
    table.add([change("-U", "c1", 1), change("+U", "c1", 2)])
    table.add([change("-U", "c2", 1)])
    assert table.rows() == [{"card_id": "c1", "n": 2}, {"card_id": None, "n": 1}]
    table.add([change("+U", "c2", 2)])
    assert table.rows() == [{"card_id": "c1", "n": 2}, {"card_id": "c2", "n": 2}, {"card_id": None, "n": 1}]
    # -D takes a row away; a -U without its +U (HAVING no longer holds) too; a retraction of a row
    # that is not there changes nothing.
    table.add([change("-D", None, 1), change("-U", "c1", 2), change("-D", "c9", 1), change("+I", "c3", 1)])
    assert table.rows() == [{"card_id": "c2", "n": 2}, {"card_id": "c3", "n": 1}]
    assert len(table) == 2
    assert table.last(1) == [{"card_id": "c3", "n": 1}]
    # Equal rows are rows of their own: a retraction takes one of them away.
    table.add([{"card_id": "c3", "n": 1}, change("-D", "c3", 1)])
    assert (table.rows(), len(table)) == ([{"card_id": "c2", "n": 2}, {"card_id": "c3", "n": 1}], 2)
    # Values that do not hash (ARRAY, MAP) are found too.
    table.add(
        [{"card_id": "c4", "n": [1, 2], "$change": "+I"}, {"card_id": "c4", "n": [1, 2], "$change": "-D"}]
    )
    assert len(table) == 2


def test_a_change_log_keeps_every_change() -> None:
    log = ChangeLog()
    log.add([{"card_id": "c1", "n": 1}, {"card_id": "c1", "n": 1, "$change": "-U"}])
    log.add([{"card_id": "c1", "n": 2, "$change": "+U"}])
    assert [row["$change"] for row in log.rows()] == ["+I", "-U", "+U"]
    assert (len(log), log.last(2), log.last(0)) == (3, log.rows()[1:], [])
    columns = {"$change": STRING, "card_id": STRING, "n": INT}
    assert frame(columns, log.last(10), len(log), 8, 80, "running", {"$change": "op"}) == [
        "+----+---------+---+",
        "| op | card_id | n |",
        "+----+---------+---+",
        "| -U | c1      | 1 |",
        "| +U | c1      | 2 |",
        "+----+---------+---+",
        "3 rows, 1 not shown (running)",
    ]
    # Lines wider than the terminal are cut, one character short of its width.
    assert frame(columns, log.last(1), len(log), 24, 10, None, {"$change": "op"})[0] == "+----+---"


async def test_the_live_view_redraws_as_rows_come() -> None:
    class Screen(io.StringIO):
        """Output that tells when a frame with a given text has been written."""

        def __init__(self) -> None:
            super().__init__()
            self.waiting: tuple[str, asyncio.Future[None]] | None = None

        def flush(self) -> None:
            if self.waiting is not None and self.waiting[0] in self.getvalue():
                self.waiting[1].set_result(None)
                self.waiting = None

        async def shows(self, text: str) -> None:
            self.waiting = (text, asyncio.get_running_loop().create_future())
            self.flush()
            if self.waiting is not None:
                await self.waiting[1]

    screen = Screen()
    view = LiveView(screen, {"n": INT}, ChangeTable(), interval=0, size=lambda: os.terminal_size((40, 10)))

    async def job() -> None:
        await screen.shows("0 rows (running")  # the first frame comes without rows
        view.take([{"n": 1}])
        await screen.shows("| 1 |")
        view.take([{"n": 1, "$change": "-D"}, {"n": 2}])
        await screen.shows("| 2 |")

    await asyncio.wait_for(view.follow(job()), 5)
    frames = screen.getvalue().split("\r")
    # Each frame draws over the one before: the second goes up the first's five lines (no rows).
    assert [frame[:4] for frame in frames[:3]] == ["", "+---", "\x1b[5A"]
    assert screen_lines(frames[-1])[-3:] == ["+---+", "1 row (running, Ctrl-C to stop)", ""]
    assert "| 1 |" not in frames[-1]
    view.erase()
    assert screen.getvalue().endswith("\r\x1b[6A\x1b[J")


def test_an_unknown_result_mode_is_a_mistake(project: Path) -> None:
    done = actorflow_sql(cwd=project, stdin="SET 'sql-client.execution.result-mode' = 'live';\n")
    assert done.returncode == 2
    assert done.stderr == (
        "actorflow: <stdin>: line 1, column 5: sql-client.execution.result-mode is one of table, "
        "changelog, tableau, not 'live'\n"
    )
