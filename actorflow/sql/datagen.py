"""The ``datagen`` connector: rows made up from the table's schema, as Flink's DataGen source makes them.

Table options (Flink's names, and ``seed``, actorflow's own):

- ``rows-per-second`` (default 10000): the rate, paced on the flow's clock;
- ``number-of-rows``: the rows to make, then the input ends (without it, and without a sequence
  field, it runs until stopped);
- ``seed``: an integer that makes the random values the same in every run (a demo, a test);
- per physical column ``fields.<col>.<option>``:

  - ``kind``: ``random`` (the default) or ``sequence``;
  - ``null-rate``: the share of NULLs, 0.0 to 1.0 (default 0);
  - random numbers: ``min``, ``max`` (default: the type's range), inclusive;
  - random strings: ``length`` (default 100, at most a VARCHAR's length), ``var-len``
    (``'true'``: a random length up to ``length``); the characters are hex digits, as Flink's;
  - random timestamps: ``max-past`` (a duration: ``5000``, ``'5 s'``, ``'10 min'``): between that
    long ago and now (default: now);
  - sequences (numbers and strings): ``start`` and ``end``, inclusive; the table ends when its
    sequence does.

Computed columns and ``WATERMARK FOR`` work as on any table: they are computed from the made-up
physical columns. The source has one instance; its position (the rows made, and the random
generator's state) is checkpointed, so a restored job goes on with the rows a run without a
failure would have made (the same values with a ``seed``; timestamps are relative to now).

>>> from actorflow import Flow
>>> flow = Flow("demo")
>>> _ = flow.sql(
...     "CREATE TABLE t (id BIGINT, score INT) WITH ('connector' = 'datagen', 'seed' = '1', "
...     "'number-of-rows' = '3', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', "
...     "'fields.id.end' = '100', 'fields.score.min' = '0', 'fields.score.max' = '9')"
... )
>>> rows = flow.from_table("t").collect()
>>> flow.execute()
>>> [row["id"] for row in rows.values], all(0 <= row["score"] <= 9 for row in rows.values)
([1, 2, 3], True)
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from actorflow.errors import SqlError
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import ReadProgress, Source
from actorflow.sql.accessors import error_at, parse_duration
from actorflow.sql.types import Kind, SqlType

if TYPE_CHECKING:
    from actorflow.sql.catalog import SqlTable

__all__ = ["DataGenSource", "datagen_source"]

#: ``(random generator, row number, now in epoch ms) -> value``.
FieldMaker = Callable[[random.Random, int, int], Any]

_TABLE_OPTIONS = ("connector", "rows-per-second", "number-of-rows", "seed", "scan.watermark.emit.strategy")
_FIELD = re.compile(r"fields\.(?P<column>.+)\.(?P<option>[^.]+)")
_KINDS = ("random", "sequence")
_NUMBERS = (Kind.INT, Kind.BIGINT, Kind.DOUBLE, Kind.DECIMAL)
_INT_RANGES = {Kind.INT: (-(2**31), 2**31 - 1), Kind.BIGINT: (-(2**63), 2**63 - 1)}
_FLOAT_RANGE = (2.2250738585072014e-308, 1.7976931348623157e308)  # Java's Double.MIN/MAX_VALUE


class DataGenSource(Source):
    """Records made by ``make(random, row_number, now)``: ``number_of_rows`` of them (None: until
    stopped), at most ``rows_per_second`` (None: as fast as the flow takes them), paced on the
    flow's clock by waiting on it between batches (the event loop runs other actors meanwhile).

    ``seed`` seeds the random generator ``make`` gets, so that every run makes the same records;
    its state and the row number are the checkpointed position. One instance.

    >>> import asyncio
    >>> source = DataGenSource(lambda rng, n, now: {"n": n, "die": rng.randint(1, 6)},
    ...                        number_of_rows=3, seed=7)
    >>> async def first() -> list:
    ...     async for batch in source.read(OperatorContext("s")):
    ...         return batch
    >>> [row["n"] for row in asyncio.run(first())]
    [0, 1, 2]
    """

    def __init__(
        self,
        make: FieldMaker,
        *,
        number_of_rows: int | None = None,
        rows_per_second: float | None = None,
        seed: int | None = None,
    ) -> None:
        if rows_per_second is not None and rows_per_second <= 0:
            raise ValueError("rows_per_second must be positive")
        if number_of_rows is not None and number_of_rows < 0:
            raise ValueError("number_of_rows cannot be negative")
        self._make = make
        self.number_of_rows = number_of_rows
        self.rows_per_second = rows_per_second
        self.seed = seed
        self._random = random.Random(seed)
        self._made = 0
        self._start: tuple[int, Any] | None = None
        self._stopped = False

    def describe(self) -> str:
        return "DataGenSource"

    def snapshot_state(self, context: OperatorContext) -> dict[str, Any]:
        """The rows made so far and the random generator's state after them."""
        return {"rows": self._made, "random": self._random.getstate()}

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        self._start = (int(states[0]["rows"]), states[0]["random"]) if states else None

    def read_progress(self) -> ReadProgress | None:
        """Rows made of ``number_of_rows`` (None when unbounded)."""
        return None if self.number_of_rows is None else ReadProgress(self._made, self.number_of_rows)

    def stop(self) -> None:
        """End the input after the batch in hand."""
        self._stopped = True

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        rng = self._random = random.Random(self.seed)
        self._made = 0
        if self._start is not None:
            self._made, state = self._start
            rng.setstate(state)
        self._stopped = False
        clock = context.clock
        rate = self.rows_per_second
        size = context.batch_size if rate is None else max(1, min(context.batch_size, int(rate)))
        total = self.number_of_rows
        started, first = clock.now(), self._made
        make = self._make
        while not self._stopped and (total is None or self._made < total):
            if rate is not None:
                # Row k of this run is due at k / rate seconds after the start (rate control).
                due = started + math.ceil((self._made - first) * 1000 / rate)
                if due > clock.now():
                    await clock.sleep_until(due)
            count = size if total is None else min(size, total - self._made)
            now = clock.now()
            base = self._made
            batch = [make(rng, base + offset, now) for offset in range(count)]
            self._made += count
            yield batch
            await asyncio.sleep(0)  # give other actors a turn even when nothing downstream is full


def datagen_source(table: SqlTable) -> DataGenSource:
    """The source of a ``datagen`` table, from its options (see the module docstring); raises a
    one-line :class:`SqlError` naming the table and the option for an unknown or bad option."""
    fields: dict[str, dict[str, str]] = {name: {} for name in table.physical}
    for key, value in table.options.items():
        match = _FIELD.fullmatch(key)
        if match is not None:
            column = match.group("column")
            if column not in fields:
                raise _error(
                    table,
                    f"option {key!r}: no physical column {column!r} (columns: {', '.join(table.physical)})",
                )
            fields[column][match.group("option")] = value
        elif key not in _TABLE_OPTIONS:
            raise _error(
                table,
                f"unknown option {key!r} for the datagen connector (options: "
                f"{', '.join(_TABLE_OPTIONS[1:4])}, fields.<column>.<option>)",
            )
    rate = _number(table, "rows-per-second", table.options.get("rows-per-second", "10000"), float)
    if rate <= 0:
        raise _error(table, f"'rows-per-second' = {table.options['rows-per-second']!r}: must be positive")
    rows: int | None = None
    if "number-of-rows" in table.options:
        rows = _number(table, "number-of-rows", table.options["number-of-rows"], int)
        if rows < 0:
            raise _error(
                table, f"'number-of-rows' = {table.options['number-of-rows']!r}: cannot be negative"
            )
    seed = _number(table, "seed", table.options["seed"], int) if "seed" in table.options else None
    makers: list[tuple[str, FieldMaker]] = []
    for name, options in fields.items():
        maker, length = _field(table, name, table.columns[name], options)
        makers.append((name, maker))
        if length is not None:
            rows = length if rows is None else min(rows, length)
    return DataGenSource(_row_maker(makers), number_of_rows=rows, rows_per_second=rate, seed=seed)


def _row_maker(makers: list[tuple[str, FieldMaker]]) -> FieldMaker:
    def make(rng: random.Random, row: int, now: int) -> dict[str, Any]:
        return {name: maker(rng, row, now) for name, maker in makers}

    return make


def _field(
    table: SqlTable, name: str, kind: SqlType, options: dict[str, str]
) -> tuple[FieldMaker, int | None]:
    """The maker of column ``name``'s values, and the length of its sequence (None if random)."""
    prefix = f"fields.{name}."
    generator = options.get("kind", "random")
    if generator not in _KINDS:
        raise _error(table, f"'{prefix}kind' = {generator!r}: 'random' or 'sequence'")
    allowed: tuple[str, ...]
    if generator == "sequence":
        allowed = ("kind", "start", "end", "null-rate")
    elif kind.kind in _NUMBERS:
        allowed = ("kind", "min", "max", "null-rate")
    elif kind.kind is Kind.STRING:
        allowed = ("kind", "length", "var-len", "null-rate")
    elif kind.is_timestamp:
        allowed = ("kind", "max-past", "null-rate")
    elif kind.kind is Kind.BOOLEAN:
        allowed = ("kind", "null-rate")
    else:
        raise _error(table, f"column {name!r}: the datagen connector makes no {kind} values")
    for option in options:
        if option not in allowed:
            raise _error(
                table,
                f"option '{prefix}{option}' does not go with a {generator} {kind.kind.value} column "
                f"(options: {', '.join(prefix + a for a in allowed)})",
            )
    null_rate = _number(table, prefix + "null-rate", options.get("null-rate", "0"), float)
    if not 0.0 <= null_rate <= 1.0:
        raise _error(table, f"'{prefix}null-rate' = {options['null-rate']!r}: between 0.0 and 1.0")
    if null_rate and not kind.nullable:
        raise _error(table, f"'{prefix}null-rate': column {name!r} is NOT NULL")
    length: int | None = None
    if generator == "sequence":
        maker, length = _sequence(table, prefix, kind, options)
    else:
        maker = _random(table, prefix, kind, options)
    if not null_rate:
        return maker, length

    def nullable(rng: random.Random, row: int, now: int) -> Any:
        value = maker(rng, row, now)  # made either way: a sequence goes on under its NULLs
        return None if rng.random() < null_rate else value

    return nullable, length


def _sequence(
    table: SqlTable, prefix: str, kind: SqlType, options: dict[str, str]
) -> tuple[FieldMaker, int]:
    if kind.kind not in (*_NUMBERS, Kind.STRING):
        raise _error(table, f"'{prefix}kind' = 'sequence' takes a number or string column, not {kind}")
    bounds = []
    for option in ("start", "end"):
        if option not in options:
            raise _error(table, f"a sequence needs '{prefix}{option}'")
        bounds.append(_number(table, prefix + option, options[option], int))
    start, end = bounds
    if end < start:
        raise _error(table, f"'{prefix}end' = {end} is before '{prefix}start' = {start}")
    convert: Callable[[int], Any] = {Kind.STRING: str, Kind.DOUBLE: float, Kind.DECIMAL: float}.get(
        kind.kind, int
    )

    def sequence(rng: random.Random, row: int, now: int) -> Any:
        return convert(start + row)

    return sequence, end - start + 1


def _random(table: SqlTable, prefix: str, kind: SqlType, options: dict[str, str]) -> FieldMaker:
    if kind.kind is Kind.BOOLEAN:
        return lambda rng, row, now: rng.random() < 0.5
    if kind.is_timestamp:
        past = options.get("max-past", "0")
        max_past = parse_duration(past)
        if max_past is None:
            raise _error(table, f"'{prefix}max-past' = {past!r}: a duration ('5000', '5 s', '10 min')")
        return lambda rng, row, now: now - rng.randint(0, max_past)
    if kind.kind is Kind.STRING:
        length = _number(
            table, prefix + "length", options.get("length", str(min(100, kind.precision or 100))), int
        )
        if length < 0 or (kind.precision is not None and length > kind.precision):
            raise _error(table, f"'{prefix}length' = {length}: from 0 to the column's length")
        variable = options.get("var-len", "false").lower()
        if variable not in ("true", "false"):
            raise _error(table, f"'{prefix}var-len' = {options['var-len']!r}: 'true' or 'false'")
        if variable == "true":
            return lambda rng, row, now: _hex(rng, rng.randint(0, length))
        return lambda rng, row, now: _hex(rng, length)
    low: Any
    high: Any
    if kind.is_integer:
        low, high = _INT_RANGES[kind.kind]
        parse: Callable[[str], Any] = int
    else:
        parse = float
        if kind.kind is Kind.DECIMAL:
            scale = kind.scale or 0
            limit = 10.0 ** ((kind.precision or 10) - scale) - 10.0**-scale
            low, high = -limit, limit
        else:
            low, high = _FLOAT_RANGE
    if "min" in options:
        low = _number(table, prefix + "min", options["min"], parse)
    if "max" in options:
        high = _number(table, prefix + "max", options["max"], parse)
    if high < low:
        raise _error(table, f"'{prefix}max' = {high} is below '{prefix}min' = {low}")
    if kind.is_integer:
        return lambda rng, row, now: rng.randint(low, high)
    if kind.kind is Kind.DECIMAL:
        scale = kind.scale or 0
        return lambda rng, row, now: round(rng.uniform(low, high), scale)
    return lambda rng, row, now: rng.uniform(low, high)


def _hex(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}" if length else ""


def _number(table: SqlTable, key: str, text: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(text.strip())
    except ValueError:
        what = "an integer" if parse is int else "a number"
        raise _error(table, f"{key!r} = {text!r}: not {what}") from None


def _error(table: SqlTable, message: str) -> SqlError:
    full = f"table {table.name!r}: {message}"
    return error_at(table.node, full) if table.node is not None else SqlError(full)
