"""The kafka benchmark's run-queue wait (how long a run waited for a core): read where Linux tells."""

from __future__ import annotations

import sys

import pytest

from benchmarks import kafka


def test_stamps_say_nothing_of_the_run_queue_before_a_run() -> None:
    stamps = kafka.Stamps()
    assert stamps.queued_seconds() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/thread-self/schedstat is Linux's")
def test_the_run_queue_wait_of_a_span_is_a_non_negative_number_of_seconds() -> None:
    before = kafka.run_queue_seconds()
    assert before is not None and before >= 0.0
    stamps = kafka.Stamps()
    stamps.read()
    sum(range(100_000))
    stamps.acknowledged()
    queued = stamps.queued_seconds()
    assert queued is not None and 0.0 <= queued < 60.0
