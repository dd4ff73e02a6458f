"""A query's result shown live on a terminal while its job runs, as Flink's SQL client shows it.

``SET 'sql-client.execution.result-mode' = '...'`` (Flink's option) picks how:

- ``table`` (the default): the current result, redrawn in place at most every 200 ms while rows
  come. The changes of an updating result are applied (:class:`ChangeTable`): ``-U`` and ``-D``
  take the row they name away, ``+I`` and ``+U`` add one (an update keeps the place of the row it
  replaces), so the table is the result as it stands;
- ``changelog``: every change as it came (:class:`ChangeLog`), its kind in a first column ``op``;
- ``tableau``: nothing live: the rows print once the job has ended (or Ctrl-C stopped it).

Only the last rows that fit the terminal are drawn; the line under the table counts them all and
says how many are not shown. The view needs a terminal that understands the ANSI codes that move
the cursor up and clear lines (:func:`can_redraw`); elsewhere the client prints at the end.

>>> from actorflow.sql.types import INT, STRING
>>> table = ChangeTable()
>>> table.add([{"card": "c1", "n": 1, "$change": "+I"}, {"card": "c2", "n": 1, "$change": "+I"},
...            {"card": "c1", "n": 1, "$change": "-U"}, {"card": "c1", "n": 2, "$change": "+U"}])
>>> table.rows()
[{'card': 'c1', 'n': 2}, {'card': 'c2', 'n': 1}]
>>> print("\\n".join(frame({"card": STRING, "n": INT}, table.last(1), len(table), 8, 80, "running")))
+------+---+
| card | n |
+------+---+
| c2   | 1 |
+------+---+
2 rows, 1 not shown (running)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Protocol, TextIO

from actorflow.cli.sql_tables import render
from actorflow.operators.sinks import Sink
from actorflow.sql.planner import CHANGE
from actorflow.sql.types import SqlType

__all__ = [
    "MODES",
    "RESULT_MODE",
    "ChangeLog",
    "ChangeTable",
    "LiveView",
    "Result",
    "can_redraw",
    "frame",
    "result_mode",
]

#: Flink's option that says how the client shows a query's result.
RESULT_MODE = "sql-client.execution.result-mode"
#: Its values; the first is the default.
MODES = ("table", "changelog", "tableau")

_RETRACTIONS = frozenset({"-U", "-D"})
#: Lines a frame takes besides its rows: three above them, the rule and the count below, and one
#: for the cursor under the frame.
_CHROME = 6


def result_mode(options: Mapping[str, str]) -> str:
    """The result mode ``options`` set (:data:`MODES`; ``table`` when unset), lower case.

    Raises :class:`ValueError` with the one line that says what is wrong.

    >>> result_mode({}), result_mode({RESULT_MODE: "Changelog"})
    ('table', 'changelog')
    """
    mode = options.get(RESULT_MODE, MODES[0]).lower()
    if mode not in MODES:
        raise ValueError(f"{RESULT_MODE} is one of {', '.join(MODES)}, not {mode!r}")
    return mode


def can_redraw(out: TextIO) -> bool:
    """Whether ``out`` is a terminal that can redraw a table in place (not ``TERM=dumb``).

    >>> import io
    >>> can_redraw(io.StringIO())
    False
    """
    return out.isatty() and os.environ.get("TERM", "dumb") not in ("", "dumb")


class Result(Protocol):
    """A query's rows as the live view shows them."""

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Take the rows (or changes) the job gave."""

    def rows(self) -> list[dict[str, Any]]:
        """All the rows to show, in order."""

    def last(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` of :meth:`rows` (fewer when there are fewer)."""

    def __len__(self) -> int:
        """How many rows :meth:`rows` has."""


def _identity(row: Mapping[str, Any]) -> Hashable:
    """The values of ``row`` (its change left out), as a key that finds equal rows."""
    values = tuple(value for name, value in row.items() if name != CHANGE)
    try:
        hash(values)
    except TypeError:  # an ARRAY or MAP value
        return repr(values)
    return values


class ChangeTable:
    """The current rows of a result, from its changes (Flink's "table" result mode).

    ``+I`` and ``+U`` add a row; ``-U`` and ``-D`` remove an equal earlier row (a retraction of a
    row that is not there changes nothing). A ``+U`` right after a ``-U`` takes the place of the
    row the ``-U`` removed, so updated rows keep their place. A row without a change is an insert.

    >>> table = ChangeTable()
    >>> table.add([{"k": "a", "$change": "+I"}, {"k": "b", "$change": "+I"}, {"k": "a", "$change": "-D"}])
    >>> table.rows(), len(table)
    ([{'k': 'b'}], 1)
    """

    def __init__(self) -> None:
        # Rows by a number that grows, in the order shown; None: the place of a row a -U took away,
        # kept for the +U that follows it.
        self._rows: dict[int, dict[str, Any] | None] = {}
        self._places: dict[Hashable, list[int]] = {}  # the numbers of the rows equal to a key
        self._next = 0
        self._vacant: int | None = None
        self._count = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Apply the changes ``rows``, in order."""
        for row in rows:
            change = row.get(CHANGE, "+I")
            if change in _RETRACTIONS:
                self._retract(row, keep_place=change == "-U")
            else:
                self._insert({name: value for name, value in row.items() if name != CHANGE}, change)

    def _retract(self, row: dict[str, Any], *, keep_place: bool) -> None:
        self._fill_vacancy()
        key = _identity(row)
        places = self._places.get(key)
        if not places:
            return
        place = places.pop(0)
        if not places:
            del self._places[key]
        self._count -= 1
        if keep_place:
            self._rows[place] = None
            self._vacant = place
        else:
            del self._rows[place]

    def _insert(self, row: dict[str, Any], change: str) -> None:
        place = self._vacant if change == "+U" else None
        self._fill_vacancy(keep=place)
        if place is None:
            place = self._next
            self._next += 1
        self._rows[place] = row
        self._places.setdefault(_identity(row), []).append(place)
        self._count += 1

    def _fill_vacancy(self, keep: int | None = None) -> None:
        """Forget the place a -U left, unless the row coming takes it (``keep``)."""
        vacant, self._vacant = self._vacant, None
        if vacant is not None and vacant != keep:
            del self._rows[vacant]

    def rows(self) -> list[dict[str, Any]]:
        """The current rows, in order."""
        return [row for row in self._rows.values() if row is not None]

    def last(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` current rows, in order."""
        found = islice((row for row in reversed(self._rows.values()) if row is not None), count)
        return list(found)[::-1]

    def __len__(self) -> int:
        return self._count


class ChangeLog:
    """Every change of a result as it came (Flink's "changelog" result mode); a row without a
    change is an insert (``+I``).

    >>> log = ChangeLog()
    >>> log.add([{"k": "a"}, {"k": "a", "$change": "-D"}])
    >>> log.rows()
    [{'k': 'a', '$change': '+I'}, {'k': 'a', '$change': '-D'}]
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Keep the changes ``rows``, in order."""
        self._rows += (row if CHANGE in row else {**row, CHANGE: "+I"} for row in rows)

    def rows(self) -> list[dict[str, Any]]:
        """Every change so far."""
        return list(self._rows)

    def last(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` changes."""
        return self._rows[-count:] if count > 0 else []

    def __len__(self) -> int:
        return len(self._rows)


def frame(
    columns: Mapping[str, SqlType],
    shown: Sequence[Mapping[str, Any]],
    count: int,
    height: int,
    width: int,
    status: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """The lines of one picture of a result of ``count`` rows whose last ones are ``shown``: at
    most as many rows as fit ``height`` lines (the last), each line cut to ``width`` characters,
    and a last line that counts the rows, says how many are not shown and adds ``status``.

    >>> from actorflow.sql.types import INT
    >>> frame({"n": INT}, [{"n": 1}, {"n": 2}], 2, 7, 80, "running, Ctrl-C to stop")
    ['+---+', '| n |', '+---+', '| 2 |', '+---+', '2 rows, 1 not shown (running, Ctrl-C to stop)']
    """
    room = max(1, height - _CHROME)
    shown = shown[-room:]
    lines = render(columns, shown, headers)
    hidden = count - len(shown)
    lines[-1] = f"{count} row" + ("" if count == 1 else "s")
    if hidden > 0:
        lines[-1] += f", {hidden} not shown"
    if status:
        lines[-1] += f" ({status})"
    # One character short of the width: a line as wide as the terminal would wrap on some.
    return [line if len(line) < width else line[: max(1, width - 1)] for line in lines]


class _ResultSink(Sink):
    """Hands each batch of the query's rows to the live view as it reaches the sink."""

    def __init__(self, view: LiveView) -> None:
        super().__init__("live-result")
        self._view = view

    def write(self, values: list[Any]) -> None:
        self._view.take(values)


_UP = "\x1b[{}A"
_CLEAR_LINE = "\x1b[K"  # from the cursor to the end of the line
_CLEAR_BELOW = "\x1b[J"  # from the cursor to the end of the screen
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"


class LiveView:
    """A result drawn in place on the terminal ``out`` while the job that makes it runs.

    :meth:`sink` is the job's sink: it hands rows to ``result`` as they arrive, and
    :meth:`follow` redraws the table at most every ``interval`` seconds while they come (the first
    time ``interval`` after the start, so that a job that ends sooner shows no frame at all).
    Afterwards :meth:`draw` leaves the last frame on the screen (Ctrl-C) or :meth:`erase` takes it
    away (the full table then prints in its place). ``size`` gives the terminal's size
    (``shutil.get_terminal_size`` by default).

    >>> import io
    >>> from actorflow.sql.types import INT
    >>> out = io.StringIO()
    >>> view = LiveView(out, {"n": INT}, ChangeLog(), interval=0)
    >>> view.take([{"n": 1}])
    >>> view.draw()
    >>> out.getvalue().split(_CLEAR_LINE + "\\n")
    ['\\r+---+', '| n |', '+---+', '| 1 |', '+---+', '1 row', '\\x1b[J']
    """

    def __init__(
        self,
        out: TextIO,
        columns: Mapping[str, SqlType],
        result: Result,
        *,
        headers: Mapping[str, str] | None = None,
        interval: float = 0.2,
        size: Callable[[], os.terminal_size] | None = None,
    ) -> None:
        self._out = out
        self._columns = columns
        self.result = result
        self._headers = headers
        self._interval = interval
        self._size = size if size is not None else shutil.get_terminal_size
        self._drawn = 0  # lines of the frame on the screen, above the cursor
        self._changed = asyncio.Event()

    def sink(self) -> Sink:
        """The sink that feeds this view (one object for all its instances)."""
        return _ResultSink(self)

    def take(self, rows: list[dict[str, Any]]) -> None:
        """Rows the job gave: add them to the result, and redraw soon."""
        self.result.add(rows)
        self._changed.set()

    async def follow(self, job: Awaitable[None]) -> None:
        """Await ``job``, redrawing the result while it runs. Raises what ``job`` raises."""
        drawer = asyncio.ensure_future(self._redraw())
        try:
            await job
        finally:
            drawer.cancel()
            await asyncio.wait([drawer])

    async def _redraw(self) -> None:
        await asyncio.sleep(self._interval)
        while True:
            self._changed.clear()
            self.draw("running, Ctrl-C to stop")
            await self._changed.wait()
            await asyncio.sleep(self._interval)  # at most one frame an interval: rows come in bursts

    def draw(self, status: str | None = None) -> None:
        """Draw the result over the frame drawn before (if any), with ``status`` after the count."""
        size = self._size()
        room = max(1, size.lines - _CHROME)
        lines = frame(
            self._columns,
            self.result.last(room),
            len(self.result),
            size.lines,
            size.columns,
            status,
            self._headers,
        )
        self._out.write(self._back() + "".join(line + _CLEAR_LINE + "\n" for line in lines) + _CLEAR_BELOW)
        self._out.flush()
        self._drawn = len(lines)

    def erase(self) -> None:
        """Take the frame off the screen (nothing when none was drawn)."""
        if self._drawn:
            self._out.write(self._back() + _CLEAR_BELOW)
            self._out.flush()
            self._drawn = 0

    def _back(self) -> str:
        """Back to the first line of the frame on the screen."""
        return "\r" + _UP.format(self._drawn) if self._drawn else "\r"

    @contextlib.contextmanager
    def showing(self, keys: TextIO | None = None) -> Iterator[None]:
        """While inside: no cursor, and keys typed on the terminal ``keys`` are not echoed (they
        would break the frame; they wait for the prompt). Ctrl-C still interrupts."""
        restore = _quiet(keys)
        self._out.write(_HIDE_CURSOR)
        self._out.flush()
        try:
            yield
        finally:
            self._out.write(_SHOW_CURSOR)
            self._out.flush()
            restore()


def _quiet(keys: TextIO | None) -> Callable[[], None]:
    """Turn the echo of terminal ``keys`` off; returns what turns it back on."""
    try:
        import termios
    except ImportError:  # Windows
        return lambda: None
    try:
        fd = keys.fileno() if keys is not None else -1
        before = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):  # not a terminal
        return lambda: None
    after = list(before)
    after[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, after)
    return lambda: termios.tcsetattr(fd, termios.TCSANOW, before)
