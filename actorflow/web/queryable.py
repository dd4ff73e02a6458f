"""Queryable state: one key's keyed state (or window contents) of a named operator, as plain data.

A key lives on exactly one instance of a keyed operator: the one that owns its key group
(``stable_hash(key) % max_parallelism``, contiguous ranges per instance, as the hash partitioner
routes records). The lookup goes straight there. It runs on the event loop's thread, like the
operators, so it sees the state between two batches: never half of one.

Keys arrive from URLs as text; ``type`` says what the flow keys by: ``str`` (the default), ``int``,
``float``, or ``json`` for anything else JSON can say (a JSON array is a tuple key).

>>> parse_key("42", "int"), parse_key('["card", 7]', "json")
(42, ('card', 7))
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from actorflow.operators.process import KeyedProcessOperator
from actorflow.operators.windows.functions import EMPTY
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.metrics import ActorEntry, JobMetrics
from actorflow.state.keygroups import key_group, operator_index

__all__ = ["KEY_TYPES", "StateNotFound", "StateUnavailable", "keyed_operators", "lookup", "parse_key"]

#: The values ``?type=`` takes.
KEY_TYPES = ("str", "int", "float", "json")


class StateNotFound(LookupError):
    """No such keyed operator, or no state for that key (HTTP 404)."""


class StateUnavailable(RuntimeError):
    """The operator's instance is not open yet (starting or restoring: HTTP 503)."""


def parse_key(raw: str, kind: str = "str") -> Hashable:
    """The key ``raw`` (URL text) means for a flow keyed by ``kind``; ValueError if it cannot be."""
    if kind == "str":
        return raw
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "json":
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"the key is not valid JSON: {error}") from None
        key = _hashable(value)
        if not isinstance(key, Hashable):
            raise ValueError("a JSON object cannot be a key: key by a string, number, or array")
        return key
    raise ValueError(f"unknown key type {kind!r}: use one of {', '.join(KEY_TYPES)}")


def _hashable(value: Any) -> Any:
    # JSON arrays are lists; keys that were tuples in the flow arrive as arrays.
    return tuple(_hashable(item) for item in value) if isinstance(value, list) else value


def _is_keyed(operator: Any) -> bool:
    return isinstance(operator, KeyedProcessOperator | WindowOperator)


def keyed_operators(job: JobMetrics) -> list[str]:
    """The names of the operators of ``job`` that keep keyed state, in deployment order."""
    names: dict[str, None] = {}
    for entry in job.actors:
        for name, operator in entry.operators.items():
            if _is_keyed(operator):
                names[name] = None
    return list(names)


def lookup(job: JobMetrics, operator_name: str, key: Hashable) -> dict[str, Any]:
    """The state of ``key`` in the keyed operator ``operator_name``, as JSON-ready data.

    For a keyed process function: ``{"state": {state name: value}}`` with every state that has an
    entry for the key. For a window operator: ``{"windows": [{"start", "end", "contents"}]}`` with
    the key's open windows and their contents (the running aggregate for reduce and aggregate
    functions, the records for a process window function). Both carry where the key lives:
    ``key_group``, ``instance`` (0-based) and ``parallelism``.

    Raises :class:`StateNotFound` for an unknown or unkeyed operator and for a key without state,
    :class:`StateUnavailable` while the owning instance is still opening, ValueError for a key
    that cannot be hashed stably (see :func:`~actorflow.state.keygroups.stable_hash`).
    """
    instances = [
        (entry, entry.operators[operator_name]) for entry in job.actors if operator_name in entry.operators
    ]
    if not instances:
        raise StateNotFound(f"no operator named {operator_name!r} in this flow")
    if not _is_keyed(instances[0][1]):
        raise StateNotFound(f"operator {operator_name!r} keeps no keyed state")
    entry, operator, group = _owner(instances, key)
    found: dict[str, Any] = {
        "operator": operator_name,
        "key": key,
        "key_group": group,
        "instance": entry.index,
        "parallelism": entry.parallelism,
    }
    where = f"operator {operator_name!r} (instance {entry.index + 1}/{entry.parallelism})"
    if isinstance(operator, WindowOperator):
        windows = operator.windows.get(key)
        if not windows:
            raise StateNotFound(f"no open window for key {key!r} in {where}")
        found["windows"] = [
            {
                "start": window.start,
                "end": window.end,
                "contents": None if contents is EMPTY else contents,
            }
            for window, contents in sorted(windows.items())
        ]
        return found
    # Not through state handles: they read the *current* key, which belongs to the operator's loop.
    state = operator.backend.states_of(key)
    if not state:
        raise StateNotFound(f"no state for key {key!r} in {where}")
    found["state"] = state
    return found


def _owner(instances: list[tuple[ActorEntry, Any]], key: Hashable) -> tuple[ActorEntry, Any, int]:
    """The actor and operator instance whose key groups hold ``key``, and the key's group."""
    for entry, _ in instances:
        if not entry.metrics.opened:
            raise StateUnavailable(f"{entry.name} is still starting (restoring its state)")
    context = instances[0][1].context
    try:
        group = key_group(key, context.max_parallelism)
    except TypeError as error:
        raise ValueError(str(error)) from None
    index = operator_index(group, context.max_parallelism, context.parallelism)
    for entry, operator in instances:
        if entry.index == index:
            return entry, operator, group
    raise StateNotFound(f"no instance {index} of the operator")  # pragma: no cover - deploy makes all


def to_json(value: Any) -> bytes:
    """``value`` as JSON: dicts with non-string keys, tuples, sets and dataclasses included; any
    other object as its ``repr`` (state may hold anything a user put there)."""
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Keys orjson cannot write (tuples, windows): make every key a string and try again.
        return orjson.dumps(_stringify_keys(value), default=_plain, option=orjson.OPT_NON_STR_KEYS)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def _stringify_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_plain_key(key): _stringify_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_stringify_keys(item) for item in value]
    return value


def _plain_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)
