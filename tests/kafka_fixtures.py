"""Pytest plugin: a real Kafka broker for the tests (``kafka_broker``), throwaway topics (``kafka_topic``).

Load it with ``pytest_plugins = ["tests.kafka_fixtures"]`` in a conftest, or with
``pytest -p tests.kafka_fixtures``.

``kafka_broker`` (session) is the broker at ``$KAFKA_BOOTSTRAP_SERVERS`` when that is set (it cannot be
restarted: a test that asks is skipped), else a broker of our own that ``scripts/kafka/broker.py`` starts
once for the session. Where no broker can be had (no Java, no Maven, the jars can't be resolved) the
tests that need one are skipped, except under ``CI``, where that is a failure: a Kafka test must not
quietly skip there. The jars are resolved after collection, before the first test, so that a cold Maven
fetch does not eat into that test's timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import pytest
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaAdminClient,
    NewTopic,
)

from scripts.kafka.broker import KafkaBroker, KafkaUnavailable

__all__ = ["ExternalKafka", "KafkaEndpoint", "TopicFactory", "kafka_broker", "kafka_topic"]

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

_fetch_error: KafkaUnavailable | None = None


class KafkaEndpoint(Protocol):
    """What ``kafka_broker`` yields: where the broker is, and a way to restart it (ours only)."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def restart(self, *, graceful: bool = True) -> None: ...


@dataclass(frozen=True)
class ExternalKafka:
    """A broker that someone else runs (``$KAFKA_BOOTSTRAP_SERVERS``): it can't be restarted from here."""

    bootstrap_servers: str
    restartable: bool = False

    def restart(self, *, graceful: bool = True) -> None:
        pytest.skip(f"the broker at ${BOOTSTRAP_ENV} is not ours to restart")


def _unavailable(reason: str) -> NoReturn:
    """Skip the test for want of a broker, or fail it under CI, where a skipped Kafka test hides a gap."""
    message = f"no Kafka broker for the tests: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a Kafka test may not skip there)", pytrace=False)
    pytest.skip(message)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Resolve the broker's jars once, outside any test's timeout, if a collected test needs a broker."""
    global _fetch_error
    if session.config.option.collectonly or os.environ.get(BOOTSTRAP_ENV):
        return
    if not any("kafka_broker" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        KafkaBroker().fetch()
    except KafkaUnavailable as error:
        _fetch_error = error


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaEndpoint]:
    """The session's Kafka broker: ``.bootstrap_servers``, and ``.restart()`` when it is ours."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield ExternalKafka(external)
        return
    if _fetch_error is not None:
        _unavailable(str(_fetch_error))
    broker = KafkaBroker()
    try:
        broker.start()
    except KafkaUnavailable as error:
        _unavailable(str(error))
    try:
        yield broker
    finally:
        # Its data goes with it: no controlled shutdown to wait for (SIGTERM took ~6 s at the end).
        broker.kill()
        broker.stop()


TopicFactory = Callable[..., Awaitable[str]]


def _topic_prefix(test_name: str) -> str:
    """A readable start for a topic name: the test's name in Kafka's alphabet, shortened."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", test_name).strip("-")[:80] or "test"


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """Until the broker's metadata shows every partition of ``topic`` with a leader (10 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        described = await admin.describe_topics([topic])
        found = described[0] if described else {}
        led = [p for p in found.get("partitions", []) if p.get("leader", -1) >= 0]
        if found.get("error_code", 0) == 0 and len(led) == partitions:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topic {topic!r} has {len(led)} of {partitions} partitions led: {found}")
        await asyncio.sleep(0.05)


def _raise_on_error(results: list[dict[str, Any]], doing: str) -> None:
    failed = [result for result in results if result.get("error_code", 0) != 0]
    if failed:
        raise RuntimeError(f"{doing} Kafka topics failed: {failed}")


@pytest.fixture
async def kafka_topic(
    kafka_broker: KafkaEndpoint, request: pytest.FixtureRequest
) -> AsyncIterator[TopicFactory]:
    """``await kafka_topic(partitions=1, config=None)``: a new topic, uniquely named, deleted afterwards."""
    created: list[str] = []

    async def create(partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str:
        name = f"{_topic_prefix(request.node.name)}-{uuid.uuid4().hex[:12]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
        await admin.start()
        try:
            topic = NewTopic(name, partitions, 1, topic_configs=dict(config or {}))
            response = await admin.create_topics([topic])
            _raise_on_error(response.to_object()["topic_errors"], "creating")
            created.append(name)
            await _wait_for_leaders(admin, name, partitions)
        finally:
            await admin.close()
        return name

    yield create

    if created:
        # A client of its own: the broker may have been restarted since the topics were made.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
        await admin.start()
        try:
            response = await admin.delete_topics(created)
            _raise_on_error(response.to_object()["topic_error_codes"], "deleting")
        finally:
            await admin.close()
