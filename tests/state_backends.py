"""Keyed state on the backend ``$ACTORFLOW_STATE_BACKEND`` names, for tests that drive state or an
operator directly (a Flow reads the variable itself): scripts/check runs the state suites once on
the heap and once on RocksDB, whose cache here holds 4 entries so that tests evict."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from actorflow.operators.base import OperatorContext
from actorflow.state.backends import StateBackendConfig, open_tables
from actorflow.state.keyed import KeyContext, KeyedStateBackend
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM
from actorflow.time.clock import Clock


def chosen() -> StateBackendConfig | None:
    """The backend of ``$ACTORFLOW_STATE_BACKEND`` (a small cache for RocksDB), None for the heap."""
    config = StateBackendConfig.from_env()
    return None if config.kind == "heap" else replace(config, cache_entries=4)


def new_backend(
    max_parallelism: int = DEFAULT_MAX_PARALLELISM, clock: Clock | None = None
) -> KeyedStateBackend:
    """A :class:`KeyedStateBackend` on the chosen backend."""
    config = chosen()
    if config is None:
        return KeyedStateBackend(max_parallelism, clock)
    keys = KeyContext()
    tables = open_tables(config, "test", 0, max_parallelism=max_parallelism, keys=keys)
    return KeyedStateBackend(max_parallelism, clock, tables, keys)


def operator_context(name: str, **settings: Any) -> OperatorContext:
    """An :class:`OperatorContext` whose keyed state is on the chosen backend."""
    return OperatorContext(name, state_backend=chosen(), **settings)
