"""Hand-written single-loop baseline: the practical limit of pure Python.

Each query is one ``for line in file`` loop over the input with ``orjson.loads``,
plain dicts and (for Q2-Q4) a heap of pending firings or waiting events, writing one
``orjson.dumps(result)`` line per result to a buffered file. Everything the loop
touches is bound to a local name; there is no per-record function call beyond
parsing, serialising and heap operations.

Watermarks follow ``shared/BENCHMARK.md`` exactly: record *i* is judged against
``W_{i-1} = max(ts_0 .. ts_{i-1}) - 2000`` (``-inf`` for the first record); after
the record, the watermark advances and everything it reached fires before the
next record is read; at the end of input the watermark is ``+inf``.

Engine contract (shared with ``benchmarks.actorflow_engine``)::

    run(query, input_path, output_path, parallelism) -> number of input events
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["QUERIES", "q1", "q2", "q3", "q4", "run"]

BOUND_MS = 2_000
"""Watermark lag behind the largest timestamp seen."""
WINDOW_MS = 10_000
"""Q2 tumbling window size."""
FRAUD_WINDOW_MS = 60_000
"""Q3: how long a small transaction keeps its card's flag armed."""


def q1(input_path: str, output_path: str) -> int:
    """Q1: emit ``{"tx_id", "card_id", "amount"}`` for every ``amount > 100.00``."""
    loads = orjson.loads
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    events = 0
    with open(input_path, "rb") as src, open(output_path, "wb") as out:
        write = out.write
        for events, line in enumerate(src, 1):  # noqa: B007 - the count is the result
            r = loads(line)
            amount = r["amount"]
            if amount > 100.0:
                write(dumps({"tx_id": r["tx_id"], "card_id": r["card_id"], "amount": amount}, option=nl))
    return events


def q2(input_path: str, output_path: str) -> int:
    """Q2: per-card tumbling 10 s event-time windows of count and sum of cents.

    Windows are aligned to the epoch, so every card's window with the same start
    fires at the same watermark: open windows are kept as
    ``{start: {card_id: [count, sum_cents]}}`` with a min-heap of open starts.
    Writes the fired windows, then ``{"late": N}``.
    """
    loads = orjson.loads
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    heappush = heapq.heappush
    heappop = heapq.heappop
    window = WINDOW_MS
    # A window [start, start + window) fires when watermark >= start + window - 1,
    # i.e. when start <= watermark - reach.
    reach = window - 1
    bound = BOUND_MS
    open_windows: dict[int, dict[str, list[int]]] = {}
    starts: list[int] = []
    max_ts = -1 << 62
    # Only ever compared as "start <= limit"; -inf before the first record.
    limit: float = float("-inf")
    late = 0
    events = 0
    with open(input_path, "rb") as src, open(output_path, "wb") as out:
        write = out.write

        def fire(start: int) -> None:
            end = start + window
            for card, (count, cents) in open_windows.pop(start).items():
                write(
                    dumps(
                        {
                            "card_id": card,
                            "window_start": start,
                            "window_end": end,
                            "count": count,
                            "sum_cents": cents,
                        },
                        option=nl,
                    )
                )

        for line in src:
            events += 1
            r = loads(line)
            ts = r["ts"]
            start = ts - ts % window
            if start <= limit:  # end - 1 <= W_{i-1}: the window has fired already
                late += 1
                continue  # a late record is behind max_ts: the watermark stays put
            cards = open_windows.get(start)
            if cards is None:
                cards = open_windows[start] = {}
                heappush(starts, start)
            card = r["card_id"]
            acc = cards.get(card)
            if acc is None:
                cards[card] = [1, round(r["amount"] * 100)]
            else:
                acc[0] += 1
                acc[1] += round(r["amount"] * 100)
            if ts > max_ts:
                max_ts = ts
                limit = ts - bound - reach
                while starts and starts[0] <= limit:
                    fire(heappop(starts))
        while starts:  # end of input: the watermark becomes +inf
            fire(heappop(starts))
        write(dumps({"late": late}, option=nl))
    return events


def q3(input_path: str, output_path: str) -> int:
    """Q3: alert when a card's tx below 1.00 is directly followed by one above 500.00.

    ``armed`` maps a card to ``(tx_id, ts)`` of the small tx that armed its flag;
    ``timers`` is a min-heap of ``(A.ts + 60000, card_id)`` event-time timers that
    clear a flag armed by a tx with ``ts + 60000 <= timer``.
    """
    loads = orjson.loads
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    heappush = heapq.heappush
    heappop = heapq.heappop
    span = FRAUD_WINDOW_MS
    bound = BOUND_MS
    armed: dict[str, tuple[int, int]] = {}
    timers: list[tuple[int, str]] = []
    max_ts = -1 << 62
    watermark: float = float("-inf")
    events = 0
    with open(input_path, "rb") as src, open(output_path, "wb") as out:
        write = out.write
        for line in src:
            events += 1
            r = loads(line)
            card = r["card_id"]
            amount = r["amount"]
            ts = r["ts"]
            flag = armed.pop(card, None)
            if flag is not None and amount > 500.0 and 0 <= ts - flag[1] <= span:
                write(
                    dumps(
                        {"card_id": card, "small_tx_id": flag[0], "large_tx_id": r["tx_id"]},
                        option=nl,
                    )
                )
            if amount < 1.0:
                armed[card] = (r["tx_id"], ts)
                heappush(timers, (ts + span, card))
            if ts > max_ts:
                max_ts = ts
                watermark = ts - bound
            # Also checked when the watermark did not move: a new timer may be due already.
            while timers and timers[0][0] <= watermark:
                due, card = heappop(timers)
                flag = armed.get(card)
                if flag is not None and flag[1] + span <= due:
                    del armed[card]
        # End of input: the remaining timers fire but cannot change the result.
    return events


def q4(input_path: str, output_path: str) -> int:
    """Q4: the fraud pattern in event-time order (CEP's semantics), late events counted.

    An event with ``ts <= W_{i-1}`` is late: counted, dropped. The others wait in a min-heap of
    ``(ts, arrival, record)`` until the watermark reaches ``ts``, so they leave it in event-time
    order, equal ``ts`` in arrival order (every card's order too). ``partial`` maps a card to
    ``(tx_id, ts)`` of the small tx A its partial match holds: the card's next event ends it,
    with a match if it is above 500.00 less than 60 s after A (a later one has timed out); if
    not, that event may begin a partial match itself. A large B never does, so matching resumes
    after it. Writes the matches, then ``{"late": N}``.
    """
    loads = orjson.loads
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    heappush = heapq.heappush
    heappop = heapq.heappop
    span = FRAUD_WINDOW_MS
    bound = BOUND_MS
    partial: dict[str, tuple[int, int]] = {}
    pop_partial = partial.pop
    waiting: list[tuple[int, int, dict[str, Any]]] = []
    max_ts = -1 << 62
    watermark: float = float("-inf")
    late = 0
    events = 0
    with open(input_path, "rb") as src, open(output_path, "wb") as out:
        write = out.write

        def match(r: dict[str, Any]) -> None:
            card = r["card_id"]
            amount = r["amount"]
            small = pop_partial(card, None)
            if small is not None and amount > 500.0 and r["ts"] - small[1] < span:
                write(
                    dumps({"card_id": card, "small_tx_id": small[0], "large_tx_id": r["tx_id"]}, option=nl)
                )
            elif amount < 1.0:
                partial[card] = (r["tx_id"], r["ts"])

        for line in src:
            events += 1
            r = loads(line)
            ts = r["ts"]
            if ts <= watermark:
                late += 1
                continue  # behind max_ts: the watermark stays put
            heappush(waiting, (ts, events, r))
            if ts > max_ts:
                max_ts = ts
                watermark = ts - bound
                while waiting[0][0] <= watermark:  # the newest event waits: never empty here
                    # match(), inlined: this runs for every event
                    e = heappop(waiting)[2]
                    card = e["card_id"]
                    amount = e["amount"]
                    small = pop_partial(card, None)
                    if small is not None and amount > 500.0 and e["ts"] - small[1] < span:
                        write(
                            dumps(
                                {"card_id": card, "small_tx_id": small[0], "large_tx_id": e["tx_id"]},
                                option=nl,
                            )
                        )
                    elif amount < 1.0:
                        partial[card] = (e["tx_id"], e["ts"])
        while waiting:  # end of input: the watermark becomes +inf
            match(heappop(waiting)[2])
        write(dumps({"late": late}, option=nl))
    return events


QUERIES: dict[str, Callable[[str, str], int]] = {"q1": q1, "q2": q2, "q3": q3, "q4": q4}


def run(query: str, input_path: str, output_path: str, parallelism: int = 1) -> int:
    """Run ``query`` over ``input_path``, write results to ``output_path``; return events read.

    ``parallelism`` is accepted for the engine contract and ignored: the baseline is
    one loop on one core. Raises ``ValueError`` for an unknown query.
    """
    try:
        impl = QUERIES[query]
    except KeyError:
        raise ValueError(f"unknown query {query!r}; expected one of {sorted(QUERIES)}") from None
    return impl(input_path, output_path)
