"""The SQL types expressions are checked against, and the Python values that carry them at run time.

A :class:`SqlType` is a kind (:class:`Kind`), a nullability and, where the kind has them, a
precision and a scale. Flink's declared types map onto a small set (:func:`sql_type`):

==========================  ==============  ============================================
Flink type                  kind            Python value at run time
==========================  ==============  ============================================
BOOLEAN                     BOOLEAN         ``bool``
TINYINT, SMALLINT, INT      INT             ``int`` (the range is not checked)
BIGINT                      BIGINT          ``int``
FLOAT, DOUBLE               DOUBLE          ``float`` (an ``int`` is accepted)
DECIMAL(p, s), NUMERIC      DECIMAL         ``float`` (not ``decimal.Decimal``: CAST and
                                            ROUND round to the scale, arithmetic is binary
                                            floating point)
CHAR(n), VARCHAR(n), STRING STRING          ``str`` (``precision`` is n, None for STRING)
TIMESTAMP(p)                TIMESTAMP       ``int`` epoch milliseconds, UTC
TIMESTAMP_LTZ(p)            TIMESTAMP_LTZ   ``int`` epoch milliseconds
INTERVAL (day-time)         INTERVAL        ``int`` milliseconds
==========================  ==============  ============================================

Two kinds exist only inside expressions: ``NULL`` (the type of the literal ``NULL``, compatible
with every type) and ``ANY`` (the result of a user function: not checked, see
:mod:`actorflow.sql.expressions`). SQL NULL is ``None`` whatever the type.

>>> sql_type(exp.DataType.build("DECIMAL(10, 2)"))
SqlType(DECIMAL(10, 2))
>>> str(sql_type(exp.DataType.build("BIGINT"), nullable=False))
'BIGINT NOT NULL'
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at

__all__ = [
    "ANY",
    "BIGINT",
    "BOOLEAN",
    "DOUBLE",
    "INT",
    "INTERVAL",
    "NULL",
    "STRING",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "Kind",
    "SqlType",
    "decimal",
    "format_timestamp",
    "parse_timestamp",
    "sql_type",
]


class Kind(enum.Enum):
    """The kinds of :class:`SqlType`."""

    NULL = "NULL"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    BIGINT = "BIGINT"
    DOUBLE = "DOUBLE"
    DECIMAL = "DECIMAL"
    STRING = "STRING"
    TIMESTAMP = "TIMESTAMP"
    TIMESTAMP_LTZ = "TIMESTAMP_LTZ"
    INTERVAL = "INTERVAL"
    ANY = "ANY"


_INTEGERS = frozenset({Kind.INT, Kind.BIGINT})
_NUMERIC = frozenset({Kind.INT, Kind.BIGINT, Kind.DOUBLE, Kind.DECIMAL})
_TIMESTAMPS = frozenset({Kind.TIMESTAMP, Kind.TIMESTAMP_LTZ})
_WIDER = {
    Kind.INT: (Kind.BIGINT, Kind.DECIMAL, Kind.DOUBLE),
    Kind.BIGINT: (Kind.DECIMAL, Kind.DOUBLE),
    Kind.DECIMAL: (Kind.DOUBLE,),
}


@dataclass(frozen=True, slots=True)
class SqlType:
    """A SQL type: ``kind``, ``nullable`` and, for DECIMAL, ``precision`` and ``scale`` (for
    TIMESTAMP kinds the fractional precision, for a VARCHAR(n) its length).

    ``str()`` gives Flink's spelling (``DECIMAL(10, 2) NOT NULL``, ``TIMESTAMP_LTZ(3)``).
    """

    kind: Kind
    nullable: bool = True
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        kind = self.kind
        if kind is Kind.DECIMAL:
            text = f"DECIMAL({self.precision}, {self.scale})"
        elif kind in _TIMESTAMPS:
            text = f"{kind.value}({3 if self.precision is None else self.precision})"
        elif kind is Kind.STRING and self.precision is not None:
            text = f"VARCHAR({self.precision})"
        elif kind is Kind.INTERVAL:
            text = "INTERVAL SECOND(3)"
        else:
            text = kind.value
        return text if self.nullable or kind in (Kind.NULL, Kind.ANY) else f"{text} NOT NULL"

    def __repr__(self) -> str:
        return f"SqlType({self})"

    def with_nullable(self, nullable: bool) -> SqlType:
        """The same type, nullable or not."""
        return self if self.nullable == nullable else replace(self, nullable=nullable)

    def not_null(self) -> SqlType:
        """The same type, NOT NULL."""
        return self.with_nullable(False)

    def nullable_(self) -> SqlType:
        """The same type, nullable."""
        return self.with_nullable(True)

    def assignable_to(self, target: SqlType) -> bool:
        """Whether a value of this type may be written to a column of type ``target`` without a
        CAST (as an INSERT does): the same kind (any STRING length), a numeric type widened
        (INT to BIGINT, DECIMAL or DOUBLE; BIGINT to DECIMAL or DOUBLE; DECIMAL to DOUBLE), NULL
        or ANY to anything. Nullability is not checked here.

        >>> INT.assignable_to(DOUBLE), DOUBLE.assignable_to(INT), NULL.assignable_to(STRING)
        (True, False, True)
        """
        if self.kind in (Kind.NULL, Kind.ANY) or target.kind is Kind.ANY:
            return True
        if self.kind is target.kind:
            return self.kind is not Kind.DECIMAL or (
                (self.precision or 10) - (self.scale or 0) <= (target.precision or 10) - (target.scale or 0)
                and (self.scale or 0) <= (target.scale or 0)
            )
        return target.kind in _WIDER.get(self.kind, ())

    @property
    def is_integer(self) -> bool:
        """INT or BIGINT."""
        return self.kind in _INTEGERS

    @property
    def is_numeric(self) -> bool:
        """INT, BIGINT, DOUBLE or DECIMAL."""
        return self.kind in _NUMERIC

    @property
    def is_timestamp(self) -> bool:
        """TIMESTAMP or TIMESTAMP_LTZ."""
        return self.kind in _TIMESTAMPS


NULL = SqlType(Kind.NULL)
BOOLEAN = SqlType(Kind.BOOLEAN)
INT = SqlType(Kind.INT)
BIGINT = SqlType(Kind.BIGINT)
DOUBLE = SqlType(Kind.DOUBLE)
STRING = SqlType(Kind.STRING)
TIMESTAMP = SqlType(Kind.TIMESTAMP, precision=3)
TIMESTAMP_LTZ = SqlType(Kind.TIMESTAMP_LTZ, precision=3)
INTERVAL = SqlType(Kind.INTERVAL)
ANY = SqlType(Kind.ANY)


def decimal(precision: int = 10, scale: int = 0, nullable: bool = True) -> SqlType:
    """``DECIMAL(precision, scale)`` (Flink's default is ``DECIMAL(10, 0)``); a precision above 38
    is capped at 38 as Flink does."""
    precision = min(precision, 38)
    return SqlType(Kind.DECIMAL, nullable, precision, min(scale, precision))


_SIMPLE: dict[Any, SqlType] = {
    exp.DataType.Type.BOOLEAN: BOOLEAN,
    exp.DataType.Type.TINYINT: INT,
    exp.DataType.Type.SMALLINT: INT,
    exp.DataType.Type.INT: INT,
    exp.DataType.Type.BIGINT: BIGINT,
    exp.DataType.Type.FLOAT: DOUBLE,
    exp.DataType.Type.DOUBLE: DOUBLE,
    exp.DataType.Type.TEXT: STRING,
}
_STRINGS = {exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR, exp.DataType.Type.NCHAR}
_DECIMALS = {exp.DataType.Type.DECIMAL}
_TIMESTAMP_TYPES: dict[Any, Kind] = {
    exp.DataType.Type.TIMESTAMP: Kind.TIMESTAMP,
    exp.DataType.Type.DATETIME: Kind.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPLTZ: Kind.TIMESTAMP_LTZ,
}


def _params(datatype: exp.DataType) -> list[int]:
    """The integer parameters of ``DECIMAL(10, 2)`` / ``VARCHAR(5)`` / ``TIMESTAMP(3)``."""
    values: list[int] = []
    for param in datatype.expressions:
        literal = param.this if isinstance(param, exp.DataTypeParam) else param
        if not isinstance(literal, exp.Literal) or literal.is_string:
            raise SqlError(f"unsupported type parameter in {datatype.sql()!r}")
        values.append(int(literal.name))
    return values


def sql_type(
    datatype: exp.DataType, *, nullable: bool = True, node: exp.Expression | None = None
) -> SqlType:
    """The :class:`SqlType` of a declared Flink type (a column's, or a ``CAST``'s target).

    ``nullable`` is False for a column declared ``NOT NULL`` (a constraint sqlglot keeps on the
    column definition, not on the type). Raises :class:`SqlError` (at ``node``'s position when
    given) for a type outside the supported set: DATE, TIME, arrays, maps, rows, bytes and
    year-month intervals.

    >>> str(sql_type(exp.DataType.build("TIMESTAMP(3)")))
    'TIMESTAMP(3)'
    >>> str(sql_type(exp.DataType.build("VARCHAR(5)"), nullable=False))
    'VARCHAR(5) NOT NULL'
    """
    kind = datatype.this
    found: SqlType | None = None
    if isinstance(kind, exp.DataType.Type):
        if kind in _SIMPLE:
            found = _SIMPLE[kind]
        elif kind in _STRINGS:
            params = _params(datatype)
            found = SqlType(Kind.STRING, precision=params[0] if params else None)
            if kind is not exp.DataType.Type.VARCHAR and not params:
                found = SqlType(Kind.STRING, precision=1)  # CHAR is CHAR(1)
        elif kind in _DECIMALS:
            params = _params(datatype)
            found = decimal(params[0], params[1] if len(params) > 1 else 0) if params else decimal()
        elif kind in _TIMESTAMP_TYPES:
            params = _params(datatype)
            found = SqlType(_TIMESTAMP_TYPES[kind], precision=params[0] if params else 6)
        elif kind is exp.DataType.Type.INTERVAL:
            found = _interval_type(datatype)
    elif isinstance(kind, exp.Interval):  # INTERVAL DAY TO SECOND(3)
        found = _interval_type(datatype)
    if found is None:
        message = f"type {datatype.sql()} is not supported in expressions yet"
        raise error_at(node, message) if node is not None else SqlError(message)
    return found.with_nullable(nullable)


_YEAR_MONTH = ("YEAR", "MONTH", "QUARTER")


def _interval_type(datatype: exp.DataType) -> SqlType | None:
    """INTERVAL for day-time intervals; None (unsupported) for year-month ones."""
    text = datatype.sql().upper()
    return None if any(unit in text for unit in _YEAR_MONTH) else INTERVAL


_EPOCH = datetime(1970, 1, 1)
_TIMESTAMP_TEXT = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,9}))?)?)?\s*"
)


def format_timestamp(ms: int) -> str:
    """Epoch milliseconds as Flink prints a TIMESTAMP(3) (in JSON and ``print``), in UTC.

    >>> format_timestamp(1_700_000_000_000)
    '2023-11-14 22:13:20.000'
    >>> format_timestamp(-1)
    '1969-12-31 23:59:59.999'
    """
    t = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}"
    )


def parse_timestamp(text: str) -> int | None:
    """``yyyy-MM-dd[ HH:mm[:ss[.fff]]]`` (a ``T`` may separate date and time) as epoch
    milliseconds in UTC; None when the text is not such a timestamp. Digits past milliseconds
    are dropped.

    >>> parse_timestamp("2023-11-14 22:13:20.000"), parse_timestamp("2023-11-14T22:13:20.5")
    (1700000000000, 1700000000500)
    >>> parse_timestamp("14/11/2023") is None
    True
    """
    match = _TIMESTAMP_TEXT.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    if int(second or 0) > 59:
        return None
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0))
    except ValueError:
        return None
    millis = int((fraction or "0").ljust(3, "0")[:3])
    return (moment - _EPOCH) // timedelta(milliseconds=1) + int(second or 0) * 1000 + millis
