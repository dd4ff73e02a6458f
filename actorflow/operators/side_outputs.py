"""Side outputs: a second (third, ...) stream out of one operator, named by an :class:`OutputTag`.

A process function calls ``ctx.output(tag, value)``; the stream API's ``get_side_output(tag)``
returns the stream of those values, with its own downstream. A value sent to a tag nobody consumes
is dropped (and counted in :attr:`SideOutputs.unconsumed`), as in Flink.

Side values carry the timestamp of the record (or timer) that produced them. A side batch is sent
after the operator's main batch and carries the main batch's last watermark at its end: every side
value of the batch comes before that watermark, which never makes one of them late downstream.

>>> late = OutputTag("late")
>>> outputs = SideOutputs([late])
>>> outputs.emit(late, "x", 7)
>>> outputs.emit(OutputTag("other"), "y", 8)
>>> batch = outputs.take(late, 10)
>>> batch.values, batch.timestamps, batch.marks, outputs.unconsumed
(['x'], [7], [(1, 10)], 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from actorflow.runtime.messages import Batch

__all__ = ["OutputTag", "SideOutputs"]

T = TypeVar("T")


class OutputTag(Generic[T]):
    """The name of a side output. Two tags with the same name are the same side output.

    >>> OutputTag("late") == OutputTag("late")
    True
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"an OutputTag needs a non-empty name, got {name!r}")
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTag) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("OutputTag", self.name))

    def __repr__(self) -> str:
        return f"OutputTag({self.name!r})"


class SideOutputs:
    """An operator instance's buffers for the side outputs that something downstream consumes."""

    __slots__ = ("_buffers", "unconsumed")

    def __init__(self, consumed: Iterable[OutputTag[Any]] = ()) -> None:
        self._buffers: dict[OutputTag[Any], tuple[list[Any], list[Any]]] = {
            tag: ([], []) for tag in consumed
        }
        #: Values sent to a tag with no consumer (dropped).
        self.unconsumed = 0

    @property
    def tags(self) -> list[OutputTag[Any]]:
        return list(self._buffers)

    def emit(self, tag: OutputTag[Any], value: Any, timestamp: int | None) -> None:
        """Buffer ``value`` for ``tag`` until the chain takes the side batch."""
        buffer = self._buffers.get(tag)
        if buffer is None:
            self.unconsumed += 1
            return
        buffer[0].append(value)
        buffer[1].append(timestamp)

    def take(self, tag: OutputTag[Any], watermark: int | None) -> Batch | None:
        """The buffered values of ``tag`` as a batch ending in ``watermark`` (None: nothing)."""
        values, timestamps = self._buffers[tag]
        marks = None if watermark is None else [(len(values), watermark)]
        if not values:
            return None if marks is None else Batch([], None, marks)
        self._buffers[tag] = ([], [])
        stamped = any(t is not None for t in timestamps)
        return Batch(values, timestamps if stamped else None, marks)
