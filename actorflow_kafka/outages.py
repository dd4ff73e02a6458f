"""aiokafka's log while Kafka is down or starting: one line per state change instead of a flood.

While a broker is down, every aiokafka client logs each failed attempt, dozens of ERROR lines a
second ("Unable connect to node with id 1: [Errno 111] Connection refused", "Unable to update
metadata from [1]", "Failed fetch messages from 1: NodeNotReadyError ...", failed heartbeats).
Importing this module (importing :mod:`actorflow_kafka` does) installs a filter on aiokafka's
loggers that demotes those lines to DEBUG and says instead, at WARNING, once per state change of a
broker (logger ``actorflow_kafka.outages``)::

    Kafka at 127.0.0.1:9092 unreachable since 10:31:02 (connection refused)
    Kafka at 127.0.0.1:9092 back after 10 s

When aiokafka fails to connect to a broker, a probe (a plain TCP connection, at growing intervals
up to :data:`_MAX_PROBE_INTERVAL_S`) watches it: aiokafka says nothing when a reconnect succeeds. A
first probe that fails says the broker is *unreachable* (since aiokafka's first failure, with the
probe's reason: aiokafka's own errors do not always name one), and the probe that succeeds then
says it is *back*; a first probe that succeeds says nothing (a dropped connection, not an outage).
Both lines are WARNINGs, so that the default level, which shows warnings but not INFO, shows the
end of an outage as well as its start. ``--log-level debug`` still shows every aiokafka line.

Which lines are expected, and so demoted:

- connection failures ("Unable connect to ..."), which start the probe above (a broker is named by
  its address, from the cluster metadata of the clients :func:`watch` was given, else from the
  error; the rare failure that names neither is let through at most once a minute);
- lines whose error says a connection dropped or a node is not connected
  (``KafkaConnectionError``, ``NodeNotReadyError``): aiokafka reconnects by itself, and a
  reconnect that fails is a connection failure above;
- while a broker is down, and for half a minute after it is back: the group coordinator marked
  dead or not available, an expired heartbeat session or membership, requests that timed out, a
  producer's send retried while the partitions it hosted get their leaders back;
- "Group Coordinator Request failed", which every normal start of a consumer group logs (the
  coordinator is not known yet), and "Unable to update metadata from ...", which sums up failures
  that have lines of their own;
- while :func:`starting` (:func:`~actorflow_kafka.connection.start_client` retries, and says once
  itself that it waits): the failed bootstrap connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

__all__ = ["describe_error", "starting", "watch"]

log = logging.getLogger(__name__)

_FIRST_PROBE_INTERVAL_S = 0.2
_MAX_PROBE_INTERVAL_S = 1.0
_PROBE_TIMEOUT_S = 2.0
#: How often a failure whose broker cannot be named is let through (seconds).
_UNNAMED_EVERY_S = 60.0

#: Errors that mean a connection dropped or a node is not connected: consequences of a failed or
#: lost connection, which the state lines report.
_DISCONNECTED = (KafkaConnectionError, NodeNotReadyError)
#: Errors expected while a broker is down.
_DURING_OUTAGE = (*_DISCONNECTED, RequestTimedOutError, OSError, TimeoutError)
#: aiokafka's messages (format strings) that are always expected: the first comes with every start of
#: a consumer group; the second sums up failures that have their own lines.
_ALWAYS = ("Group Coordinator Request failed", "Unable to update metadata from")
#: aiokafka's messages (format strings) expected while a broker is down, and for
#: :data:`_AFTER_OUTAGE_S` after it is back: the group coordinator it hosted moves or reloads, and a
#: consumer whose session expired meanwhile joins its group again.
_OUTAGE_MESSAGES = (
    "Marking the coordinator dead",
    "Heartbeat session expired",
    "Heartbeat failed for group %s: coordinator",
    "Heartbeat failed for group %s: generation id",
    "Heartbeat failed: local member_id was not recognized",
    # The producer retries a send by itself while a partition's leader is elected anew.
    "Got error produce response on topic-partition %s, retrying",
)
_AFTER_OUTAGE_S = 30.0
# asyncio's connection errors name the address (uvloop's do not): "... ('127.0.0.1', 9092)".
_ADDRESS_IN_ERROR = re.compile(r"\('([^']+)', (\d+)\)")

# Clients in start_client now (see starting()), and the started ones, whose cluster metadata names
# the brokers behind aiokafka's node ids.
_starting = 0
_clients: weakref.WeakSet[Any] = weakref.WeakSet()


def describe_error(error: BaseException) -> str:
    """Why a connection failed, in a few words, as the outage lines and start_client's say it.

    >>> import errno
    >>> describe_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('::1', 9092)"))
    'connection refused'
    >>> describe_error(TimeoutError())
    'no answer'
    """
    if isinstance(error, TimeoutError):
        return "no answer"
    if isinstance(error, socket.gaierror) and error.strerror:
        return error.strerror.lower()
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """While this is entered, failed bootstrap connections are expected (a start that retries)."""
    global _starting
    _starting += 1
    try:
        yield
    finally:
        _starting -= 1


def watch(client: Any) -> None:
    """Name brokers by the cluster metadata of ``client`` (an aiokafka consumer, producer or admin
    client) in the state lines; it is held weakly."""
    _clients.add(client)


@dataclass
class _Outage:
    """One broker that aiokafka cannot reach, and the probe that waits for it."""

    host: str
    port: int
    since: float  # the first failure: wall clock (for the line) and monotonic (for the duration)
    started: float
    # Held here: the event loop keeps only a weak reference to a task.
    probe: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Brokers down now, by address, and until when (monotonic) the last one that was down has just come
# back. Touched only from event loop threads (where aiokafka logs).
_down: dict[str, _Outage] = {}
_settling_until = 0.0
# When a failure to connect to a node that cannot be named was last let through, per node.
_unnamed: dict[str, float] = {}


def _broker_of(node_id: Any, error: BaseException | None) -> tuple[str, int] | None:
    """The address of aiokafka's node ``node_id``: from a watched client's metadata, else from the
    error's text."""
    for client in list(_clients):
        # A consumer's or an admin client's connections are its ``_client``, a producer's ``client``.
        inner = getattr(client, "_client", None) or getattr(client, "client", None)
        cluster = getattr(inner, "cluster", None)
        broker = cluster.broker_metadata(node_id) if cluster is not None else None
        if broker is not None:
            return str(broker.host), int(broker.port)
    found = _ADDRESS_IN_ERROR.search(str(error)) if error is not None else None
    return (found.group(1), int(found.group(2))) if found else None


def _failed(host: str, port: int) -> None:
    """aiokafka could not connect to the broker at ``host:port``: probe it, unless that runs."""
    address = f"{host}:{port}"
    if address in _down:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not from an event loop: no probe could say when it is back
        return
    outage = _Outage(host, port, time.time(), time.monotonic())
    _down[address] = outage
    outage.probe = loop.create_task(_watch(outage), name=f"actorflow-kafka-probe-{address}")


async def _watch(outage: _Outage) -> None:
    """Probe the broker until a connection succeeds. The first failed probe says it is unreachable
    (with the probe's own reason: aiokafka's errors do not always name one), and then a success
    says it is back; a first probe that succeeds says nothing (a dropped connection, not an outage).
    """
    global _settling_until
    interval = _FIRST_PROBE_INTERVAL_S
    announced = False
    try:
        while True:
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT_S):
                    _, writer = await asyncio.open_connection(outage.host, outage.port)
            except (OSError, TimeoutError) as error:
                if not announced:
                    announced = True
                    since = time.strftime("%H:%M:%S", time.localtime(outage.since))
                    reason = describe_error(error)
                    log.warning("Kafka at %s unreachable since %s (%s)", outage.address, since, reason)
                await asyncio.sleep(interval)
                interval = min(interval * 2, _MAX_PROBE_INTERVAL_S)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            break
        _settling_until = time.monotonic() + _AFTER_OUTAGE_S
        if announced:
            took = _duration(time.monotonic() - outage.started)
            log.warning("Kafka at %s back after %s", outage.address, took)
    finally:
        # Also when the loop ends first (cancelled): a later run starts from a clean state.
        if _down.get(outage.address) is outage:
            del _down[outage.address]


def _duration(seconds: float) -> str:
    """``"0.4 s"``, ``"10 s"``, ``"3 min 5 s"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _expected(record: logging.LogRecord) -> bool:
    """Whether ``record`` (from aiokafka, above DEBUG) is expected, updating the state on the way."""
    message = record.msg if isinstance(record.msg, str) else ""
    args = record.args if isinstance(record.args, tuple) else ()
    error = next((arg for arg in args if isinstance(arg, BaseException)), None)
    if message.startswith("Unable connect to node with id") and args:
        broker = _broker_of(args[0], error)
        if broker is None:
            return _seen_recently(f"node {args[0]}")
        _failed(*broker)
        return True
    if message.startswith('Unable connect to "') and len(args) >= 2:
        if not _starting:  # start_client says itself that it waits
            _failed(str(args[0]), int(str(args[1])))
        return True
    if message.startswith(_ALWAYS) or isinstance(error, _DISCONNECTED):
        return True
    if _down or _starting or time.monotonic() < _settling_until:
        return message.startswith(_OUTAGE_MESSAGES) or isinstance(error, _DURING_OUTAGE)
    return False


def _seen_recently(node: str) -> bool:
    """Whether a failure for ``node`` was let through less than :data:`_UNNAMED_EVERY_S` ago (if
    not, this one is let through)."""
    now = time.monotonic()
    last = _unnamed.get(node)
    if last is not None and now - last < _UNNAMED_EVERY_S:
        return True
    _unnamed[node] = now
    return False


class _ExpectedNoise(logging.Filter):
    """Demotes aiokafka's expected lines (see the module docstring) to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not _expected(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_noise = _ExpectedNoise()
# A logger's filters see only the records logged on that very logger, not its children's.
for _name in (
    "aiokafka",
    "aiokafka.admin.client",
    "aiokafka.conn",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
):
    logging.getLogger(_name).addFilter(_noise)
