from collections.abc import Callable
from typing import Any

VERSION: int

def run(
    values: list[Any],
    timestamps: list[Any],
    start: int,
    end: int,
    key_of: Callable[[Any], Any],
    create: Callable[[], Any],
    add: Callable[[Any, Any], Any],
    empty: object,
    panes: dict[int, dict[Any, Any]],
    size: int,
    offset: int,
    highest: int,
    /,
) -> int: ...
