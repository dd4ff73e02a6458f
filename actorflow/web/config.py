"""Where the HTTP endpoint listens and who may read it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpConfig"]


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP endpoint of a running flow: dashboard, metrics, health and queryable state.

    ``port`` 0 picks a free port (see :attr:`HttpServer.port`). ``host`` defaults to the loopback
    interface: metrics and state stay on the machine unless you bind elsewhere on purpose.
    With ``token``, every path except ``/healthz`` needs ``Authorization: Bearer <token>`` (or
    ``?token=<token>`` in the URL, which is how a browser opens the dashboard).

    >>> HttpConfig(8081).url
    'http://127.0.0.1:8081/'
    >>> HttpConfig(-1)
    Traceback (most recent call last):
    ...
    ValueError: the HTTP port must be between 0 and 65535, got -1
    """

    port: int = 8081
    host: str = "127.0.0.1"
    token: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"the HTTP port must be between 0 and 65535, got {self.port}")
        if self.token is not None and not self.token:
            raise ValueError("an empty token protects nothing: give None for no token")

    @property
    def url(self) -> str:
        """The dashboard's address as configured (with port 0, ask the running server instead)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"
