from collections.abc import Callable, Sequence
from typing import Any

VERSION: int

def run(
    values: Sequence[Any],
    timestamps: Sequence[Any] | None,
    key_of: Callable[[Any], Any],
    process: Callable[[Any, Any, Any], object],
    ctx: Any,
    out: Any,
    keys: Any,
    /,
) -> None: ...
def run_marked(
    values: Sequence[Any],
    timestamps: Sequence[Any] | None,
    marks: Sequence[tuple[int, int]],
    key_of: Callable[[Any], Any],
    process: Callable[[Any, Any, Any], object],
    ctx: Any,
    out: Any,
    keys: Any,
    timers: Any,
    queue: Any,
    output: Any,
    advance: Callable[[int, Any], object],
    /,
) -> None: ...
