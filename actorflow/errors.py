"""The exceptions actorflow raises, named by cause.

::

    ActorflowError                 base of everything actorflow raises itself
    ├── PlanError                  the flow cannot be built or compiled (bad wiring, bad parallelism)
    │   └── SqlError               a SQL statement is wrong: the message names its line and column
    ├── StateError                 keyed state used outside a keyed context, or misused
    ├── CheckpointError            a checkpoint could not be written, found or restored
    │   └── CorruptCheckpointError a stored checkpoint fails its checksum or is incomplete
    ├── InputError                 a source's input cannot be read: a missing file, a line that is
    │                              not UTF-8, not JSON or without its event time (also a ValueError)
    ├── ClosedResourceError        you used something after closing it (a push source, a mailbox)
    ├── BrokenResourceError        the other side failed or went away (the job a push source feeds)
    └── WouldBlock                 a non-blocking put found the mailbox full (flow control, not a fault)

A failing user function is not wrapped: the job fails with the user's own exception, carrying a note
that names the operator instance it was raised in. End of stream is not an error anywhere.
"""

from __future__ import annotations

__all__ = [
    "ActorflowError",
    "BrokenResourceError",
    "CheckpointError",
    "ClosedResourceError",
    "CorruptCheckpointError",
    "InputError",
    "PlanError",
    "SqlError",
    "StateError",
    "WouldBlock",
]


class ActorflowError(Exception):
    """Base class of the exceptions actorflow raises itself."""


class PlanError(ActorflowError):
    """The flow cannot be built: wrong wiring, bad parallelism, a stream used after it was run."""


class SqlError(PlanError):
    """A SQL statement cannot be parsed or planned; the message is one line that starts with the
    position of the mistake (``line 2, column 1: unknown statement 'SELEC'``)."""


class StateError(ActorflowError):
    """Keyed state or timers used where there is no current key, or used in a way they do not allow."""


class CheckpointError(ActorflowError):
    """A checkpoint could not be written, found or restored."""


class CorruptCheckpointError(CheckpointError):
    """A stored checkpoint is damaged: a part is missing, or its checksum does not match."""


class InputError(ActorflowError, ValueError):
    """A source cannot read its input, or a record of it; the message names where
    (``transactions.jsonl:6: not valid JSON (...)``)."""


class ClosedResourceError(ActorflowError):
    """The resource was closed by its own side and cannot be used any more."""


class BrokenResourceError(ActorflowError):
    """The other side of the resource failed or stopped, so it cannot be used any more."""


class WouldBlock(ActorflowError):
    """A non-blocking operation could not complete now (a full mailbox). Retry or await instead."""
