"""A stable byte encoding of keys, key group first, for state kept outside the heap.

``encode_key(key, max_parallelism)`` is two big-endian bytes of the key's group (so a key group is
a contiguous range of the store's keys, and a rescale can read ranges) and then the key itself:
str, int, bytes, float, bool, None and tuples of them are encoded by hand, the same in every
process and run (pickle is not: a tuple holding one string object twice pickles differently from
one holding two equal strings). Any other key falls back to pickle (fine for scalars such as
``Decimal`` or ``datetime``, whose pickle is deterministic); its group is 0 when it cannot be hashed
stably. Keys that are equal across types (``1``, ``1.0``, ``True``) are distinct here.

>>> data = encode_key(("card-1", 7), 128)
>>> decode_key(data), int.from_bytes(data[:2], "big") == key_group(("card-1", 7), 128)
(('card-1', 7), True)
"""

from __future__ import annotations

import pickle
import struct
from typing import Any
from zlib import crc32

from actorflow.state.keygroups import key_group

__all__ = ["decode_key", "encode_key"]

_DOUBLE = struct.Struct(">d")
_LENGTH = struct.Struct(">I")


def _encode(key: Any) -> bytes:
    kind = type(key)
    if kind is str:
        text: str = key
        return b"s" + text.encode()
    if kind is int:
        return b"i" + str(key).encode()
    if kind is tuple:
        parts = [b"t"]
        for item in key:
            encoded = _encode(item)
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    if kind is bytes:
        data: bytes = key
        return b"b" + data
    if key is None:
        return b"N"
    if kind is bool:
        return b"T" if key else b"F"
    if kind is float:
        return b"f" + _DOUBLE.pack(key)
    return b"p" + pickle.dumps(key, protocol=5)


def _decode(data: bytes) -> Any:
    tag = data[:1]
    if tag == b"s":
        return data[1:].decode()
    if tag == b"i":
        return int(data[1:])
    if tag == b"t":
        items = []
        position = 1
        while position < len(data):
            (length,) = _LENGTH.unpack_from(data, position)
            position += 4
            items.append(_decode(data[position : position + length]))
            position += length
        return tuple(items)
    if tag == b"b":
        return data[1:]
    if tag == b"N":
        return None
    if tag == b"T":
        return True
    if tag == b"F":
        return False
    if tag == b"f":
        return _DOUBLE.unpack_from(data, 1)[0]
    if tag == b"p":
        return pickle.loads(data[1:])
    raise ValueError(f"not an encoded key: {data!r}")


def encode_key(key: Any, max_parallelism: int) -> bytes:
    """``key``'s group (two bytes, big-endian) followed by its stable encoding.

    >>> encode_key("a", 128)[2:]
    b'sa'
    """
    if type(key) is str:  # the common case, encoded once for the hash and the store
        data = key.encode()
        return (crc32(data) % max_parallelism).to_bytes(2, "big") + b"s" + data
    try:
        group = key_group(key, max_parallelism)
    except TypeError:  # not stably hashable: it cannot have been partitioned by hash either
        group = 0
    return group.to_bytes(2, "big") + _encode(key)


def decode_key(data: bytes) -> Any:
    """The key :func:`encode_key` encoded.

    >>> decode_key(encode_key((None, 1.5, b"x", True), 128))
    (None, 1.5, b'x', True)
    """
    return _decode(data[2:])
