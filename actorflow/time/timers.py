"""Timer queues: timers per (time, key), deduplicated, fired in time order.

One queue per time domain of a keyed operator. Times are kept in a sorted dict (sortedcontainers), so
finding the next due time is cheap and registering a timer at a time that already has timers costs
one dict lookup. Keys registered for the same time fire in registration order.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

from sortedcontainers import SortedDict

__all__ = ["TimerQueue"]


class TimerQueue:
    """Timers as (time, key) pairs, at most one per pair.

    >>> queue = TimerQueue()
    >>> queue.add(20, "a"), queue.add(10, "b"), queue.add(20, "a")
    (True, True, False)
    >>> list(queue.pop_due(15)), queue.next_time
    ([(10, 'b')], 20)
    """

    __slots__ = ("_times", "next_time")

    def __init__(self) -> None:
        self._times: SortedDict = SortedDict()
        #: The earliest time with a timer, or None. Read on every watermark: kept as an attribute.
        self.next_time: int | None = None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._times.values())

    def add(self, time: int, key: Hashable) -> bool:
        """Register a timer; return False if the same (time, key) was already registered."""
        keys = self._times.get(time)
        if keys is None:
            self._times[time] = {key: None}
            next_time = self.next_time
            if next_time is None or time < next_time:
                self.next_time = time
            return True
        if key in keys:
            return False
        keys[key] = None
        return True

    def remove(self, time: int, key: Hashable) -> bool:
        """Forget a timer; return False if there was none."""
        keys = self._times.get(time)
        if keys is None or key not in keys:
            return False
        del keys[key]
        if not keys:
            del self._times[time]
            if time == self.next_time:
                self._refresh()
        return True

    def pop_due(self, limit: int) -> Iterator[tuple[int, Hashable]]:
        """Yield and remove every timer with time ``<= limit``, in time order, one at a time.

        Each timer is removed just before it is yielded, so while it fires it may remove other
        due timers (they then do not fire) or add new ones (they fire in this pass if due).
        """
        times = self._times
        while self.next_time is not None and self.next_time <= limit:
            time = self.next_time
            keys = times[time]
            # Walk a copy of the slot, so keys may be removed or added while we yield.
            for key in list(keys):
                if key in keys:
                    del keys[key]
                    yield time, key
            if not keys and times.get(time) is keys:
                del times[time]
                self._refresh()

    def keys_at(self, time: int) -> list[Hashable]:
        return list(self._times.get(time, ()))

    def snapshot(self) -> list[tuple[int, list[Hashable]]]:
        """All timers as ``[(time, [keys...]), ...]`` in time order."""
        return [(time, list(keys)) for time, keys in self._times.items()]

    def export(self) -> tuple[list[int], list[Hashable]]:
        """Every timer as two flat lists, times and keys, in time order: the cheapest form to
        pickle and unpickle (a checkpoint's). :meth:`add_all` takes ``zip(times, keys)`` back.

        >>> queue = TimerQueue()
        >>> queue.add_all([(20, "a"), (10, "b"), (20, "c")])
        >>> queue.export()
        ([10, 20, 20], ['b', 'a', 'c'])
        """
        times = self._times
        return [time for time, keys in times.items() for _ in keys], [
            key for keys in times.values() for key in keys
        ]

    def restore(self, timers: list[tuple[int, list[Hashable]]]) -> None:
        self.add_all((time, key) for time, keys in timers for key in keys)

    def add_all(self, timers: Iterable[tuple[int, Hashable]]) -> None:
        """Register many timers at once (a restore): the new times are sorted once, not
        inserted one by one.

        >>> queue = TimerQueue()
        >>> queue.add(20, "a")
        True
        >>> queue.add_all([(10, "b"), (20, "c"), (20, "a"), (30, "d")])
        >>> queue.snapshot(), queue.next_time
        ([(10, ['b']), (20, ['a', 'c']), (30, ['d'])], 10)
        """
        times = self._times
        new: dict[int, dict[Hashable, None]] = {}
        for time, key in timers:
            keys = times.get(time)
            if keys is None:
                keys = new.get(time)
                if keys is None:
                    new[time] = {key: None}
                    continue
            keys[key] = None
        if new:
            times.update(new)
            self._refresh()

    def _refresh(self) -> None:
        times = self._times
        self.next_time = times.keys()[0] if times else None
