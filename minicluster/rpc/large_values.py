"""Large byte strings in a message, sent and received without extra copies.

A call that carries a large `bytes` argument, or a reply whose value is large `bytes`, is the
one kind of message whose cost is its size: encoding it into a new buffer and decoding it
through cbor2's 64 KiB reads each copy it once more and take fresh memory of its size (which
the allocator often gets from the kernel page by page, each time). So:

* **sending**, the message is encoded with a 16-byte stand-in where the value is, and the
  writer is handed the pieces around it and the value itself (`serialization.dumps_around`);
* **receiving**, `find_large_bytes` reads just the item heads of the message's top level to
  find the value; the rest is decoded with the stand-in spliced in, and the value is copied
  out of the received frame once (`serialization.loads`).

Only these places are looked at: a value of the top-level map, or an item of an array that
is such a value (a call's `args`). A message of any other shape, or with more than one large
value, is encoded and decoded whole, as before. This module reads bytes only (no sockets, no
decoding of values), so that it can be tested on its own.
"""

from __future__ import annotations

import os
from typing import Any, Final

import cbor2

# a bytes value at least this large is sent and received apart from its message
LARGE_BYTES: Final = 64 * 1024
# what stands for it while the rest is encoded or decoded: random, so no real value is it
LARGE_STAND_IN: Final = os.urandom(16)
STAND_IN_CBOR: Final = b"\x50" + LARGE_STAND_IN  # a byte string of 16, encoded
# a top level with more items than this is not searched (decoded whole instead)
_MOST_ITEMS: Final = 256


def large_bytes_index(values: tuple[Any, ...] | list[Any]) -> int:
    """The position of the first large bytes value among `values`, or -1 (every remote call
    asks: a plain loop, 0.12 us for two arguments, where enumerate took 0.17)."""
    index = 0
    for value in values:
        if type(value) is bytes and len(value) >= LARGE_BYTES:
            return index
        index += 1  # noqa: SIM113 - faster than enumerate here (see above)
    return -1


def bytes_head(size: int) -> bytes:
    """The CBOR head of a byte string of `size` bytes (what precedes its bytes)."""
    head = bytearray(cbor2.dumps(size))  # the length as an unsigned integer (major type 0)
    head[0] |= 0x40  # the same head for a byte string (major type 2)
    return bytes(head)


def put_back(message: Any, large: bytes) -> bool:
    """Put `large` where the stand-in is in a decoded message (the places that
    `find_large_bytes` searches); False if it is not there."""
    if type(message) is not dict:
        return False
    for key, value in message.items():
        if type(value) is bytes and value == LARGE_STAND_IN:
            message[key] = large
            return True
        if type(value) is list:
            for index, item in enumerate(value):
                if type(item) is bytes and item == LARGE_STAND_IN:
                    value[index] = large
                    return True
    return False


class _Unsearchable(Exception):
    """The payload is not of the shape searched here (or is malformed): decode it whole."""


def find_large_bytes(data: bytes | bytearray | memoryview) -> tuple[int, int, int] | None:
    """(start of its head, start of its bytes, its length) of the one large byte string of a
    message, found from item heads only; None if there is none, or more than one, or the
    payload is not a map of that shape, or anything about it is malformed."""
    try:
        major, count, pos = _head(data, 0)
        if major != 5 or count > _MOST_ITEMS:
            return None
        budget = [_MOST_ITEMS]
        found: tuple[int, int, int] | None = None
        for _ in range(count):
            pos = _skip(data, pos, budget)  # the key
            major, arg, after = _head(data, pos)
            if major == 2 and arg >= LARGE_BYTES:
                if found is not None:
                    return None
                found, pos = (pos, after, arg), after + arg
            elif major == 4 and arg <= _MOST_ITEMS:
                pos = after
                for _ in range(arg):
                    major, size, after = _head(data, pos)
                    if major == 2 and size >= LARGE_BYTES:
                        if found is not None:
                            return None
                        found, pos = (pos, after, size), after + size
                    else:
                        pos = _skip(data, pos, budget)
            else:
                pos = _skip(data, pos, budget)
    except _Unsearchable:
        return None
    return found if pos == len(data) else None


def _head(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head) of the item at `pos`."""
    if pos >= len(data):
        raise _Unsearchable
    initial = data[pos]
    info = initial & 31
    if info < 24:
        return initial >> 5, info, pos + 1
    if info > 27:  # indefinite length, or reserved
        raise _Unsearchable
    width = 1 << (info - 24)
    if pos + 1 + width > len(data):
        raise _Unsearchable
    return initial >> 5, int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), pos + 1 + width


def _skip(data: bytes | bytearray | memoryview, pos: int, budget: list[int]) -> int:
    """The position after the item at `pos`; at most `budget[0]` items are read in all."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unsearchable
    major, arg, pos = _head(data, pos)
    if major in (2, 3):
        pos += arg
        if pos > len(data):
            raise _Unsearchable
    elif major in (4, 5):
        for _ in range(arg if major == 4 else 2 * arg):
            pos = _skip(data, pos, budget)
    elif major == 6:
        pos = _skip(data, pos, budget)
    return pos
