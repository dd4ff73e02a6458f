"""Flink SQL's streaming dialect for sqlglot, and :func:`parse`, a script to syntax trees.

The dialect starts from sqlglot's base dialect (ANSI-like) and adds what Flink writes differently:
back-quoted identifiers, case-sensitive names, the ``STRING``, ``BYTES``, ``TIMESTAMP_LTZ`` and
``ROW<...>`` types, ``WATERMARK FOR`` in ``CREATE TABLE``, the windowing table functions in ``FROM``
(``TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), INTERVAL '10' SECOND))``, named arguments too),
``MATCH_RECOGNIZE ... WITHIN``, ``LATERAL TABLE(...)``, table hints, ``SHOW``, ``EXPLAIN``, ``RESET``
and statement sets. The parser is in :mod:`actorflow.sql.parser`, the generator (syntax trees back to
Flink SQL) in :mod:`actorflow.sql.generator`, the extra nodes in :mod:`actorflow.sql.nodes`.

>>> [statement.sql(dialect=Flink) for statement in parse("SHOW TABLES; SELECT `a b` FROM t")]
['SHOW TABLES', 'SELECT `a b` FROM t']
>>> parse("SELECT a FROM t WHERE (a > 1")
Traceback (most recent call last):
...
actorflow.errors.SqlError: line 1, column 28: expected ')' near '1'
"""

from __future__ import annotations

import re
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from actorflow.errors import SqlError
from actorflow.sql.generator import FlinkGenerator
from actorflow.sql.parser import FlinkParser, FlinkTokenizer, fold_statement_sets

__all__ = ["Flink", "parse"]


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
    return fold_statement_sets(
        [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)], tokens
    )


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
