"""The floor of benchmarks/fair.py: the best plain trio + cbor2 code with minicluster's framing
(a 4-byte length, then one CBOR map), no RPC layer: a server that answers inline on its reader
task (raw-inline), one that starts a task per request (raw-task) or runs them one at a time
(raw-serial), and the client they are measured with. Kept apart from the harness so that what
the floor does can be read in one place."""

from __future__ import annotations

from typing import Any

import cbor2
import trio

RECEIVE_SIZE = 65536
ENDPOINT = "calc"  # the endpoint name the calls carry (the raw servers ignore it)


def frame(message: dict[str, Any]) -> bytes:
    payload = cbor2.dumps(message)
    return len(payload).to_bytes(4, "big") + payload


def answer(message: dict[str, Any]) -> bytes:
    method = message["method"]
    args = message["args"]
    value = args[0] + args[1] if method == "add" else args[0]
    return frame({"type": "reply", "id": message["id"], "value": value})


class Framer:
    """Frames out of received chunks, each decoded from `bytes`; a frame longer than one read
    is joined once, when it is complete (no quadratic re-joining)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.need = 4

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.chunks.append(data)
        self.size += len(data)
        if self.size < self.need:
            return []
        buf = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        messages = []
        pos = 0
        size = len(buf)
        self.need = 4
        while size - pos >= 4:
            end = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
            if end > size:
                self.need = end - pos
                break
            messages.append(cbor2.loads(buf[pos + 4 : end] if pos or end < size else buf[4:]))
            pos = end
        rest = buf[pos:] if pos else buf
        self.chunks = [rest] if rest else []
        self.size = len(rest)
        return messages


async def raw_inline_connection(stream: trio.SocketStream) -> None:
    framer = Framer()
    try:
        while data := await stream.receive_some(RECEIVE_SIZE):
            messages = framer.feed(data)
            if messages:
                await stream.send_all(b"".join([answer(m) for m in messages]))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


class DirectSender:
    """`send_all` from the sending task itself (no writer task); whoever finds a send under
    way leaves its bytes for that task, which writes everything queued meanwhile at once."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._out: list[bytes] = []
        self._sending = False

    async def send(self, data: bytes) -> None:
        self._out.append(data)
        if self._sending:
            return
        self._sending = True
        try:
            while self._out:
                out, self._out = self._out, []
                await self._stream.send_all(out[0] if len(out) == 1 else b"".join(out))
        finally:
            self._sending = False


async def raw_task_connection(stream: trio.SocketStream, one_at_a_time: bool = False) -> None:
    sender = DirectSender(stream)
    lock = trio.Lock()  # fair: calls go through it in the order they came

    async def handle(message: dict[str, Any]) -> None:
        if one_at_a_time:
            async with lock:
                await trio.sleep(0)
                reply = answer(message)
        else:
            await trio.sleep(0)
            reply = answer(message)
        await sender.send(reply)

    framer = Framer()
    try:
        async with trio.open_nursery() as nursery:
            while data := await stream.receive_some(RECEIVE_SIZE):
                for message in framer.feed(data):
                    nursery.start_soon(handle, message)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


class Slot:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None


class RawClient:
    """Callers send straight from their own task (`DirectSender`, no writer task); one reader
    task hands replies back by id."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._sender = DirectSender(stream)
        self._pending: dict[int, Slot] = {}
        self._next_id = 0

    async def reader(self) -> None:
        framer = Framer()
        pending = self._pending
        while data := await self._stream.receive_some(RECEIVE_SIZE):
            for message in framer.feed(data):
                slot = pending.pop(message["id"])
                slot.value = message["value"]
                slot.event.set()
        raise ConnectionError("server closed the connection")

    async def _call(self, method: str, args: list[Any]) -> Any:
        self._next_id = request_id = self._next_id + 1
        slot = self._pending[request_id] = Slot()
        data = frame(
            {
                "type": "call",
                "id": request_id,
                "endpoint": ENDPOINT,
                "method": method,
                "args": args,
                "kwargs": {},
            }
        )
        await self._sender.send(data)
        await slot.event.wait()
        return slot.value

    async def add(self, a: int, b: int) -> int:
        return int(await self._call("add", [a, b]))

    async def echo(self, data: bytes) -> bytes:
        return bytes(await self._call("echo", [data]))
