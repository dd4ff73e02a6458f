"""Restart strategies: whether, and after how long, a failed job restarts from its last checkpoint.

The job calls :meth:`RestartStrategy.delay_before` with the number of the restart it is about to make
(1 for the first); ``None`` means give up and fail with the error.

>>> [FixedDelayRestart(attempts=2, delay_ms=100).delay_before(n) for n in (1, 2, 3)]
[100, 100, None]
>>> [ExponentialBackoffRestart(initial_ms=10, max_ms=50).delay_before(n) for n in (1, 2, 3, 4)]
[10, 20, 40, 50]
>>> NoRestart().delay_before(1) is None
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["ExponentialBackoffRestart", "FixedDelayRestart", "NoRestart", "RestartStrategy"]


class RestartStrategy(ABC):
    """Decides the delay before restart number ``attempt``, or that there is none."""

    @abstractmethod
    def delay_before(self, attempt: int) -> int | None:
        """Milliseconds to wait before restart ``attempt`` (1-based), or None to fail the job."""


@dataclass(frozen=True)
class NoRestart(RestartStrategy):
    """Fail the job on the first error (the default)."""

    def delay_before(self, attempt: int) -> int | None:
        return None


@dataclass(frozen=True)
class FixedDelayRestart(RestartStrategy):
    """Restart up to ``attempts`` times, ``delay_ms`` after each failure."""

    attempts: int
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.delay_ms < 0:
            raise ValueError("attempts and delay_ms must not be negative")

    def delay_before(self, attempt: int) -> int | None:
        return self.delay_ms if attempt <= self.attempts else None


@dataclass(frozen=True)
class ExponentialBackoffRestart(RestartStrategy):
    """Restart after ``initial_ms``, then ``multiplier`` times longer each time up to ``max_ms``;
    at most ``max_attempts`` times (None: for ever)."""

    initial_ms: int = 1_000
    max_ms: int = 60_000
    multiplier: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_ms < 0 or self.max_ms < self.initial_ms or self.multiplier < 1:
            raise ValueError("need 0 <= initial_ms <= max_ms and multiplier >= 1")

    def delay_before(self, attempt: int) -> int | None:
        if self.max_attempts is not None and attempt > self.max_attempts:
            return None
        return int(min(self.max_ms, self.initial_ms * self.multiplier ** (attempt - 1)))
