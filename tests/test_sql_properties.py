"""Random SQL queries against DuckDB: actorflow's final rows equal DuckDB's answer, row for row.

Hypothesis draws queries from a grammar over what the SQL layer supports (docs/sql.md) and runs
each one in two real flows (parallelism 1 and 3, batch sizes down to one row) over a bounded
JSON-lines table of a few hundred rows: ints, doubles and strings with NULLs (some written as
``null``, some left out of the record), timestamps in event-time order or out of order by less
than the declared watermark delay, so no row is late and the streaming result is the batch one.
DuckDB answers the equivalent query over the same rows.

The grammar:

- expressions: arithmetic (``+ - * /``, ``MOD``, unary minus, ``ABS``, ``ROUND``, ``FLOOR``,
  ``CEIL``, ``CAST``), ``CASE``, ``COALESCE``, ``NULLIF``, string functions (``||``, ``CONCAT``,
  ``UPPER``, ``LOWER``, ``SUBSTRING``, ``CHAR_LENGTH``, ``TRIM``, ``REPLACE``, ``POSITION``), and
  conditions (comparisons, ``AND``/``OR``/``NOT``, ``BETWEEN``, ``IN``, ``IS [NOT] NULL``, ``IS NOT
  TRUE``, ``[NOT] LIKE``);
- queries: a projection (or ``*``) with a filter; the rows of ``TUMBLE``/``HOP`` (random sizes
  and slides); a window aggregation grouped by window_start, window_end (and window_time) and
  random keys, with random ``COUNT(*)``, ``COUNT``, ``SUM``, ``AVG``, ``MIN``, ``MAX`` calls,
  expressions over them and ``HAVING``; ``UNION ALL`` of two filtered projections (as a filtered
  subquery too); each over the table, a view (itself a random projection and filter) or a subquery
  in ``FROM``, and the windows also over a view that is a UNION ALL or a window aggregation
  (cascading windows);
- updating results (their changelog applied, :class:`Changelog`, before the comparison):
  ``SELECT DISTINCT``, ``UNION`` (distinct), ``GROUP BY`` without a window (``COUNT``, ``SUM``
  and ``AVG`` of ``DISTINCT`` values too, in window aggregations as well), and queries over a
  ``GROUP BY`` in ``FROM``: a projection with a filter, a ``SELECT DISTINCT``, or another
  ``GROUP BY`` with ``WHERE`` and ``HAVING`` (Flink's retracting aggregates). The inner
  aggregation reads columns whose aggregates are exact (not ``y``: a sum that retracts a value
  differs from DuckDB's in the last bits, and a condition on it may then differ), and the outer
  one groups by integer and string columns.

The DuckDB side is translated where Flink and DuckDB differ (see actorflow/sql/expressions.py):
INT / INT truncates (``//``) and so does AVG of integers; ROUND of a double rounds half away from
zero from its shortest decimal form (through VARCHAR and DECIMAL); CAST of a DOUBLE to INT
truncates; CONCAT is NULL on a NULL argument (``||``); windows are GROUP BY arithmetic on the
epoch-millisecond ``ts`` (a HOP row once per window, through ``UNNEST(range(...))``).

What the grammar leaves out, and why:

- division by zero (Flink raises for integers; ``NULLIF`` on every divisor), decimal division and
  AVG of decimals (Flink rounds them to a scale; actorflow's DECIMAL is a float), decimal literals
  other than exact binary fractions (so no comparison turns on float rounding);
- a row at the watermark (Flink: late, its window may have fired);
- HOP aggregations whose size is not a multiple of the slide (Flink refuses them; actorflow runs
  them);
- a GROUP BY key left out of a record (actorflow's window aggregation then fails with KeyError
  instead of grouping it as NULL): such NULLs are written as ``null``;
- a ``GROUP BY`` without keys (DuckDB gives a row over no rows, a stream gives none);
- UNION ALL sides whose types differ, if only in nullability (actorflow refuses them; Flink takes
  the least restrictive type): both sides have the same expressions, over columns of the same
  types.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

duckdb = pytest.importorskip("duckdb")

from actorflow import Flow  # noqa: E402
from actorflow.sql.changelog import Changelog  # noqa: E402

# -- the table ------------------------------------------------------------------------------------

#: Flink type, DuckDB type, expression kind (int, dbl, str).
COLUMNS: dict[str, tuple[str, str, str]] = {
    "id": ("BIGINT", "BIGINT", "int"),
    "a": ("INT", "BIGINT", "int"),
    "b": ("INT", "BIGINT", "int"),
    "x": ("DOUBLE", "DOUBLE", "dbl"),
    "y": ("DOUBLE", "DOUBLE", "dbl"),
    "g": ("STRING", "VARCHAR", "str"),
    "s": ("STRING", "VARCHAR", "str"),
    "ts": ("BIGINT", "BIGINT", "int"),
}
#: Columns a grammar expression reads (ts only as the time attribute's source).
VALUE_COLUMNS = {name: kind for name, (_, _, kind) in COLUMNS.items() if name != "ts"}
#: The other side of a UNION ALL reads these instead (the same types).
SWAPPED = {"id": "id", "a": "b", "b": "a", "x": "y", "y": "x", "g": "s", "s": "g"}
IDENTITY = {name: name for name in VALUE_COLUMNS}


@dataclass(frozen=True)
class Data:
    """How a bounded table is drawn: its rows come from ``seed``."""

    seed: int
    count: int
    delay_s: int  # the watermark delay
    disorder: bool  # timestamps out of order (by less than the delay)
    on_event: bool  # 'scan.watermark.emit.strategy' = 'on-event'
    #: Columns whose NULLs are written as null, never left out of a record: GROUP BY keys (a
    #: window aggregation grouped by a column a record lacks fails with KeyError).
    keep: tuple[str, ...] = ()


def make_rows(data: Data) -> list[dict[str, Any]]:
    rng = random.Random(data.seed)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    def text() -> str:
        return "".join(rng.choice("aab cXé%_") for _ in range(rng.randint(0, 6)))

    rows = []
    clock = 1_700_000_000_000 + rng.randint(0, 10**7)
    for index in range(data.count):
        # Flink's watermark is the highest timestamp so far less the delay, and a row at the
        # watermark is late (its window may have fired): so with no delay, timestamps rise
        # strictly, and a row is out of order by less than the delay.
        clock += rng.choice([0 if data.delay_s else 1, 1, rng.randint(1, 500), rng.randint(1, 3000)])
        late = data.disorder and data.delay_s and rng.random() < 0.5
        late_by = rng.randint(0, data.delay_s * 1000 - 1) if late else 0
        row = {
            "id": index,
            "a": maybe(rng.randint(-20, 20)),
            "b": maybe(rng.randint(-4, 4)),
            # x in eighths: its sums are exact in any order (a sum in a HAVING is compared with a
            # constant); y in thousandths, mostly not binary fractions (ROUND starts from the
            # shortest decimal form: ROUND(2.675, 2) is 2.68).
            "x": maybe(rng.randint(-800, 800) / 8),
            "y": maybe(round(rng.uniform(-10, 10), rng.choice([1, 3]))),
            "g": maybe(rng.choice(["red", "green", "blue"])),
            "s": maybe(text()),
            "ts": clock - late_by,
        }
        if rng.random() < 0.3:  # a NULL left out of the record, not written as null
            row = {k: v for k, v in row.items() if v is not None or k in data.keep}
        rows.append(row)
    return rows


@dataclass
class Table:
    path: Path
    rows: list[dict[str, Any]]
    duck: Any  # a DuckDB connection with table t

    def ddl(self, data: Data) -> str:
        columns = ", ".join(f"{name} {flink}" for name, (flink, _, _) in COLUMNS.items())
        watermark = f"rowtime - INTERVAL '{data.delay_s}' SECOND" if data.delay_s else "rowtime"
        emit = ", 'scan.watermark.emit.strategy' = 'on-event'" if data.on_event else ""
        return (
            f"CREATE TABLE t ({columns}, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
            f"WATERMARK FOR rowtime AS {watermark}) "
            f"WITH ('connector' = 'jsonlines', 'path' = '{self.path}'{emit});"
        )


class Tables:
    """One file and one DuckDB table per drawn :class:`Data`, made once for the module."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: dict[Data, Table] = {}

    def __getitem__(self, data: Data) -> Table:
        rows_of = dataclasses.replace(data, on_event=False)  # the same rows either way
        table = self.made.get(rows_of)
        if table is None:
            rows = make_rows(data)
            path = self.directory / f"t{len(self.made)}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
            duck = duckdb.connect()
            types = ", ".join(f"{name}: '{kind}'" for name, (_, kind, _) in COLUMNS.items())
            duck.execute(
                f"CREATE TABLE t AS SELECT * FROM read_json('{path}', format = 'newline_delimited', "
                f"columns = {{{types}}})"
            )
            table = self.made[rows_of] = Table(path, rows, duck)
        return table


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tables]:
    made = Tables(tmp_path_factory.mktemp("sql-properties"))
    yield made
    for table in made.made.values():
        table.duck.close()


def datas(keep: tuple[str, ...] = ()) -> st.SearchStrategy[Data]:
    return st.builds(
        Data,
        seed=st.integers(0, 3),
        count=st.sampled_from([40, 300]),
        delay_s=st.sampled_from([0, 2]),
        disorder=st.booleans(),
        on_event=st.booleans(),
        keep=st.just(keep),
    )


#: Batch sizes of the two runs of a query: at parallelism 1 and at 3.
runs = st.tuples(st.sampled_from([1, 7, 1024]), st.sampled_from([1, 7, 1024]))


# -- expressions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """One expression in both dialects. Column names are ``{placeholders}``: the same expression
    reads other columns on the other side of a UNION ALL."""

    flink: str
    duck: str
    kind: str  # int, dec (an exact DECIMAL), dbl, str, bool

    def render(self, columns: dict[str, str]) -> tuple[str, str]:
        return self.flink.format(**columns), self.duck.format(**columns)


def _leaves(columns: dict[str, str]) -> dict[str, list[Expr]]:
    """Column references (name -> kind) and literals, by kind."""
    leaves: dict[str, list[Expr]] = {
        "int": [Expr("0", "0", "int"), Expr("3", "3", "int"), Expr("(-2)", "(-2)", "int"),
                Expr("CAST(NULL AS INT)", "CAST(NULL AS BIGINT)", "int")],
        "dec": [Expr("1.5", "1.5", "dec"), Expr("0.25", "0.25", "dec")],
        "dbl": [Expr("CAST(NULL AS DOUBLE)", "CAST(NULL AS DOUBLE)", "dbl")],
        "str": [Expr("'ab'", "'ab'", "str"), Expr("''", "''", "str"),
                Expr("CAST(NULL AS STRING)", "CAST(NULL AS VARCHAR)", "str")],
        "bool": [Expr("TRUE", "TRUE", "bool"), Expr("FALSE", "FALSE", "bool")],
    }  # fmt: skip
    for name, kind in columns.items():
        for _ in range(3):  # columns more often than literals
            leaves[kind].append(Expr(f"{{{name}}}", f"{{{name}}}", kind))
    return leaves


def _wider(a: str, b: str) -> str:
    """The kind of arithmetic on ``a`` and ``b`` (int, dec, dbl)."""
    if "dbl" in (a, b):
        return "dbl"
    return "dec" if "dec" in (a, b) else "int"


NUMBERS = ("int", "dec", "dbl")


@st.composite
def expressions(draw: st.DrawFn, kind: str, depth: int, leaves: dict[str, list[Expr]]) -> Expr:
    """A random expression of ``kind`` ('num': any number) at most ``depth`` deep over ``leaves``."""
    if kind == "num":
        kind = draw(st.sampled_from(NUMBERS))
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(leaves[kind]))
    below = depth - 1

    def sub(of: str) -> Expr:
        return draw(expressions(of, below, leaves))

    if kind in NUMBERS:
        shape = draw(st.sampled_from(["arith", "arith", "neg", "abs", "case", "coalesce", "func"]))
        if shape == "arith":
            if kind == "int":
                a, b = sub("int"), sub("int")
                op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
                if op == "/":
                    return Expr(f"({a.flink} / NULLIF({b.flink}, 0))",
                                f"({a.duck} // NULLIF({b.duck}, 0))", "int")  # fmt: skip
                if op == "%":
                    return Expr(f"MOD({a.flink}, NULLIF({b.flink}, 0))",
                                f"({a.duck} % NULLIF({b.duck}, 0))", "int")  # fmt: skip
                return Expr(f"({a.flink} {op} {b.flink})", f"({a.duck} {op} {b.duck})", "int")
            if kind == "dec":  # exact: no division, operands int or exact decimals
                a, b = sub("dec"), sub(draw(st.sampled_from(["int", "dec"])))
                op = draw(st.sampled_from(["+", "-", "*"]))
                return Expr(f"({a.flink} {op} {b.flink})", f"({a.duck} {op} {b.duck})", "dec")
            a, b = sub("dbl"), sub(draw(st.sampled_from(NUMBERS)))
            if draw(st.booleans()):
                a, b = b, a
            op = draw(st.sampled_from(["+", "-", "*", "/"]))
            if op == "/":
                return Expr(f"({a.flink} / NULLIF({b.flink}, 0))",
                            f"({a.duck} / NULLIF({b.duck}, 0))", "dbl")  # fmt: skip
            return Expr(f"({a.flink} {op} {b.flink})", f"({a.duck} {op} {b.duck})", "dbl")
        if shape == "neg":
            a = sub(kind)
            return Expr(f"(-{a.flink})", f"(-{a.duck})", kind)
        if shape == "abs":
            a = sub(kind)
            return Expr(f"ABS({a.flink})", f"abs({a.duck})", kind)
        if shape in ("case", "coalesce"):
            a, b = sub(kind), sub(kind)
            if shape == "coalesce":
                return Expr(f"COALESCE({a.flink}, {b.flink})", f"COALESCE({a.duck}, {b.duck})", kind)
            c = sub("bool")
            if draw(st.booleans()):
                return Expr(f"CASE WHEN {c.flink} THEN {a.flink} END",
                            f"CASE WHEN {c.duck} THEN {a.duck} END", kind)  # fmt: skip
            return Expr(f"CASE WHEN {c.flink} THEN {a.flink} ELSE {b.flink} END",
                        f"CASE WHEN {c.duck} THEN {a.duck} ELSE {b.duck} END", kind)  # fmt: skip
        if kind == "int":
            function = draw(st.sampled_from(["length", "position", "cast", "nullif"]))
            if function == "length":
                a = sub("str")
                return Expr(f"CHAR_LENGTH({a.flink})", f"length({a.duck})", "int")
            if function == "position":
                a = sub("str")
                return Expr(f"POSITION('a' IN {a.flink})", f"position('a' IN {a.duck})", "int")
            if function == "nullif":
                a = sub("int")
                return Expr(f"NULLIF({a.flink}, 1)", f"NULLIF({a.duck}, 1)", "int")
            a = sub("dbl")
            return Expr(f"CAST({a.flink} AS INT)", f"CAST(trunc({a.duck}) AS BIGINT)", "int")
        if kind == "dbl":
            a = sub("dbl")
            function = draw(st.sampled_from(["round", "floor", "ceil", "cast"]))
            if function == "round":
                digits = draw(st.integers(0, 2))
                return Expr(
                    f"ROUND({a.flink}, {digits})",
                    f"CAST(round(CAST(CAST({a.duck} AS VARCHAR) AS DECIMAL(38, 20)), {digits}) AS DOUBLE)",
                    "dbl",
                )
            if function == "cast":
                b = sub("int")
                return Expr(f"CAST({b.flink} AS DOUBLE)", f"CAST({b.duck} AS DOUBLE)", "dbl")
            return Expr(f"{function.upper()}({a.flink})", f"{function}({a.duck})", "dbl")
        a = sub("dec")
        return Expr(f"ABS({a.flink})", f"abs({a.duck})", "dec")
    if kind == "str":
        shape = draw(st.sampled_from(
            ["concat", "concat_fn", "upper", "lower", "substring", "trim", "replace", "coalesce",
             "case", "cast"]
        ))  # fmt: skip
        a, b = sub("str"), sub("str")
        if shape == "concat":
            return Expr(f"({a.flink} || {b.flink})", f"({a.duck} || {b.duck})", "str")
        if shape == "concat_fn":
            return Expr(f"CONCAT({a.flink}, {b.flink}, 'z')", f"({a.duck} || {b.duck} || 'z')", "str")
        if shape in ("upper", "lower", "trim"):
            return Expr(f"{shape.upper()}({a.flink})", f"{shape}({a.duck})", "str")
        if shape == "substring":
            start, length = draw(st.integers(1, 4)), draw(st.integers(0, 3))
            return Expr(f"SUBSTRING({a.flink} FROM {start} FOR {length})",
                        f"substring({a.duck}, {start}, {length})", "str")  # fmt: skip
        if shape == "replace":
            return Expr(f"REPLACE({a.flink}, 'a', 'Z')", f"replace({a.duck}, 'a', 'Z')", "str")
        if shape == "coalesce":
            return Expr(f"COALESCE({a.flink}, {b.flink})", f"COALESCE({a.duck}, {b.duck})", "str")
        if shape == "cast":
            n = sub("int")
            return Expr(f"CAST({n.flink} AS STRING)", f"CAST({n.duck} AS VARCHAR)", "str")
        c = sub("bool")
        return Expr(f"CASE WHEN {c.flink} THEN {a.flink} ELSE {b.flink} END",
                    f"CASE WHEN {c.duck} THEN {a.duck} ELSE {b.duck} END", "str")  # fmt: skip
    shape = draw(st.sampled_from(
        ["compare", "compare", "compare_str", "and", "or", "not", "is_null", "is_not_true",
         "between", "in", "like"]
    ))  # fmt: skip
    if shape in ("compare", "compare_str", "between"):
        operand = "str" if shape == "compare_str" else "num"
        a, b = draw(expressions(operand, below, leaves)), draw(expressions(operand, below, leaves))
        if shape == "between":
            c = draw(expressions("num", below, leaves))
            negate = "NOT " if draw(st.booleans()) else ""
            return Expr(f"({a.flink} {negate}BETWEEN {b.flink} AND {c.flink})",
                        f"({a.duck} {negate}BETWEEN {b.duck} AND {c.duck})", "bool")  # fmt: skip
        op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        return Expr(f"({a.flink} {op} {b.flink})", f"({a.duck} {op} {b.duck})", "bool")
    if shape in ("and", "or"):
        a, b = sub("bool"), sub("bool")
        op = shape.upper()
        return Expr(f"({a.flink} {op} {b.flink})", f"({a.duck} {op} {b.duck})", "bool")
    if shape in ("not", "is_not_true"):
        a = sub("bool")
        if shape == "not":
            return Expr(f"(NOT {a.flink})", f"(NOT {a.duck})", "bool")
        return Expr(f"({a.flink} IS NOT TRUE)", f"({a.duck} IS NOT TRUE)", "bool")
    if shape == "is_null":
        a = draw(expressions(draw(st.sampled_from(["num", "str"])), below, leaves))
        negate = "NOT " if draw(st.booleans()) else ""
        return Expr(f"({a.flink} IS {negate}NULL)", f"({a.duck} IS {negate}NULL)", "bool")
    if shape == "in":
        negate = "NOT " if draw(st.booleans()) else ""
        if draw(st.booleans()):
            a = sub("str")
            values = draw(
                st.lists(st.sampled_from(["'red'", "'blue'", "'a'", "''"]), min_size=1, max_size=3)
            )
        else:
            a = sub("int")
            values = draw(st.lists(st.sampled_from(["1", "-2", "3", "0", "NULL"]), min_size=1, max_size=4))
        listed = ", ".join(values)
        return Expr(f"({a.flink} {negate}IN ({listed}))", f"({a.duck} {negate}IN ({listed}))", "bool")
    a = sub("str")
    pattern = draw(st.sampled_from(["a%", "%b", "%a%", "_", "a_%", "%", "re%", "%e_"]))
    negate = "NOT " if draw(st.booleans()) else ""
    return Expr(f"({a.flink} {negate}LIKE '{pattern}')", f"({a.duck} {negate}LIKE '{pattern}')", "bool")


# -- queries --------------------------------------------------------------------------------------


@dataclass
class Case:
    """A drawn query: the statements before it (a view) in both dialects, and the query."""

    data: Data
    run: tuple[int, int]  # the batch sizes at parallelism 1 and 3
    flink: str
    duck: str
    flink_setup: str = ""
    duck_setup: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return (
            f"Case(data={self.data}, run={self.run},\n  flink_setup={self.flink_setup!r},\n"
            f"  flink={self.flink!r},\n  duck_setup={self.duck_setup!r},\n  duck={self.duck!r})"
        )


@st.composite
def sources(draw: st.DrawFn, *, windowed: bool) -> tuple[str, str, str, list[str]]:
    """``(flink FROM, duck FROM, flink setup, duck setup)``: the table, a view or (for queries
    without a window table function) a subquery, each with the table's columns by name."""
    which = draw(st.sampled_from(["table", "table", "view", "subquery"] if not windowed else
                                 ["table", "view"]))  # fmt: skip
    if which == "table":
        return "t", "t", "", []
    leaves = _leaves(VALUE_COLUMNS)
    flink_items, duck_items = [], []
    for name, kind in VALUE_COLUMNS.items():
        if name != "id" and draw(st.integers(0, 2)) == 0:
            item = draw(expressions(kind, 2, leaves))
            flink_items.append(f"{item.flink} AS {name}")
            duck_items.append(f"{item.duck} AS {name}")
        else:
            flink_items.append(name)
            duck_items.append(name)
    condition = draw(st.none() | expressions("bool", 2, leaves))
    flink_where = f" WHERE {condition.flink}" if condition is not None else ""
    duck_where = f" WHERE {condition.duck}" if condition is not None else ""
    flink_query = f"SELECT {', '.join(flink_items)}, ts, rowtime FROM t{flink_where}"
    duck_query = f"SELECT {', '.join(duck_items)}, ts FROM t{duck_where}"
    flink_query, duck_query = flink_query.format(**IDENTITY), duck_query.format(**IDENTITY)
    if which == "subquery":
        return f"({flink_query}) AS v", f"({duck_query}) AS v", "", []
    return "v", "v", f"CREATE VIEW v AS {flink_query};", [f"CREATE OR REPLACE TEMP VIEW v AS {duck_query}"]


def _select_list(items: list[Expr], columns: dict[str, str]) -> tuple[str, str]:
    flink = ", ".join(f"{item.render(columns)[0]} AS c{index}" for index, item in enumerate(items))
    duck = ", ".join(f"{item.render(columns)[1]} AS c{index}" for index, item in enumerate(items))
    return flink, duck


@st.composite
def projections(draw: st.DrawFn) -> Case:
    """``SELECT expressions|* FROM source [WHERE condition]``."""
    flink_from, duck_from, flink_setup, duck_setup = draw(sources(windowed=False))
    leaves = _leaves(VALUE_COLUMNS)
    items = draw(st.lists(expressions(draw(st.sampled_from(["num", "str", "bool"])), 3, leaves),
                          min_size=1, max_size=4))  # fmt: skip
    flink_items, duck_items = _select_list([Expr("{id}", "{id}", "int"), *items], IDENTITY)
    if draw(st.integers(0, 5)) == 0:  # every column, the computed time attribute too
        flink_items, duck_items = "*", f"{', '.join(VALUE_COLUMNS)}, ts, ts AS rowtime"
    condition = draw(st.none() | expressions("bool", 3, leaves))
    flink = f"SELECT {flink_items} FROM {flink_from}"
    duck = f"SELECT {duck_items} FROM {duck_from}"
    if condition is not None:
        flink_where, duck_where = condition.render(IDENTITY)
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    return Case(draw(datas()), draw(runs), flink, duck, flink_setup, duck_setup)


@st.composite
def unions(draw: st.DrawFn) -> Case:
    """``SELECT p FROM source WHERE c1 UNION ALL SELECT p' FROM source WHERE c2``: p' is p over
    other columns of the same types."""
    flink_from, duck_from, flink_setup, duck_setup = draw(sources(windowed=False))
    leaves = _leaves(VALUE_COLUMNS)
    items = draw(st.lists(expressions(draw(st.sampled_from(["num", "str", "bool"])), 2, leaves),
                          min_size=1, max_size=3))  # fmt: skip
    sides = []
    # Over a view, a column may be NOT NULL and its swapped one not: UNION ALL refuses types
    # that differ only in nullability (Flink takes the nullable one).
    swap = flink_from == "t" and draw(st.booleans())
    for columns in (IDENTITY, SWAPPED if swap else IDENTITY):
        flink_items, duck_items = _select_list([Expr("{id}", "{id}", "int"), *items], columns)
        condition = draw(expressions("bool", 2, leaves))
        flink_where, duck_where = condition.render(IDENTITY)
        sides.append((f"SELECT {flink_items} FROM {flink_from} WHERE {flink_where}",
                      f"SELECT {duck_items} FROM {duck_from} WHERE {duck_where}"))  # fmt: skip
    union = draw(st.sampled_from(["UNION ALL", "UNION ALL", "UNION"]))  # UNION: an updating result
    flink = f"{sides[0][0]} {union} {sides[1][0]}"
    duck = f"{sides[0][1]} {union} {sides[1][1]}"
    outer = draw(
        st.none()
        | expressions("bool", 2, _leaves({f"c{i + 1}": item.kind for i, item in enumerate(items)}))
    )
    if outer is not None:  # the union as a subquery, filtered on its columns
        outer_columns = {f"c{i + 1}": f"c{i + 1}" for i in range(len(items))}
        flink_where, duck_where = outer.render(outer_columns)
        flink = f"SELECT * FROM ({flink}) AS u WHERE {flink_where}"
        duck = f"SELECT * FROM ({duck}) AS u WHERE {duck_where}"
    return Case(draw(datas()), draw(runs), flink, duck, flink_setup, duck_setup)


@dataclass(frozen=True)
class Window:
    size_ms: int
    slide_ms: int  # = size for TUMBLE

    def flink(self, source: str) -> str:
        size = _interval(self.size_ms)
        if self.slide_ms == self.size_ms:
            return f"TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(rowtime), {size}))"
        return f"TABLE(HOP(TABLE {source}, DESCRIPTOR(rowtime), {_interval(self.slide_ms)}, {size}))"

    def duck(self, source: str) -> str:
        """The rows of ``source`` (event time in ``ts``) once per window each falls in (the
        windows start at multiples of the slide, in ``(ts - size, ts]``), with the window's
        columns."""
        size, slide = self.size_ms, self.slide_ms
        last = f"ts - ts % {slide}"
        return (
            f"(SELECT *, w AS window_start, w + {size} AS window_end, w + {size} - 1 AS window_time "
            f"FROM (SELECT *, UNNEST(range({last} - {size // slide * slide}, {last} + 1, {slide})) AS w "
            f"FROM {source}) WHERE w > ts - {size}) AS win"
        )


def _interval(ms: int) -> str:
    if ms % 60_000 == 0:
        return f"INTERVAL '{ms // 60_000}' MINUTE"
    if ms % 1000 == 0:
        return f"INTERVAL '{ms // 1000}' SECOND"
    return f"INTERVAL '{ms / 1000}' SECOND"


tumbles = st.sampled_from([500, 1000, 2000, 5000, 10_000, 60_000]).map(lambda size: Window(size, size))
#: A window aggregation's HOP: the size a multiple of the slide (Flink refuses others).
hops = st.tuples(st.sampled_from([500, 1000, 2000, 5000]), st.integers(2, 4)).map(
    lambda drawn: Window(drawn[0] * drawn[1], drawn[0])
)
windows = tumbles | hops
#: The window table function alone takes any HOP size.
any_windows = windows | st.tuples(st.sampled_from([1000, 2000]), st.sampled_from([500, 2500, 4500])).map(
    lambda drawn: Window(drawn[0] + drawn[1], drawn[0])
)


@dataclass
class Source:
    """What a window table function reads: the table, a view of it, or a view that is itself a
    window aggregation (cascading windows, its ``window_time`` as the time attribute ``rowtime``).
    DuckDB's side has the event time in ``ts``."""

    flink: str
    duck: str
    flink_setup: str
    duck_setup: list[str]
    columns: dict[str, str]  # name -> kind
    keys: list[str]  # the columns a window aggregation may group by
    keep: tuple[str, ...] = ()  # table columns some GROUP BY groups by


@st.composite
def window_sources(draw: st.DrawFn) -> Source:
    which = draw(st.sampled_from(["table", "table", "view", "union", "cascade"]))
    if which in ("table", "view"):
        flink, duck, flink_setup, duck_setup = draw(sources(windowed=True))
        return Source(flink, duck, flink_setup, duck_setup, dict(VALUE_COLUMNS), ["g", "a", "b"])
    if which == "union":  # two filters of the table, one stream with the table's time attribute
        leaves = _leaves(VALUE_COLUMNS)
        listed = ", ".join(VALUE_COLUMNS)
        flink_sides, duck_sides = [], []
        for _ in range(2):
            flink_where, duck_where = draw(expressions("bool", 2, leaves)).render(IDENTITY)
            flink_sides.append(f"SELECT {listed}, ts, rowtime FROM t WHERE {flink_where}")
            duck_sides.append(f"SELECT {listed}, ts FROM t WHERE {duck_where}")
        return Source(
            "v",
            "v",
            f"CREATE VIEW v AS {' UNION ALL '.join(flink_sides)};",
            [f"CREATE OR REPLACE TEMP VIEW v AS {' UNION ALL '.join(duck_sides)}"],
            dict(VALUE_COLUMNS),
            ["g", "a", "b"],
        )
    window = draw(windows)
    keys = draw(st.lists(st.sampled_from(["g", "a"]), unique=True, max_size=2))
    listed = "".join(f"{key}, " for key in keys)
    flink = (
        f"CREATE VIEW v AS SELECT {listed}window_time AS rowtime, COUNT(*) AS n, SUM(x) AS sx, "
        f"MAX(a) AS ma, MIN(s) AS ms FROM {window.flink('t')} "
        f"GROUP BY {listed}window_start, window_end, window_time;"
    )
    duck = (
        f"CREATE OR REPLACE TEMP VIEW v AS SELECT {listed}window_time AS ts, count(*) AS n, "
        f"sum(x) AS sx, max(a) AS ma, min(s) AS ms FROM {window.duck('t')} "
        f"GROUP BY {listed}window_start, window_end, window_time"
    )
    columns = {key: VALUE_COLUMNS[key] for key in keys} | {
        "n": "int",
        "sx": "dbl",
        "ma": "int",
        "ms": "str",
    }
    return Source("v", "v", flink, [duck], columns, [*keys, "n", "ma"], tuple(keys))


@st.composite
def window_rows(draw: st.DrawFn) -> Case:
    """The rows of a window table function: ``SELECT ..., window_start, window_end, window_time
    FROM TABLE(TUMBLE|HOP(...)) [WHERE condition]``."""
    source = draw(window_sources())
    window = draw(any_windows)
    leaves = _leaves(source.columns)
    columns = {name: name for name in source.columns}
    items = draw(st.lists(expressions(draw(st.sampled_from(["num", "str"])), 2, leaves),
                          min_size=1, max_size=3))  # fmt: skip
    flink_items, duck_items = _select_list(items, columns)
    windows_columns = ", window_start, window_end, window_time"
    flink = f"SELECT {flink_items}{windows_columns} FROM {window.flink(source.flink)}"
    duck = f"SELECT {duck_items}{windows_columns} FROM {window.duck(source.duck)}"
    condition = draw(st.none() | expressions("bool", 2, leaves))
    if condition is not None:
        flink_where, duck_where = condition.render(columns)
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    data = draw(datas(source.keep))
    return Case(data, draw(runs), flink, duck, source.flink_setup, source.duck_setup)


@st.composite
def aggregate_calls(draw: st.DrawFn, columns: dict[str, str]) -> Expr:
    """One aggregate call over a small expression of ``columns`` (COUNT, SUM and AVG sometimes
    of the DISTINCT values)."""
    leaves = _leaves(columns)
    function = draw(st.sampled_from(["COUNT(*)", "COUNT", "SUM", "AVG", "MIN", "MAX"]))
    if function == "COUNT(*)":
        return Expr("COUNT(*)", "count(*)", "int")
    kinds = {"COUNT": ["int", "dbl", "str"], "SUM": ["int", "dbl"], "AVG": ["int", "dbl"],
             "MIN": ["int", "dbl", "str"], "MAX": ["int", "dbl", "str"]}[function]  # fmt: skip
    argument = draw(expressions(draw(st.sampled_from(kinds)), 1, leaves))
    flink, duck = argument.render({name: name for name in columns})
    return _call(function, Expr(flink, duck, argument.kind), draw(st.integers(0, 3)) == 0)


def _call(function: str, argument: Expr, distinct: bool) -> Expr:
    """``function(argument)`` in both dialects (``DISTINCT`` for COUNT, SUM and AVG)."""
    flink, duck = argument.flink, argument.duck
    if distinct and function in ("COUNT", "SUM", "AVG"):
        flink, duck = f"DISTINCT {flink}", f"DISTINCT {duck}"
    if function == "COUNT":
        return Expr(f"COUNT({flink})", f"count({duck})", "int")
    if function == "AVG" and argument.kind == "int":  # Flink: an integer average truncates
        return Expr(f"AVG({flink})", f"CAST(trunc(avg({duck})) AS BIGINT)", "int")
    return Expr(f"{function}({flink})", f"{function.lower()}({duck})", argument.kind)


def _escape(expr: Expr) -> Expr:
    """``expr`` with its braces doubled: a leaf of a tree rendered with ``str.format``."""
    return Expr(expr.flink.replace("{", "{{").replace("}", "}}"),
                expr.duck.replace("{", "{{").replace("}", "}}"), expr.kind)  # fmt: skip


@st.composite
def window_aggregations(draw: st.DrawFn) -> Case:
    """``SELECT keys, window_start, window_end, expressions over aggregates FROM TABLE(TUMBLE|HOP(...))
    [WHERE condition] GROUP BY keys, window_start, window_end [, window_time] [HAVING condition]``."""
    source = draw(window_sources())
    window = draw(windows)
    keys = draw(st.lists(st.sampled_from(source.keys), unique=True, max_size=2))
    with_time = draw(st.booleans())
    calls = draw(st.lists(aggregate_calls(source.columns), min_size=1, max_size=3))
    # Expressions over the aggregate calls and the keys: leaves of a tree like any other.
    leaves = _leaves({})
    for call in calls:
        leaves[call.kind] += [_escape(call)] * 3
    for key in keys:
        leaves[source.columns[key]].append(Expr(key, key, source.columns[key]))
    items = [draw(st.sampled_from(calls))]
    items += draw(st.lists(expressions(draw(st.sampled_from(["num", "str", "bool"])), 2, leaves),
                           max_size=2))  # fmt: skip
    flink_items, duck_items = _select_list(items, {})
    shown = [key for key in keys if draw(st.booleans())]
    grouped = ", ".join([*keys, "window_start", "window_end"] + (["window_time"] if with_time else []))
    head = ", ".join([*shown, "window_start", "window_end"] + (["window_time"] if with_time else []))
    flink = f"SELECT {head}, {flink_items} FROM {window.flink(source.flink)}"
    duck = f"SELECT {head}, {duck_items} FROM {window.duck(source.duck)}"
    condition = draw(st.none() | expressions("bool", 2, _leaves(source.columns)))
    if condition is not None:
        flink_where, duck_where = condition.render({name: name for name in source.columns})
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    flink, duck = f"{flink} GROUP BY {grouped}", f"{duck} GROUP BY {grouped}"
    having = draw(st.none() | expressions("bool", 2, leaves))
    if having is not None:
        flink_having, duck_having = having.render({})
        flink, duck = f"{flink} HAVING {flink_having}", f"{duck} HAVING {duck_having}"
    keep = tuple(sorted({*source.keep, *(key for key in keys if key in ("g", "a", "b"))}))
    return Case(draw(datas(keep)), draw(runs), flink, duck, source.flink_setup, source.duck_setup)


# -- updating results -----------------------------------------------------------------------------


def _sometimes(strategy: st.SearchStrategy[Expr], one_in: int = 2) -> st.SearchStrategy[Expr | None]:
    """``strategy``'s value once in ``one_in`` draws, else None (a random condition often keeps
    no row: an updating result over nothing tests little)."""
    return st.integers(1, one_in).flatmap(lambda drawn: strategy if drawn == 1 else st.none())


@st.composite
def conditions(draw: st.DrawFn, columns: dict[str, str], depth: int = 2) -> Expr:
    """A condition over ``columns``: a random one, or (twice as often) a comparison of a column
    with a constant, which keeps some rows and drops others."""
    leaves = _leaves(columns)
    if draw(st.integers(0, 2)) == 0 or not columns:
        return draw(expressions("bool", depth, leaves))
    name = draw(st.sampled_from(sorted(columns)))
    column = f"{{{name}}}"
    if columns[name] == "str":
        test = draw(st.sampled_from(["<> 'red'", "LIKE '%a%'", "> 'b'", "IS NOT NULL", "IS NULL"]))
    else:
        test = draw(st.sampled_from(["> 0", "< 2", "<> 1", ">= -3", "IS NOT NULL", "BETWEEN -5 AND 5"]))
    return Expr(f"({column} {test})", f"({column} {test})", "bool")


@st.composite
def distincts(draw: st.DrawFn) -> Case:
    """``SELECT DISTINCT expressions FROM source [WHERE condition]``: an updating result."""
    flink_from, duck_from, flink_setup, duck_setup = draw(sources(windowed=False))
    leaves = _leaves(VALUE_COLUMNS)
    # Columns with few values (so that rows repeat), and expressions.
    few = st.sampled_from([Expr("{g}", "{g}", "str"), Expr("{a}", "{a}", "int"), Expr("{b}", "{b}", "int")])
    items = draw(st.lists(few | expressions(draw(st.sampled_from(["num", "str"])), 1, leaves),
                          min_size=1, max_size=3))  # fmt: skip
    flink_items, duck_items = _select_list(items, IDENTITY)
    flink = f"SELECT DISTINCT {flink_items} FROM {flink_from}"
    duck = f"SELECT DISTINCT {duck_items} FROM {duck_from}"
    condition = draw(_sometimes(conditions(VALUE_COLUMNS)))
    if condition is not None:
        flink_where, duck_where = condition.render(IDENTITY)
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    return Case(draw(datas()), draw(runs), flink, duck, flink_setup, duck_setup)


@st.composite
def group_aggregations(draw: st.DrawFn) -> Case:
    """``SELECT keys, expressions over aggregates FROM source [WHERE condition] GROUP BY keys
    [HAVING condition]`` (COUNT/SUM/AVG(DISTINCT ...) among the calls): an updating result."""
    flink_from, duck_from, flink_setup, duck_setup = draw(sources(windowed=False))
    keys = draw(st.lists(st.sampled_from(["g", "a", "b"]), unique=True, min_size=1, max_size=2))
    calls = draw(st.lists(aggregate_calls(VALUE_COLUMNS), min_size=1, max_size=3))
    leaves = _leaves({})
    for call in calls:
        leaves[call.kind] += [_escape(call)] * 3
    for key in keys:
        leaves[VALUE_COLUMNS[key]].append(Expr(key, key, VALUE_COLUMNS[key]))
    items = [draw(st.sampled_from(calls))]
    items += draw(st.lists(expressions(draw(st.sampled_from(["num", "str", "bool"])), 2, leaves),
                           max_size=2))  # fmt: skip
    flink_items, duck_items = _select_list(items, {})
    shown = ", ".join(key for key in keys if draw(st.booleans()))
    head = f"{shown}, " if shown else ""
    flink = f"SELECT {head}{flink_items} FROM {flink_from}"
    duck = f"SELECT {head}{duck_items} FROM {duck_from}"
    condition = draw(_sometimes(conditions(VALUE_COLUMNS)))
    if condition is not None:
        flink_where, duck_where = condition.render(IDENTITY)
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    flink, duck = f"{flink} GROUP BY {', '.join(keys)}", f"{duck} GROUP BY {', '.join(keys)}"
    having = draw(_sometimes(expressions("bool", 2, leaves), 3))
    if having is not None:
        flink_having, duck_having = having.render({})
        flink, duck = f"{flink} HAVING {flink_having}", f"{duck} HAVING {duck_having}"
    return Case(draw(datas()), draw(runs), flink, duck, flink_setup, duck_setup)


#: The columns an inner aggregation's calls read, whose aggregates are exact (x in eighths; y's
#: sums would differ by rounding between a sum and a retraction).
EXACT = {name: kind for name, kind in VALUE_COLUMNS.items() if name != "y"}


@st.composite
def column_calls(draw: st.DrawFn, columns: dict[str, str]) -> Expr:
    """An aggregate call of one of ``columns`` whose result is exact (AVG of integers only)."""
    function = draw(st.sampled_from(["COUNT(*)", "COUNT", "SUM", "AVG", "MIN", "MAX"]))
    if function == "COUNT(*)":
        return Expr("COUNT(*)", "count(*)", "int")
    allowed = {"COUNT": ("int", "dbl", "str"), "SUM": ("int", "dbl"), "AVG": ("int",),
               "MIN": ("int", "dbl", "str"), "MAX": ("int", "dbl", "str")}[function]  # fmt: skip
    names = sorted(name for name, kind in columns.items() if kind in allowed)
    if not names:
        return Expr("COUNT(*)", "count(*)", "int")
    name = draw(st.sampled_from(names))
    return _call(function, Expr(name, name, columns[name]), draw(st.integers(0, 3)) == 0)


@st.composite
def nested(draw: st.DrawFn) -> Case:
    """A query over an updating result: an inner ``GROUP BY`` of the table (``[WHERE]``, keys,
    exact aggregates, ``[HAVING]``) in ``FROM``, and over it a projection with a filter, a
    ``SELECT DISTINCT`` or another ``GROUP BY`` (with ``[WHERE]`` and ``[HAVING]``): the inner
    result's updates are retracted from the outer one."""
    keys = draw(st.lists(st.sampled_from(["g", "a", "b"]), unique=True, min_size=1, max_size=2))
    calls = draw(st.lists(column_calls(EXACT), min_size=1, max_size=3))
    inner_columns = {key: VALUE_COLUMNS[key] for key in keys}
    inner_columns.update({f"i{index}": call.kind for index, call in enumerate(calls)})
    listed = ", ".join(keys)
    flink_inner = f"SELECT {listed}, " + ", ".join(f"{c.flink} AS i{i}" for i, c in enumerate(calls))
    duck_inner = f"SELECT {listed}, " + ", ".join(f"{c.duck} AS i{i}" for i, c in enumerate(calls))
    flink_inner, duck_inner = f"{flink_inner} FROM t", f"{duck_inner} FROM t"
    condition = draw(_sometimes(conditions(VALUE_COLUMNS), 3))
    if condition is not None:
        flink_where, duck_where = condition.render(IDENTITY)
        flink_inner, duck_inner = f"{flink_inner} WHERE {flink_where}", f"{duck_inner} WHERE {duck_where}"
    flink_inner, duck_inner = f"{flink_inner} GROUP BY {listed}", f"{duck_inner} GROUP BY {listed}"
    if draw(st.integers(0, 3)) == 0:
        having_leaves = _leaves({})
        for call in calls:
            having_leaves[call.kind].append(_escape(call))
        flink_having, duck_having = draw(expressions("bool", 1, having_leaves)).render({})
        flink_inner, duck_inner = (
            f"{flink_inner} HAVING {flink_having}",
            f"{duck_inner} HAVING {duck_having}",
        )
    flink_from, duck_from = f"({flink_inner}) AS q", f"({duck_inner}) AS q"
    names = {name: name for name in inner_columns}
    leaves = _leaves(inner_columns)
    shape = draw(st.sampled_from(["project", "distinct", "aggregate", "aggregate"]))
    where = draw(_sometimes(conditions(inner_columns)))
    flink_where, duck_where = where.render(names) if where is not None else ("", "")
    if shape in ("project", "distinct"):
        if shape == "project":
            items = draw(st.lists(expressions(draw(st.sampled_from(["num", "str", "bool"])), 2, leaves),
                                  min_size=1, max_size=3))  # fmt: skip
        else:
            chosen = draw(
                st.lists(st.sampled_from(sorted(inner_columns)), unique=True, min_size=1, max_size=2)
            )
            items = [Expr(f"{{{name}}}", f"{{{name}}}", inner_columns[name]) for name in chosen]
        flink_items, duck_items = _select_list(items, names)
        head = "SELECT DISTINCT" if shape == "distinct" else "SELECT"
        flink, duck = f"{head} {flink_items} FROM {flink_from}", f"{head} {duck_items} FROM {duck_from}"
        if where is not None:
            flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
        return Case(draw(datas()), draw(runs), flink, duck)
    # An aggregation of the aggregation: keyed by integer or string columns of the inner result.
    candidates = sorted(name for name, kind in inner_columns.items() if kind in ("int", "str"))
    outer_keys = draw(st.lists(st.sampled_from(candidates), unique=True, min_size=1, max_size=2))
    outer_calls = draw(st.lists(column_calls(inner_columns), min_size=1, max_size=3))
    outer_leaves = _leaves({})
    for call in outer_calls:
        outer_leaves[call.kind] += [_escape(call)] * 3
    items = [draw(st.sampled_from(outer_calls))]
    items += draw(
        st.lists(expressions(draw(st.sampled_from(["num", "bool"])), 1, outer_leaves), max_size=1)
    )
    flink_items, duck_items = _select_list(items, {})
    grouped = ", ".join(outer_keys)
    flink = f"SELECT {grouped}, {flink_items} FROM {flink_from}"
    duck = f"SELECT {grouped}, {duck_items} FROM {duck_from}"
    if where is not None:
        flink, duck = f"{flink} WHERE {flink_where}", f"{duck} WHERE {duck_where}"
    flink, duck = f"{flink} GROUP BY {grouped}", f"{duck} GROUP BY {grouped}"
    having = draw(_sometimes(expressions("bool", 1, outer_leaves), 3))
    if having is not None:
        flink_having, duck_having = having.render({})
        flink, duck = f"{flink} HAVING {flink_having}", f"{duck} HAVING {duck_having}"
    return Case(draw(datas()), draw(runs), flink, duck)


# -- running and comparing ------------------------------------------------------------------------


def run_flow(case: Case, table: Table, parallelism: int, batch_size: int) -> list[dict[str, Any]]:
    """The rows of the case's query: of an updating result, what its changelog leaves (and a
    retraction of a row that is not there fails)."""
    flow = Flow("sql-properties", parallelism=parallelism, batch_size=batch_size)
    flow.sql(table.ddl(case.data) + case.flink_setup)
    found = flow.sql_query(case.flink).collect()
    flow.execute()
    log = Changelog()
    log.apply(found.values)
    return log.rows()


def ask_duckdb(case: Case, table: Table) -> list[dict[str, Any]]:
    for statement in case.duck_setup:
        table.duck.execute(statement)
    result = table.duck.execute(case.duck)
    names = [column[0] for column in result.description]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same rows in any order. A column with a float on either side compares as floats, up to
    a relative 1e-9 (sums in another order); every other value exactly (a bool is not an int)."""
    assert len(got) == len(expected), f"{len(got)} rows, DuckDB {len(expected)}"
    if not expected:
        return
    expected = [{k: _plain(v) for k, v in row.items()} for row in expected]
    names = list(expected[0])
    for row in got:
        assert list(row) == names, f"columns {list(row)}, DuckDB {names}"
    floats = {name for name in names for row in got + expected if isinstance(row[name], float)}

    def exact(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((type(row[n]) is bool, row[n]) for n in names if n not in floats)

    def close(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
        for name in floats:
            a, b = mine[name], theirs[name]
            if a is None or b is None:
                if a is not b:
                    return False
            elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
                return False
            elif math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return False
            elif not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                return False
        return True

    unmatched: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in got:
        unmatched.setdefault(exact(row), []).append(row)
    for row in expected:
        candidates = unmatched.get(exact(row), [])
        for index, mine in enumerate(candidates):
            if close(mine, row):
                del candidates[index]
                break
        else:
            extra = [r for rows in unmatched.values() for r in rows][:3]
            raise AssertionError(f"DuckDB's row {row} is missing; rows no DuckDB row matched: {extra}")


def check(case: Case, tables: Tables) -> None:
    table = tables[case.data]
    expected = ask_duckdb(case, table)
    for parallelism, batch_size in zip((1, 3), case.run, strict=True):
        same_rows(run_flow(case, table, parallelism, batch_size), expected)


SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(SETTINGS, max_examples=120)
@given(case=projections())
def test_projection_and_filter(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=80)
@given(case=unions())
def test_union_all(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=80)
@given(case=window_rows())
def test_window_table_function_rows(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=150)
@given(case=window_aggregations())
def test_window_aggregation(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=50)
@given(case=distincts())
def test_select_distinct(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=80)
@given(case=group_aggregations())
def test_group_aggregation(tables: Tables, case: Case) -> None:
    check(case, tables)


@settings(SETTINGS, max_examples=120)
@given(case=nested())
def test_query_over_an_updating_result(tables: Tables, case: Case) -> None:
    check(case, tables)
