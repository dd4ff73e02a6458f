"""Starting a Kafka client when the brokers may not be up yet.

:func:`start_client` starts an aiokafka consumer, producer or admin client, retrying with backoff while
no bootstrap server can be reached, for ``$ACTORFLOW_KAFKA_CONNECT_TIMEOUT`` seconds (default
:data:`DEFAULT_CONNECT_TIMEOUT_S`). Then it closes the client and raises :class:`KafkaUnreachable`,
whose message is the one line ``actorflow run`` ends with::

    actorflow: cannot reach Kafka at 127.0.0.1:9092 after 30 s: connection refused

While it retries, aiokafka's failed connections are demoted to DEBUG (this says once itself that it
waits); once started, the client is watched, so that an outage later is one line when a broker
becomes unreachable and one when it is back (see :mod:`actorflow_kafka.outages`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiokafka.errors import KafkaConnectionError

from actorflow.errors import InputError
from actorflow_kafka import outages

__all__ = ["CONNECT_TIMEOUT_ENV", "DEFAULT_CONNECT_TIMEOUT_S", "KafkaUnreachable", "start_client"]

log = logging.getLogger(__name__)

#: The environment variable that sets how long a client waits for Kafka at start (seconds).
CONNECT_TIMEOUT_ENV = "ACTORFLOW_KAFKA_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 30.0

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0
_PROBE_TIMEOUT_S = 2.0


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
    servers = bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
    backoff = _FIRST_BACKOFF_S
    warned = False
    started = False
    outages.watch(client)  # its cluster metadata names the brokers in the outage lines
    try:
        timeout = connect_timeout()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                with outages.starting():
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
        if not started:
            await (client.stop() if hasattr(client, "stop") else client.close())


async def _reason(servers: str, error: BaseException) -> str:
    """Why the servers cannot be reached, in a few words: what a plain TCP connect to the first says
    (aiokafka's own error names no cause)."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host.strip("[]") or "localhost", int(port or 9092))
    except (OSError, TimeoutError) as probe:
        return outages.describe_error(probe)
    except ValueError as probe:
        return str(probe).lower()
    writer.close()
    return str(error) or type(error).__name__  # it accepts connections but does not speak Kafka
