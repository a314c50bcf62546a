"""Large byte strings: found from item heads, decoded with one copy, the same values as a
whole decode (see minicluster/rpc/large_values.py)."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest

from minicluster.rpc import protocol, serialization
from minicluster.rpc.large_values import LARGE_BYTES, find_large_bytes

BIG = bytes(range(256)) * (LARGE_BYTES // 256) + b"tail"


def _where(message: Any) -> tuple[int, int, int] | None:
    return find_large_bytes(bytearray(cbor2.dumps(message)))


def test_a_large_value_is_found_in_a_reply_and_among_call_arguments() -> None:
    reply = cbor2.dumps({"type": "reply", "id": 3, "value": BIG})
    head, start, length = _where({"type": "reply", "id": 3, "value": BIG}) or (0, 0, 0)
    assert reply[start : start + length] == BIG and start - head == 5  # 0x5a and 4 bytes
    call = {"type": "call", "id": 4, "method": "m", "args": [1, {"a": [2]}, BIG, "x"], "kwargs": {}}
    found = _where(call)
    assert found is not None
    assert cbor2.dumps(call)[found[1] : found[1] + found[2]] == BIG


@pytest.mark.parametrize(
    "payload",
    [
        cbor2.dumps({"a": BIG, "b": BIG}),  # two large values
        cbor2.dumps({"a": {"b": BIG}}),  # deeper than searched
        cbor2.dumps([BIG]),  # not a map
        cbor2.dumps({"a": BIG}) + b"\x00",  # trailing bytes
        cbor2.dumps({"a": BIG})[:-1],  # cut short
        b"\xbf\x61a" + cbor2.dumps(BIG) + b"\xff",  # an indefinite-length map
        cbor2.dumps({"a": list(range(300)), "b": BIG}),  # too many items to read
        cbor2.dumps({"a": b"x" * (LARGE_BYTES - 1)}),  # not large
    ],
)
def test_other_shapes_are_not_searched(payload: bytes) -> None:
    assert find_large_bytes(payload) is None


def test_a_message_decodes_the_same_whether_its_large_value_is_found_or_not() -> None:
    rng = random.Random(7)
    small_values: list[Any] = [1, -7, "text", b"bytes", None, True, 1.5, [1, [2]], {"k": "v"}]
    for _ in range(300):
        big = rng.randbytes(LARGE_BYTES + rng.randrange(1000))
        args = rng.sample(small_values, rng.randrange(4))
        args.insert(rng.randrange(len(args) + 1), big)
        message: dict[str, Any] = {"type": "call", "id": rng.randrange(1 << 40), "args": args}
        if rng.random() < 0.3:
            message = {"type": "reply", "id": 1, "value": big, "extra": args[:1]}
        if rng.random() < 0.2:
            message["more"] = rng.choice([big, [big], {"x": big}])  # two: decoded whole
        encoded = cbor2.dumps(message)
        assert serialization.loads(bytearray(encoded)) == message
    # a duplicate key that overwrites the large value: the last value wins, as decoded whole
    duplicate = b"\xa2\x61a" + cbor2.dumps(BIG) + b"\x61a\x01"
    assert serialization.loads(bytearray(duplicate)) == {"a": 1} == cbor2.loads(duplicate)


def test_a_decoded_large_value_is_a_copy_not_a_view_of_the_frame() -> None:
    # the frame's buffer is received into again (FrameDecoder.give_back)
    frame = bytearray(protocol.encode_message({"type": "reply", "id": 1, "value": BIG}))
    value = protocol.decode_message(frame)["value"]
    frame[:] = b"\x00" * len(frame)
    assert type(value) is bytes and value == BIG
