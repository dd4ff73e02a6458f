"""``OVER`` windows, ``ROW_NUMBER`` (deduplication and Top-N), ``ORDER BY`` and ``LIMIT``.

Not built yet: each entry point refuses its construct with a one-line :class:`SqlError`.

>>> from actorflow.sql.dialect import parse
>>> has_over(parse("SELECT ROW_NUMBER() OVER (ORDER BY ts) FROM t")[0])
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from actorflow.sql.accessors import error_at
from actorflow.sql.relation import Relation

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["has_over", "plan_order", "plan_over", "plan_ranked"]


def has_over(select: exp.Expression) -> bool:
    """Whether ``select``'s list calls a function ``OVER (...)``."""
    return any(item.find(exp.Window) is not None for item in select.expressions)


def plan_ranked(planner: Planner, select: exp.Select) -> Relation | None:
    """Deduplication or Top-N: ``SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY
    ... ORDER BY ...) AS rn FROM t) WHERE rn <= n``; None when ``select`` is not one."""
    return None


def plan_over(planner: Planner, select: exp.Select) -> Relation:
    """A select list with ``OVER`` aggregates."""
    raise error_at(select, "OVER is not supported yet")


def plan_order(planner: Planner, select: exp.Select) -> Relation:
    """``ORDER BY`` and ``LIMIT``."""
    what = "ORDER BY" if select.args.get("order") else "LIMIT"
    raise error_at(select, f"{what} is not supported yet")
