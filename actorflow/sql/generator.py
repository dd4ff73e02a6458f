"""The generator of the Flink dialect: prints syntax trees back as Flink SQL."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import trim_sql
from sqlglot.generator import Generator

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

__all__ = ["FlinkGenerator"]


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
