"""Load query output files into a canonical, comparable form.

Output order is not part of any query's result, so results compare as multisets:

* Q1: the sorted ``(tx_id, card_id, amount)`` tuples.
* Q2: the sorted ``(card_id, window_start, window_end, count, sum_cents)`` tuples,
  plus the number of late records from the ``{"late": N}`` line.
* Q3: the sorted ``(card_id, small_tx_id, large_tx_id)`` tuples.
* Q4: as Q3, plus the number of late events from the ``{"late": N}`` line.

A line with missing or extra fields makes the file invalid (``ValueError``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["FIELDS", "LATE_COUNTED", "Result", "compare", "equal", "load"]

FIELDS: dict[str, tuple[str, ...]] = {
    "q1": ("tx_id", "card_id", "amount"),
    "q2": ("card_id", "window_start", "window_end", "count", "sum_cents"),
    "q3": ("card_id", "small_tx_id", "large_tx_id"),
    "q4": ("card_id", "small_tx_id", "large_tx_id"),
}
"""The fields of one result record, per query."""

LATE_COUNTED = ("q2", "q4")
"""The queries whose output ends with ``{"late": N}``."""


@dataclass(frozen=True)
class Result:
    """A query result in canonical form."""

    records: tuple[tuple[Any, ...], ...]
    """Result records as tuples of ``FIELDS[query]``, sorted."""
    late: int | None = None
    """Q2 and Q4 only: the number of late records."""


def load(query: str, path: str) -> Result:
    """Load the output file of ``query``.

    Raises ``ValueError`` for an unknown query or a malformed file, ``OSError`` if the
    file cannot be read.
    """
    try:
        fields = FIELDS[query]
    except KeyError:
        raise ValueError(f"unknown query {query!r}; expected one of {sorted(FIELDS)}") from None
    keys = set(fields)
    records: list[tuple[Any, ...]] = []
    late: int | None = None
    with open(path, "rb") as src:
        for number, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            if query in LATE_COUNTED and record.keys() == {"late"}:
                if late is not None:
                    raise ValueError(f"{path}:{number}: a second late count")
                late = record["late"]
                continue
            if record.keys() != keys:
                raise ValueError(f"{path}:{number}: fields {sorted(record)}, expected {sorted(keys)}")
            records.append(tuple(record[field] for field in fields))
    if query in LATE_COUNTED and late is None:
        raise ValueError(f"{path}: no {{'late': N}} line")
    try:
        records.sort()
    except TypeError as exc:  # e.g. an int field that is sometimes a str
        raise ValueError(f"{path}: inconsistent field types: {exc}") from None
    return Result(tuple(records), late)


def compare(query: str, path_a: str, path_b: str) -> str | None:
    """Return ``None`` if both output files hold the same result, else what differs."""
    try:
        a = load(query, path_a)
        b = load(query, path_b)
    except (OSError, ValueError) as exc:
        return f"invalid output: {exc}"
    if a == b:
        return None
    problems: list[str] = []
    if a.late != b.late:
        problems.append(f"late {a.late} != {b.late}")
    if a.records != b.records:
        count_a = Counter(a.records)
        count_b = Counter(b.records)
        only_a = sorted((count_a - count_b).elements())
        only_b = sorted((count_b - count_a).elements())
        problems.append(
            f"{len(a.records)} vs {len(b.records)} records; "
            f"{len(only_a)} only in the first (e.g. {only_a[:1]}), "
            f"{len(only_b)} only in the second (e.g. {only_b[:1]})"
        )
    return "; ".join(problems)


def equal(query: str, path_a: str, path_b: str) -> bool:
    """Whether two output files of ``query`` hold the same (valid) result."""
    return compare(query, path_a, path_b) is None
