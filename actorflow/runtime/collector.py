"""How actorflow steers CPython's cyclic garbage collector: young collections paced by records, so
none of them grows with the state, and the collector paused while a bulk step builds containers.

**Paced young collections.**

CPython starts a young collection when the container objects it tracks have grown by 700 since the
last one: it adds one per allocation and takes one away per deallocation. A stateful stream job
mostly *replaces* objects: a new profile tuple for a card, a new accumulator for a window, and
the old one freed. Such work never raises the count, so no collection starts, while every new
object waits in the young generation. After two million replacements the next young collection,
whenever something does start it, walks two million objects: a pause of a second in the middle of
the stream, in proportion to the state rather than to the work just done. (Objects frozen for a
forked snapshot, :mod:`actorflow.runtime.forked`, make it more likely: every frozen value replaced
takes one away from the count.)

So the chains report the records they take in (:func:`records_done`), and every
:data:`PACE_RECORDS` records in the process a young collection runs (generations 0 and 1), which
walks only what those records left behind. Objects still alive then move to the old generation,
as after two automatic collections. Nothing runs while the collector is disabled
(``gc.disable()``): a user who switched it off keeps it off.

**Paused while a batch is in flight** (:func:`batch_in_flight`). A source decodes a batch of
about a thousand records, each a dict, and the chain works through them while they are all
alive: the count passes 700 in every batch, and each young collection walks the whole batch
(about 190 instructions per record in Q3, of the 3,500 that actorflow adds to the loop's
7,500). A hand-written loop frees each record before it decodes the next and never starts one.
So the file source holds the collector paused from decoding a batch until the chain asks for the
next one. By then the batch's records are freed and the count is back where it was, unless the
state grew; a collection that came due meanwhile runs as the hold ends. The paced collections
still run during a hold.

**Paused in bulk steps** (:func:`paused_gc`). Restoring (or encoding) state with a million keys
creates millions of tuples, lists and dicts in one synchronous step; each allocation past the
threshold runs a collection, and the older generations are scanned again and again as they grow
(200,000 keys of Q3's state: a changelog decoded in 1.8 s with the collector running, 0.44 s
paused). Nothing in such a step makes garbage cycles worth collecting meanwhile.

>>> import gc
>>> with paused_gc():
...     gc.isenabled()
False
>>> gc.isenabled()
True
>>> seen = []
>>> gc.callbacks.append(lambda phase, info: seen.append((phase, info["generation"])))
>>> records_done(PACE_RECORDS)  # a young collection of generations 0 and 1
>>> gc.callbacks.pop() is not None and ("start", 1) in seen
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["PACE_RECORDS", "batch_in_flight", "paused_gc", "records_done"]

#: Records, over every chain of the process, between two paced young collections.
PACE_RECORDS = 8192

_left = PACE_RECORDS  # records until the next paced collection
_holds = 0  # batches in flight (batch_in_flight) that hold the collector paused
_enable_after = False  # whether the collector was enabled when the first hold began


def records_done(count: int) -> None:
    """Count ``count`` records taken in by a chain; run a young collection once
    :data:`PACE_RECORDS` have been counted since the last one (if the collector is enabled,
    or only paused by :func:`batch_in_flight`).

    >>> records_done(10)
    """
    global _left
    _left -= count
    if _left <= 0:
        _left = PACE_RECORDS
        if gc.isenabled() or _enable_after:
            gc.collect(1)


@contextlib.contextmanager
def batch_in_flight() -> Iterator[None]:
    """Pause the collector while a batch is made and goes through its chain (module docstring).

    Holds nest (several sources may have a batch in flight at once): the collector is enabled
    again when the last one ends, if it was enabled when the first began. As each hold ends, a
    collection that came due meanwhile runs, by CPython's own rules.

    >>> import gc
    >>> with batch_in_flight():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    global _holds, _enable_after
    if _holds == 0:
        _enable_after = gc.isenabled()
        gc.disable()
    _holds += 1
    try:
        yield
    finally:
        _holds -= 1
        if _enable_after:
            gc.enable()
            _collect_if_due()
            if _holds:
                gc.disable()
        if not _holds:
            _enable_after = False


def _collect_if_due() -> None:
    """Run the collection CPython would have started meanwhile, if any (the collector enabled).

    It starts one when a tracked container is allocated past the young generation's threshold,
    and then picks the generations by its own rules (the oldest only rarely): an allocation is the
    one way to ask for that from Python.
    """
    if gc.get_count()[0] > gc.get_threshold()[0]:
        [].clear()  # a list: tracked, so its allocation may start the collection


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the block (and re-enable it only if it was enabled)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
