from typing import Any

VERSION: int
LIMIT: int

def plain_marks(
    timestamps: list[Any], highest: int, lag: Any, /
) -> tuple[list[tuple[int, int]], Any] | None: ...
