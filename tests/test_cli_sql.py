"""``actorflow sql``: a script run as a job, and the client fed through stdin, as a user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlglot")

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


_ON_TERMINAL = (
    "import os, sys; terminal = os.open(sys.argv[1], os.O_RDWR); "
    "[os.dup2(terminal, n) for n in (0, 1, 2)]; "
    "os.execv(sys.executable, [sys.executable, '-m', 'actorflow', 'sql'])"
)


class Terminal:
    """``actorflow sql`` on a pseudo-terminal: type lines, read what the screen shows."""

    def __init__(self, cwd: Path) -> None:
        import pty

        path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
        environment = {**os.environ, "PYTHONPATH": path, "HOME": str(cwd), "TERM": "dumb"}
        self.fd, terminal = pty.openpty()
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
        self.terminal = terminal  # open until the end: reading a pty nobody holds fails (EIO)
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
