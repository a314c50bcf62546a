"""Decoding with a memory budget: a frame can cost the receiver only a small multiple of its
size, however its items are shaped, and strangers (before set-up) get small frames only.

The memory test runs the server in a child process (`python -m tests.test_decode_budget serve
[SECRET]`) and reads its peak resident size (VmHWM in /proc/PID/status) before and after one
hostile frame sent over a raw socket.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

from minicluster.rpc import ProtocolError, open_rpc_service, protocol, serialization
from minicluster.rpc.decode_budget import MAX_COST_PER_BYTE, DecodeBudgetError, decode_cost
from minicluster.rpc.serialization import decode_budget
from tests.rpc_fixtures import Calc, CalcGateway, Point

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def array_of(item: bytes, count: int) -> bytes:
    """A definite-length array of `count` copies of one encoded item."""
    return b"\x9a" + count.to_bytes(4, "big") + item * count


def indefinite_array_of(item: bytes, count: int) -> bytes:
    return b"\x9f" + item * count + b"\xff"


def traced_peak(fn: Any) -> tuple[int, Any]:
    """Peak traced memory while `fn` runs, and what it returned or raised."""
    tracemalloc.start()
    try:
        try:
            outcome: Any = fn()
        except Exception as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


# --- the codec, without sockets -------------------------------------------------------------

HOSTILE_SHAPES = {
    "empty maps": array_of(b"\xa0", MIB),
    "empty arrays": array_of(b"\x80", MIB),
    "small integers": array_of(b"\x00", MIB),
    "integers 24..255": array_of(b"\x18\xff", MIB),
    "empty maps, indefinite": indefinite_array_of(b"\xa0", MIB),
    "integers, indefinite": indefinite_array_of(b"\x18\x20", MIB),
    "one-byte byte strings, indefinite": indefinite_array_of(b"\x41\x00", MIB),
    "half floats": array_of(b"\xf9\x3c\x00", 700_000),
    "maps of one pair": array_of(b"\xa1\x00\x00", 700_000),
    "empty sets": array_of(b"\xd9\x01\x02\x80", 500_000),
    "duplicate keys": b"\xbf" + b"\x00" * MIB + b"\xff",
    "UUIDs": array_of(b"\xd8\x25\x50" + bytes(16), 60_000),
    "short texts": array_of(b"\x62ab", 700_000),
}


@pytest.mark.parametrize("shape", list(HOSTILE_SHAPES))
def test_a_payload_of_cheap_items_is_refused_before_it_takes_memory(shape: str) -> None:
    """Each shape, decoded, would take 4 to 70 times its size (and more than the 4 MiB
    floor); refused, it takes almost nothing beyond the payload itself, and the refusal says
    why in one sentence."""
    data = HOSTILE_SHAPES[shape]
    peak, outcome = traced_peak(lambda: serialization.loads(data))
    assert isinstance(outcome, DecodeBudgetError), outcome
    assert isinstance(outcome, ProtocolError)
    assert "budget" in str(outcome) and f"{len(data)} bytes" in str(outcome)
    assert peak < len(data) // 4 + 64 * 1024


def test_the_estimate_is_close_to_what_decoding_really_takes() -> None:
    """Never far below the real cost (that would let a frame through), nor far above it
    (that would refuse ordinary ones)."""
    samples = {
        "maps": [{}] * 20_000,
        "lists": [[1, 2]] * 20_000,
        "integers": list(range(300, 20_300)),
        "floats": [1.5] * 20_000,
        "texts": ["t" * 20] * 20_000,
        "domain objects": [Point(i, -i) for i in range(5_000)],
        "sets": [set(range(300, 20_300))],
        "a large map": {i: str(i) for i in range(20_000)},
        "UUIDs": [uuid.UUID(int=i) for i in range(5_000)],
    }
    for name, value in samples.items():
        data = serialization.dumps(value)
        real, decoded = traced_peak(lambda d=data: serialization.loads(d, budget=1 << 40))
        assert not isinstance(decoded, Exception)
        estimate = decode_cost(data)
        assert 0.7 * real <= estimate <= 4 * real, (name, estimate, real)


def test_ordinary_messages_decode_within_the_budget() -> None:
    messages = {
        "1 MiB of bytes": protocol.call(1, "calc", "echo", [b"x" * MIB], {}),
        "9 MiB of bytes": protocol.call(1, "calc", "echo", [b"x" * (9 * MIB)], {}),
        "2000 domain objects": protocol.reply(7, [Point(i, i) for i in range(2000)]),
        "a page of text": protocol.reply(7, "lorem ipsum " * 100_000),
        "texts of 80 characters": protocol.reply(7, ["t" * 80] * 20_000),
    }
    for name, message in messages.items():
        payload = protocol.encode_message(message)
        assert protocol.decode_message(payload)["type"] == message["type"], name


def test_the_budget_is_a_quarter_more_than_the_size_but_at_least_4_mib() -> None:
    assert decode_budget(100) == 4 * MIB
    assert decode_budget(10 * MIB) == 12.5 * MIB
    small = array_of(b"\xa0", 50_000)  # 3.6 MB of maps from 50 KB: under the floor
    assert len(serialization.loads(small)) == 50_000
    with pytest.raises(DecodeBudgetError):
        serialization.loads(small, budget=100_000)


def test_a_small_payload_cannot_pass_the_default_budget_so_it_is_never_walked() -> None:
    # serialization.loads decodes payloads up to _COPY_LIMIT without the walk: that is only
    # safe while even their costliest bytes stay under the floor of the budget
    limit = serialization._COPY_LIMIT
    assert limit * MAX_COST_PER_BYTE <= serialization.DECODE_BUDGET_FLOOR
    costliest = array_of(b"\xd9\x01\x02\x80", (limit - 8) // 4)  # sets around empty arrays
    assert len(costliest) <= limit
    assert decode_cost(costliest) <= decode_budget(len(costliest))
    assert len(serialization.loads(costliest)) == (limit - 8) // 4


def test_set_up_messages_get_a_small_budget() -> None:
    hello = protocol.encode_message(protocol.hello())
    assert protocol.decode_message(hello, protocol.SETUP_DECODE_BUDGET)["type"] == "hello"
    stuffed = protocol.encode_message({**protocol.auth(b"p" * 32), "pad": [{}] * 1000})
    assert len(stuffed) < protocol.SETUP_MAX_FRAME_SIZE
    assert protocol.decode_message(stuffed)["type"] == "auth"
    with pytest.raises(DecodeBudgetError) as refused:
        protocol.decode_message(stuffed, protocol.SETUP_DECODE_BUDGET)
    assert refused.value.request_id is None


def test_a_raised_frame_limit_applies_to_frames_already_buffered() -> None:
    """The server raises the limit after set-up; a call pipelined behind the hello, already
    read, must pass under the new limit and not be lost."""
    decoder = protocol.FrameDecoder(max_frame_size=100)
    small, large = b"h" * 10, b"c" * 1000
    decoder.feed(protocol.frame_bytes(small) + protocol.frame_bytes(large))
    got = []
    for payload in decoder:
        got.append(payload)
        decoder.max_frame_size = 10_000
    assert got == [small, large]


@pytest.mark.parametrize("piece", [1000, 65536, 300_000, 4 * MIB])
def test_a_large_frame_fed_in_pieces_comes_out_whole_and_in_order(piece: int) -> None:
    """Large payloads are gathered apart from the buffer; frames around them keep their order
    and nothing is lost or held back."""
    payloads = [b"a" * 10, bytes(range(256)) * 5000, b"b" * 10, b"c" * (2 * MIB), b"d"]
    stream = b"".join(protocol.frame_bytes(p) for p in payloads)
    decoder = protocol.FrameDecoder(max_frame_size=4 * MIB)
    got: list[bytes] = []
    for start in range(0, len(stream), piece):
        decoder.feed(stream[start : start + piece])
        assert decoder.receive_size() <= 16 * MIB
        got.extend(decoder)
    assert got == payloads and decoder.buffered == 0


# --- a live server ----------------------------------------------------------------------------


async def raw_exchange(port: int, *frames: bytes) -> list[dict[str, Any] | None]:
    """Send frames (tolerating a peer that hangs up mid-send), then read messages to EOF."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    decoder = protocol.FrameDecoder(64 * MIB)
    seen: list[dict[str, Any] | None] = []
    async with stream:
        try:
            for frame in frames:
                await stream.send_all(frame)
        except trio.BrokenResourceError:
            pass
        with trio.fail_after(10):
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    seen.append(None)
                    return seen
                decoder.feed(data)
                seen.extend(cbor2.loads(payload) for payload in decoder)


HELLO = protocol.encode_frame(protocol.hello())


async def test_a_frame_over_budget_gets_goodbye_and_other_clients_are_served() -> None:
    async with open_rpc_service("127.0.0.1") as server:
        Calc(server).start()
        assert server.port is not None
        async with open_rpc_service() as client:
            calc = await client.connect(f"{server.address}/calc", CalcGateway)
            hostile = protocol.frame_bytes(array_of(b"\xa0", 4 * MIB))
            seen = await raw_exchange(server.port, HELLO, hostile)
            assert [m and m["type"] for m in seen] == ["welcome", "goodbye", None]
            assert seen[1] is not None and "budget" in seen[1]["reason"]
            assert await calc.add(1, 2) == 3


async def test_a_stranger_cannot_send_a_large_frame_before_set_up() -> None:
    """With a secret, the auth frame is held to the set-up limit: its header is enough to
    refuse it, whatever follows."""
    async with open_rpc_service("127.0.0.1", secret=b"s" * 32) as server:
        assert server.port is not None
        big_auth = protocol.encode_frame({**protocol.auth(b"p" * 32), "pad": b"x" * 8000})
        seen = await raw_exchange(server.port, HELLO, big_auth)
        assert [m and m["type"] for m in seen] == ["welcome", "goodbye", None]
        assert seen[1] is not None
        assert seen[1]["reason"] == (
            f"frame of {len(big_auth) - 4} bytes exceeds the limit of "
            f"{protocol.SETUP_MAX_FRAME_SIZE} bytes before set-up; closing the connection"
        )
        hostile_hello = protocol.encode_frame({**protocol.hello(), "pad": [{}] * 1000})
        seen = await raw_exchange(server.port, hostile_hello)
        assert [m and m["type"] for m in seen] == ["goodbye", None]
        assert seen[0] is not None and "budget" in seen[0]["reason"]


# --- peak memory of a server process ----------------------------------------------------------


def serve(secret: str | None) -> None:
    """The server of the memory test: prints its port, serves until killed."""

    async def main() -> None:
        key = secret.encode() if secret else None
        async with open_rpc_service("127.0.0.1", secret=key) as service:
            Calc(service).start()
            print(service.port, flush=True)
            await trio.sleep_forever()

    trio.run(main)


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


@asynccontextmanager
async def server_process(secret: str | None = None) -> AsyncIterator[tuple[int, int]]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.test_decode_budget", "serve", *([secret] if secret else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some(100)
                assert data, "the server process ended before it served"
                line += data
        yield process.pid, int(line)
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
async def test_one_hostile_frame_raises_the_servers_peak_memory_by_at_most_4x_its_size() -> None:
    """10 MiB of empty maps (a0...) used to take 750 MiB to decode, and a 9 MiB auth frame
    of them 670 MiB before it was refused. The peak
    resident size only grows, so each case gets a server process of its own."""
    size = 10 * MIB - 64
    maps = protocol.frame_bytes(array_of(b"\xa0", size - 5))
    arrays = protocol.frame_bytes(indefinite_array_of(b"\x80", size - 2))
    auth = protocol.frame_bytes(
        b"\xa2"
        + cbor2.dumps("type")
        + cbor2.dumps("auth")
        + cbor2.dumps("proof")
        + array_of(b"\xa0", 9 * MIB)
    )
    # just under the budget: an 8 MiB byte string and as many empty maps as it allows
    blob = b"\x5a" + (8 * MIB).to_bytes(4, "big") + bytes(8 * MIB)
    factor = serialization.DECODE_BUDGET_FACTOR_PERCENT / 100
    maps_allowed = int(((factor - 1) * len(blob) - 4096) / (72 - factor))
    filled = b"\x82" + blob + array_of(b"\xa0", maps_allowed)
    assert decode_budget(len(filled)) - 8192 < decode_cost(filled) <= decode_budget(len(filled))
    cases = {
        "empty maps": maps,
        "empty arrays, indefinite": arrays,
        "bytes and maps, just under the budget": protocol.frame_bytes(filled),
    }
    growth: dict[str, float] = {}
    for name, frame in cases.items():
        async with server_process() as (pid, port):  # a fresh one: its peak only grows
            before = peak_rss(pid)
            seen = await raw_exchange(port, HELLO, frame)
            assert [m and m["type"] for m in seen] == ["welcome", "goodbye", None], name
            growth[name] = (peak_rss(pid) - before) / len(frame)
    async with server_process(secret="s3cret") as (pid, port):
        before = peak_rss(pid)
        seen = await raw_exchange(port, HELLO, auth)
        assert seen[0] is not None and seen[0]["type"] == "welcome"
        growth["auth before set-up"] = (peak_rss(pid) - before) / len(auth)
    print("\npeak RSS growth per frame byte:", {k: f"{v:.2f}x" for k, v in growth.items()})
    assert all(ratio <= 4 for ratio in growth.values()), growth


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2] if len(sys.argv) > 2 else None)
