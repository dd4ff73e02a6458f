"""Key groups: the unit in which keyed state is partitioned, snapshotted and rescaled.

``key_group = stable_hash(key) % max_parallelism``; operator instance ``i`` of ``p`` owns a
contiguous range of key groups (Flink's assignment), so changing ``p`` moves whole key groups.

The hash must be the same in every process and every run, so Python's salted ``hash()`` of ``str``
cannot be used: strings and bytes go through CRC-32, integers through a 64-bit mixer.
"""

from __future__ import annotations

import zlib
from typing import Any

__all__ = [
    "DEFAULT_MAX_PARALLELISM",
    "KeyGroupFilter",
    "KeyGroups",
    "key_group",
    "key_group_range",
    "operator_index",
    "stable_hash",
]

DEFAULT_MAX_PARALLELISM = 128

_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    # The splitmix64 finaliser: spreads consecutive integers over all bits.
    value &= _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def stable_hash(key: Any) -> int:
    """A non-negative hash of ``key`` that is the same in every process and run.

    Keys may be str, bytes, int, bool, float, None, or tuples of these.

    >>> stable_hash("card-1") == stable_hash("card-1")
    True
    >>> stable_hash(("a", 1)) != stable_hash(("a", 2))
    True
    """
    kind = type(key)
    if kind is str:
        return zlib.crc32(key.encode())
    if kind is int or kind is bool:
        return _mix64(key) & 0xFFFFFFFF
    if kind is bytes:
        return zlib.crc32(key)
    if kind is tuple:
        combined = 0x345678
        for item in key:
            combined = _mix64(combined * 31 + stable_hash(item))
        return combined & 0xFFFFFFFF
    if kind is float:
        return stable_hash(int(key)) if key.is_integer() else zlib.crc32(repr(key).encode())
    if key is None:
        return 0
    raise TypeError(
        f"cannot hash a key of type {kind.__name__} stably across processes: "
        "key by str, bytes, int, float, bool, None or a tuple of them"
    )


def key_group(key: Any, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The key group of ``key``: ``stable_hash(key) % max_parallelism``."""
    return stable_hash(key) % max_parallelism


class KeyGroups(dict[Any, int]):
    """Key to key group, each key hashed once: one snapshot cuts every state and timer of a key
    by the same group, and a dict hit costs far less than a hash.

    >>> groups = KeyGroups(128)
    >>> groups["card-1"] == key_group("card-1", 128), len(groups)
    (True, 1)
    """

    __slots__ = ("max_parallelism",)

    def __init__(self, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> None:
        super().__init__()
        self.max_parallelism = max_parallelism

    def __missing__(self, key: Any) -> int:
        group = self[key] = stable_hash(key) % self.max_parallelism
        return group


class KeyGroupFilter:
    """Which keys of a checkpointed instance a restoring instance takes: the instance owned the key
    groups ``saved`` then, the restoring one owns ``owned`` now.

    At the same parallelism every instance takes its own part whole (``takes_all``) and skips the
    others' (``takes_none``), hashing nothing; after a change of parallelism the ranges overlap
    in part, and then the filter is called per key (each hashed once).

    >>> same = KeyGroupFilter(range(0, 64), range(0, 64), 128)
    >>> same.takes_all, same.takes_none
    (True, False)
    >>> KeyGroupFilter(range(64, 128), range(0, 64), 128).takes_none
    True
    >>> half = KeyGroupFilter(range(0, 128), range(0, 64), 128)
    >>> half.takes_all or half.takes_none, half("card-1") == (key_group("card-1", 128) < 64)
    (False, True)
    """

    __slots__ = ("_groups", "_owned", "takes_all", "takes_none")

    def __init__(self, saved: range, owned: range, max_parallelism: int) -> None:
        self.takes_all = owned.start <= saved.start and saved.stop <= owned.stop
        self.takes_none = not self.takes_all and (saved.stop <= owned.start or owned.stop <= saved.start)
        self._groups = KeyGroups(max_parallelism)
        self._owned = owned

    def __call__(self, key: Any) -> bool:
        """Whether ``key`` belongs to the restoring instance."""
        return self._groups[key] in self._owned


def operator_index(group: int, max_parallelism: int, parallelism: int) -> int:
    """The operator instance that owns key group ``group``.

    >>> [operator_index(g, 8, 3) for g in range(8)]
    [0, 0, 0, 1, 1, 1, 2, 2]
    """
    return group * parallelism // max_parallelism


def key_group_range(index: int, max_parallelism: int, parallelism: int) -> range:
    """The key groups owned by operator instance ``index`` of ``parallelism``.

    >>> key_group_range(1, 8, 3)
    range(3, 6)
    """
    start = (index * max_parallelism + parallelism - 1) // parallelism
    end = ((index + 1) * max_parallelism + parallelism - 1) // parallelism
    return range(start, end)
