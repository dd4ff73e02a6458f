"""The syntax-tree nodes Flink SQL needs beyond sqlglot's stock ones.

Each is a plain :class:`sqlglot.exp.Expression` with named arguments, so the planner reads a node
with ``node.this`` / ``node.args["size"]``, and the Flink dialect's generator prints it back as Flink
SQL. Where they sit in a parsed statement:

- :class:`Watermark`: an element of a ``CREATE TABLE``'s ``exp.Schema.expressions``, beside the
  ``exp.ColumnDef`` items and the ``exp.PrimaryKey``.
- :class:`Metadata`: ``METADATA FROM 'key' VIRTUAL``, a constraint of a column definition.
- :class:`TableFunction`: a ``FROM`` or ``JOIN`` source ``TABLE(<call>) [AS alias]``; its ``this`` is
  one of the window table functions below or, for any other function, an ``exp.Anonymous``.
- :class:`Tumble`, :class:`Hop`, :class:`Cumulate`, :class:`Session` (all
  :class:`WindowTableFunction`): named and positional arguments already matched to Flink's parameter
  names (``DATA`` -> ``this``, ``TIMECOL`` -> ``timecol``, ``SIZE`` -> ``size``, ...).
- :class:`TableArgument` (``TABLE t [PARTITION BY k]``) and :class:`Descriptor` (``DESCRIPTOR(c)``):
  the arguments of a table function.
- :class:`MatchRecognize`: sqlglot's own node plus Flink's ``WITHIN`` interval; it sits in a
  ``SELECT``'s ``match`` argument, as sqlglot's does.
- :class:`Explain`, :class:`StatementSet` and :class:`Reset`: statements.
- a ``LATERAL TABLE(udtf(a)) AS T(x)`` join is sqlglot's ``exp.Lateral`` whose ``this`` is a
  :class:`TableFunction` (its ``alias``, with the column names, on the ``exp.Lateral``).

Flink's other pieces use sqlglot's stock nodes: ``ROW<a INT>`` is an ``exp.DataType`` of type
``STRUCT`` whose ``expressions`` are ``exp.ColumnDef`` fields; a table hint
``t /*+ OPTIONS('k' = 'v') */`` is a list of ``exp.Anonymous`` calls in the ``exp.Table``'s
``hints``; ``FOR SYSTEM_TIME AS OF x`` is an ``exp.Version`` in the ``exp.Table``'s ``version``;
MATCH_RECOGNIZE's ``FIRST``/``LAST``/``PREV``/``NEXT`` are ``exp.Anonymous`` calls; ``SHOW ...`` is
an ``exp.Show`` (``this`` what is listed, ``target`` the table of ``SHOW CREATE TABLE t``, ``like``
a pattern).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp


class Watermark(exp.Expression):
    """``WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND`` in a ``CREATE TABLE``.

    ``this`` is the rowtime column (an ``exp.Column``), ``expression`` the watermark's expression.
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}


class Metadata(exp.Expression):
    """``METADATA [FROM 'key'] [VIRTUAL]`` after a column's type (``ts TIMESTAMP_LTZ(3) METADATA FROM
    'timestamp'``): a column filled from the connector's metadata, not from the record's fields.

    It is the ``kind`` of an ``exp.ColumnConstraint`` of the ``exp.ColumnDef``; ``this`` is the key
    (an ``exp.Literal``; absent when the column's own name is the key), ``virtual`` is true when
    the column is read-only (not written by a sink).
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": False, "virtual": False}


class TableArgument(exp.Expression):
    """A table passed to a table function: ``TABLE t`` or ``TABLE t PARTITION BY (a, b)``.

    ``this`` is an ``exp.Table``; ``partition_by`` a list of expressions (absent when not given).
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "partition_by": False}


class Descriptor(exp.Expression):
    """``DESCRIPTOR(col, ...)``: column names passed to a table function; ``expressions`` are
    ``exp.Column`` nodes."""

    arg_types: ClassVar[dict[str, bool]] = {"expressions": True}


class TableFunction(exp.Expression):
    """A table function in ``FROM``: ``TABLE(TUMBLE(...)) [AS alias]``.

    ``this`` is the call (a :class:`WindowTableFunction` or an ``exp.Anonymous``); ``alias`` an
    ``exp.TableAlias`` (absent when not given).
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "alias": False}


class WindowTableFunction(exp.Expression):
    """Base of Flink's windowing table-valued functions.

    ``this`` is the :class:`TableArgument` (``DATA``), ``timecol`` the :class:`Descriptor`
    (``TIMECOL``); the other arguments are named after Flink's parameters in lower case.
    ``PARAMETERS`` lists Flink's parameter names in positional order (``DATA`` and ``TIMECOL`` first).
    """

    PARAMETERS: ClassVar[tuple[str, ...]] = ()
    #: Flink parameter name -> argument name in ``args``.
    ARG_NAMES: ClassVar[dict[str, str]] = {"DATA": "this", "TIMECOL": "timecol"}

    @classmethod
    def function_name(cls) -> str:
        """The SQL name: ``TUMBLE``, ``HOP``, ``CUMULATE`` or ``SESSION``."""
        return cls.__name__.upper()

    @classmethod
    def arg_name(cls, parameter: str) -> str:
        """The key in ``args`` of Flink's parameter ``parameter`` (``"SIZE"`` -> ``"size"``)."""
        return cls.ARG_NAMES.get(parameter, parameter.lower())

    @property
    def table(self) -> TableArgument:
        """The ``DATA`` argument."""
        node: Any = self.this
        return node  # type: ignore[no-any-return]

    @property
    def descriptor(self) -> Descriptor:
        """The ``TIMECOL`` argument."""
        node: Any = self.args["timecol"]
        return node  # type: ignore[no-any-return]


class Tumble(WindowTableFunction):
    """``TUMBLE(TABLE t, DESCRIPTOR(c), size [, offset])``."""

    PARAMETERS = ("DATA", "TIMECOL", "SIZE", "OFFSET")
    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,
        "timecol": True,
        "size": True,
        "offset": False,
    }


class Hop(WindowTableFunction):
    """``HOP(TABLE t, DESCRIPTOR(c), slide, size [, offset])``: note the slide comes first."""

    PARAMETERS = ("DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET")
    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,
        "timecol": True,
        "slide": True,
        "size": True,
        "offset": False,
    }


class Cumulate(WindowTableFunction):
    """``CUMULATE(TABLE t, DESCRIPTOR(c), step, size [, offset])``."""

    PARAMETERS = ("DATA", "TIMECOL", "STEP", "SIZE", "OFFSET")
    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,
        "timecol": True,
        "step": True,
        "size": True,
        "offset": False,
    }


class Session(WindowTableFunction):
    """``SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(c), gap)``."""

    PARAMETERS = ("DATA", "TIMECOL", "GAP")
    arg_types: ClassVar[dict[str, bool]] = {"this": True, "timecol": True, "gap": True}


#: Upper-case SQL name -> node class.
WINDOW_TABLE_FUNCTIONS: dict[str, type[WindowTableFunction]] = {
    cls.function_name(): cls for cls in (Tumble, Hop, Cumulate, Session)
}


class MatchRecognize(exp.MatchRecognize):
    """sqlglot's ``MATCH_RECOGNIZE`` node with Flink's ``WITHIN`` interval in ``within``.

    ``pattern`` is an ``exp.Var`` holding the pattern's text as written (``A B+ C``), ``define`` a
    list of ``exp.Alias`` (``alias`` the variable, ``this`` its condition), ``measures`` a list of
    ``exp.MatchRecognizeMeasure``, ``rows`` and ``after`` ``exp.Var`` such as ``ONE ROW PER MATCH``.
    """

    arg_types: ClassVar[dict[str, bool]] = {**exp.MatchRecognize.arg_types, "within": False}


class Explain(exp.Expression):
    """``EXPLAIN [PLAN FOR] statement``; ``this`` is the statement, ``expressions`` the details asked
    for (``ESTIMATED_COST``, ``CHANGELOG_MODE``, ``JSON_EXECUTION_PLAN``, ``PLAN_ADVICE``) as
    ``exp.Var``."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expressions": False}


class StatementSet(exp.Expression):
    """``EXECUTE STATEMENT SET BEGIN INSERT ...; INSERT ...; END`` (or the SQL client's
    ``BEGIN STATEMENT SET; ...; END;``): INSERT statements that run as one job; ``expressions`` are
    the ``exp.Insert`` statements in order."""

    arg_types: ClassVar[dict[str, bool]] = {"expressions": True}


class Reset(exp.Expression):
    """``RESET 'key'`` (``this`` the key, an ``exp.Literal``) or ``RESET`` (``this`` absent: all
    keys back to their defaults)."""

    arg_types: ClassVar[dict[str, bool]] = {"this": False}
