"""What travels through a mailbox: batches of records, stream status, barriers, end of stream.

Records cross mailboxes in :class:`Batch` objects, never one by one. A batch carries its values,
optionally their event timestamps, and the watermarks that happen *inside* it: ``marks`` is a list of
``(position, watermark)`` pairs meaning "after the first ``position`` values of this batch the
watermark is ``watermark``". Keeping watermarks inside the batch is what lets a punctuated watermark
advance after every single record without giving up batching.

Operators never mutate a batch's lists in place: they build new lists, so one batch may be handed to
several receivers (broadcast) safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "Barrier",
    "Batch",
    "EndOfStream",
    "Message",
    "StreamStatus",
]

#: The watermark of a stream that has ended: every event-time timer fires at it.
MAX_WATERMARK: Final = 2**63 - 1
#: The watermark before anything has been seen.
MIN_WATERMARK: Final = -(2**63)


class Batch:
    """A list of records, with optional event timestamps and in-batch watermarks.

    >>> b = Batch([1, 2, 3], marks=[(2, 100)])
    >>> len(b), b.marks
    (3, [(2, 100)])
    """

    __slots__ = ("marks", "timestamps", "values")

    def __init__(
        self,
        values: list[Any],
        timestamps: list[Any] | None = None,
        marks: list[tuple[int, int]] | None = None,
    ) -> None:
        self.values = values
        self.timestamps = timestamps
        self.marks = marks

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Batch({self.values!r}, timestamps={self.timestamps!r}, marks={self.marks!r})"

    @property
    def is_empty(self) -> bool:
        """True when the batch has neither values nor watermarks: nothing worth sending."""
        return not self.values and not self.marks

    @property
    def last_watermark(self) -> int | None:
        """The watermark in force after the whole batch, if the batch moves it."""
        marks = self.marks
        return marks[-1][1] if marks else None


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """An input went idle (its watermark stops holding others back) or became active again."""

    idle: bool


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint barrier ``checkpoint_id``, ordered with the batches of its channel."""

    checkpoint_id: int


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The sender will send nothing more on this channel. A normal end, not a failure."""


Message = Batch | StreamStatus | Barrier | EndOfStream
