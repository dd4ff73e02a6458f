"""How a chain takes part in checkpoints: its operators' state as named parts, and back.

Each operator instance is one *part* of a checkpoint, named ``"<operator name>/<instance index>"``.
Its state is pickled when the barrier is aligned, before the chain reads another record: that copy
is the consistent snapshot, and writing it to storage happens elsewhere, off the data path. On
restore, every instance of an operator gets the states of *all* its instances at the checkpoint
(:meth:`~actorflow.operators.base.Operator.restore_state`), so the parallelism may have changed.

>>> part_name("window", 2)
'window/2'
>>> states_of("window", {"window/0": dumps({"a": 1}), "window/1": dumps(None), "other/0": dumps(3)})
[{'a': 1}]
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actorflow.checkpoint.parts import SnapshotPart
from actorflow.errors import StateError

__all__ = [
    "CheckpointHooks",
    "incremental_changes",
    "Loaded",
    "Part",
    "SnapshotPart",
    "dumps",
    "ended_at",
    "ended_owner",
    "part_name",
    "snapshot_parts",
    "states_of",
    "watermark_owner",
]


def part_name(operator: str, index: int) -> str:
    """The name of one operator instance's part of a checkpoint."""
    return f"{operator}/{index}"


def watermark_owner(source: str) -> str:
    """Whose parts hold the watermark each instance of ``source`` had put out at the checkpoint.

    >>> part_name(watermark_owner("transactions"), 0)
    'transactions@watermark/0'
    """
    return f"{source}@watermark"


def ended_owner(source: str) -> str:
    """Whose parts mark the instances of ``source`` that had ended at the checkpoint.

    >>> part_name(ended_owner("rules"), 0)
    'rules@ended/0'
    """
    return f"{source}@ended"


def ended_at(source: str, parts: Mapping[str, Part]) -> bool:
    """Whether every instance of ``source`` had ended at the checkpoint of ``parts``: a restore
    then reads nothing from it again (as Flink restores finished tasks as finished).

    >>> parts = {"rules@watermark/0": dumps(5), "rules@ended/0": dumps(True)}
    >>> ended_at("rules", parts), ended_at("rules", {"rules@watermark/0": dumps(5)})
    (True, False)
    """
    instances = len(states_of(watermark_owner(source), parts))
    return instances > 0 and len(states_of(ended_owner(source), parts)) == instances


def dumps(state: Any) -> bytes:
    """Serialise a state (the consistent copy)."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class Loaded:
    """A part that is already a state object, not its pickle: a restore built from something else
    than a checkpoint's bytes (a partition task's changelog) hands it over without pickling it
    only to unpickle it again.

    >>> states_of("window", {"window/0": Loaded({"a": 1})})
    [{'a': 1}]
    """

    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state


#: A part of a checkpoint being restored: its bytes, or the state itself.
Part = bytes | Loaded


def states_of(operator: str, parts: Mapping[str, Part]) -> list[Any]:
    """The states every instance of ``operator`` had at the checkpoint, in instance order (the
    instances that had none left out)."""
    found = []
    for name, data in parts.items():
        owner, _, index = name.rpartition("/")
        if owner == operator:
            state = data.state if isinstance(data, Loaded) else pickle.loads(data)
            if state is not None:
                found.append((int(index), state))
    return [state for _, state in sorted(found, key=lambda pair: pair[0])]


def incremental_changes(operator: str, states: list[Any]) -> list[Any] | None:
    """The ``changes`` of ``states`` when they are incremental snapshots (``{"changes": ...}``),
    None when they are full ones; raises :class:`~actorflow.errors.StateError` for a mix.

    >>> incremental_changes("w", [{"changes": {"a": 1}}]), incremental_changes("w", [{"key_groups": 0}])
    ([{'a': 1}], None)
    """
    changes = [state["changes"] for state in states if "changes" in state]
    if not changes:
        return None
    if len(changes) != len(states):
        raise StateError(
            f"operator {operator!r}: a restore takes full snapshots or incremental changes, not both"
        )
    return changes


def snapshot_parts(named_states: Iterable[tuple[str, Any]]) -> dict[str, bytes]:
    """``{part name: pickled state}`` for the states that are not None."""
    return {name: dumps(state) for name, state in named_states if state is not None}


@dataclass(frozen=True)
class CheckpointHooks:
    """What an actor needs from the job's checkpoint coordinator.

    ``acknowledge(checkpoint_id, actor, parts)`` after snapshotting at a barrier;
    ``finished(actor, parts)`` with its final state when it ends; ``source_finished()`` when a
    source ends; ``register(participant)`` for completion notices (sinks, sources);
    ``kind_of(checkpoint_id)``: ``"checkpoint"`` or ``"savepoint"``.
    """

    acknowledge: Callable[[int, str, dict[str, bytes | SnapshotPart]], None]
    finished: Callable[[str, dict[str, bytes]], None]
    source_finished: Callable[[], None]
    register: Callable[[Any], None]
    kind_of: Callable[[int], str] = lambda checkpoint_id: "checkpoint"
