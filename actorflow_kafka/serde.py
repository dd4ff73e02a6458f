"""Serializers and deserializers: how record keys and values become bytes and back.

A deserializer is ``bytes | None -> value`` and a serializer ``value -> bytes | None``. Give one by
name (``"json"`` via orjson, ``"str"`` as UTF-8, ``"bytes"`` untouched) or as a function. A
deserializer that raises turns the record into a dead letter; it never drops it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "Deserializer",
    "Serializer",
    "bytes_deserializer",
    "bytes_serializer",
    "json_deserializer",
    "json_serializer",
    "resolve_deserializer",
    "resolve_serializer",
    "str_deserializer",
    "str_serializer",
]

Deserializer = Callable[[bytes | None], Any]
Serializer = Callable[[Any], bytes | None]


def json_deserializer(data: bytes | None) -> Any:
    """JSON via orjson; a null (tombstone) payload stays None.

    >>> json_deserializer(b'{"a": 1}')
    {'a': 1}
    """
    return None if data is None else orjson.loads(data)


def str_deserializer(data: bytes | None) -> str | None:
    """UTF-8 text; invalid UTF-8 raises (and becomes a dead letter)."""
    return None if data is None else data.decode("utf-8")


def bytes_deserializer(data: bytes | None) -> bytes | None:
    """The bytes as they are."""
    return data


def json_serializer(value: Any) -> bytes | None:
    """JSON via orjson; None stays None (a tombstone).

    >>> json_serializer({"a": 1})
    b'{"a":1}'
    """
    return None if value is None else orjson.dumps(value)


def str_serializer(value: Any) -> bytes | None:
    """UTF-8 text of ``str(value)``; None stays None."""
    return None if value is None else str(value).encode("utf-8")


def bytes_serializer(value: Any) -> bytes | None:
    """Bytes as they are; anything else is refused with a clear error."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"the bytes serializer needs bytes, got {type(value).__name__}")


_DESERIALIZERS: dict[str, Deserializer] = {
    "json": json_deserializer,
    "str": str_deserializer,
    "bytes": bytes_deserializer,
}
_SERIALIZERS: dict[str, Serializer] = {
    "json": json_serializer,
    "str": str_serializer,
    "bytes": bytes_serializer,
}


def resolve_deserializer(spec: str | Deserializer) -> Deserializer:
    """A deserializer from a name (json, str, bytes) or a function.

    >>> resolve_deserializer("str")(b"hi")
    'hi'
    """
    found: Deserializer = _resolve(spec, _DESERIALIZERS, "deserializer")
    return found


def resolve_serializer(spec: str | Serializer) -> Serializer:
    """A serializer from a name (json, str, bytes) or a function."""
    found: Serializer = _resolve(spec, _SERIALIZERS, "serializer")
    return found


def _resolve(spec: Any, known: dict[str, Any], what: str) -> Any:
    if isinstance(spec, str):
        try:
            return known[spec]
        except KeyError:
            raise ValueError(f"unknown {what} {spec!r}: use one of {sorted(known)} or a function") from None
    if not callable(spec):
        raise TypeError(f"a {what} is a name or a function, not {spec!r}")
    return spec
