"""Cutting SQL text into statements at the semicolons outside quotes and comments.

The client reads statements a line at a time: a statement is complete at its ``;``, and the text
after the last one waits for more lines. ``'...'`` (with ``''`` inside), ``"..."``, `` `...` ``,
``-- ...`` and ``/* ... */`` hide semicolons.

>>> statements, rest = split("SHOW TABLES; SELECT ';' FROM t -- a; comment\\n; DESC")
>>> for statement in statements:
...     print(statement)
Statement(text='SHOW TABLES;', line=1, column=1)
Statement(text="SELECT ';' FROM t -- a; comment\\n;", line=1, column=14)
>>> rest
' DESC'
>>> reader = StatementReader()
>>> reader.feed("SHOW TABLES; DESCRIBE\\n"), reader.pending
([Statement(text='SHOW TABLES;', line=1, column=1)], True)
>>> reader.feed("  tx;\\n"), reader.pending
([Statement(text='DESCRIBE\\n  tx;', line=1, column=14)], False)
>>> is_blank(" -- only a comment\\n /* and another */ ")
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Statement", "StatementReader", "is_blank", "split"]


@dataclass(frozen=True)
class Statement:
    """One complete statement, its ``;`` included, and where it starts (1-based) in the text."""

    text: str
    line: int
    column: int

    def positioned(self) -> str:
        """The statement behind as many blank lines and spaces as come before it in the text, so
        that a parser's line and column of a mistake are those of the whole text."""
        return "\n" * (self.line - 1) + " " * (self.column - 1) + self.text


def _scan(text: str) -> tuple[list[int], bool, bool]:
    """The offsets of the semicolons that end statements; whether the text has anything but
    blanks and comments after the last of them; whether it ends inside a string or a comment."""
    ends: list[int] = []
    content = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "'\"`" or text.startswith(("--", "/*"), i):
            closing = {"-": "\n", "/": "*/"}.get(char, char)
            close = text.find(closing, i + (2 if char in "-/" else 1))
            if close < 0:
                return ends, content or char not in "-/", char != "-"
            i = close + len(closing)  # '' inside a string is two strings back to back
            content = content or char not in "-/"
            continue
        if char == ";":
            ends.append(i)
            content = False
        elif not char.isspace():
            content = True
        i += 1
    return ends, content, False


def split(text: str) -> tuple[list[Statement], str]:
    """The complete statements of ``text`` (each ending in ``;``) and the rest after the last one.

    Statements with nothing but blanks and comments before their ``;`` are left out.
    """
    ends, _, _ = _scan(text)
    statements: list[Statement] = []
    start = 0
    for end in ends:
        piece = text[start : end + 1]
        lead = len(piece) - len(piece.lstrip())
        if not is_blank(piece[:-1]):
            at = start + lead
            line = text.count("\n", 0, at) + 1
            column = at - (text.rfind("\n", 0, at) + 1) + 1
            statements.append(Statement(piece[lead:], line, column))
        start = end + 1
    return statements, text[start:]


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but blanks and comments (an open string or comment is not
    blank: the statement goes on)."""
    _, content, unclosed = _scan(text)
    return not content and not unclosed


class StatementReader:
    """Statements from text fed a piece (a line) at a time, each with its line and column in all
    the text fed so far."""

    def __init__(self) -> None:
        self._text = ""  # after the last complete statement
        self._line = 1  # where self._text starts
        self._column = 1

    @property
    def pending(self) -> bool:
        """Whether a statement has begun and waits for its ``;``."""
        return not is_blank(self._text)

    def feed(self, text: str) -> list[Statement]:
        """The statements ``text`` completes."""
        self._text += text
        statements, rest = split(self._text)
        found = [self._placed(statement) for statement in statements]
        self._skip(len(self._text) - len(rest))
        return found

    def finish(self) -> Statement | None:
        """The statement left without its ``;`` at the end of the input (None: nothing left)."""
        if not self.pending:
            return None
        text = self._text
        lead = len(text) - len(text.lstrip())
        line, column = self._at(text[:lead], self._line, self._column)
        self._skip(len(text))
        return Statement(text[lead:].rstrip(), line, column)

    def reset(self) -> None:
        """Forget the statement begun (Ctrl-C at the prompt)."""
        self._skip(len(self._text))

    def _placed(self, statement: Statement) -> Statement:
        line = self._line + statement.line - 1
        column = self._column + statement.column - 1 if statement.line == 1 else statement.column
        return Statement(statement.text, line, column)

    @staticmethod
    def _at(text: str, line: int, column: int) -> tuple[int, int]:
        """Where the end of ``text`` is, if it starts at ``line`` and ``column``."""
        breaks = text.count("\n")
        if breaks:
            return line + breaks, len(text) - text.rfind("\n")
        return line, column + len(text)

    def _skip(self, length: int) -> None:
        self._line, self._column = self._at(self._text[:length], self._line, self._column)
        self._text = self._text[length:]
