"""Flink SQL's streaming dialect for sqlglot, and :func:`parse`, a script to syntax trees.

The dialect starts from sqlglot's base dialect (ANSI-like) and adds what Flink writes differently:
back-quoted identifiers, case-sensitive names, the ``STRING``, ``BYTES``, ``TIMESTAMP_LTZ`` and
``ROW<...>`` types, ``WATERMARK FOR`` in ``CREATE TABLE``, the windowing table functions in ``FROM``
(``TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), INTERVAL '10' SECOND))``, named arguments too),
``MATCH_RECOGNIZE ... WITHIN``, ``LATERAL TABLE(...)``, table hints, ``SHOW``, ``EXPLAIN``, ``RESET``
and statement sets. The extra nodes are in :mod:`actorflow.sql.nodes`.

>>> [statement.sql(dialect=Flink) for statement in parse("SHOW TABLES; SELECT `a b` FROM t")]
['SHOW TABLES', 'SELECT `a b` FROM t']
>>> parse("SELECT a FROM t WHERE (a > 1")
Traceback (most recent call last):
...
actorflow.errors.SqlError: line 1, column 28: expected ')' near '1'
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy, trim_sql
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.generator import Generator
from sqlglot.parser import Parser
from sqlglot.tokens import Tokenizer

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at
from actorflow.sql.nodes import (
    WINDOW_TABLE_FUNCTIONS,
    Descriptor,
    Explain,
    MatchRecognize,
    Metadata,
    Reset,
    StatementSet,
    TableArgument,
    TableFunction,
    Watermark,
    WindowTableFunction,
)

__all__ = ["Flink", "parse"]

#: The tokens a statement sqlglot parses itself may start with (anything else is an unknown statement).
_STATEMENT_STARTS = {
    TokenType.SEMICOLON,  # an empty statement that carries a comment
    TokenType.SELECT,
    TokenType.WITH,
    TokenType.VALUES,
    TokenType.L_PAREN,
    TokenType.CREATE,
    TokenType.INSERT,
    TokenType.SET,
    TokenType.DESCRIBE,
    TokenType.DROP,
    TokenType.USE,
}

#: ``EXPLAIN`` details Flink accepts before the statement.
_EXPLAIN_DETAILS = ("ESTIMATED_COST", "CHANGELOG_MODE", "JSON_EXECUTION_PLAN", "PLAN_ADVICE")

#: What ``CREATE TABLE ... LIKE source (INCLUDING ...)`` may include, exclude or overwrite.
_LIKE_FEATURES = ("ALL", "CONSTRAINTS", "GENERATED", "METADATA", "OPTIONS", "PARTITIONS", "WATERMARKS")

#: What ``SHOW`` lists with no further argument.
_SHOW_KINDS = (
    "TABLES",
    "VIEWS",
    "FUNCTIONS",
    "CATALOGS",
    "DATABASES",
    "MODULES",
    "JOBS",
    "JARS",
    "PARTITIONS",
)


class FlinkTokenizer(Tokenizer):
    """Flink's lexical rules: 'strings' with '' as the escape, `identifiers`."""

    QUOTES: ClassVar[list[str | tuple[str, str]]] = ["'"]
    IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ["`"]
    STRING_ESCAPES: ClassVar[list[str]] = ["'"]
    IDENTIFIER_ESCAPES: ClassVar[list[str]] = ["`"]
    KEYWORDS: ClassVar[dict[str, TokenType]] = {
        **Tokenizer.KEYWORDS,
        "STRING": TokenType.TEXT,
        "TIMESTAMP_LTZ": TokenType.TIMESTAMPLTZ,
        "BYTES": TokenType.VARBINARY,
        "MATCH_RECOGNIZE": TokenType.MATCH_RECOGNIZE,
        "ROW": TokenType.STRUCT,  # ROW<a INT, b STRING>; CURRENT ROW and the like match by text
        # A temporal (lookup) join's FOR SYSTEM_TIME AS OF: older sqlglot versions need the token,
        # newer ones match the words and have no such token type.
        **(
            {"FOR SYSTEM_TIME": getattr(TokenType, "TIMESTAMP_SNAPSHOT")}  # noqa: B009
            if hasattr(TokenType, "TIMESTAMP_SNAPSHOT")
            else {}
        ),
    }
    # A /*+ hint */ after a table name is a table hint (OPTIONS(...)), as after SELECT or INSERT.
    TOKENS_PRECEDING_HINT: ClassVar[set[TokenType]] = {
        *Tokenizer.TOKENS_PRECEDING_HINT,
        TokenType.VAR,
        TokenType.IDENTIFIER,
    }
    # sqlglot reads the rest of a statement that starts with one of these as one opaque string;
    # Flink's SHOW and EXPLAIN are parsed, anything else is refused.
    COMMANDS: ClassVar[set[TokenType]] = set()


class FlinkParser(Parser):
    """sqlglot's parser with Flink's statements, DDL and table functions (see the module docstring)."""

    # MATCH_RECOGNIZE's navigation functions FIRST(A.price [, n]) and LAST(...) are plain calls
    # (exp.Anonymous), read by name like PREV, NEXT and MATCH_ROWTIME: sqlglot's own First/Last
    # are aggregates whose arguments differ between its versions.
    FUNCTIONS: ClassVar[dict[str, Any]] = {
        **Parser.FUNCTIONS,
        "FIRST": lambda args: exp.Anonymous(this="FIRST", expressions=args),
        "LAST": lambda args: exp.Anonymous(this="LAST", expressions=args),
    }

    FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
        **Parser.FUNCTION_PARSERS,
        "DESCRIPTOR": lambda self: self._parse_descriptor(),
        **{
            name: (lambda self, name=name: self._parse_window_table_function(name))
            for name in WINDOW_TABLE_FUNCTIONS
        },
    }

    CONSTRAINT_PARSERS: ClassVar[dict[str, Any]] = {
        **Parser.CONSTRAINT_PARSERS,
        "WATERMARK": lambda self: self._parse_watermark(),
        "METADATA": lambda self: Metadata(
            this=self._parse_string() if self._match(TokenType.FROM) else None,
            virtual=self._match_text_seq("VIRTUAL"),
        ),
    }

    SCHEMA_UNNAMED_CONSTRAINTS: ClassVar[set[str]] = {*Parser.SCHEMA_UNNAMED_CONSTRAINTS, "WATERMARK"}

    # SESSION is a keyword to sqlglot; here it is also a function.
    FUNC_TOKENS: ClassVar[set[TokenType]] = {*Parser.FUNC_TOKENS, TokenType.SESSION}

    #: Statements parsed here, by their first word.
    FLINK_STATEMENTS: ClassVar[dict[str, Any]] = {
        "SHOW": lambda self: self._parse_flink_show(),
        "EXPLAIN": lambda self: self._parse_explain(),
        "DESC": lambda self: self._parse_describe(),
        "EXECUTE": lambda self: self._parse_execute(),
        "BEGIN": lambda self: self._parse_statement_set_begin(),
        "END": lambda self: _StatementSetEnd(),
        "RESET": lambda self: Reset(this=self._parse_string()),
    }

    # Statements ------------------------------------------------------------------------------------

    def _parse_statement(self) -> Any:
        token = self._curr
        if not token:  # the end (None, or a false sentinel token in newer sqlglot versions)
            return None
        word = token.text.upper() if token.token_type != TokenType.STRING else ""
        if token.token_type != TokenType.IDENTIFIER and word in self.FLINK_STATEMENTS:
            self._advance()
            return self.FLINK_STATEMENTS[word](self)
        # Only where a statement starts: sqlglot parses some values (SET's) as statements too.
        if self._index == 0 and token.token_type not in _STATEMENT_STARTS:
            self.raise_error(f"unknown statement {token.text!r}", token)
        return super()._parse_statement()

    def _parse_as_command(self, start: Token) -> Any:
        # sqlglot keeps what it cannot parse as an opaque command; a SQL client must refuse it.
        token = self._curr or self._prev
        self.raise_error(f"unexpected {token.text!r} in {start.text.upper()} statement", token)

    def _parse_execute(self) -> Any:
        """``EXECUTE STATEMENT SET BEGIN first-insert`` (the rest follow as statements of their own,
        then ``END``), or ``EXECUTE INSERT ...``, which is the INSERT."""
        start = self._prev
        if self._match_text_seq("STATEMENT", "SET"):
            if not self._match(TokenType.BEGIN):
                self.raise_error("expected BEGIN after EXECUTE STATEMENT SET")
            return _at(_StatementSetBegin(this=self._parse_statement()), start)
        if not self._match(TokenType.INSERT, advance=False):
            self.raise_error("expected STATEMENT SET or INSERT after EXECUTE")
        return self._parse_statement()

    def _parse_statement_set_begin(self) -> Any:
        start = self._prev
        if not self._match_text_seq("STATEMENT", "SET"):
            self.raise_error("expected STATEMENT SET after BEGIN (transactions are not Flink's)", start)
        return _at(_StatementSetBegin(), start)

    def _parse_explain(self) -> Explain:
        details: list[exp.Expression] = []
        if not self._match_text_seq("PLAN", "FOR"):
            while self._curr and self._curr.text.upper() in _EXPLAIN_DETAILS:
                details.append(exp.var(self._curr.text.upper()))
                self._advance()
                if not self._match(TokenType.COMMA):
                    break
        start = self._curr or self._prev
        statement = self._parse_statement()
        if not isinstance(statement, exp.Query | exp.Insert):
            self.raise_error("EXPLAIN takes a query or an INSERT statement", start)
        return Explain(this=statement, expressions=details or None)

    def _parse_flink_show(self) -> exp.Show:
        token = self._curr
        if not token:
            self.raise_error("expected what to SHOW (TABLES, VIEWS, FUNCTIONS, ...)", self._prev)
            return exp.Show(this="TABLES")
        if self._match_text_seq("CREATE"):
            if not self._match_texts(("TABLE", "VIEW")):
                self.raise_error("expected TABLE or VIEW after SHOW CREATE")
            return exp.Show(this=f"CREATE {self._prev.text.upper()}", target=self._parse_table_parts())
        if self._match_text_seq("COLUMNS"):
            if not self._match_texts(("FROM", "IN")):
                self.raise_error("expected FROM or IN after SHOW COLUMNS")
            target = self._parse_table_parts()
            return exp.Show(this="COLUMNS", target=target, like=self._parse_show_like())
        if self._match_text_seq("CURRENT"):
            if not self._match_texts(("CATALOG", "DATABASE")):
                self.raise_error("expected CATALOG or DATABASE after SHOW CURRENT")
            return exp.Show(this=f"CURRENT {self._prev.text.upper()}")
        if self._match_text_seq("USER", "FUNCTIONS"):
            return exp.Show(this="USER FUNCTIONS", like=self._parse_show_like())
        if self._match_texts(_SHOW_KINDS):
            return exp.Show(this=self._prev.text.upper(), like=self._parse_show_like())
        self.raise_error(f"unknown SHOW {token.text!r}", token)
        return exp.Show(this=token.text.upper())

    def _parse_show_like(self) -> Any:
        if not self._match(TokenType.LIKE):
            return None
        if not self._match(TokenType.STRING, advance=False):
            self.raise_error("expected a 'pattern' after LIKE")
        return self._parse_string()

    # CREATE TABLE --------------------------------------------------------------------------------

    def _parse_watermark(self) -> Watermark:
        if not self._match(TokenType.FOR):
            self.raise_error("expected FOR after WATERMARK")
        column = self._parse_column()
        if not isinstance(column, exp.Column):
            self.raise_error("expected the rowtime column after WATERMARK FOR")
        if not self._match(TokenType.ALIAS):
            self.raise_error("expected AS after WATERMARK FOR column")
        expression = self._parse_bitwise()
        if expression is None:
            self.raise_error("expected the watermark's expression after AS")
        return Watermark(this=column, expression=expression)

    def _parse_create_like(self) -> Any:
        # CREATE TABLE t (...) WITH (...) LIKE source (EXCLUDING OPTIONS, INCLUDING WATERMARKS);
        # the name alone: sqlglot would read source(...) as a call.
        parts = [self._parse_id_var(any_token=False)]
        while parts[-1] is not None and self._match(TokenType.DOT):
            parts.append(self._parse_id_var(any_token=False))
        if any(part is None for part in parts) or len(parts) > 3:
            self.raise_error("expected a table name after LIKE")
        names = dict(zip(("this", "db", "catalog"), reversed(parts), strict=False))
        table = exp.Table(**names)
        options: list[exp.Expression] = []
        if self._match(TokenType.L_PAREN):
            while self._match_texts(("INCLUDING", "EXCLUDING", "OVERWRITING")):
                how = self._prev.text.upper()
                if not self._match_texts(_LIKE_FEATURES):
                    self.raise_error(f"expected one of {', '.join(_LIKE_FEATURES)} after {how}")
                options.append(exp.Property(this=how, value=exp.var(self._prev.text.upper())))
                self._match(TokenType.COMMA)
            self._match_r_paren()
        return exp.LikeProperty(this=table, expressions=options)

    # Table functions -------------------------------------------------------------------------------

    def _parse_table(self, *args: Any, **kwargs: Any) -> Any:
        if self._match_pair(TokenType.TABLE, TokenType.L_PAREN):
            call = self._parse_table_function_call()
            self._match_r_paren()
            return TableFunction(this=call, alias=self._parse_table_alias())
        return super()._parse_table(*args, **kwargs)

    def _parse_table_parts(self, *args: Any, **kwargs: Any) -> Any:
        table = super()._parse_table_parts(*args, **kwargs)
        if isinstance(table, exp.Table) and self._match(TokenType.HINT):
            token = self._prev
            comments = self._prev_comments or [""]
            hint = exp.maybe_parse(comments[0], into=exp.Hint)
            comments.clear()  # read as the hint: not a comment of the next node too
            calls = hint.expressions if isinstance(hint, exp.Hint) else []
            if not calls or not all(isinstance(call, exp.Func) for call in calls):
                self.raise_error("expected table hints such as /*+ OPTIONS('key' = 'value') */", token)
            table.set("hints", calls)
            self._table_hints: list[Any] | None = calls
        return table

    def _parse_table_hints(self) -> Any:
        # sqlglot sets a table's hints from this after its alias: give it the /*+ ... */ ones.
        hints, self._table_hints = getattr(self, "_table_hints", None), None
        return hints or super()._parse_table_hints()

    def _parse_lateral(self) -> Any:
        # LATERAL TABLE(udtf(a)) AS T(x): a table function joined to each row; sqlglot would read
        # TABLE(...) as a call of a function named TABLE.
        if self._match_pair(TokenType.LATERAL, TokenType.TABLE):
            if not self._match(TokenType.L_PAREN):
                self.raise_error("expected '(' after LATERAL TABLE")
            call = self._parse_table_function_call()
            self._match_r_paren()
            return exp.Lateral(this=TableFunction(this=call), alias=self._parse_table_alias())
        return super()._parse_lateral()

    def _parse_table_function_call(self) -> exp.Expression:
        token = self._curr
        if not token or not self._next or self._next.token_type != TokenType.L_PAREN:
            self.raise_error("expected a table function call in TABLE(...)", token)
        self._advance(2)
        if token.text.upper() in WINDOW_TABLE_FUNCTIONS:
            call = self._parse_window_table_function(token.text.upper())
            if not isinstance(call, WindowTableFunction):
                self.raise_error(f"{token.text.upper()} needs a table argument, TABLE name", token)
            self._match_r_paren()
            return call
        arguments = self._parse_csv(self._parse_table_function_argument)
        self._match_r_paren()
        return exp.Anonymous(this=token.text, expressions=arguments)

    def _parse_table_function_argument(self) -> Any:
        """A positional or named (``NAME => value``) argument, a ``TABLE t`` one included."""
        if self._curr and self._next and self._next.token_type == TokenType.FARROW:
            name = exp.var(self._curr.text)
            self._advance(2)
            return exp.Kwarg(this=name, expression=self._parse_table_argument() or self._parse_lambda())
        return self._parse_table_argument() or self._parse_lambda()

    def _parse_table_argument(self) -> TableArgument | None:
        if not self._match(TokenType.TABLE):
            return None
        table = self._parse_table_parts()
        partition_by: Any = None
        if self._match(TokenType.PARTITION_BY):
            if self._match(TokenType.L_PAREN, advance=False):
                partition_by = self._parse_wrapped_csv(self._parse_bitwise)
            else:
                partition_by = [self._parse_bitwise()]
        return TableArgument(this=table, partition_by=partition_by)

    def _parse_descriptor(self) -> Descriptor:
        columns = self._parse_csv(self._parse_column)
        if not columns or not all(isinstance(column, exp.Column) for column in columns):
            self.raise_error("expected column names in DESCRIPTOR(...)")
        return Descriptor(expressions=columns)

    def _parse_window_table_function(self, name: str) -> exp.Expression:
        """The arguments of ``TUMBLE(``/``HOP(``/``CUMULATE(``/``SESSION(`` up to (not including) ``)``.

        Without a ``TABLE t`` argument it is the legacy group window function of
        ``GROUP BY TUMBLE(rowtime, INTERVAL '1' HOUR)``, kept as an ``exp.Anonymous``.
        """
        arguments: list[Any] = []
        starts: list[Any] = []  # the first token of each argument, for the errors' positions
        more = bool(self._curr) and self._curr.token_type != TokenType.R_PAREN
        while more:
            starts.append(self._curr)
            argument = self._parse_table_function_argument()
            if argument is None:
                self.raise_error(f"expected an argument of {name}")
            arguments.append(argument)
            more = self._match(TokenType.COMMA)
        named = [a for a in arguments if isinstance(a, exp.Kwarg)]
        if not named and not (arguments and isinstance(arguments[0], TableArgument)):
            return exp.Anonymous(this=name, expressions=arguments)
        cls = WINDOW_TABLE_FUNCTIONS[name]
        after_named = False
        values: dict[str, Any] = {}
        where: dict[str, Any] = {}
        for index, (argument, start) in enumerate(zip(arguments, starts, strict=True)):
            if isinstance(argument, exp.Kwarg):
                after_named = True
                parameter = argument.this.name.upper()
                if parameter not in cls.PARAMETERS:
                    self.raise_error(
                        f"{name} has no parameter {parameter} (it has {', '.join(cls.PARAMETERS)})",
                        start,
                    )
                if parameter in values:
                    self.raise_error(f"{name}: {parameter} is given twice", start)
                values[parameter], where[parameter] = argument.expression, start
            elif after_named:
                self.raise_error(f"{name}: a positional argument after a named one", start)
            elif index >= len(cls.PARAMETERS):
                self.raise_error(f"{name} takes at most {len(cls.PARAMETERS)} arguments", start)
            else:
                values[cls.PARAMETERS[index]], where[cls.PARAMETERS[index]] = argument, start
        for parameter in cls.PARAMETERS:
            if cls.arg_types[cls.arg_name(parameter)] and parameter not in values:
                self.raise_error(f"{name} needs its {parameter} argument")
        if not isinstance(values.get("DATA"), TableArgument):
            self.raise_error(f"{name}: DATA must be a table argument, TABLE name", where["DATA"])
        if not isinstance(values.get("TIMECOL"), Descriptor):
            self.raise_error(f"{name}: TIMECOL must be DESCRIPTOR(column)", where["TIMECOL"])
        return cls(**{cls.arg_name(parameter): value for parameter, value in values.items()})

    # MATCH_RECOGNIZE -------------------------------------------------------------------------------

    def _parse_match_recognize(self) -> Any:
        if not self._match(TokenType.MATCH_RECOGNIZE):
            return None
        self._match_l_paren()
        partition = self._parse_partition_by()
        order = self._parse_order()
        measures = (
            self._parse_csv(self._parse_match_recognize_measure)
            if self._match_text_seq("MEASURES")
            else None
        )
        rows = None
        if self._match_text_seq("ONE", "ROW", "PER", "MATCH"):
            rows = exp.var("ONE ROW PER MATCH")
        elif self._match_text_seq("ALL", "ROWS", "PER", "MATCH"):
            rows = exp.var("ALL ROWS PER MATCH")
        after = None
        if self._match_text_seq("AFTER", "MATCH", "SKIP"):
            if self._match_text_seq("PAST", "LAST", "ROW"):
                after = exp.var("AFTER MATCH SKIP PAST LAST ROW")
            elif self._match_text_seq("TO", "NEXT", "ROW"):
                after = exp.var("AFTER MATCH SKIP TO NEXT ROW")
            elif self._match_text_seq("TO", "FIRST") or self._match_text_seq("TO", "LAST"):
                direction = self._prev.text.upper()
                variable = self._curr
                if not variable:
                    self.raise_error(f"expected a pattern variable after AFTER MATCH SKIP TO {direction}")
                else:
                    self._advance()
                    after = exp.var(f"AFTER MATCH SKIP TO {direction} {variable.text}")
            else:
                self.raise_error("expected PAST LAST ROW, TO NEXT ROW, TO FIRST v or TO LAST v")
        pattern = None
        if self._match_text_seq("PATTERN"):
            pattern = self._parse_pattern_text()
        within = None
        if self._match_text_seq("WITHIN"):
            within = self._parse_bitwise()
            if not isinstance(within, exp.Interval):
                self.raise_error("expected an interval after WITHIN", self._prev)
        define = self._parse_csv(self._parse_name_as_expression) if self._match_text_seq("DEFINE") else None
        self._match_r_paren()
        return MatchRecognize(
            partition_by=partition,
            order=order,
            measures=measures,
            rows=rows,
            after=after,
            pattern=pattern,
            within=within,
            define=define,
            alias=self._parse_table_alias(),
        )

    def _parse_pattern_text(self) -> exp.Var:
        """``(A B+ C)``: the text between the parentheses, as written."""
        self._match_l_paren()
        start = end = self._curr
        depth = 1
        while self._curr:
            if self._curr.token_type == TokenType.L_PAREN:
                depth += 1
            elif self._curr.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    break
            end = self._curr
            self._advance()
        if not start or not end or not self._curr or start is self._curr:
            self.raise_error("expected a pattern in PATTERN (...)")
            return exp.var("")
        self._advance()
        pattern = exp.var(self._find_sql(start, end))
        # The position of the pattern's first token, for the errors about the pattern.
        pattern.meta.update(line=start.line, col=start.col, start=start.start, end=start.end)
        return pattern


class FlinkGenerator(Generator):
    """Prints syntax trees back as Flink SQL."""

    TYPE_MAPPING: ClassVar[dict[Any, str]] = {
        **Generator.TYPE_MAPPING,
        exp.DataType.Type.TEXT: "STRING",
        exp.DataType.Type.TIMESTAMPLTZ: "TIMESTAMP_LTZ",
        exp.DataType.Type.STRUCT: "ROW",
    }

    TRANSFORMS: ClassVar[dict[Any, Any]] = {
        **Generator.TRANSFORMS,
        Watermark: lambda self, e: f"WATERMARK FOR {self.sql(e, 'this')} AS {self.sql(e, 'expression')}",
        Descriptor: lambda self, e: f"DESCRIPTOR({self.expressions(e, flat=True)})",
        TableFunction: lambda self, e: self._table_function_sql(e),
        TableArgument: lambda self, e: self._table_argument_sql(e),
        Explain: lambda self, e: self._explain_sql(e),
        Reset: lambda self, e: f"RESET {self.sql(e, 'this')}".rstrip(),
        StatementSet: lambda self, e: (
            "EXECUTE STATEMENT SET BEGIN " + " ".join(f"{self.sql(i)};" for i in e.expressions) + " END"
        ),
        MatchRecognize: lambda self, e: self.matchrecognize_sql(e),
        Metadata: lambda self, e: self._metadata_sql(e),
        exp.Trim: trim_sql,
        exp.StrPosition: lambda self, e: (
            f"POSITION({self.sql(e, 'substr')} IN {self.sql(e, 'this')})"
            if not e.args.get("position")
            else self.func("POSITION", e.args["substr"], e.this, e.args["position"])
        ),
        exp.Mod: lambda self, e: self.func("MOD", e.this, e.expression),
        exp.Array: lambda self, e: f"ARRAY[{self.expressions(e, flat=True)}]",
        exp.DayOfWeek: lambda self, e: self.func("DAYOFWEEK", e.this),
        exp.DayOfMonth: lambda self, e: self.func("DAYOFMONTH", e.this),
        exp.DayOfYear: lambda self, e: self.func("DAYOFYEAR", e.this),
        # Flink's niladic time functions take no parentheses.
        exp.CurrentDate: lambda self, e: "CURRENT_DATE",
        exp.CurrentTime: lambda self, e: "CURRENT_TIME",
        exp.CurrentTimestamp: lambda self, e: "CURRENT_TIMESTAMP",
        # Flink's temporal join: FOR SYSTEM_TIME AS OF, its only kind of time travel.
        exp.Version: lambda self, e: f"FOR SYSTEM_TIME AS OF {self.sql(e, 'expression')}",
        **{
            cls: lambda self, e: self._window_table_function_sql(e)
            for cls in WINDOW_TABLE_FUNCTIONS.values()
        },
    }

    def table_sql(self, expression: exp.Table, sep: str = " AS ") -> str:
        hints = expression.args.get("hints")
        if not hints:
            return super().table_sql(expression, sep)
        # Flink: name /*+ OPTIONS(...) */ [AS alias], the hints before the alias.
        bare = expression.copy()
        bare.set("hints", None)
        alias = bare.args.get("alias")
        bare.set("alias", None)
        calls = self.expressions(sqls=[self.sql(hint) for hint in hints], flat=True)
        text = f"{super().table_sql(bare, sep)} /*+ {calls} */"
        return f"{text}{sep}{self.sql(alias)}" if alias else text

    def datatype_sql(self, expression: exp.DataType) -> str:
        if expression.this == exp.DataType.Type.VARBINARY and not expression.expressions:
            return "BYTES"  # VARBINARY(n) stays as it is
        return super().datatype_sql(expression)

    def property_sql(self, expression: exp.Property) -> str:
        key = expression.this
        if type(expression) is exp.Property and isinstance(key, exp.Literal) and key.is_string:
            return f"{self.sql(key)} = {self.sql(expression, 'value')}"
        return super().property_sql(expression)

    def create_sql(self, expression: exp.Create) -> str:
        # sqlglot prints LANGUAGE before AS and LIKE before WITH; Flink wants both at the end:
        # CREATE FUNCTION f AS 'x' LANGUAGE PYTHON, CREATE TABLE t WITH (...) LIKE s (...).
        properties = expression.args.get("properties")
        last = properties and next(
            (p for p in properties.expressions if isinstance(p, exp.LanguageProperty | exp.LikeProperty)),
            None,
        )
        if not last:
            return super().create_sql(expression)
        without = expression.copy()
        without_properties = without.args["properties"]
        kept = [p for p in without_properties.expressions if p != last]  # by value: it is a copy
        without_properties.set("expressions", kept)
        if not without_properties.expressions:
            without.set("properties", None)
        if isinstance(last, exp.LanguageProperty):
            return f"{super().create_sql(without)} LANGUAGE {self.sql(last, 'this')}"
        return f"{super().create_sql(without)} {self.sql(last)}"

    def likeproperty_sql(self, expression: exp.LikeProperty) -> str:
        options = ", ".join(f"{e.name} {self.sql(e, 'value')}" for e in expression.expressions)
        return f"LIKE {self.sql(expression, 'this')}{f' ({options})' if options else ''}"

    def show_sql(self, expression: exp.Show) -> str:
        target = self.sql(expression, "target")
        kind = expression.name
        target = (f" FROM {target}" if kind == "COLUMNS" else f" {target}") if target else ""
        like = self.sql(expression, "like")
        return f"SHOW {kind}{target}{f' LIKE {like}' if like else ''}"

    def matchrecognize_sql(self, expression: exp.MatchRecognize) -> str:
        text = super().matchrecognize_sql(expression)
        within = expression.args.get("within")
        if within is None:
            return text
        # sqlglot prints PATTERN (...) then DEFINE; Flink's WITHIN goes between them.
        pattern = f"PATTERN ({self.sql(expression, 'pattern')})"
        return text.replace(pattern, f"{pattern} WITHIN {self.sql(within)}", 1)

    def _metadata_sql(self, expression: Metadata) -> str:
        key = self.sql(expression, "this")
        virtual = " VIRTUAL" if expression.args.get("virtual") else ""
        return f"METADATA{f' FROM {key}' if key else ''}{virtual}"

    def _table_function_sql(self, expression: TableFunction) -> str:
        alias = self.sql(expression, "alias")
        return f"TABLE({self.sql(expression, 'this')}){f' AS {alias}' if alias else ''}"

    def _table_argument_sql(self, expression: TableArgument) -> str:
        partition = expression.args.get("partition_by")
        if not partition:
            return f"TABLE {self.sql(expression, 'this')}"
        keys = ", ".join(self.sql(key) for key in partition)
        return f"TABLE {self.sql(expression, 'this')} PARTITION BY ({keys})"

    def _window_table_function_sql(self, expression: WindowTableFunction) -> str:
        arguments = [
            self.sql(expression.args[key])
            for key in map(expression.arg_name, expression.PARAMETERS)
            if expression.args.get(key) is not None
        ]
        return f"{expression.function_name()}({', '.join(arguments)})"

    def _explain_sql(self, expression: Explain) -> str:
        details = self.expressions(expression, flat=True)
        return f"EXPLAIN {f'{details} ' if details else ''}{self.sql(expression, 'this')}"


class Flink(Dialect):
    """Flink SQL: use as ``read=Flink`` / ``dialect=Flink`` with sqlglot, or through :func:`parse`."""

    NORMALIZATION_STRATEGY = NormalizationStrategy.CASE_SENSITIVE

    Tokenizer = FlinkTokenizer
    Parser = FlinkParser
    Generator = FlinkGenerator


def parse(text: str) -> list[exp.Expression]:
    """Parse a script of ``;``-separated Flink SQL statements; empty statements are skipped.

    Raises :class:`~actorflow.errors.SqlError` with a one-line message naming the line and column
    (both from 1) of the first mistake; a statement sqlglot would keep as an opaque command (an
    unknown or misspelled statement) is such a mistake too.

    >>> [type(statement).__name__ for statement in parse("SET 'a' = 'b';\\n\\nDESCRIBE t;")]
    ['Set', 'Describe']
    >>> parse("SELECT a\\nFROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))")
    Traceback (most recent call last):
    ...
    actorflow.errors.SqlError: line 2, column 42: TUMBLE needs its SIZE argument
    """
    dialect = Flink()
    try:
        tokens = dialect.tokenize(text)
    except TokenError as error:
        raise SqlError(_token_error_message(text, error)) from None
    parser = dialect.parser(error_level=ErrorLevel.IMMEDIATE)
    try:
        statements: list[Any] = parser.parse(tokens, text)
    except ParseError as error:
        raise SqlError(_parse_error_message(error)) from None
    # sqlglot may turn a lone END into its own EndStatement, without a position: take the positions
    # of the lone ENDs from the tokens.
    ends = [
        token
        for index, token in enumerate(tokens)
        if token.token_type == TokenType.END
        and (index == 0 or tokens[index - 1].token_type == TokenType.SEMICOLON)
        and (index + 1 == len(tokens) or tokens[index + 1].token_type == TokenType.SEMICOLON)
    ]
    return _statement_sets(
        [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)], ends
    )


class _StatementSetBegin(exp.Expression):
    """``EXECUTE STATEMENT SET BEGIN [first statement]`` or ``BEGIN STATEMENT SET``: a marker
    :func:`_statement_sets` folds away."""

    arg_types: ClassVar[dict[str, bool]] = {"this": False}


class _StatementSetEnd(exp.Expression):
    """The ``END`` of a statement set: a marker :func:`_statement_sets` folds away."""

    arg_types: ClassVar[dict[str, bool]] = {}


def _at(node: exp.Expression, token: Token) -> Any:
    """``node`` with the position of ``token`` (for the errors :func:`_statement_sets` raises)."""
    node.meta.update(line=token.line, col=token.col, start=token.start, end=token.end)
    return node


def _statement_sets(statements: list[Any], ends: list[Token]) -> list[exp.Expression]:
    """The statements with each ``BEGIN`` ... ``END`` run folded into one :class:`StatementSet`
    (sqlglot cuts a script at every ``;``, those inside a statement set included); ``ends`` are
    the tokens of the statements that are a lone ``END``, in order."""
    result: list[exp.Expression] = []
    begin: _StatementSetBegin | None = None
    inserts: list[exp.Expression] = []
    end_statement = getattr(exp, "EndStatement", _StatementSetEnd)
    for statement in statements:
        if isinstance(statement, _StatementSetEnd | end_statement) and ends:
            statement = _at(_StatementSetEnd(), ends.pop(0))
        if isinstance(statement, _StatementSetBegin):
            if begin is not None:
                raise error_at(statement, "a STATEMENT SET inside another one")
            begin, inserts = statement, []
            if statement.this is not None:
                inserts.append(statement.this)
        elif isinstance(statement, _StatementSetEnd):
            if begin is None:
                raise error_at(statement, "END without BEGIN STATEMENT SET")
            if not inserts:
                raise error_at(begin, "an empty STATEMENT SET")
            result.append(StatementSet(expressions=inserts))
            begin = None
        elif begin is not None:
            inserts.append(statement)
        else:
            result.append(statement)
        if begin is not None and inserts and not isinstance(inserts[-1], exp.Insert):
            raise error_at(inserts[-1], "a STATEMENT SET holds INSERT statements only")
    if begin is not None:
        raise error_at(begin, "STATEMENT SET without END")
    return result


def _parse_error_message(error: ParseError) -> str:
    """``line L, column C: what`` from sqlglot's first error; C is where the offending token starts."""
    if not error.errors:
        return f"line 1, column 1: {str(error).splitlines()[0]}"
    first = error.errors[0]
    description = str(first.get("description") or "syntax error")
    highlight = str(first.get("highlight") or "")
    line, column = int(first.get("line") or 1), int(first.get("col") or 1)
    if highlight and "\n" not in highlight:
        column = max(1, column - len(highlight) + 1)
    expecting = re.fullmatch(r"Expecting (.+)", description)
    expected = re.match(r"Expected (.+?) but got <Token", description)
    required = re.fullmatch(r"Required keyword: '(\w+)' missing for <class '[\w.]*?(\w+)'>", description)
    if expected:
        message = f"expected {expected.group(1)}"
        if "SENTINEL" in description:  # the end of the statement
            return f"line {line}, column {column}: {message}"
    elif expecting:
        message = f"expected {expecting.group(1)!r}"
    elif description.startswith("Invalid expression / Unexpected token"):
        return f"line {line}, column {column}: unexpected {highlight!r}"
    elif required:
        return f"line {line}, column {column}: incomplete {required.group(2).upper()}"
    else:
        return f"line {line}, column {column}: {description}"
    return f"line {line}, column {column}: {message} near {highlight!r}"


def _token_error_message(text: str, error: TokenError) -> str:
    """The position of an unterminated string, identifier or comment, which is what makes
    sqlglot's tokenizer fail; sqlglot's own message carries no usable position."""
    position, what = _unterminated(text)
    if position is None:
        return f"line 1, column 1: cannot read the SQL text ({str(error).splitlines()[0]})"
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}: unterminated {what}"


def _unterminated(text: str) -> tuple[int | None, str]:
    """Where an unterminated ``'string'``, ```identifier``` or ``/* comment`` starts.

    >>> _unterminated("SELECT 'it''s")
    (7, 'string')
    >>> _unterminated("SELECT 1 -- 'x")
    (None, '')
    """
    closers = {"'": ("'", "string"), "`": ("`", "identifier"), "/*": ("*/", "comment")}
    index = 0
    while index < len(text):
        if text.startswith("--", index):
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline + 1
            continue
        opener = "/*" if text.startswith("/*", index) else text[index]
        if opener not in closers:
            index += 1
            continue
        closer, what = closers[opener]
        end = index + len(opener)
        while True:
            found = text.find(closer, end)
            if found < 0:
                return index, what
            # A doubled quote inside a string or identifier is an escaped one.
            if opener != "/*" and text.startswith(closer * 2, found):
                end = found + 2
                continue
            index = found + len(closer)
            break
    return None, ""
