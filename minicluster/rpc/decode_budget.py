"""How much memory decoding a CBOR payload would take, found before decoding it.

A CBOR byte can become a Python object many times its size: `a0` (an empty map) becomes a
dict of 64 bytes plus the 8-byte slot of the list holding it, so 10 MiB of them would take
some 750 MiB. `check_decode_cost` walks the item headers (no values are built) and adds up an
estimate of what each item will take once decoded; above the budget it raises
`DecodeBudgetError` and nothing is decoded. The estimates follow CPython 3.11 object sizes,
rounded up. The walk is skipped for payloads too small to go over the budget even if every
byte were the costliest item (`MAX_COST_PER_BYTE`), so ordinary messages never pay for it.

Malformed or truncated input ends the walk without an error: the decoder then refuses it
at the same place or earlier, having built no more than what was counted.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import ProtocolError

# Estimated bytes of memory per decoded item (CPython 3.11, 64-bit).
SLOT: Final = 8  # a list's pointer to an item
PAIR: Final = 40  # a dict entry (hash, key, value) with the table's spare room
LIST: Final = 56
DICT_EMPTY: Final = 64
DICT: Final = 160  # a dict with entries starts with a table for eight
INT: Final = 32  # integers outside CPython's cache of -5..256
FLOAT: Final = 24
BYTES: Final = 33  # plus the length
TEXT: Final = 49  # plus the length (UTF-8 never takes fewer bytes than the str's data)
SIMPLE: Final = 48  # a CBOR simple value other than false/true/null/undefined
TAG: Final = 64  # the object a tag becomes, beyond its content (a domain object, a UUID)
SET: Final = 216  # tag 258: a set, plus SET_ITEM per element
# The items of indefinite-length arrays and maps are charged this many times over: the decoder
# grows them as they come, and nothing bounds their count ahead (our encoder never makes them).
INDEFINITE: Final = 4
SET_ITEM: Final = 96  # a set's table holds up to 4 entries of 16 bytes per item

# The costliest a byte can be in this estimate: a set around an empty array (`d9 01 02 80`,
# 4 bytes for SET + LIST + SLOT); an empty map in an array is 72 per byte.
MAX_COST_PER_BYTE: Final = 96
MAX_DEPTH: Final = 256

_SET_TAG: Final = 258
# One-byte items that cost nothing but their slot (small integers, empty strings, false, true,
# null, undefined) or a fixed amount (empty arrays and maps): runs of them are charged at once.
_ATOMS: Final = re.compile(rb"[\x00-\x17\x20-\x37\x40\x60\x80\xa0\xf4-\xf7]+")
_IS_ATOM: Final = bytes(1 if _ATOMS.fullmatch(bytes([b])) else 0 for b in range(256))
_INDEFINITE_STRING: Final = -1  # its chunks are charged as strings; 1 more is rounding


class DecodeBudgetError(ProtocolError):
    """Decoding a payload would take more memory than its budget allows."""

    def __init__(self, size: int, estimate: int, budget: int) -> None:
        super().__init__(
            f"a payload of {size} bytes would take over {estimate} bytes of memory to decode, "
            f"more than its budget of {budget} bytes; send fewer and larger items "
            "(a byte string rather than an array of numbers)"
        )
        self.estimate = estimate
        self.budget = budget


def check_decode_cost(data: bytes | bytearray, budget: int) -> None:
    """Raise `DecodeBudgetError` if decoding `data` would take more than `budget` bytes."""
    if len(data) * MAX_COST_PER_BYTE <= budget:
        return
    estimate = _walk(data, budget)
    if estimate > budget:
        raise DecodeBudgetError(len(data), estimate, budget)


def decode_cost(data: bytes) -> int:
    """The whole estimate for `data`, in bytes (for tests and measurements)."""
    return _walk(data, 1 << 62)


def _walk(data: bytes | bytearray, budget: int) -> int:
    """The estimate for the items of `data`, stopping as soon as it passes `budget`."""
    size = len(data)
    pos = 0
    cost = 0
    # Items still to read in the innermost open container, or what an indefinite-length one
    # charges for each item it gets (the items are not counted, a "break" ends it).
    remaining = 1
    stack: list[int] = []
    in_set = False  # the item being read is the content of a set tag
    while True:
        if remaining == 0:
            if not stack:
                return cost
            remaining = stack.pop()
            continue
        if cost > budget or pos >= size:
            return cost
        initial = data[pos]
        if (_IS_ATOM[initial] or initial == 0x18) and not in_set and pos + 2 < size:
            # a run of cheap items, charged at once (checked for the next two items only)
            atoms = _IS_ATOM[initial]
            # no further than the items left here, or than enough of them to pass the budget
            most = remaining if remaining > 0 else (budget - cost) // -remaining + 1
            end = min(size, pos + 2 * most)
            count = 0
            if atoms and _IS_ATOM[data[pos + 1]]:
                match = _ATOMS.match(data, pos, end)
                count = match.end() - pos if match is not None else 0
            elif not atoms and data[pos + 2] == 0x18:
                # every other byte is 0x18: count them (a regex would keep a state per item)
                heads = data[pos:end:2]
                count = len(heads) - len(heads.lstrip(b"\x18"))
            if count > 1:
                width = 1 if atoms else 2
                if remaining > 0:
                    count = min(count, remaining)
                    remaining -= count
                else:
                    cost -= remaining * count  # items of an indefinite-length container
                if atoms:
                    run = data[pos : pos + count]
                    cost += LIST * run.count(0x80) + DICT_EMPTY * run.count(0xA0)
                pos += count * width
                continue
        pos += 1
        major = initial >> 5
        info = initial & 31
        if info < 24:
            arg = info
        elif info < 28:
            width = 1 << (info - 24)
            if pos + width > size:
                return cost
            arg = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        elif info == 31 and major == 7:  # "break": the end of an indefinite-length item
            if remaining > 0 or not stack:
                return cost  # malformed; the decoder says so
            remaining = stack.pop()
            continue
        elif info != 31 or major in (0, 1, 6):
            return cost  # reserved additional information: malformed
        else:
            arg = -1  # an indefinite-length string, array or map
        if major == 6:  # a tag: the next item is its content, in the same slot
            if arg == _SET_TAG:
                cost += SET
                in_set = True
            else:
                cost += TAG
            continue
        if remaining > 0:
            remaining -= 1
        else:
            cost -= remaining  # an item of an indefinite-length container
        if major == 0:
            if arg > 256:
                cost += INT
        elif major == 1:
            if arg > 4:
                cost += INT
        elif major == 2 or major == 3:
            if arg < 0:
                cost += BYTES if major == 2 else TEXT
                if len(stack) >= MAX_DEPTH:
                    return cost
                stack.append(remaining)
                remaining = _INDEFINITE_STRING
            elif arg > 1:  # CPython caches the strings of one byte or one ASCII character
                cost += (BYTES if major == 2 else TEXT) + min(arg, size)
            pos += max(arg, 0)
        elif major == 4:
            slot = SLOT + SET_ITEM if in_set else SLOT
            if arg < 0:
                cost += LIST
                if len(stack) >= MAX_DEPTH:
                    return cost
                stack.append(remaining)
                remaining = -slot * INDEFINITE
            else:
                # each item takes at least a byte: a count beyond the rest is charged for the rest
                cost += LIST + slot * min(arg, size - pos)
                if arg:
                    if len(stack) >= MAX_DEPTH:
                        return cost
                    stack.append(remaining)
                    remaining = arg
        elif major == 5:
            if arg < 0:
                cost += DICT
                if len(stack) >= MAX_DEPTH:
                    return cost
                stack.append(remaining)
                remaining = -PAIR // 2 * INDEFINITE
            elif arg:
                cost += DICT + PAIR * min(arg, size - pos)
                if len(stack) >= MAX_DEPTH:
                    return cost
                stack.append(remaining)
                remaining = 2 * arg
            else:
                cost += DICT_EMPTY
        elif info >= 25:
            cost += FLOAT
        elif not 20 <= arg <= 23:
            cost += SIMPLE
        in_set = False
