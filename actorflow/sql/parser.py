"""The tokenizer and parser of the Flink dialect (:mod:`actorflow.sql.dialect` puts them together).

sqlglot's base parser with Flink's statements (``SHOW``, ``EXPLAIN``, ``RESET``, statement sets),
DDL (``WATERMARK FOR``, computed and ``METADATA`` columns, ``LIKE``), table functions in ``FROM``
and ``LATERAL TABLE``, table hints and ``MATCH_RECOGNIZE ... WITHIN``. Each piece builds the nodes of
:mod:`actorflow.sql.nodes` or sqlglot's own, and reports a mistake through sqlglot's
``raise_error`` so that it carries the position of the offending token.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import Token, TokenType, exp
from sqlglot.parser import Parser
from sqlglot.tokens import Tokenizer

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

__all__ = ["FlinkParser", "FlinkTokenizer", "fold_statement_sets"]

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


class _StatementSetBegin(exp.Expression):
    """``EXECUTE STATEMENT SET BEGIN [first statement]`` or ``BEGIN STATEMENT SET``: a marker
    :func:`fold_statement_sets` folds away."""

    arg_types: ClassVar[dict[str, bool]] = {"this": False}


class _StatementSetEnd(exp.Expression):
    """The ``END`` of a statement set: a marker :func:`fold_statement_sets` folds away."""

    arg_types: ClassVar[dict[str, bool]] = {}


def _at(node: exp.Expression, token: Token) -> Any:
    """``node`` with the position of ``token`` (for the errors :func:`fold_statement_sets` raises)."""
    node.meta.update(line=token.line, col=token.col, start=token.start, end=token.end)
    return node


def fold_statement_sets(statements: list[Any], tokens: list[Token]) -> list[exp.Expression]:
    """``statements`` (parsed from ``tokens``) with each ``BEGIN`` ... ``END`` run folded into one
    :class:`StatementSet`: sqlglot cuts a script at every ``;``, those inside a statement set too.

    Raises :class:`~actorflow.errors.SqlError` for a set without ``END``, an ``END`` without a set,
    an empty set, a set in a set and a statement other than ``INSERT`` in a set.
    """
    # sqlglot may turn a lone END into its own EndStatement, without a position: take the positions
    # of the lone ENDs from the tokens.
    ends = [
        token
        for index, token in enumerate(tokens)
        if token.token_type == TokenType.END
        and (index == 0 or tokens[index - 1].token_type == TokenType.SEMICOLON)
        and (index + 1 == len(tokens) or tokens[index + 1].token_type == TokenType.SEMICOLON)
    ]
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
