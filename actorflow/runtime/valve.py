"""Merging watermarks over an actor's input channels: the minimum over the active ones.

Each input channel has its own watermark. The actor's watermark is the minimum over the channels
that are neither idle nor ended, and it only ever moves forward. An idle channel (a source with
nothing to say) stops holding the others back; when every open input is idle the actor is idle itself
and says so downstream. An ended channel holds nothing back either, but it does not push event time
forward for the others: only when every input has ended does the watermark become
:data:`MAX_WATERMARK`. (Counting an ended input as MAX would let one finished input plus one idle
input jump event time to the end while the idle one may still send records.)
"""

from __future__ import annotations

from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK

__all__ = ["WatermarkValve"]


class WatermarkValve:
    """Per-input watermarks and idleness, merged into one monotonic output watermark.

    >>> valve = WatermarkValve(2)
    >>> valve.merge_marks(0, [(1, 10)])  # input 1 still holds the minimum back
    []
    >>> valve.merge_marks(1, [(3, 7)])
    [(3, 7)]
    >>> valve.set_idle(1, True)  # input 1 goes idle: input 0 alone decides
    10
    """

    __slots__ = ("_ended", "_idle", "_watermarks", "current", "idle")

    def __init__(self, inputs: int) -> None:
        self._watermarks = [MIN_WATERMARK] * inputs
        self._idle = [False] * inputs
        self._ended = [False] * inputs
        self.current = MIN_WATERMARK
        self.idle = False

    def merge_marks(self, index: int, marks: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Take the in-batch marks of input ``index``; return the marks the actor's output gets."""
        out: list[tuple[int, int]] = []
        watermarks = self._watermarks
        if len(watermarks) == 1:
            current = self.current
            for position, watermark in marks:
                if watermark > current:
                    current = watermark
                    out.append((position, watermark))
            self.current = current
            watermarks[0] = current
            return out
        idle = self._idle[index]
        for position, watermark in marks:
            previous = watermarks[index]
            if watermark > previous:
                watermarks[index] = watermark
                if previous > self.current or idle:
                    continue  # this input was not holding the minimum back: it cannot move
                merged = self._minimum()
                if merged is not None and merged > self.current:
                    self.current = merged
                    out.append((position, merged))
        return out

    def set_idle(self, index: int, idle: bool) -> int | None:
        """Mark input ``index`` idle or active; return the new output watermark if it moved."""
        self._idle[index] = idle
        return self._update()

    def _update(self) -> int | None:
        self.idle = all(
            idle or ended for idle, ended in zip(self._idle, self._ended, strict=True)
        ) and not all(self._ended)
        merged = self._minimum()
        if merged is not None and merged > self.current:
            self.current = merged
            return merged
        return None

    def is_idle(self, index: int) -> bool:
        return self._idle[index]

    def end(self, index: int) -> int | None:
        """Input ``index`` ended: it holds nothing back any more. Return the new watermark if it moved."""
        self._ended[index] = True
        self._idle[index] = False
        return self._update()

    def is_ended(self, index: int) -> bool:
        return self._ended[index]

    def _minimum(self) -> int | None:
        if all(self._ended):
            return MAX_WATERMARK
        active = [
            w
            for w, idle, ended in zip(self._watermarks, self._idle, self._ended, strict=True)
            if not (idle or ended)
        ]
        return min(active) if active else None
