"""Where keyed state lives: the choice of backend, and the tables it gives each state.

A :class:`KeyedStateBackend <actorflow.state.keyed.KeyedStateBackend>` asks its
:class:`StateTables` for one mutable mapping per state name. The heap's are plain dicts (the
default, and the fastest); the RocksDB backend's (:mod:`actorflow.state.rocksdb`, which needs the
optional ``rocksdict``) keep serialized values in an embedded RocksDB per operator instance, with a
bounded cache of live objects in front. :func:`open_tables` opens the one a
:class:`StateBackendConfig` names.

>>> tables = open_tables(StateBackendConfig(), "counts", 0)
>>> type(tables.table("n", None)).__name__
'dict'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from actorflow.errors import StateError
from actorflow.state.descriptors import StateDescriptor
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "ENV_DIR",
    "HEAP_INCREMENTAL",
    "HEAP",
    "HeapTables",
    "StateBackendConfig",
    "StateTables",
    "open_tables",
]

#: The backends by name.
BACKENDS: Final = ("heap", "rocksdb")
#: The environment variable a :class:`~actorflow.Flow` reads its default backend from (the same
#: one the daemon's ``state_backend`` setting reads): CI runs chosen test files on RocksDB with it.
ENV_BACKEND: Final = "ACTORFLOW_STATE_BACKEND"
#: The environment variable a flow reads the RocksDB directory from (the daemon's ``state_dir``).
ENV_DIR: Final = "ACTORFLOW_STATE_DIR"
#: What ``$ACTORFLOW_STATE_BACKEND`` (and the daemon's ``state_backend``) calls the heap with
#: incremental checkpoints.
HEAP_INCREMENTAL: Final = "heap-incremental"


@dataclass(frozen=True)
class StateBackendConfig:
    """Which backend keeps a flow's keyed state, and its settings.

    ``kind``: ``"heap"`` (the default) or ``"rocksdb"``. For RocksDB: ``path`` is the directory
    under which every operator instance gets a fresh directory of its own (default: the system's
    temporary directory), deleted when the instance closes; ``cache_mb`` bounds the cache of live
    objects in front of the store (about :data:`ENTRY_BYTES` per entry); ``cache_entries`` sets the
    bound in entries instead (for tests and tuning). ``incremental``: on the heap, checkpoints
    after the first write only the keys changed since the previous one
    (:mod:`actorflow.state.heap_checkpoint`); RocksDB's checkpoints are incremental anyway.

    >>> StateBackendConfig("rocksdb", cache_mb=16).cache_size
    32768
    """

    kind: str = "heap"
    path: str | None = None
    cache_mb: float = 64.0
    cache_entries: int | None = None
    incremental: bool = False

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise StateError(f"unknown state backend {self.kind!r}: choose one of {', '.join(BACKENDS)}")
        if self.cache_mb <= 0 or (self.cache_entries is not None and self.cache_entries < 1):
            raise StateError("a state backend's cache must hold at least one entry")

    @property
    def cache_size(self) -> int:
        """The cache's bound in entries."""
        if self.cache_entries is not None:
            return self.cache_entries
        return max(1, int(self.cache_mb * 1024 * 1024) // ENTRY_BYTES)

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None) -> StateBackendConfig:
        """The backend ``$ACTORFLOW_STATE_BACKEND`` names (heap when unset or empty;
        ``heap-incremental``: the heap with incremental checkpoints), with its files under
        ``$ACTORFLOW_STATE_DIR`` when set.

        >>> StateBackendConfig.from_env({"ACTORFLOW_STATE_BACKEND": "rocksdb"}).kind
        'rocksdb'
        >>> StateBackendConfig.from_env({"ACTORFLOW_STATE_BACKEND": "heap-incremental"}).incremental
        True
        """
        source = os.environ if environ is None else environ
        kind = source.get(ENV_BACKEND, "").strip().lower() or "heap"
        if kind == HEAP_INCREMENTAL:
            return StateBackendConfig("heap", source.get(ENV_DIR) or None, incremental=True)
        return StateBackendConfig(kind, source.get(ENV_DIR) or None)


#: What one cached entry is counted as, in bytes, when ``cache_mb`` is turned into entries: a
#: small profile (a few numbers in a tuple or dict, its key) on the Python heap.
ENTRY_BYTES: Final = 512


class StateTables(Protocol):
    """The tables of one operator instance's keyed state."""

    def table(self, name: str, descriptor: StateDescriptor | None) -> MutableMapping[Any, Any]:
        """A new table for state ``name`` (``descriptor`` None: restored before it was declared)."""
        ...

    def declare(self, table: MutableMapping[Any, Any], descriptor: StateDescriptor) -> None:
        """``descriptor`` declares ``table``, which a restore made before it was declared."""
        ...

    def export(self, tables: dict[str, MutableMapping[Any, Any]]) -> dict[str, dict[Any, Any]]:
        """``tables`` as plain dicts of live or just-read values, for a snapshot pickled at once."""
        ...

    def close(self) -> None:
        """Release the tables (the RocksDB backend deletes its files)."""
        ...


class HeapTables:
    """The heap's tables: a dict per state, exported as they are (no copy)."""

    def table(self, name: str, descriptor: StateDescriptor | None) -> MutableMapping[Any, Any]:
        return {}

    def declare(self, table: MutableMapping[Any, Any], descriptor: StateDescriptor) -> None:
        pass

    def export(self, tables: dict[str, MutableMapping[Any, Any]]) -> dict[str, dict[Any, Any]]:
        return tables  # type: ignore[return-value]  # the heap's tables are dicts

    def close(self) -> None:
        pass


HEAP: Final = HeapTables()


def open_tables(
    config: StateBackendConfig,
    operator: str,
    index: int,
    *,
    max_parallelism: int = DEFAULT_MAX_PARALLELISM,
    keys: Any = None,
) -> StateTables:
    """The tables ``config`` names for instance ``index`` of ``operator``. ``keys`` is the
    instance's :class:`~actorflow.state.keyed.KeyContext` (the RocksDB cache never evicts the
    current key's entries, which user code may hold). Raises :class:`StateError` when RocksDB is
    chosen and ``rocksdict`` is not installed.

    >>> open_tables(StateBackendConfig("heap"), "op", 0) is HEAP
    True
    """
    if config.kind == "heap":
        return HEAP
    try:
        from actorflow.state.rocksdb import RocksDBTables  # needs rocksdict: only when chosen
    except ModuleNotFoundError as error:
        if error.name != "rocksdict":
            raise
        raise StateError(
            "the rocksdb state backend needs rocksdict: pip install 'actorflow[rocksdb]'"
        ) from None
    return RocksDBTables(config, operator, index, max_parallelism=max_parallelism, keys=keys)
