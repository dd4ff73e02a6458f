"""A planned query's rows: :class:`Relation`, and how a table scan's source records are seen as rows.

A relation is a stream of row dicts, the columns they have (in order, with their types), and its time
attribute. A scan's relation is *raw* (:class:`RawScan`): its stream carries the source's records as
they were read, and compiled code reads them straight (:func:`tolerant` falls back to the table's
reader when a record lacks a field).

>>> from actorflow.sql.types import BIGINT
>>> [name for name, _ in named_items([exp.Star(), exp.column("n") * 2], {"n": BIGINT, "m": BIGINT})]
['n', 'm', 'EXPR$1']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.sql.accessors import error_at
from actorflow.sql.expressions import read_through
from actorflow.sql.types import SqlType

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream

__all__ = [
    "CHANGE",
    "WINDOW_COLUMNS",
    "RawScan",
    "Relation",
    "describe",
    "getter",
    "named_items",
    "no_key",
    "substitute",
    "tolerant",
    "tuple_getter",
]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
#: The key of a changelog row's change (``+I``, ``-U``, ``+U``, ``-D``), as Flink's RowKind.
CHANGE = "$change"


@dataclass
class Relation:
    """A planned query: its rows, their columns, and its time attribute (or None).

    A table scan's relation is *raw*: its stream carries the source's records as they were read,
    and ``raw`` says how to see them as rows. Filters, select lists and aggregates compile
    straight onto the records (computed columns put in as their expressions), so a query that
    selects builds one dict per row, not three; :meth:`Planner.rows` makes rows of a raw relation
    where an operator needs them whole.
    """

    stream: DataStream[dict[str, Any]]
    columns: dict[str, SqlType]
    rowtime: str | None = None
    raw: RawScan | None = None
    #: An updating result (a changelog): each row carries its change, ``row[CHANGE]``: ``+I``,
    #: ``-U``, ``+U`` or ``-D``.
    changelog: bool = False


@dataclass
class RawScan:
    """How a source's records become a table's rows."""

    #: The table's physical columns, and its computed ones as expressions over them.
    physical: dict[str, SqlType]
    computed: dict[str, exp.Expression]
    #: A record's physical columns (missing fields as NULL, timestamps from text).
    read: Callable[[dict[str, Any]], dict[str, Any]]
    #: The whole row of ``read``'s result (the computed columns added).
    complete: Callable[[dict[str, Any]], dict[str, Any]]
    #: A physical TIMESTAMP column may hold text: compiled code always reads through ``read``
    #: (otherwise only when a record lacks a field).
    text_stamps: bool = False


def describe(columns: dict[str, SqlType]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns.items()) + ")"


def named_items(
    items: list[exp.Expression], columns: dict[str, SqlType]
) -> list[tuple[str, exp.Expression]]:
    """``(output name, expression)`` of a select list, ``*`` expanded, unnamed ones ``EXPR$i``."""
    named: list[tuple[str, exp.Expression]] = []
    for index, item in enumerate(items):
        if isinstance(item, exp.Star):
            named += [(name, exp.column(name)) for name in columns if not name.startswith("$")]
        elif isinstance(item, exp.Alias):
            named.append((item.alias, item.this))
        elif isinstance(item, exp.Column):
            if isinstance(item.this, exp.Star):
                named += [(name, exp.column(name)) for name in columns if not name.startswith("$")]
            else:
                named.append((item.name, item))
        else:
            named.append((f"EXPR${index}", item))
    seen: set[str] = set()
    for name, node in named:
        if name in seen:
            raise error_at(node, f"the query has two columns named {name!r}: give one an alias")
        seen.add(name)
    return named


def substitute(node: exp.Expression, computed: dict[str, exp.Expression]) -> exp.Expression:
    """``node`` with every computed column replaced by its expression (over physical columns)."""
    if not computed or not any(column.name in computed for column in node.find_all(exp.Column)):
        return node

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and found.name in computed:
            return exp.Paren(this=computed[found.name].copy())
        return found

    return node.copy().transform(swap)


def tolerant(function: Callable[[dict[str, Any]], Any], raw: RawScan) -> Callable[[dict[str, Any]], Any]:
    """``function`` of a table's physical columns (compiled by :mod:`actorflow.sql.expressions`),
    made to take a source record: straight, and through the table's reader when the record lacks
    a field (NULL) or may hold a timestamp as text."""
    return read_through(function, raw.read, always=raw.text_stamps)


def getter(name: str) -> Callable[[dict[str, Any]], Any]:
    """A C getter of one column of whole rows."""
    return itemgetter(name)


def tuple_getter(names: list[str]) -> Callable[[dict[str, Any]], Any]:
    """A C getter of a tuple of columns of whole rows."""
    return itemgetter(*names)


def no_key(row: dict[str, Any]) -> None:
    """The key of a query without GROUP BY keys: one group."""
    return None
