"""Where the HTTP endpoint listens and who may read it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["HttpConfig"]


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP endpoint of a running flow: dashboard, metrics, health and queryable state.

    ``port`` 0 picks a free port (see :attr:`HttpServer.port`). ``host`` defaults to the loopback
    interface: metrics and state stay on the machine unless you bind elsewhere on purpose.
    With ``token``, every path except ``/healthz`` needs ``Authorization: Bearer <token>`` (the
    dashboard page alone also takes ``?token=<token>`` in the URL, which is how a browser opens it).

    Requests must name the server as a loopback name (``localhost``), an IP address, ``host``, or
    one of ``allowed_hosts`` (``"*"``: any) in their ``Host`` header; others get 403. That keeps a web
    page a browser shows from reading metrics and state through DNS rebinding (a name of the
    attacker's that resolves to 127.0.0.1), token or not.

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
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"the HTTP port must be between 0 and 65535, got {self.port}")
        if self.token is not None and not self.token:
            raise ValueError("an empty token protects nothing: give None for no token")

    def allows(self, host_header: str) -> bool:
        """Whether a request whose ``Host`` header is ``host_header`` may be served (see above).

        >>> config = HttpConfig(host="0.0.0.0", allowed_hosts=("flow.internal",))
        >>> [config.allows(h) for h in ("localhost:8081", "[::1]:8081", "10.0.0.7", "flow.internal:80")]
        [True, True, True, True]
        >>> config.allows("attacker.example:8081")
        False
        """
        name = _hostname(host_header)
        allowed = {self.host.lower(), *(h.lower().rstrip(".") for h in self.allowed_hosts)}
        if "*" in allowed or name in allowed or name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    @property
    def url(self) -> str:
        """The dashboard's address as configured (with port 0, ask the running server instead)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def _hostname(host_header: str) -> str:
    """The name in a ``Host`` header, without its port, lower-cased: ``[::1]:80`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")
