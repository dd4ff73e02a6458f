"""Parsers for setting values given as text: numbers, durations, choices, restart strategies.

Each takes the text of a flag, an environment variable or a TOML value and returns the value, or
raises :class:`ValueError` with a message that names what was expected.

>>> duration_ms("1500"), duration_ms("2s"), duration_ms("1m")
(1500, 2000, 60000)
>>> restart_strategy("fixed:3:500ms")
FixedDelayRestart(attempts=3, delay_ms=500)
>>> restart_strategy("exponential:1s:30s")
ExponentialBackoffRestart(initial_ms=1000, max_ms=30000, multiplier=2.0, max_attempts=None)
"""

from __future__ import annotations

import re
from collections.abc import Callable

from actorflow.checkpoint.restart import (
    ExponentialBackoffRestart,
    FixedDelayRestart,
    NoRestart,
    RestartStrategy,
)

__all__ = ["choice", "duration_ms", "integer", "port", "restart_strategy", "text"]

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {None: 1, "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}

#: The syntax of restart strategies, for help texts and error messages.
RESTART_SYNTAX = "none | fixed:ATTEMPTS[:DELAY] | exponential[:INITIAL[:MAX[:MULTIPLIER[:ATTEMPTS]]]]"


def integer(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers of at least ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"expected at least {minimum}, got {number}")
        return number

    return parse


def port(value: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    number = integer(0)(value)
    if number > 65535:
        raise ValueError(f"a port is at most 65535, got {number}")
    return number


def text(value: str) -> str:
    """Any text but the empty one."""
    if not value.strip():
        raise ValueError("expected a value, got an empty one")
    return value


def choice(*choices: str) -> Callable[[str], str]:
    """A parser of one of ``choices``, case-insensitive; returns it in lower case."""

    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return lowered

    return parse


def duration_ms(value: str) -> int:
    """Milliseconds: ``250``, ``250ms``, ``10s``, ``5m`` or ``1h``."""
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"expected a duration such as 500, 500ms, 10s, 5m or 1h; got {value!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def restart_strategy(value: str) -> RestartStrategy:
    """A restart strategy from its spec (:data:`RESTART_SYNTAX`); durations as in :func:`duration_ms`."""
    kind, *arguments = value.strip().lower().split(":")
    try:
        if kind == "none" and not arguments:
            return NoRestart()
        if kind == "fixed" and 1 <= len(arguments) <= 2:
            attempts = integer(0)(arguments[0])
            delay = duration_ms(arguments[1]) if len(arguments) == 2 else 0
            return FixedDelayRestart(attempts, delay)
        if kind == "exponential" and len(arguments) <= 4:
            defaults = ExponentialBackoffRestart()
            initial = duration_ms(arguments[0]) if len(arguments) > 0 else defaults.initial_ms
            longest = duration_ms(arguments[1]) if len(arguments) > 1 else max(defaults.max_ms, initial)
            multiplier = float(arguments[2]) if len(arguments) > 2 else defaults.multiplier
            most = integer(1)(arguments[3]) if len(arguments) > 3 else None
            return ExponentialBackoffRestart(initial, longest, multiplier, most)
    except ValueError as error:
        raise ValueError(f"bad restart strategy {value!r}: {error}") from None
    raise ValueError(f"bad restart strategy {value!r}: expected {RESTART_SYNTAX}")
