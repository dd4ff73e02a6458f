"""Command line: ``python -m benchmarks generate|run|report``.

::

    python -m benchmarks generate --events N --seed S --output FILE [--cards C]
    python -m benchmarks run --query q1|q2|q3 --engine actorflow|baseline \\
        --input FILE --output FILE [--parallelism P]
    python -m benchmarks report [--events N] [--seed S] [--repeat R] [--parallelism P ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from benchmarks.runner import ENGINES, QUERIES

__all__ = ["main"]


def _positive(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="actorflow benchmarks (shared/BENCHMARK.md)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write seeded transactions as JSON lines")
    gen.add_argument("--events", type=_non_negative, default=200_000)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--cards", type=_positive, default=10_000)
    gen.add_argument("--output", required=True, help="the JSON-lines file to write")

    run = commands.add_parser("run", help="run one query on one engine, print a JSON line")
    run.add_argument("--query", choices=QUERIES, required=True)
    run.add_argument("--engine", choices=sorted(ENGINES), required=True)
    run.add_argument("--input", required=True, help="a file written by 'generate'")
    run.add_argument("--output", required=True, help="where to write the query's results")
    run.add_argument("--parallelism", type=_positive, default=1)

    report = commands.add_parser("report", help="run everything, print a Markdown table")
    report.add_argument("--events", type=_positive, default=200_000)
    report.add_argument("--seed", type=int, default=1)
    report.add_argument("--repeat", type=_positive, default=3, help="runs per row (median)")
    report.add_argument("--parallelism", type=_positive, nargs="+", default=[1, 2], help="actorflow levels")
    report.add_argument("--queries", choices=QUERIES, nargs="+", default=list(QUERIES))
    report.add_argument("--engines", choices=sorted(ENGINES), nargs="+", default=["baseline", "actorflow"])
    report.add_argument("--timeout", type=float, default=1_800.0, help="seconds per run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "generate":
        from benchmarks.generate import write

        count = write(args.events, args.seed, args.output, args.cards)
        print(f"wrote {count} events to {args.output}", file=sys.stderr)
        return 0
    if args.command == "run":
        from benchmarks.runner import measure

        measurement = measure(args.query, args.engine, args.input, args.output, args.parallelism)
        sys.stdout.buffer.write(orjson.dumps(measurement) + b"\n")
        sys.stdout.flush()
        return 0
    from benchmarks.report import main as report

    return report(
        events=args.events,
        seed=args.seed,
        repeat=args.repeat,
        parallelism=tuple(args.parallelism),
        queries=tuple(args.queries),
        engines=tuple(args.engines),
        timeout=args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
