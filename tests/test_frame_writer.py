"""The frame writer: frames arrive whole and in order, however they were handed to the kernel."""

from __future__ import annotations

import trio

from minicluster.rpc.frame_writer import COALESCE_LIMIT, FrameWriter
from minicluster.rpc.protocol import FrameDecoder


async def _read_frames(stream: trio.SocketStream, count: int) -> list[bytes]:
    decoder = FrameDecoder(64 * 1024 * 1024)
    frames: list[bytes] = []
    while len(frames) < count:
        data = await stream.receive_some(1 << 20)
        assert data, "the writer's side closed early"
        decoder.feed(data)
        frames.extend(bytes(payload) for payload in decoder)
    return frames


async def test_large_payloads_arrive_whole_and_in_order_with_the_small_frames_around_them() -> None:
    left, right = trio.socket.socketpair()
    sender, receiver = trio.SocketStream(left), trio.SocketStream(right)
    large = bytes(range(256)) * (4 * COALESCE_LIMIT // 256 + 3)
    # more than the socket buffer takes at once: the direct write is partial, the writer
    # task sends the rest
    huge = b"\x07" * (16 * 1024 * 1024)
    writer = FrameWriter(sender)
    async with sender, receiver, trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.send_payload(large, direct=True)  # header and payload in one writev
        writer.send_payload(b"small")
        writer.send_payload(huge, direct=True)
        writer.send_payload(large)  # queued as two pieces behind the rest
        writer.send_payload(b"last", direct=True)
        with trio.fail_after(10):
            frames = await _read_frames(receiver, 5)
        nursery.cancel_scope.cancel()
    assert frames == [large, b"small", huge, large, b"last"]


async def test_frames_held_back_then_flushed_at_once_arrive_whole_and_in_order() -> None:
    left, right = trio.socket.socketpair()
    sender, receiver = trio.SocketStream(left), trio.SocketStream(right)
    large = bytes(range(256)) * (2 * COALESCE_LIMIT // 256)
    huge = b"\x07" * (16 * 1024 * 1024)  # more than the kernel takes in one write
    writer = FrameWriter(sender)
    async with sender, receiver, trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await trio.sleep(0)  # the writer task parks
        # replies to one read's requests are queued, then written from the reader's task
        for payload in (b"first", huge, b"between", large):
            writer.send_payload(payload)
        writer.flush_direct()
        with trio.fail_after(10):
            frames = await _read_frames(receiver, 4)
        nursery.cancel_scope.cancel()
    assert frames == [b"first", huge, b"between", large]


async def test_a_payload_in_pieces_arrives_as_one_frame_even_when_the_kernel_takes_part() -> None:
    left, right = trio.socket.socketpair()
    sender, receiver = trio.SocketStream(left), trio.SocketStream(right)
    head, tail = b"head of the message ", b" and its tail"
    huge = bytes(range(256)) * (16 * 1024 * 1024 // 256)  # more than one write takes
    writer = FrameWriter(sender)
    async with sender, receiver, trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.send_payload(b"before")
        writer.send_payload([head, huge, tail], direct=True)  # a partial writev, then queued
        writer.send_payload([head, huge], direct=True)  # behind it: queued as pieces
        writer.send_payload(b"after", direct=True)
        with trio.fail_after(10):
            frames = await _read_frames(receiver, 4)
        nursery.cancel_scope.cancel()
    assert frames == [b"before", head + huge + tail, head + huge, b"after"]
