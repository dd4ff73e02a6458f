"""Command line: ``python -m benchmarks generate|run|report``.

::

    python -m benchmarks generate --events N --seed S --output FILE [--cards C]
    python -m benchmarks run --query q1|q2|q3|q4 --engine actorflow|baseline \\
        --input FILE --output FILE [--parallelism P] \\
        [--checkpoint-dir DIR [--checkpoint-interval-ms N]]
    python -m benchmarks report [--events N] [--seed S] [--repeat R] [--parallelism P ...] \\
        [--checkpoint-events N] [--checkpoint-queries Q ...] [--state-keys K]
    python -m benchmarks kafka [--events N] [--partitions P] [--seed S] [--repeat R] [--linger-ms L]
    python -m benchmarks scale [--events N] [--partitions P] [--seed S] [--queries q2 q3]
    python -m benchmarks changelog-restore [--keys N]
    python -m benchmarks graph [--edges N] [--seed S] [--backend heap|rocksdb] \\
        [--strategy union-find|label-propagation]
    python -m benchmarks state --keys N [N ...] [--backend heap|heap-incremental|rocksdb ...] \\
        [--events E] [--checkpoint-interval-ms MS] [--max-rss-mb M]
    python -m benchmarks worker --query q2|q3 --bootstrap-servers S --input-topic IN \
        --output-topic OUT --group G [--state-dir DIR] [--checkpoint-interval-ms N]

``kafka-run`` is internal: ``kafka`` runs each engine through it in a process of its own; so is
``state-run`` for the snapshot and restore times of ``report``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from benchmarks.runner import CHECKPOINTING_ENGINES, ENGINES, QUERIES
from benchmarks.state_bench import BACKENDS as STATE_BACKENDS

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
    run.add_argument(
        "--checkpoint-dir",
        help="actorflow only: checkpoint into DIR and write the output exactly once; "
        "running the same command again resumes from the newest complete checkpoint in DIR",
    )
    run.add_argument(
        "--checkpoint-interval-ms",
        type=_positive,
        help="with --checkpoint-dir: take a checkpoint every N ms (default: only at the end)",
    )

    report = commands.add_parser("report", help="run everything, print a Markdown table")
    report.add_argument("--events", type=_positive, default=200_000)
    report.add_argument("--seed", type=int, default=1)
    report.add_argument("--repeat", type=_positive, default=3, help="runs per row (median)")
    report.add_argument("--parallelism", type=_positive, nargs="+", default=[1, 2], help="actorflow levels")
    report.add_argument("--queries", choices=QUERIES, nargs="+", default=list(QUERIES))
    report.add_argument(
        "--engines", choices=sorted(ENGINES), nargs="+", default=["baseline", "actorflow", "actorflow-sql"]
    )
    report.add_argument("--timeout", type=float, default=1_800.0, help="seconds per run")
    report.add_argument(
        "--checkpoint-events",
        type=_non_negative,
        default=2_000_000,
        help="events of the checkpoint overhead runs (0: skip that section)",
    )
    report.add_argument(
        "--checkpoint-queries", choices=QUERIES, nargs="+", default=["q2", "q3"], help="of that section"
    )
    report.add_argument(
        "--checkpoint-intervals-ms",
        type=_positive,
        nargs="+",
        default=[10_000, 1_000],
        help="the intervals compared with no checkpoints",
    )
    report.add_argument(
        "--state-keys",
        type=_non_negative,
        default=1_000_000,
        help="keys of the snapshot and restore measurement (0: skip it)",
    )

    state_run = commands.add_parser(
        "state-run", help="internal: snapshot and restore N keys, one JSON line"
    )
    state_run.add_argument("--keys", type=_positive, required=True)

    kafka = commands.add_parser(
        "kafka", help="Q1 end to end through Kafka: actorflow beside a raw aiokafka loop"
    )
    kafka.add_argument("--events", type=_positive, default=200_000)
    kafka.add_argument("--partitions", type=_positive, default=1, help="of the input and output topics")
    kafka.add_argument("--seed", type=int, default=1)
    kafka.add_argument("--repeat", type=_positive, default=1, help="runs per engine (median)")
    kafka.add_argument(
        "--linger-ms", type=_non_negative, default=5, help="producer linger_ms of both engines"
    )
    kafka.add_argument("--timeout", type=float, default=600.0, help="seconds per run")

    scale = commands.add_parser(
        "scale", help="Q2 and Q3 over Kafka with 1 and with 2 worker processes (partition tasks)"
    )
    scale.add_argument("--events", type=_positive, default=400_000)
    scale.add_argument("--partitions", type=_positive, default=4, help="of the input topic")
    scale.add_argument("--seed", type=int, default=1)
    scale.add_argument("--queries", choices=("q2", "q3"), nargs="+", default=["q2", "q3"])
    scale.add_argument("--timeout", type=float, default=600.0, help="seconds per run")

    restore = commands.add_parser(
        "changelog-restore", help="a partition task's restore of N keys from its changelog topic"
    )
    restore.add_argument("--keys", type=_positive, default=1_000_000)

    state = commands.add_parser(
        "state",
        help="keyed state with N keys: events/s, peak RSS, checkpoint pause and bytes, restore "
        "(one JSON line per run, each run a process of its own)",
    )
    state.add_argument("--keys", type=_positive, nargs="+", required=True, help="cards in state")
    state.add_argument("--backend", choices=STATE_BACKENDS, nargs="+", default=["heap"])
    state.add_argument("--events", type=_positive, default=None, help="events read (default: 2 * keys)")
    state.add_argument(
        "--rounds", type=_positive, default=5, help="1 %% changes, each followed by a checkpoint"
    )
    state.add_argument(
        "--checkpoint-interval-ms", type=_positive, default=10_000, help="between periodic checkpoints"
    )
    state.add_argument(
        "--max-rss-mb",
        type=float,
        default=None,
        help="end a run whose resident set passes this (its line says where): where the heap stops",
    )
    state.add_argument("--timeout", type=float, default=1_800.0, help="seconds per run")

    graph = commands.add_parser("graph", help="edges per second through connected components")
    graph.add_argument("--edges", type=_positive, default=200_000)
    graph.add_argument("--seed", type=int, default=1)
    graph.add_argument("--backend", choices=["heap", "rocksdb"], default="heap")
    graph.add_argument("--strategy", choices=["union-find", "label-propagation"], default="union-find")

    commands.add_parser(
        "worker",
        help="one worker process of Q2 or Q3 from Kafka to Kafka, as partition tasks, until SIGTERM",
        add_help=False,  # its own parser (benchmarks/worker.py) takes the arguments
    )

    kafka_run = commands.add_parser("kafka-run", help="internal: one engine of 'kafka', one JSON line")
    kafka_run.add_argument("--engine", choices=["actorflow", "loop"], required=True)
    kafka_run.add_argument("--bootstrap-servers", required=True)
    kafka_run.add_argument("--input", required=True, help="the pre-loaded input topic")
    kafka_run.add_argument("--output", required=True, help="the (existing) output topic")
    kafka_run.add_argument("--linger-ms", type=_non_negative, default=None, help="producer linger_ms")
    kafka_run.add_argument("--profile", help="write cProfile stats of the run to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["worker"]:
        from benchmarks.worker import main as worker

        return worker(arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.command == "generate":
        from benchmarks.generate import write

        count = write(args.events, args.seed, args.output, args.cards)
        print(f"wrote {count} events to {args.output}", file=sys.stderr)
        return 0
    if args.command == "run":
        from benchmarks.runner import measure

        if args.checkpoint_interval_ms is not None and args.checkpoint_dir is None:
            parser.error("--checkpoint-interval-ms needs --checkpoint-dir")
        if args.checkpoint_dir is not None and args.engine not in CHECKPOINTING_ENGINES:
            parser.error(
                f"--checkpoint-dir: engine {args.engine!r} does not take checkpoints "
                f"(only {', '.join(CHECKPOINTING_ENGINES)})"
            )
        measurement = measure(
            args.query,
            args.engine,
            args.input,
            args.output,
            args.parallelism,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
        )
        sys.stdout.buffer.write(orjson.dumps(measurement) + b"\n")
        sys.stdout.flush()
        return 0
    if args.command == "state-run":
        import tempfile

        from benchmarks.state_snapshot import measure as measure_state

        with tempfile.TemporaryDirectory(prefix="actorflow-state-") as directory:
            numbers = measure_state(args.keys, directory)
        sys.stdout.buffer.write(orjson.dumps(numbers) + b"\n")
        sys.stdout.flush()
        return 0
    if args.command == "state":
        from benchmarks.state_bench import run_in_subprocess

        status = 0
        for backend in args.backend:
            for keys in args.keys:
                line = run_in_subprocess(
                    keys,
                    backend,
                    events=args.events,
                    rounds=args.rounds,
                    checkpoint_interval_ms=args.checkpoint_interval_ms,
                    max_rss_mb=args.max_rss_mb,
                    timeout=args.timeout,
                )
                sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
                sys.stdout.flush()
                if "error" in line:
                    print(f"state: {backend}, {keys:,} keys: {line['error']}", file=sys.stderr)
                    status = 1
        return status
    if args.command == "kafka":
        from benchmarks.kafka import main as kafka

        return kafka(
            events=args.events,
            partitions=args.partitions,
            seed=args.seed,
            repeat=args.repeat,
            linger_ms=args.linger_ms,
            timeout=args.timeout,
        )
    if args.command == "graph":
        from benchmarks.graph import main as graph_bench

        backend = None if args.backend == "heap" else args.backend
        return graph_bench(args.edges, args.seed, backend, args.strategy)
    if args.command == "changelog-restore":
        from benchmarks.changelog_restore import main as changelog_restore

        return changelog_restore(keys=args.keys)
    if args.command == "scale":
        from benchmarks.scale import main as scale

        return scale(
            events=args.events,
            partitions=args.partitions,
            seed=args.seed,
            queries=tuple(args.queries),
            timeout=args.timeout,
        )
    if args.command == "kafka-run":
        from benchmarks.kafka import measure as kafka_measure

        measured = kafka_measure(
            args.engine,
            args.bootstrap_servers,
            args.input,
            args.output,
            linger_ms=args.linger_ms,
            profile=args.profile,
        )
        sys.stdout.buffer.write(orjson.dumps(measured) + b"\n")
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
        checkpoint_events=args.checkpoint_events,
        checkpoint_queries=tuple(args.checkpoint_queries),
        checkpoint_intervals_ms=tuple(args.checkpoint_intervals_ms),
        state_keys=args.state_keys,
    )


if __name__ == "__main__":
    sys.exit(main())
