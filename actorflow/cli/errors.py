"""The one error the command line reports without a traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """The command line names something that cannot be run or a setting that is wrong (exit code 2)."""
