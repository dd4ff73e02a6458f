"""Read the parts of a parsed statement the planner needs, without walking sqlglot's trees by hand.

Every reader takes a node :func:`actorflow.sql.dialect.parse` returned and raises
:class:`~actorflow.errors.SqlError` (with the line and column of the offending piece) when the
statement has the right shape but a content the planner cannot use, such as an option whose value
is not a string or an interval of months.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlglot import exp

from actorflow.errors import SqlError
from actorflow.sql.nodes import Metadata, Watermark

__all__ = [
    "ColumnSpec",
    "FunctionDefinition",
    "PatternTerm",
    "TableSchema",
    "error_at",
    "from_clause",
    "function_definition",
    "interval_millis",
    "match_pattern",
    "parse_duration",
    "position",
    "set_option",
    "table_hint_options",
    "table_name",
    "table_options",
    "table_schema",
]

#: Day-time interval units, largest first, in milliseconds.
_MILLIS = {
    "DAY": 86_400_000,
    "HOUR": 3_600_000,
    "MINUTE": 60_000,
    "SECOND": 1_000,
    "MILLISECOND": 1,
}


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a ``CREATE TABLE``, in the order declared.

    A physical column has a ``type`` and no ``expression``; a computed column (``name AS expr``) has
    an ``expression`` and no ``type`` (the planner infers it); a metadata column has a ``type`` and
    a ``metadata`` key (``'timestamp'``; the column's own name when ``FROM`` is absent).
    """

    name: str
    type: exp.DataType | None = None
    expression: exp.Expression | None = None
    metadata: str | None = None
    virtual: bool = False

    @property
    def is_physical(self) -> bool:
        """True for a column read from the record (not computed, not metadata)."""
        return self.expression is None and self.metadata is None


@dataclass(frozen=True)
class TableSchema:
    """What a ``CREATE TABLE`` declares (see :func:`table_schema`)."""

    name: str
    columns: tuple[ColumnSpec, ...]
    #: ``(rowtime column, watermark expression)`` of ``WATERMARK FOR ... AS ...``, or None.
    watermark: tuple[str, exp.Expression] | None
    primary_key: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)
    #: The query of ``CREATE TABLE ... AS SELECT``, else None.
    query: exp.Query | None = None
    temporary: bool = False
    if_not_exists: bool = False
    #: The source table of ``LIKE source (...)``, else None, and its options in order:
    #: ``(("INCLUDING", "WATERMARKS"), ("EXCLUDING", "OPTIONS"))``.
    like: str | None = None
    like_options: tuple[tuple[str, str], ...] = ()

    @property
    def physical(self) -> tuple[ColumnSpec, ...]:
        """The columns read from the record, in order."""
        return tuple(column for column in self.columns if column.is_physical)

    @property
    def computed(self) -> tuple[ColumnSpec, ...]:
        """The computed columns (``name AS expr``), in order."""
        return tuple(column for column in self.columns if column.expression is not None)


@dataclass(frozen=True)
class FunctionDefinition:
    """``CREATE [TEMPORARY] FUNCTION name AS 'module.function' [LANGUAGE PYTHON]``."""

    name: str
    target: str
    language: str | None
    temporary: bool
    if_not_exists: bool


def position(node: exp.Expression) -> tuple[int, int] | None:
    """``(line, column)`` (from 1) where ``node``'s text starts, from the earliest token under it
    that sqlglot kept a position for; None when there is none.

    >>> from actorflow.sql.dialect import parse
    >>> where = parse("SELECT a\\nFROM t\\nWHERE  b > 1")[0].args["where"]
    >>> position(where.this)
    (3, 8)
    """
    best: tuple[int, int, int] | None = None
    for child in node.walk():
        meta = child.meta if isinstance(child, exp.Expression) else {}
        if "line" in meta and "start" in meta and (best is None or meta["start"] < best[0]):
            column = meta["col"] - (meta.get("end", meta["start"]) - meta["start"])
            best = (meta["start"], meta["line"], column)
    return None if best is None else (best[1], best[2])


def error_at(node: exp.Expression, message: str) -> SqlError:
    """A :class:`SqlError` whose message starts with ``node``'s position (if known).

    >>> from actorflow.sql.dialect import parse
    >>> select = parse("SELECT\\n  price * 2 FROM t")[0]
    >>> str(error_at(select.expressions[0], "unknown column 'price'"))
    "line 2, column 3: unknown column 'price'"
    """
    where = position(node)
    return SqlError(message if where is None else f"line {where[0]}, column {where[1]}: {message}")


def table_name(node: exp.Expression) -> str:
    """The dotted name of a table (``exp.Table``, or the ``exp.Schema`` of a ``CREATE TABLE``) as
    written: ``cat.db.t``.

    >>> from actorflow.sql.dialect import parse
    >>> table_name(parse("CREATE TABLE db.`my t` (a INT)")[0].this)
    'db.my t'
    """
    table = node.this if isinstance(node, exp.Schema) else node
    if not isinstance(table, exp.Table):
        raise error_at(node, f"expected a table name, found {node.sql()!r}")
    return ".".join(part.name for part in table.parts)


def from_clause(query: exp.Expression) -> exp.From | None:
    """The ``FROM`` of a ``SELECT`` (sqlglot names its key ``from`` or ``from_`` by version).

    >>> from actorflow.sql.dialect import parse
    >>> from_clause(parse("SELECT a FROM t JOIN s ON t.k = s.k")[0]).this.sql()
    't'
    """
    clause = query.args.get("from_") or query.args.get("from")
    return clause if isinstance(clause, exp.From) else None


def table_options(create: exp.Create) -> dict[str, str]:
    """The ``WITH ('key' = 'value', ...)`` options of a ``CREATE TABLE``, as strings.

    >>> from actorflow.sql.dialect import parse
    >>> table_options(parse("CREATE TABLE t (a INT) WITH ('connector' = 'print')")[0])
    {'connector': 'print'}
    """
    properties = create.args.get("properties")
    options: dict[str, str] = {}
    for prop in properties.expressions if properties else []:
        if type(prop) is not exp.Property:
            continue  # TEMPORARY and other keywords, not options
        key, value = prop.this, prop.args.get("value")
        if not isinstance(key, exp.Literal) or not key.is_string:
            raise error_at(prop, f"an option's key must be a 'string', found {prop.sql()!r}")
        if not isinstance(value, exp.Literal) or not value.is_string:
            raise error_at(prop, f"option {key.name!r} must have a 'string' value")
        if key.name in options:
            raise error_at(prop, f"option {key.name!r} is given twice")
        options[key.name] = value.name
    return options


def table_hint_options(table: exp.Table) -> dict[str, str]:
    """The dynamic options of a table's ``/*+ OPTIONS('key' = 'value') */`` hints (``{}`` without).

    >>> from actorflow.sql.dialect import parse
    >>> select = parse("SELECT * FROM tx /*+ OPTIONS('scan.startup.mode' = 'latest-offset') */")[0]
    >>> table_hint_options(select.find(exp.Table))
    {'scan.startup.mode': 'latest-offset'}
    """
    options: dict[str, str] = {}
    for hint in table.args.get("hints") or []:
        if not isinstance(hint, exp.Anonymous) or hint.name.upper() != "OPTIONS":
            raise error_at(table, f"unsupported table hint {hint.sql()!r} (only OPTIONS(...))")
        for pair in hint.expressions:
            key, value = (pair.this, pair.expression) if isinstance(pair, exp.EQ) else (None, None)
            if not (isinstance(key, exp.Literal) and isinstance(value, exp.Literal) and key.is_string):
                raise error_at(table, f"expected 'key' = 'value' in OPTIONS, found {pair.sql()!r}")
            options[key.name] = value.name
    return options


def table_schema(create: exp.Create) -> TableSchema:
    """Columns, computed columns, watermark, primary key and options of a ``CREATE TABLE``.

    >>> from actorflow.sql.dialect import parse
    >>> schema = table_schema(parse('''
    ...     CREATE TABLE tx (
    ...       id BIGINT, ts BIGINT,
    ...       rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
    ...       WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND,
    ...       PRIMARY KEY (id) NOT ENFORCED
    ...     ) WITH ('connector' = 'jsonlines', 'path' = 'tx.jsonl')''')[0])
    >>> [(c.name, c.type.sql() if c.type else None) for c in schema.physical]
    [('id', 'BIGINT'), ('ts', 'BIGINT')]
    >>> [(c.name, c.expression.sql()) for c in schema.computed]
    [('rowtime', 'TO_TIMESTAMP_LTZ(ts, 3)')]
    >>> schema.watermark[0], schema.watermark[1].sql(), schema.primary_key, schema.options["path"]
    ('rowtime', "rowtime - INTERVAL '2' SECOND", ('id',), 'tx.jsonl')
    """
    if not isinstance(create, exp.Create) or create.args.get("kind") != "TABLE":
        raise error_at(create, "expected a CREATE TABLE statement")
    target = create.this
    elements = target.expressions if isinstance(target, exp.Schema) else []
    columns: list[ColumnSpec] = []
    watermark: tuple[str, exp.Expression] | None = None
    primary_key: tuple[str, ...] = ()
    for element in elements:
        if isinstance(element, exp.ColumnDef):
            column, inline_key = _column(element)
            columns.append(column)
            if inline_key:
                if primary_key:
                    raise error_at(element, "a table has one PRIMARY KEY")
                primary_key = (column.name,)
        elif isinstance(element, Watermark):
            if watermark is not None:
                raise error_at(element, "a table has one WATERMARK")
            watermark = (element.this.name, element.expression)
        elif isinstance(element, exp.PrimaryKey):
            if primary_key:
                raise error_at(element, "a table has one PRIMARY KEY")
            primary_key = tuple(key.name for key in element.expressions)
        else:
            raise error_at(element, f"unsupported in CREATE TABLE: {element.sql()!r}")
    properties = create.args.get("properties")
    like = properties.find(exp.LikeProperty) if properties else None
    query = create.expression
    return TableSchema(
        name=table_name(target),
        columns=tuple(columns),
        watermark=watermark,
        primary_key=primary_key,
        options=table_options(create),
        query=query if isinstance(query, exp.Query) else None,
        temporary=bool(properties and properties.find(exp.TemporaryProperty)),
        if_not_exists=bool(create.args.get("exists")),
        like=table_name(like.this) if like is not None else None,
        like_options=tuple((o.name, o.text("value")) for o in like.expressions) if like is not None else (),
    )


def _column(definition: exp.ColumnDef) -> tuple[ColumnSpec, bool]:
    """A column definition and whether it carries ``PRIMARY KEY`` itself."""
    expression: exp.Expression | None = None
    metadata: str | None = None
    virtual = False
    primary_key = False
    for constraint in definition.constraints:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.ComputedColumnConstraint):
            expression = kind.this
        elif isinstance(kind, Metadata):
            metadata = kind.this.name if kind.this is not None else definition.name
            virtual = bool(kind.args.get("virtual"))
        elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
            primary_key = True
    kind_type = definition.args.get("kind")
    return (
        ColumnSpec(
            name=definition.name,
            type=kind_type if isinstance(kind_type, exp.DataType) else None,
            expression=expression,
            metadata=metadata,
            virtual=virtual,
        ),
        primary_key,
    )


def set_option(statement: exp.Set) -> tuple[str, str] | None:
    """``('key', 'value')`` of ``SET 'key' = 'value'``; None for a bare ``SET`` (list them all).

    >>> from actorflow.sql.dialect import parse
    >>> set_option(parse("SET 'execution.runtime-mode' = 'batch'")[0])
    ('execution.runtime-mode', 'batch')
    >>> set_option(parse("SET")[0]) is None
    True
    """
    items = statement.expressions
    if not items:
        return None
    assignment = items[0].this if isinstance(items[0], exp.SetItem) else items[0]
    if (
        len(items) != 1
        or not isinstance(assignment, exp.EQ)
        or not isinstance(assignment.this, exp.Literal | exp.Column)
        or not isinstance(assignment.expression, exp.Literal)
    ):
        raise error_at(statement, "expected SET 'key' = 'value'")
    return assignment.this.name, assignment.expression.name


def function_definition(create: exp.Create) -> FunctionDefinition:
    """What ``CREATE [TEMPORARY] FUNCTION name AS 'module.function' [LANGUAGE PYTHON]`` declares.

    >>> from actorflow.sql.dialect import parse
    >>> function_definition(parse("CREATE TEMPORARY FUNCTION f AS 'udfs.f' LANGUAGE PYTHON")[0])
    FunctionDefinition(name='f', target='udfs.f', language='PYTHON', temporary=True, if_not_exists=False)
    """
    if not isinstance(create, exp.Create) or create.args.get("kind") != "FUNCTION":
        raise error_at(create, "expected a CREATE FUNCTION statement")
    target = create.expression
    if not isinstance(target, exp.Literal) or not target.is_string:
        raise error_at(create, "expected CREATE FUNCTION name AS 'module.function'")
    properties = create.args.get("properties")
    language = properties.find(exp.LanguageProperty) if properties else None
    return FunctionDefinition(
        name=table_name(create.this),
        target=target.name,
        language=language.name.upper() if language is not None else None,
        temporary=bool(properties and properties.find(exp.TemporaryProperty)),
        if_not_exists=bool(create.args.get("exists")),
    )


def interval_millis(interval: exp.Expression) -> int:
    """The length of a day-time interval literal in milliseconds.

    Takes ``INTERVAL '10' SECOND``, plural units (``MINUTES``), a precision (``SECOND(3)``),
    fractions (``INTERVAL '1.5' SECOND``), ``INTERVAL '10 SECOND'``, spans (``INTERVAL '1:30' HOUR TO
    MINUTE``, ``INTERVAL '1 02:00:00.5' DAY TO SECOND``) and a minus sign; refuses months and years,
    which have no fixed length.

    >>> from actorflow.sql.dialect import parse
    >>> text = "SELECT INTERVAL '10' SECOND, INTERVAL '2' MINUTES, INTERVAL '1:30' HOUR TO MINUTE"
    >>> select = parse(text)[0]
    >>> [interval_millis(e) for e in select.expressions]
    [10000, 120000, 5400000]
    """
    if isinstance(interval, exp.Neg):
        return -interval_millis(interval.this)
    if isinstance(interval, exp.Paren):
        return interval_millis(interval.this)
    if not isinstance(interval, exp.Interval):
        raise error_at(
            interval, f"expected an interval such as INTERVAL '10' SECOND, found {interval.sql()!r}"
        )
    amount = interval.this
    text = amount.name.strip() if isinstance(amount, exp.Literal) else ""
    unit = interval.args.get("unit")
    if isinstance(unit, exp.IntervalSpan):
        first, last = _unit_name(unit.this), _unit_name(unit.expression)
    else:
        first = last = _unit_name(unit) if unit is not None else ""
        if not first and len(text.split()) == 2:  # INTERVAL '10 SECOND'
            text, first = text.split()[0], _unit_name(exp.var(text.split()[1]))
            last = first
    units = list(_MILLIS)
    if first not in _MILLIS or last not in _MILLIS or units.index(first) > units.index(last):
        raise error_at(
            interval, f"unsupported interval unit in {interval.sql()!r} (use DAY to MILLISECOND)"
        )
    sign = -1 if text.startswith("-") else 1
    # The fields of a span: DAY then HOUR:MINUTE:SECOND, from the first unit to the last.
    fields = text.lstrip("+-").replace(" ", ":").split(":") if first != last else [text.lstrip("+-")]
    span = units[units.index(first) : units.index(last) + 1]
    if len(fields) != len(span):
        raise error_at(interval, f"expected {len(span)} fields in {interval.sql()!r}")
    try:
        millis = sum(float(value) * _MILLIS[name] for value, name in zip(fields, span, strict=True))
    except ValueError:
        raise error_at(interval, f"expected a number in {interval.sql()!r}") from None
    return sign * round(millis)


def _unit_name(unit: exp.Expression) -> str:
    """``MINUTES``, ``MINUTE`` or ``MINUTE(2)`` (a node named after the unit) -> ``MINUTE``."""
    name = unit.name.upper() if isinstance(unit, exp.Var) else type(unit).__name__.upper()
    return name[:-1] if name.endswith("S") else name


@dataclass(frozen=True)
class PatternTerm:
    """One term of a ``MATCH_RECOGNIZE`` pattern: a variable, or a parenthesized group of terms,
    repeated ``min`` to ``max`` times (``max`` None: no bound); ``greedy`` is false for a reluctant
    quantifier (``B*?``)."""

    variable: str | None
    group: tuple[PatternTerm, ...] | None = None
    min: int = 1
    max: int | None = 1
    greedy: bool = True


_PATTERN_TOKENS = re.compile(r"\s*(?:(\w+)|(\{\s*(\d*)\s*(,?)\s*(\d*)\s*\})|([*+?])|([()])|(\S))")


def match_pattern(match: exp.MatchRecognize) -> tuple[PatternTerm, ...]:
    """The terms of a ``MATCH_RECOGNIZE``'s ``PATTERN (...)``, in order.

    Quantifiers: ``*`` (0..), ``+`` (1..), ``?`` (0..1), ``{n}``, ``{n,}``, ``{n,m}``, ``{,m}``, each
    reluctant with a ``?`` after it. Alternation (``|``) and ``PERMUTE`` are not Flink's and raise
    :class:`SqlError`.

    >>> from actorflow.sql.dialect import parse
    >>> select = parse("SELECT * FROM t MATCH_RECOGNIZE (PATTERN (A B+? (C D){2,} E?) DEFINE A AS true)")[0]
    >>> [(t.variable, t.min, t.max, t.greedy) for t in match_pattern(select.args["match"])]
    [('A', 1, 1, True), ('B', 1, None, False), (None, 2, None, True), ('E', 0, 1, True)]
    """
    pattern = match.args.get("pattern")
    if pattern is None:
        raise error_at(match, "MATCH_RECOGNIZE needs a PATTERN")
    text = pattern.name
    tokens = list(_PATTERN_TOKENS.finditer(text))
    index = 0

    def fail(message: str, token: re.Match[str] | None = None) -> SqlError:
        """An error at ``token`` of the pattern (at its start if None)."""
        where, shown = position(pattern), " ".join(text.split())  # one line, always
        if where is None:
            return SqlError(f"{message} in PATTERN ({shown})")
        line, column = where
        if token is not None:
            offset = token.start() + len(token.group(0)) - len(token.group(0).lstrip())
            before = text[:offset]
            if "\n" in before:
                line, column = line + before.count("\n"), offset - before.rfind("\n")
            else:
                column += offset
        return SqlError(f"line {line}, column {column}: {message} in PATTERN ({shown})")

    def sequence(depth: int) -> tuple[PatternTerm, ...]:
        nonlocal index
        terms: list[PatternTerm] = []
        while index < len(tokens):
            token = tokens[index]
            if token.group(7) == ")":
                if depth == 0:
                    raise fail("unbalanced ')'", token)
                break
            index += 1
            if token.group(1) and token.group(1).upper() == "PERMUTE":
                raise fail("PERMUTE, which Flink does not support,", token)
            if token.group(1):
                term = PatternTerm(variable=token.group(1))
            elif token.group(7) == "(":
                group = sequence(depth + 1)
                if index >= len(tokens) or tokens[index].group(7) != ")":
                    raise fail("unclosed '('", token)
                index += 1
                if not group:
                    raise fail("an empty group", token)
                term = PatternTerm(variable=None, group=group)
            elif token.group(8) == "|":
                raise fail("an alternation '|', which Flink does not support,", token)
            else:
                raise fail(f"unexpected {token.group(0).strip()!r}", token)
            terms.append(quantified(term))
        return tuple(terms)

    def quantified(term: PatternTerm) -> PatternTerm:
        nonlocal index
        if index >= len(tokens) or not (tokens[index].group(2) or tokens[index].group(6)):
            return term
        token = tokens[index]
        index += 1
        if token.group(6):
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[token.group(6)]
        else:
            first, comma, second = token.group(3), token.group(4), token.group(5)
            if not first and not second:
                raise fail(f"an empty quantifier {token.group(2)}", token)
            low = int(first) if first else 0
            high = (int(second) if second else None) if comma else low
            if high is not None and high < low:
                raise fail(f"a quantifier {token.group(2)} whose maximum is below its minimum", token)
        greedy = True
        if index < len(tokens) and tokens[index].group(6) == "?":
            greedy = False
            index += 1
        return PatternTerm(term.variable, term.group, low, high, greedy)

    terms = sequence(0)
    if not terms:
        raise fail("an empty pattern")
    return terms


_DURATION = re.compile(r"\s*(\d+)\s*([a-z]*)\s*")
_UNITS = {
    "": 1, "ms": 1, "milli": 1, "millis": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1_000, "sec": 1_000, "secs": 1_000, "second": 1_000, "seconds": 1_000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
}  # fmt: skip


def parse_duration(text: str) -> int | None:
    """Milliseconds of a Flink duration (``5000``, ``'5 s'``, ``'10min'``, ``'1 h'``), None if it is
    not one.

    >>> parse_duration("5 s"), parse_duration("250"), parse_duration("soon")
    (5000, 250, None)
    """
    match = _DURATION.fullmatch(text.lower())
    if match is None or match.group(2) not in _UNITS:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]
