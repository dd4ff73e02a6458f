"""The HTTP endpoint of a running flow: dashboard, Prometheus metrics, health, queryable state.

Off unless asked for. Needs the ``web`` extra (``pip install 'actorflow[web]'``: aiohttp and
prometheus-client). Embedded in a service::

    async with serve_http(flow, HttpConfig(port=8081)) as server:
        print("dashboard at", server.url)
        await flow.run()

or in one call, as the command line does: ``await run_with_http(flow, HttpConfig(port=8081))``.
See :mod:`actorflow.web.server` for the paths.
"""

try:
    import aiohttp  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as error:  # pragma: no cover - the web extra is in the dev extra
    raise ImportError(
        "actorflow.web needs aiohttp and prometheus-client: pip install 'actorflow[web]'"
    ) from error

from actorflow.web.config import HttpConfig
from actorflow.web.server import HttpServer, create_app, run_with_http, serve_http

__all__ = ["HttpConfig", "HttpServer", "create_app", "run_with_http", "serve_http"]
