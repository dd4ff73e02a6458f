"""Communities forming in a social network: connected components, degrees and the most connected
people per window over a stream of friendships (``actorflow.graph``).

The friendships are generated (seeded, so every run sees the same ones): ``--people`` people in
``--groups`` circles of friends; most friendships are made within a circle, one in 25 across two
(a bridge), one a second of event time. As they stream in, the flow prints

- each time two groups of friends of ``--min-size`` people or more become one (connected
  components: a union-find forest in keyed state);
- the three people who made the most friends in each 10-minute window (top-k by degree per
  tumbling event-time window).

Run it::

    actorflow run examples/graph_components.py --limit 5000
    python3 examples/graph_components.py --limit 5000 --people 800 --groups 12
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from actorflow import DataStream, Flow, WatermarkStrategy
from actorflow.graph import ComponentChange, TopDegrees, connected_components, top_k_degrees

#: The first event time (2023-11-14T22:13:20Z).
START_TS = 1_700_000_000_000
#: The top-k windows: 10 minutes of event time.
WINDOW_MS = 600_000
#: One friendship in this many joins two circles.
BRIDGE_EVERY = 25


class Friendships:
    """``count`` friendships ``{"a": person, "b": person, "ts": ms}`` among ``people`` people in
    ``groups`` circles, one a second; the same ones for the same seed."""

    def __init__(self, *, seed: int = 11, people: int = 600, groups: int = 10, count: int = 5_000) -> None:
        self.seed = seed
        self.people = people
        self.groups = groups
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        circles: list[list[str]] = [[] for _ in range(self.groups)]
        for n in range(self.people):
            circles[n % self.groups].append(f"user-{n:05d}")
        for n in range(self.count):
            if n % BRIDGE_EVERY == BRIDGE_EVERY - 1:
                first, second = rng.sample(circles, 2)
                a, b = rng.choice(first), rng.choice(second)
            else:
                a, b = rng.sample(rng.choice(circles), 2)
            yield {"a": a, "b": b, "ts": START_TS + n * 1_000}


def pair(friendship: dict[str, Any]) -> tuple[str, str]:
    return (friendship["a"], friendship["b"])


def analyse(
    friendships: DataStream[dict[str, Any]], *, k: int = 3
) -> tuple[DataStream[ComponentChange], DataStream[TopDegrees]]:
    """The component changes of ``friendships`` (one per friendship) and the top ``k`` people by
    friends made per window."""
    edges = friendships.map(pair, name="edge")
    return connected_components(edges, name="groups"), top_k_degrees(edges, k, WINDOW_MS, name="top")


def clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def describe_merge(change: ComponentChange) -> str:
    return (
        f"{change.u} and {change.v} became friends: a group of {change.absorbed_size} joined one of "
        f"{change.size - change.absorbed_size}, {change.size} people now (group {change.component})"
    )


def describe_top(top: TopDegrees) -> str:
    people = ", ".join(f"{person} ({friends})" for person, friends in top.vertices)
    return f"{clock(top.start)}-{clock(top.end)} most new friends: {people}"


def build(
    *, limit: int = 5_000, seed: int = 11, people: int = 600, groups: int = 10, min_size: int = 10
) -> Flow:
    """The example: ``limit`` generated friendships; merges and each window's top 3 printed."""
    flow = Flow("graph-components")
    friendships = flow.from_iterable(
        Friendships(seed=seed, people=people, groups=groups, count=limit),
        name="friendships",
        watermarks=WatermarkStrategy.punctuated("ts"),
    )
    changes, top = analyse(friendships)
    merges = changes.filter(
        lambda c: min(c.absorbed_size, c.size - c.absorbed_size) >= min_size, name="big-merges"
    )
    merges.map(describe_merge, name="describe-merge").print()
    top.map(describe_top, name="describe-top").print()
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/graph_components.py [--limit N]`` runs."""
    parser = argparse.ArgumentParser(prog="graph_components", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5_000, help="how many friendships")
    parser.add_argument("--seed", type=int, default=11, help="the generator's seed")
    parser.add_argument("--people", type=int, default=600)
    parser.add_argument("--groups", type=int, default=10, help="circles of friends")
    parser.add_argument("--min-size", type=int, default=10, help="print merges of two groups this large")
    args = parser.parse_args([] if argv is None else argv)
    return build(
        limit=args.limit, seed=args.seed, people=args.people, groups=args.groups, min_size=args.min_size
    )


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
