"""Starting a Kafka client when the brokers may not be up yet, and aiokafka's start-up noise.

:func:`start_client` starts an aiokafka consumer, producer or admin client, retrying with backoff while
no bootstrap server can be reached, for ``$ACTORFLOW_KAFKA_CONNECT_TIMEOUT`` seconds (default
:data:`DEFAULT_CONNECT_TIMEOUT_S`). Then it closes the client and raises :class:`KafkaUnreachable`,
whose message is the one line ``actorflow run`` ends with::

    actorflow: cannot reach Kafka at 127.0.0.1:9092 after 30 s: connection refused

Importing this module also demotes two expected aiokafka ERROR lines to DEBUG: "Group Coordinator
Request failed" (the group coordinator is not known yet on every normal start of a consumer group),
and "Unable connect to ..." while :func:`start_client` retries (it says once itself that it waits).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiokafka.errors import KafkaConnectionError

from actorflow.errors import InputError

__all__ = ["CONNECT_TIMEOUT_ENV", "DEFAULT_CONNECT_TIMEOUT_S", "KafkaUnreachable", "start_client"]

log = logging.getLogger(__name__)

#: The environment variable that sets how long a client waits for Kafka at start (seconds).
CONNECT_TIMEOUT_ENV = "ACTORFLOW_KAFKA_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 30.0

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0
_PROBE_TIMEOUT_S = 2.0

# Clients in start_client now: their "Unable connect to" lines are expected (see _ExpectedNoise).
_starting = 0


class KafkaUnreachable(InputError):
    """No bootstrap server answered within the connect timeout; the message is the one line."""


def connect_timeout() -> float:
    """How long :func:`start_client` waits, from ``$ACTORFLOW_KAFKA_CONNECT_TIMEOUT`` (seconds)."""
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        raise InputError(f"${CONNECT_TIMEOUT_ENV}={text!r}: not a number of seconds") from None
    if not seconds > 0:
        raise InputError(f"${CONNECT_TIMEOUT_ENV}={text!r}: must be more than 0 seconds")
    return seconds


async def start_client(client: Any, bootstrap_servers: str | list[str]) -> None:
    """Start ``client`` (an aiokafka consumer, producer or admin client), waiting for Kafka to be
    reachable; if it is not within :func:`connect_timeout`, close ``client`` and raise
    :class:`KafkaUnreachable`. ``client`` is closed as well when this is cancelled."""
    global _starting
    servers = bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
    backoff = _FIRST_BACKOFF_S
    warned = False
    started = False
    _starting += 1
    try:
        timeout = connect_timeout()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await client.start()
                started = True
                if warned:
                    log.warning("reached Kafka at %s", servers)
                return
            except (KafkaConnectionError, TimeoutError) as error:
                left = deadline - loop.time()
                if left <= 0:
                    reason = await _reason(servers, error)
                    raise KafkaUnreachable(
                        f"cannot reach Kafka at {servers} after {timeout:g} s: {reason}"
                    ) from error
                if not warned:
                    warned = True
                    log.warning("cannot reach Kafka at %s yet: retrying for %g s", servers, timeout)
                await asyncio.sleep(min(backoff, left))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
    finally:
        _starting -= 1
        if not started:
            await (client.stop() if hasattr(client, "stop") else client.close())


async def _reason(servers: str, error: BaseException) -> str:
    """Why the servers cannot be reached, in a few words: what a plain TCP connect to the first says
    (aiokafka's own error names no cause)."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host.strip("[]") or "localhost", int(port or 9092))
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "no answer"
    except (OSError, ValueError) as probe:
        return (getattr(probe, "strerror", None) or str(probe)).lower()
    writer.close()
    return str(error) or type(error).__name__  # it accepts connections but does not speak Kafka


class _ExpectedNoise(logging.Filter):
    """Demotes aiokafka's expected ERROR lines (see the module docstring) to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        expected = message.startswith("Group Coordinator Request failed") or (
            _starting > 0 and message.startswith("Unable connect to")
        )
        if not expected or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_noise = _ExpectedNoise()
for _name in ("aiokafka", "aiokafka.consumer.group_coordinator"):
    logging.getLogger(_name).addFilter(_noise)
