"""The HTTP endpoint of a running flow (aiohttp), on the flow's own event loop.

======================  ==========================================================================
``GET /``               the dashboard (:mod:`actorflow.web.dashboard`)
``GET /healthz``        liveness: 200 while the process answers (never needs the token)
``GET /readyz``         readiness: 200 once every actor has opened and restored its state while
                        the job runs, else 503 with the status
``GET /metrics``        Prometheus text format (:mod:`actorflow.web.prometheus`)
``GET /api/graph``      the actor mesh with rates, fills and watermarks, per actor and per
                        operator (:func:`graph_view`)
``GET /api/checkpoints`` checkpoint counts and history (:func:`checkpoints_view`)
``GET /state/OP/KEY``   the keyed state of ``KEY`` in operator ``OP`` as JSON; ``?type=int``,
                        ``float`` or ``json`` for keys that are not strings (404: no such operator
                        or no state for the key)
======================  ==========================================================================

Handlers run on the event loop that runs the flow, so they read counters and state between two
batches, as consistent as the job itself sees them; none of them waits for the job.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from actorflow.api.flow import Flow
from actorflow.web.config import HttpConfig
from actorflow.web.dashboard import PAGE
from actorflow.web.prometheus import FlowCollector
from actorflow.web.queryable import StateNotFound, StateUnavailable, lookup, parse_key, to_json
from actorflow.web.views import RateTracker, checkpoints_view, graph_view, status_of

__all__ = ["HttpServer", "create_app", "run_with_http", "serve_http"]

log = logging.getLogger(__name__)

#: Paths anyone may read, token or not, by any name: a liveness probe carries no credentials.
OPEN_PATHS = frozenset({"/healthz"})
#: The one path that takes the token in the URL (``/?token=...``: how a browser opens the page).
TOKEN_IN_URL_PATHS = frozenset({"/"})

_FLOW: web.AppKey[Flow] = web.AppKey("flow", Flow)
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
_RATES: web.AppKey[RateTracker] = web.AppKey("rates", RateTracker)


@dataclass(frozen=True)
class HttpServer:
    """A listening endpoint: where it is (with ``port=0``, the port the system picked)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The dashboard's address, e.g. ``http://127.0.0.1:8081/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=to_json(data), status=status, content_type="application/json")


def _auth_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode()

    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer":
                given = request.query.get("token", "") if request.path in TOKEN_IN_URL_PATHS else ""
            # Constant time: the comparison does not tell how much of a guess was right.
            if not hmac.compare_digest(given.strip().encode(), expected):
                return web.json_response(
                    {"error": "a bearer token is needed"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="actorflow"'},
                )
        return await handler(request)

    return check_token


def _host_middleware(config: HttpConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_host(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if request.path not in OPEN_PATHS and not config.allows(host):
            return web.json_response(
                {
                    "error": f"this server does not answer to the name {host!r}: use localhost or "
                    "its address, or add the name to http_allowed_hosts"
                },
                status=403,
            )
        return await handler(request)

    return check_host


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    job = request.app[_FLOW].metrics
    status = status_of(job)
    ready = job is not None and job.ready
    return web.json_response({"ready": ready, "status": status}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _graph(request: web.Request) -> web.Response:
    return _json(graph_view(request.app[_FLOW], request.app[_RATES], time.monotonic()))


async def _checkpoints(request: web.Request) -> web.Response:
    return _json(checkpoints_view(request.app[_FLOW]))


async def _state(request: web.Request) -> web.Response:
    job = request.app[_FLOW].metrics
    if job is None:
        return _json({"error": "the flow has not started"}, 503)
    operator = request.match_info["operator"]
    try:
        key = parse_key(request.match_info["key"], request.query.get("type", "str"))
        # Lookup and encoding with no await between them: the state cannot change meanwhile.
        return _json(lookup(job, operator, key))
    except ValueError as error:
        return _json({"error": str(error)}, 400)
    except StateNotFound as error:
        return _json({"error": str(error)}, 404)
    except StateUnavailable as error:
        return _json({"error": str(error)}, 503)


async def _dashboard(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


def create_app(flow: Flow, config: HttpConfig | None = None) -> web.Application:
    """The aiohttp application serving ``flow`` (see the module docstring for its paths).

    For embedding its routes in an application of your own; :func:`serve_http` runs it.
    """
    config = config if config is not None else HttpConfig()
    middlewares = [_host_middleware(config)]
    if config.token is not None:
        middlewares.append(_auth_middleware(config.token))
    app = web.Application(middlewares=middlewares)
    app[_FLOW] = flow
    # A registry of its own: only this flow's families, no process or platform collectors (their
    # names do not start with actorflow_), and several flows in one process do not collide.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowCollector(flow))
    app[_REGISTRY] = registry
    app[_RATES] = RateTracker(min_interval=0.5)
    app.router.add_get("/", _dashboard)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/graph", _graph)
    app.router.add_get("/api/checkpoints", _checkpoints)
    app.router.add_get("/state/{operator}/{key:.+}", _state)
    return app


@contextlib.asynccontextmanager
async def serve_http(flow: Flow, config: HttpConfig | None = None) -> AsyncIterator[HttpServer]:
    """Serve ``flow``'s dashboard, metrics, health and state while the ``async with`` body runs.

    Start it before ``flow.run()`` (``/readyz`` answers 503 until the job is up) in the same event
    loop; leaving the block closes the listening socket and every connection. Raises ``OSError``
    if the address is taken.

    >>> import asyncio
    >>> from actorflow import Flow
    >>> async def main():
    ...     flow = Flow("demo")
    ...     flow.from_iterable([1, 2, 3]).print()
    ...     async with serve_http(flow, HttpConfig(port=0)) as server:
    ...         await flow.run()
    ...     return server.url.startswith("http://127.0.0.1:")
    >>> asyncio.run(main())
    1
    2
    3
    True
    """
    config = config if config is not None else HttpConfig()
    if config.token is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the HTTP endpoint on %s has no token: anyone who reaches it reads metrics and state",
            config.host,
        )
    runner = web.AppRunner(create_app(flow, config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        server = HttpServer(host, port)
        log.info("dashboard of flow %r at %s", flow.name, server.url)
        yield server
    finally:
        await runner.cleanup()


async def run_with_http(flow: Flow, http: HttpConfig | None = None, **run_options: Any) -> None:
    """``await flow.run(**run_options)``, serving :func:`serve_http` meanwhile when ``http`` is given.

    What the command line calls: ``http=None`` (no ``--http-port``) runs the flow exactly as
    ``flow.run()`` does, with no server. (Import ``actorflow.web`` only when a port is asked for:
    it needs the ``web`` extra, aiohttp and prometheus-client.)
    """
    if http is None:
        await flow.run(**run_options)
        return
    async with serve_http(flow, http):
        await flow.run(**run_options)
