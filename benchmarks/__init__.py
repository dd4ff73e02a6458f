"""Benchmarks for actorflow: a data generator, three queries and a report.

The workloads are defined in ``shared/BENCHMARK.md``. Each query is implemented
three times: with actorflow (``actorflow_engine``), as a hand-written single-loop
baseline (``baseline``, the practical limit of pure Python) and as a slow,
obviously-correct reference (``reference``) that the other two are checked against.

``checkpoints``, ``checkpoint_report`` and ``state_snapshot`` measure what checkpoints cost: the
overhead on a running query and the time to snapshot and restore large keyed state.

Run ``python -m benchmarks --help`` for the command line.
"""
