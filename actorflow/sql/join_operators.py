"""The operators of SQL joins: keyed co-process functions over two sides' rows.

Both sides are keyed by their equal-key columns, so the rows of both sides with equal keys meet in
one instance and share its keyed state. A joined row has both sides' columns, qualified by their
aliases (:class:`RowShape`); a row of an outer side without a partner is padded with NULLs. A key
with a NULL in it never matches (SQL's ``NULL = NULL`` is not true): its rows are kept out of
state, and an outer side's rows are emitted padded.

- :class:`RegularJoin`: both sides' rows kept in keyed state, per key a multiset (row -> count and
  the number of the other side's rows it matches); an updating result (``+I``, ``-D``; an inner
  join of two changelogs passes each input row's change on), or in batch mode the final rows at
  the end of the input.
- :class:`WindowJoin`: the rows of windowing table functions, joined per key and window when the
  watermark passes the window's end (``window_end - 1``); an append-only result.
- :class:`OuterIntervalJoin`: a LEFT/RIGHT/FULL interval join; the rows of an outer side that
  found no partner are emitted padded when the watermark passes their interval.

>>> shape = RowShape("a.", ["k", "x"], "b.", ["k"])
>>> shape.join({"k": 1, "x": 2}, None)
{'a.k': 1, 'a.x': 2, 'b.k': None}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["RowShape", "has_null"]

#: A multiset entry of a regular join's state: [row, count, matches] (matches: how many of the
#: other side's rows, counted with their multiplicity, join this row).
Entry = list[Any]
#: A check of a joined row (an outer join's ON conditions other than the equal keys), or None.
Residual = Callable[[dict[str, Any]], bool] | None


def has_null(key: Any, parts: int) -> bool:
    """Whether a join key (one value, or a tuple of ``parts`` values) has a NULL in it.

    >>> has_null((1, None), 2), has_null(None, 1), has_null(3, 1)
    (True, True, False)
    """
    if parts == 1:
        return key is None
    return None in key


class RowShape:
    """How two sides' rows make a joined row: ``left_prefix + column`` for each left column, the
    same on the right (a prefix is empty for a side whose columns are qualified already)."""

    def __init__(self, left_prefix: str, left: list[str], right_prefix: str, right: list[str]) -> None:
        self.left = left
        self.right = right
        self.left_names = [left_prefix + name for name in left]
        self.right_names = [right_prefix + name for name in right]

    def join(self, left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
        """The joined row; a missing side (None) is all NULL."""
        if left is None:
            row = dict.fromkeys(self.left_names)
        else:
            row = dict(zip(self.left_names, map(left.get, self.left), strict=True))
        if right is None:
            row.update(dict.fromkeys(self.right_names))
        else:
            row.update(zip(self.right_names, map(right.get, self.right), strict=True))
        return row

    def identity(self, side: int, row: dict[str, Any]) -> Any:
        """What makes two rows of a side the same row in a multiset: their values."""
        values = tuple(map(row.get, self.right if side else self.left))
        try:
            hash(values)
        except TypeError:  # an ARRAY or MAP value
            return repr(values)
        return values
