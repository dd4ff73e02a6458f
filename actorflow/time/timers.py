"""Timer queues: timers per (time, key), deduplicated, fired in time order.

One queue per time domain of a keyed operator. Each time's keys are a dict (keys registered for the
same time fire in registration order), and the times are also in a binary heap (``heapq``, in C), so
registering a timer costs a dict lookup (and a heap push for a new time), and the next due time is
the heap's first entry. A time whose timers were all removed stays in the heap until it comes
first, then it is dropped: :attr:`TimerQueue.next_time` is always a time with timers.

:class:`IndexedTimerQueue` adds, as an opt-in, an index from key to its timers (for incremental
snapshots, which export the timers of the keys that changed): a plain queue pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from heapq import heapify, heappop, heappush
from operator import itemgetter
from typing import Any

__all__ = ["IndexedTimerQueue", "TimerQueue"]

_time_and_sequence = itemgetter(0, 1)


class TimerQueue:
    """Timers as (time, key) pairs, at most one per pair.

    >>> queue = TimerQueue()
    >>> queue.add(20, "a"), queue.add(10, "b"), queue.add(20, "a")
    (True, True, False)
    >>> list(queue.pop_due(15)), queue.next_time
    ([(10, 'b')], 20)
    """

    __slots__ = ("_heap", "_times", "next_time")

    def __init__(self) -> None:
        #: ``{time: {key: None}}``, a time's keys in registration order; no empty slot.
        self._times: dict[int, dict[Hashable, None]] = {}
        #: Every time of ``_times`` (and perhaps times since emptied, dropped when they come first).
        self._heap: list[int] = []
        #: The earliest time with a timer, or None. Read on every watermark: kept as an attribute.
        self.next_time: int | None = None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._times.values())

    def add(self, time: int, key: Hashable) -> bool:
        """Register a timer; return False if the same (time, key) was already registered."""
        keys = self._times.get(time)
        if keys is None:
            self._times[time] = {key: None}
            heappush(self._heap, time)
            next_time = self.next_time
            if next_time is None or time < next_time:
                self.next_time = time
            return True
        if key in keys:
            return False
        keys[key] = None
        return True

    def add_keys(self, time: int, keys: Iterable[Hashable]) -> None:
        """Register a timer at ``time`` for each of ``keys``, in their order (as :meth:`add` one
        by one, in one call: a key registered already keeps its place).

        >>> queue = TimerQueue()
        >>> queue.add(20, "b")
        True
        >>> queue.add_keys(20, ["a", "b", "c"]), queue.add_keys(10, ["d"])
        (None, None)
        >>> queue.snapshot(), queue.next_time
        ([(10, ['d']), (20, ['b', 'a', 'c'])], 10)
        """
        new = dict.fromkeys(keys)
        if not new:
            return
        slot = self._times.get(time)
        if slot is not None:
            slot.update(new)
            return
        self._times[time] = new
        heappush(self._heap, time)
        next_time = self.next_time
        if next_time is None or time < next_time:
            self.next_time = time

    def remove(self, time: int, key: Hashable) -> bool:
        """Forget a timer; return False if there was none."""
        keys = self._times.get(time)
        if keys is None or key not in keys:
            return False
        del keys[key]
        if not keys:
            times = self._times
            del times[time]
            if time == self.next_time:
                self._refresh()
            elif len(self._heap) > 2 * len(times) + 64:  # mostly emptied times: start afresh
                self._heap = list(times)
                heapify(self._heap)
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

    def pop_time(self, limit: int) -> tuple[int, dict[Hashable, None]] | None:
        """Remove and return the earliest time ``<= limit`` with its timers (the keys, a dict in
        registration order), or None if no timer is due: :meth:`pop_due` a time at a time, for an
        owner whose timers set or remove no timer while they fire.

        >>> queue = TimerQueue()
        >>> queue.add_all([(20, "a"), (10, "b"), (10, "c")])
        >>> queue.pop_time(15), queue.pop_time(15), queue.next_time
        ((10, {'b': None, 'c': None}), None, 20)
        """
        time = self.next_time
        if time is None or time > limit:
            return None
        keys = self._times.pop(time)
        self._refresh()
        return time, keys

    def keys_at(self, time: int) -> list[Hashable]:
        return list(self._times.get(time, ()))

    def snapshot(self) -> list[tuple[int, list[Hashable]]]:
        """All timers as ``[(time, [keys...]), ...]`` in time order."""
        times = self._times
        return [(time, list(times[time])) for time in sorted(times)]

    def export(self) -> tuple[list[int], list[Hashable]]:
        """Every timer as two flat lists, times and keys, in time order: the cheapest form to
        pickle and unpickle (a checkpoint's). :meth:`add_all` takes ``zip(times, keys)`` back.

        >>> queue = TimerQueue()
        >>> queue.add_all([(20, "a"), (10, "b"), (20, "c")])
        >>> queue.export()
        ([10, 20, 20], ['b', 'a', 'c'])
        """
        times = self._times
        order = sorted(times)
        return [time for time in order for _ in times[time]], [key for time in order for key in times[time]]

    def restore(self, timers: list[tuple[int, list[Hashable]]]) -> None:
        self.add_all((time, key) for time, keys in timers for key in keys)

    def add_sequenced(self, timers: Iterable[tuple[int, int, Hashable]]) -> None:
        """Register ``(time, sequence, key)`` timers (exported by
        :meth:`IndexedTimerQueue.timers_of`, of any keys and snapshots) in the order they were
        registered: sorted by time, then sequence. Into an empty queue (a restore), in one call,
        keys of one time then fire as they would have.

        >>> queue = TimerQueue()
        >>> queue.add_sequenced([(20, 5, "late"), (10, 9, "b"), (20, 1, "early")])
        >>> queue.snapshot()
        [(10, ['b']), (20, ['early', 'late'])]
        """
        self.add_all((time, key) for time, _, key in sorted(timers, key=_time_and_sequence))

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
            heap = self._heap
            heap.extend(new)
            heapify(heap)
            self._refresh()

    def _refresh(self) -> None:
        """Drop the emptied times at the heap's front; ``next_time`` is the first left."""
        times = self._times
        heap = self._heap
        while heap and heap[0] not in times:
            heappop(heap)
        self.next_time = heap[0] if heap else None


class IndexedTimerQueue(TimerQueue):
    """A :class:`TimerQueue` that also keeps, per index key, its timers, so :meth:`timers_of` costs
    the key's timers, not the queue's: for incremental snapshots.

    The index key of a timer's key is ``index_of(key)``, or the key itself when ``index_of`` is
    None (a keyed process function's timers; a window operator's are ``(key, window)`` and are
    indexed by ``key``). Every timer gets a sequence number when it is registered, exported with
    it, so :meth:`add_sequenced` restores the order in which keys of one time fire. Every add,
    remove, firing and restore puts the timer's index key into ``changed`` (a set the owner reads
    and clears at each snapshot).

    >>> changed = set()
    >>> queue = IndexedTimerQueue(itemgetter(0), changed)
    >>> queue.add(20, ("a", 1)), queue.add(10, ("b", 1)), queue.add(30, ("a", 2))
    (True, True, True)
    >>> queue.timers_of("a"), sorted(changed)
    ([(20, ('a', 1), 0), (30, ('a', 2), 2)], ['a', 'b'])
    >>> changed.clear()
    >>> list(queue.pop_due(20)), queue.timers_of("a"), sorted(changed)
    ([(10, ('b', 1)), (20, ('a', 1))], [(30, ('a', 2), 2)], ['a', 'b'])
    """

    __slots__ = ("_by_key", "_index_of", "_sequence", "changed")

    def __init__(
        self, index_of: Callable[[Any], Hashable] | None = None, changed: set[Hashable] | None = None
    ) -> None:
        super().__init__()
        self._index_of = index_of
        #: ``{index key: {(time, key): sequence}}``: exactly the timers of the queue.
        self._by_key: dict[Hashable, dict[tuple[int, Hashable], int]] = {}
        self._sequence = 0
        #: The index keys whose timers changed since the owner last cleared the set.
        self.changed: set[Hashable] = changed if changed is not None else set()

    def _index(self, key: Hashable) -> Hashable:
        index_of = self._index_of
        return key if index_of is None else index_of(key)

    # add and pop_due repeat the plain queue's code with the index kept alongside: they run per
    # timer, and a call to the base method would cost as much as the index.

    def add(self, time: int, key: Hashable) -> bool:
        times = self._times
        keys = times.get(time)
        if keys is None:
            times[time] = {key: None}
            heappush(self._heap, time)
            next_time = self.next_time
            if next_time is None or time < next_time:
                self.next_time = time
        elif key in keys:
            return False
        else:
            keys[key] = None
        index_of = self._index_of
        index = key if index_of is None else index_of(key)
        sequence = self._sequence
        self._sequence = sequence + 1
        timers = self._by_key.get(index)
        if timers is None:
            self._by_key[index] = {(time, key): sequence}
        else:
            timers[(time, key)] = sequence
        self.changed.add(index)
        return True

    def add_keys(self, time: int, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self.add(time, key)

    def remove(self, time: int, key: Hashable) -> bool:
        if not super().remove(time, key):
            return False
        self._unindex(time, (key,))
        return True

    def pop_due(self, limit: int) -> Iterator[tuple[int, Hashable]]:
        times = self._times
        while self.next_time is not None and self.next_time <= limit:
            time = self.next_time
            keys = times[time]
            for key in list(keys):
                if key in keys:
                    del keys[key]
                    # Unindexed before it fires: the firing may register the same timer again.
                    self._unindex(time, (key,))
                    yield time, key
            if not keys and times.get(time) is keys:
                del times[time]
                self._refresh()

    def pop_time(self, limit: int) -> tuple[int, dict[Hashable, None]] | None:
        due = super().pop_time(limit)
        if due is not None:
            self._unindex(*due)
        return due

    def _unindex(self, time: int, keys: Iterable[Hashable]) -> None:
        """Forget the timers at ``time`` of ``keys`` (removed, or firing now) in the index by key,
        and mark their keys changed."""
        by_key = self._by_key
        index_of = self._index_of
        changed = self.changed
        for key in keys:
            index = key if index_of is None else index_of(key)
            timers = by_key[index]
            del timers[(time, key)]
            if not timers:
                del by_key[index]
            changed.add(index)

    def add_all(self, timers: Iterable[tuple[int, Hashable]]) -> None:
        by_key = self._by_key
        new: list[tuple[int, Hashable]] = []
        for time, key in timers:
            index = self._index(key)
            indexed = by_key.get(index)
            if indexed is None:
                indexed = by_key[index] = {}
            elif (time, key) in indexed:
                continue
            indexed[(time, key)] = self._sequence
            self._sequence += 1
            self.changed.add(index)
            new.append((time, key))
        super().add_all(new)

    def add_sequenced(self, timers: Iterable[tuple[int, int, Hashable]]) -> None:
        """As :meth:`TimerQueue.add_sequenced`, keeping the given sequence numbers (later
        registrations get higher ones), so a timer keeps its place across any number of restores."""
        by_key = self._by_key
        index_of = self._index_of
        changed = self.changed
        new: list[tuple[int, Hashable]] = []
        append = new.append
        last = self._sequence - 1
        # Per timer, as little as it takes (a restore brings one per key: a million, say).
        for time, sequence, key in sorted(timers, key=_time_and_sequence):
            index = key if index_of is None else index_of(key)
            indexed = by_key.get(index)
            if indexed is None:
                by_key[index] = {(time, key): sequence}
            elif (time, key) in indexed:
                continue
            else:
                indexed[(time, key)] = sequence
            if sequence > last:
                last = sequence
            changed.add(index)
            append((time, key))
        self._sequence = last + 1
        TimerQueue.add_all(self, new)

    def timers_of(self, index: Hashable) -> list[tuple[int, Any, int]]:
        """The timers of index key ``index`` as ``[(time, key, sequence), ...]``; ``[]`` if none."""
        timers = self._by_key.get(index)
        if timers is None:
            return []
        return [(time, key, sequence) for (time, key), sequence in timers.items()]
