"""The frame writer: one per connection, it queues frames from any task and writes them in batches.

Both sides of a connection use it (`ServerConnection` for replies, `ClientConnection` for calls):
many calls in flight share one write, and a lone frame on a plain socket skips the task switch.
"""

from __future__ import annotations

import os
from typing import Any

import trio

COALESCE_LIMIT = 256 * 1024
WRITEV_PIECES = 64  # well below any system's IOV_MAX
_Abort = trio.lowlevel.Abort


class FrameWriter:
    """Queues frames from any task and writes them, batched, from its own task.

    A lone frame (nothing else queued or about to be) on a plain socket is written at once with
    a non-blocking write from the caller's task; only what the kernel does not take goes to the
    writer task. That saves a task switch per message when calls are sequential, while many
    calls in flight still share one write.
    """

    __slots__ = (
        "_below",
        "_busy",
        "_fd",
        "_flushed",
        "_pending",
        "_stream",
        "_waiter",
        "buffered",
        "closed",
        "held",
    )

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        sock = getattr(stream, "socket", None)
        self._fd: int | None = sock.fileno() if sock is not None else None
        self._pending: list[bytes | memoryview] = []
        self._waiter: trio.lowlevel.Task | None = None
        self._busy = False
        self.closed = False
        self._flushed = trio.Event()
        self.buffered = 0  # bytes queued, not yet handed to the kernel
        # set by a reader answering a batch of requests: it calls flush_direct after the
        # batch (and before it awaits anything), so queued frames need not wake the writer task
        self.held = False
        self._below: list[tuple[int, trio.Event]] = []

    async def wait_below(self, level: int) -> None:
        """Wait until fewer than `level` bytes are queued (or the writer ends)."""
        if self.buffered < level or self.closed:
            return
        event = trio.Event()
        self._below.append((level, event))
        await event.wait()

    def send_payload(self, payload: bytes | list[bytes], direct: bool = False) -> None:
        """Queue one frame made of its header and `payload` (bytes, or pieces of it: see
        `serialization.dumps_around`). A large payload is not copied to put the header before
        it: header and pieces go to the kernel in one `writev`, or are queued as they are (the
        small ones join the frames around them, a large one is written alone)."""
        if isinstance(payload, bytes):
            size = len(payload)
            if size < COALESCE_LIMIT:
                self.send(size.to_bytes(4, "big") + payload, direct)
                return
            pieces: list[bytes | memoryview] = [size.to_bytes(4, "big"), payload]
        else:
            size = sum(map(len, payload))
            pieces = [size.to_bytes(4, "big") + payload[0], *payload[1:]]
        if self.closed:
            return
        if direct and self._fd is not None and not self._busy and not self._pending:
            try:
                written = os.writev(self._fd, pieces)
            except OSError:
                written = 0  # would block, or the writer task meets the same error
            pieces = _after(pieces, written)
        for piece in pieces:
            self._queue(piece)

    def send(self, frame: bytes | memoryview, direct: bool = False) -> None:
        """Queue `frame`; with `direct`, try to write it at once (the caller expects no other
        frame soon, so batching would only add latency)."""
        if self.closed:
            return
        if direct and self._fd is not None and not self._busy and not self._pending:
            try:
                written = os.write(self._fd, frame)
            except BlockingIOError:
                written = 0
            except OSError:
                written = 0  # the writer task meets the same error and ends the connection
            if written == len(frame):
                return
            frame = frame[written:]
        self._queue(frame)

    def _queue(self, frame: bytes | memoryview) -> None:
        self._pending.append(frame)
        self.buffered += len(frame)
        if self._flushed.is_set():
            self._flushed = trio.Event()
        if not self.held:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def flush_direct(self) -> None:
        """Write what is queued now from the caller's task, if the writer task is idle; the
        writer task gets only what the kernel does not take."""
        if self._fd is None or self._busy or not self._pending or self.closed:
            if self._pending:
                self._wake()
            return
        pending = self._pending
        if (
            1 < len(pending) <= WRITEV_PIECES
            and self.buffered >= COALESCE_LIMIT  # else no piece can be that large
            and any(len(piece) >= COALESCE_LIMIT for piece in pending)
        ):
            # a large payload among them (queued apart from its header): hand the pieces to
            # the kernel as they are rather than copy them into one
            try:
                written = os.writev(self._fd, pending)
            except OSError:
                return  # the writer task meets the same error and ends the connection
            self.buffered -= written
            self._pending = _after(pending, written)
        else:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            try:
                written = os.write(self._fd, data)
            except OSError:
                return  # the writer task meets the same error and ends the connection
            self.buffered -= written
            if written == len(data):
                pending.clear()
            else:
                self._pending = [data[written:]]
        if self._pending:
            self._wake()
        if self._below:
            self._wake_below()

    def _abort(self, raise_cancel: Any) -> _Abort:
        self._waiter = None
        return _Abort.SUCCEEDED

    async def run(self) -> None:
        stream = self._stream
        try:
            while True:
                if not self._pending:
                    self._flushed.set()
                    if self.closed:
                        return
                    self._waiter = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._abort)
                    continue
                batch = self._pending
                self._pending = []
                self._busy = True
                try:
                    for chunk in _coalesce(batch):
                        if self._fd is None:
                            await stream.send_all(chunk)
                        else:
                            await self._write(chunk)
                        self.buffered -= len(chunk)
                        if self._below:
                            self._wake_below()
                finally:
                    self._busy = False
        finally:
            self.closed = True
            self._fd = None
            self._flushed.set()
            self.buffered = 0
            self._wake_below()

    async def _write(self, chunk: bytes | memoryview) -> None:
        """Write all of `chunk` to the socket, waiting only while the kernel takes no more.

        A plain socket is written with `os.write`: trio's `send_all` passes through the
        scheduler twice per call even when the kernel takes everything at once, and a writer
        that stays busy across a pass makes the next batch wait for it instead of being
        written by `flush_direct`."""
        fd = self._fd
        assert fd is not None
        view = memoryview(chunk)
        while True:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                raise trio.BrokenResourceError(f"write failed: {exc}") from exc
            if written == len(view):
                return
            view = view[written:]
            await trio.lowlevel.wait_writable(fd)

    def _wake_below(self) -> None:
        keep = []
        for level, event in self._below:
            if self.buffered < level or self.closed:
                event.set()
            else:
                keep.append((level, event))
        self._below = keep

    async def close_after_flush(self, timeout: float = 1.0) -> None:
        """Stop taking frames and wait (a little) until the queued ones are written."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)
        with trio.move_on_after(timeout):
            await self._flushed.wait()
        self._fd = None


def _after(pieces: list[bytes | memoryview], written: int) -> list[bytes | memoryview]:
    """What is left of `pieces` once the kernel took their first `written` bytes."""
    for i, piece in enumerate(pieces):
        if written < len(piece):
            rest = pieces[i:]
            if written:
                rest[0] = memoryview(piece)[written:]
            return rest
        written -= len(piece)
    return []


def _coalesce(frames: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """Join small frames into few writes; large ones go alone, uncopied."""
    if len(frames) == 1:
        return frames
    chunks: list[bytes | memoryview] = []
    group: list[bytes | memoryview] = []
    size = 0
    for frame in frames:
        if len(frame) >= COALESCE_LIMIT:
            if group:
                chunks.append(b"".join(group))
                group, size = [], 0
            chunks.append(frame)
            continue
        group.append(frame)
        size += len(frame)
        if size >= COALESCE_LIMIT:
            chunks.append(b"".join(group))
            group, size = [], 0
    if group:
        chunks.append(b"".join(group))
    return chunks
