"""Cheapest routes from a gateway as a network's links come up: distance-vector routing (Bellman-Ford)
round an iteration (``stream.iterate_with``).

The links are generated (seeded, so every run sees the same ones): ``--limit`` links between
``--routers`` routers, each with a cost from 1 to 20, both ways. Every router is keyed state: its
links and the cheapest cost from the gateway it knows. A link at a router that has a route offers
the neighbour that cost plus the link's; an offer cheaper than the neighbour's route replaces it,
is printed, and is offered on along the neighbour's links, round the loop, until no offer improves
anything. The loop ends exactly then, once the links have ended; with checkpoints, offers on their
way round are part of them.

Run it::

    actorflow run examples/iterative_routes.py --limit 2000
    python3 examples/iterative_routes.py --limit 2000 --routers 300
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from actorflow import DataStream, Flow, OutputTag, ValueStateDescriptor
from actorflow.operators.base import Collector
from actorflow.operators.co_process import KeyedCoProcessFunction
from actorflow.operators.process import Context, RuntimeContext

#: Where every route starts.
GATEWAY = "router-0000"
#: Offers ``(router, cost, via)``, sent round the loop to the router they are for.
OFFERS: OutputTag[tuple[str, int, str]] = OutputTag("offers")


@dataclass(frozen=True, slots=True)
class Link:
    """A link between routers ``a`` and ``b`` (both ways) that costs ``cost``."""

    a: str
    b: str
    cost: int


@dataclass(frozen=True, slots=True)
class Route:
    """The cheapest way to ``router`` known so far: ``cost`` from the gateway, the last hop from
    ``via`` (None for the gateway itself)."""

    router: str
    cost: int
    via: str | None


class Links:
    """``count`` links among ``routers`` routers; the same ones for the same seed."""

    def __init__(self, *, seed: int = 3, routers: int = 200, count: int = 1_000) -> None:
        self.seed = seed
        self.routers = routers
        self.count = count

    def __iter__(self) -> Iterator[Link]:
        rng = random.Random(self.seed)
        names = [f"router-{n:04d}" for n in range(self.routers)]
        for _ in range(self.count):
            a, b = rng.sample(names, 2)
            yield Link(a, b, rng.randint(1, 20))


def halves(link: Link) -> list[tuple[str, str, int]]:
    """A link as what each end learns: ``(router, neighbour, cost)``."""
    return [(link.a, link.b, link.cost), (link.b, link.a, link.cost)]


def router_of(record: tuple[Any, ...]) -> str:
    """The key of a half link and of an offer: the router it is for."""
    return record[0]  # type: ignore[no-any-return]


class DistanceVector(KeyedCoProcessFunction[tuple[str, str, int], tuple[str, int, str], Route]):
    """Per router: its links (input 1) and the offers of its neighbours (input 2, fed back)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.cost = ctx.get_state(ValueStateDescriptor[int]("cost"))
        self.links = ctx.get_state(ValueStateDescriptor[dict[str, int]]("links"))

    def process_element1(self, value: tuple[str, str, int], ctx: Context, out: Collector) -> None:
        router, neighbour, cost = value
        links = self.links.value() or {}
        if links.get(neighbour, cost + 1) <= cost:
            return  # a link as dear as one it has: no new route
        links[neighbour] = cost
        self.links.update(links)
        best = self.cost.value()
        if best is None and router == GATEWAY:
            best = 0
            self.cost.update(best)
            out.collect(Route(router, 0, None))
        if best is not None:
            ctx.output(OFFERS, (neighbour, best + cost, router))

    def process_element2(self, value: tuple[str, int, str], ctx: Context, out: Collector) -> None:
        router, cost, via = value
        best = self.cost.value()
        if best is not None and best <= cost:
            return
        self.cost.update(cost)
        out.collect(Route(router, cost, via))
        for neighbour, link_cost in (self.links.value() or {}).items():
            ctx.output(OFFERS, (neighbour, cost + link_cost, router))


def routes(links: DataStream[Link]) -> DataStream[Route]:
    """Every improvement of a router's cheapest route, as links come (module docstring)."""
    loop = links.flat_map(halves, name="halves").iterate_with(tuple).key_by(router_of, router_of)
    found = loop.process(DistanceVector(), name="routes")
    loop.close_with(found.get_side_output(OFFERS, name="offers"))
    return found


def cheapest(found: Iterable[Route]) -> dict[str, int]:
    """Each router's cheapest cost in ``found`` (in any order)."""
    best: dict[str, int] = {}
    for route in found:
        best[route.router] = min(route.cost, best.get(route.router, route.cost))
    return best


def describe(route: Route) -> str:
    if route.via is None:
        return f"{route.router}: the gateway"
    return f"{route.router}: cost {route.cost} via {route.via}"


def build(*, limit: int = 1_000, seed: int = 3, routers: int = 200, parallelism: int = 1) -> Flow:
    """The example: ``limit`` generated links; every cheaper route printed as it is found."""
    flow = Flow("iterative-routes", parallelism=parallelism)
    links = flow.from_iterable(Links(seed=seed, routers=routers, count=limit), name="links")
    routes(links).map(describe, name="describe").print()
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/iterative_routes.py [--limit N]`` runs."""
    parser = argparse.ArgumentParser(prog="iterative_routes", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1_000, help="how many links")
    parser.add_argument("--seed", type=int, default=3, help="the generator's seed")
    parser.add_argument("--routers", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args([] if argv is None else argv)
    return build(limit=args.limit, seed=args.seed, routers=args.routers, parallelism=args.parallelism)


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
