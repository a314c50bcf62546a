"""Benchmark minicluster's RPC layer against raw trio + CBOR baselines, in one run.

Run by hand (never by pytest):

    python benchmarks/rpc.py            # full run, about a minute
    python benchmarks/rpc.py --quick    # smoke check, well under 30 s
    python benchmarks/rpc.py --json out.json

What is measured, each figure the median of `--rounds` interleaved rounds (baseline, then
minicluster, in every round):

* remote ask: sequential `add(i, 1)` round trips (p50, p99), and calls/s with 64 calls in flight
  on one connection (64 trio tasks sharing one proxy);
* a tell flood: N `note(i)` tells, then one `count()` ask that confirms all N arrived; tells/s;
* a 1 MiB echo (bytes payload): median time per round trip, and MB/s of payload;
* local ask: `add` through `endpoint.get_self_gateway(...)` in the same process.

Baselines, measured in the same run with the same loops:

* remote: raw trio TCP with the same framing as minicluster (4-byte big-endian length, then one
  CBOR map: `{"type": "call", "id": i, "endpoint": "calc", "method": "add", ...}` answered by
  `{"type": "reply", "id": i, "value": ...}`). The raw client has a reader task that matches
  replies to callers by id (a dict of slots, each with a trio.Event) and a writer task that sends
  whatever frames callers queued in one `send_all`; the raw server decodes each frame as it
  arrives and writes the replies for one received chunk with one `send_all`.
* local: a bare trio memory-channel round trip: a server task receives `(a, b, slot)` and answers
  by setting the slot's trio.Event.

Every remote server (raw and minicluster) runs in its own process, this file started again with
the hidden `--serve raw|minicluster --port-file F` mode, listening on 127.0.0.1 port 0; the client
runs in this process. Every loop is bounded in count and in time, and every measurement runs
under a hard time limit, so a hang shows up as an error line instead of a stuck benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import cbor2
import trio

from minicluster.rpc import RpcEndpoint, RpcGateway, RpcService, open_rpc_service

RECEIVE_SIZE = 65536
ENDPOINT = "calc"
SERVER_START_TIMEOUT = 30.0
SERVER_MAX_LIFETIME = 1800.0
CONNECT_TIMEOUT = 10.0
HARD_LIMIT_GRACE = 15.0
NOISY_SPREAD = 0.25


# --- the endpoint under test --------------------------------------------------------------


class CalcGateway(RpcGateway):
    """Bodies never run through a proxy."""

    async def add(self, a: int, b: int) -> int:
        raise NotImplementedError

    async def echo(self, data: bytes) -> bytes:
        raise NotImplementedError

    async def count(self) -> int:
        raise NotImplementedError

    def note(self, x: int) -> None: ...


class Calc(RpcEndpoint, CalcGateway):
    def __init__(self, service: RpcService, endpoint_id: str | None = None) -> None:
        super().__init__(service, endpoint_id)
        self.notes = 0

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def echo(self, data: bytes) -> bytes:
        return data

    async def count(self) -> int:
        return self.notes

    def note(self, x: int) -> None:
        self.notes += 1


class CalcLike(Protocol):
    """What the measurement loops call: a minicluster proxy or a baseline client."""

    async def add(self, a: int, b: int) -> int: ...

    async def echo(self, data: bytes) -> bytes: ...

    async def count(self) -> int: ...

    def note(self, x: int) -> None: ...


class Adder(Protocol):
    async def add(self, a: int, b: int) -> int: ...


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int
    seq_warmup: int
    seq_calls: int
    inflight_calls: int
    concurrency: int
    tells: int
    echo_warmup: int
    echo_calls: int
    echo_size: int
    local_warmup: int
    local_calls: int
    budget_s: float  # soft time limit of one measurement loop; the hard limit adds a grace

    @classmethod
    def full(cls) -> Config:
        return cls(
            rounds=3,
            seq_warmup=500,
            seq_calls=3000,
            inflight_calls=20000,
            concurrency=64,
            tells=20000,
            echo_warmup=10,
            echo_calls=200,
            echo_size=1 << 20,
            local_warmup=1000,
            local_calls=20000,
            budget_s=60.0,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            rounds=3,
            seq_warmup=100,
            seq_calls=500,
            inflight_calls=3000,
            concurrency=64,
            tells=3000,
            echo_warmup=3,
            echo_calls=20,
            echo_size=1 << 20,
            local_warmup=200,
            local_calls=3000,
            budget_s=5.0,
        )


# --- raw baseline: framing, server, client ----------------------------------------------------


def frame(message: dict[str, Any]) -> bytes:
    payload = cbor2.dumps(message)
    return len(payload).to_bytes(4, "big") + payload


def split_frames(buf: bytearray) -> list[dict[str, Any]]:
    """Decode and remove every complete frame at the start of `buf`."""
    messages: list[dict[str, Any]] = []
    pos = 0
    size = len(buf)
    with memoryview(buf) as view:
        while size - pos >= 4:
            length = int.from_bytes(view[pos : pos + 4], "big")
            end = pos + 4 + length
            if end > size:
                break
            messages.append(cbor2.loads(view[pos + 4 : end]))
            pos = end
    if pos:
        del buf[:pos]
    return messages


class RawCalcState:
    def __init__(self) -> None:
        self.notes = 0

    def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        kind = message.get("type")
        method = message.get("method")
        args = message.get("args", [])
        if kind == "tell":
            if method == "note":
                self.notes += 1
            return None
        request_id = message.get("id")
        if method == "add":
            value: Any = args[0] + args[1]
        elif method == "echo":
            value = args[0]
        elif method == "count":
            value = self.notes
        else:
            return {
                "type": "reply",
                "id": request_id,
                "error": {"type": "NoSuchMethodError", "message": f"no method {method!r}"},
            }
        return {"type": "reply", "id": request_id, "value": value}


async def raw_serve_connection(stream: trio.SocketStream) -> None:
    state = RawCalcState()
    buf = bytearray()
    try:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            buf += data
            out: list[bytes] = []
            for message in split_frames(buf):
                reply = state.handle(message)
                if reply is not None:
                    out.append(frame(reply))
            if out:
                await stream.send_all(out[0] if len(out) == 1 else b"".join(out))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


class _Slot:
    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None
        self.error: str | None = None


class RawClient:
    """A minimal multiplexing client: callers queue frames, one writer task sends them, one
    reader task matches replies to callers by id."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._pending: dict[int, _Slot] = {}
        self._next_id = 0
        self._out: list[bytes] = []
        self._wake = trio.Event()
        self._closed: str | None = None

    def _send(self, data: bytes) -> None:
        if self._closed is not None:
            raise ConnectionError(self._closed)
        self._out.append(data)
        self._wake.set()

    async def writer(self) -> None:
        stream = self._stream
        while True:
            if not self._out:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            batch, self._out = self._out, []
            await stream.send_all(batch[0] if len(batch) == 1 else b"".join(batch))

    async def reader(self) -> None:
        buf = bytearray()
        pending = self._pending
        reason = "server closed the connection"
        try:
            while True:
                data = await self._stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                buf += data
                for message in split_frames(buf):
                    slot = pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                    if slot is None:
                        continue
                    if "error" in message:
                        slot.error = str(message["error"])
                    else:
                        slot.value = message.get("value")
                    slot.event.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            reason = f"connection lost: {exc!r}"
        self._closed = reason
        for slot in pending.values():
            slot.error = reason
            slot.event.set()
        pending.clear()

    async def _call(self, method: str, args: list[Any]) -> Any:
        self._next_id = request_id = self._next_id + 1
        slot = _Slot()
        self._pending[request_id] = slot
        message = {
            "type": "call",
            "id": request_id,
            "endpoint": ENDPOINT,
            "method": method,
            "args": args,
            "kwargs": {},
        }
        self._send(frame(message))
        await slot.event.wait()
        if slot.error is not None:
            raise RuntimeError(f"raw call {method} failed: {slot.error}")
        return slot.value

    async def add(self, a: int, b: int) -> int:
        return int(await self._call("add", [a, b]))

    async def echo(self, data: bytes) -> bytes:
        return bytes(await self._call("echo", [data]))

    async def count(self) -> int:
        return int(await self._call("count", []))

    def note(self, x: int) -> None:
        message = {
            "type": "tell",
            "endpoint": ENDPOINT,
            "method": "note",
            "args": [x],
            "kwargs": {},
        }
        self._send(frame(message))


# --- memory-channel baseline ------------------------------------------------------------------


class MemoryChannelAdder:
    def __init__(self, send: trio.MemorySendChannel[tuple[int, int, _Slot]]) -> None:
        self._send = send

    async def add(self, a: int, b: int) -> int:
        slot = _Slot()
        await self._send.send((a, b, slot))
        await slot.event.wait()
        return int(slot.value)


async def memory_channel_server(receive: trio.MemoryReceiveChannel[tuple[int, int, _Slot]]) -> None:
    async for a, b, slot in receive:
        slot.value = a + b
        slot.event.set()


# --- servers in their own process ---------------------------------------------------------------


def write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(str(port))
    os.replace(tmp, path)


async def wait_for_stdin_eof() -> None:
    """The parent holds our stdin open; EOF means it is done with us (or gone)."""
    with trio.move_on_after(SERVER_MAX_LIFETIME):
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


async def serve(kind: str, port_file: str) -> None:
    if kind == "raw":
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, raw_serve_connection, 0, host="127.0.0.1")
            )
            write_port_file(port_file, listeners[0].socket.getsockname()[1])
            await wait_for_stdin_eof()
            nursery.cancel_scope.cancel()
    elif kind == "minicluster":
        async with open_rpc_service("127.0.0.1", name="bench-server") as service:
            Calc(service, ENDPOINT).start()
            assert service.port is not None
            write_port_file(port_file, service.port)
            await wait_for_stdin_eof()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


class ServerProcess:
    """`python benchmarks/rpc.py --serve KIND` in a child process; yields its port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._dir = tempfile.mkdtemp(prefix="rpc-bench-")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> int:
        port_file = os.path.join(self._dir, "port")
        self._proc = proc = subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--serve",
                self.kind,
                "--port-file",
                port_file,
            ],
            stdin=subprocess.PIPE,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not os.path.exists(port_file):
            if proc.poll() is not None:
                self._cleanup()
                raise RuntimeError(
                    f"{self.kind} server exited with {proc.returncode} before listening"
                )
            if time.monotonic() > deadline:
                self._cleanup()
                raise RuntimeError(
                    f"{self.kind} server not listening after {SERVER_START_TIMEOUT} s"
                )
            time.sleep(0.02)
        return int(Path(port_file).read_text())

    def __exit__(self, *exc: object) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  ! {self.kind} server did not exit on EOF; killing it", file=sys.stderr)
                proc.kill()
                proc.wait(timeout=10)
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


# --- measurement loops (shared by baseline and minicluster) --------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


async def measure_sequential(client: Adder, cfg: Config, prefix: str) -> dict[str, float]:
    deadline = time.perf_counter() + cfg.budget_s
    for i in range(cfg.seq_warmup):
        await client.add(i, 1)
        if time.perf_counter() > deadline:
            break
    add = client.add
    clock = time.perf_counter_ns
    latencies: list[int] = []
    deadline = time.perf_counter() + cfg.budget_s
    start = clock()
    for i in range(cfg.seq_calls):
        t0 = clock()
        result = await add(i, 1)
        latencies.append(clock() - t0)
        if result != i + 1:
            raise AssertionError(f"add({i}, 1) returned {result!r}")
        if not i & 63 and time.perf_counter() > deadline:
            break
    elapsed_ns = clock() - start
    latencies.sort()
    return {
        f"{prefix}_p50_us": percentile(latencies, 0.50) / 1e3,
        f"{prefix}_p99_us": percentile(latencies, 0.99) / 1e3,
        f"{prefix}_mean_us": elapsed_ns / len(latencies) / 1e3,
        f"{prefix}_n": len(latencies),
    }


async def measure_inflight(client: Adder, cfg: Config) -> dict[str, float]:
    concurrency = cfg.concurrency
    add = client.add
    done = 0
    deadline = math.inf

    async def worker(calls: int) -> None:
        nonlocal done
        for i in range(calls):
            result = await add(i, 1)
            if result != i + 1:
                raise AssertionError(f"add({i}, 1) returned {result!r}")
            done += 1
            if not i & 15 and time.perf_counter() > deadline:
                return

    async def run(total: int) -> float:
        share, extra = divmod(total, concurrency)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(concurrency):
                nursery.start_soon(worker, share + (1 if k < extra else 0))
        return time.perf_counter() - start

    deadline = time.perf_counter() + cfg.budget_s
    await run(concurrency * 8)  # warm-up
    done = 0
    deadline = time.perf_counter() + cfg.budget_s
    elapsed = await run(cfg.inflight_calls)
    return {"remote_inflight_calls_per_s": done / elapsed, "remote_inflight_n": done}


async def measure_tells(client: CalcLike, cfg: Config) -> dict[str, float]:
    before = await client.count()
    note = client.note
    deadline = time.perf_counter() + cfg.budget_s
    sent = 0
    start = time.perf_counter()
    for i in range(cfg.tells):
        note(i)
        sent += 1
        if not i & 1023 and time.perf_counter() > deadline:
            break
    seen = await client.count() - before
    elapsed = time.perf_counter() - start
    if seen != sent:
        raise AssertionError(f"sent {sent} tells but the endpoint counted {seen}")
    return {"tell_flood_tells_per_s": sent / elapsed, "tell_flood_n": sent}


async def measure_echo(client: CalcLike, cfg: Config, payload: bytes) -> dict[str, float]:
    deadline = time.perf_counter() + cfg.budget_s
    for _ in range(cfg.echo_warmup):
        if await client.echo(payload) != payload:
            raise AssertionError("echo returned different bytes")
        if time.perf_counter() > deadline:
            break
    times: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    for _ in range(cfg.echo_calls):
        t0 = time.perf_counter()
        result = await client.echo(payload)
        times.append(time.perf_counter() - t0)
        if len(result) != len(payload):
            raise AssertionError(f"echo returned {len(result)} bytes, sent {len(payload)}")
        if time.perf_counter() > deadline:
            break
    median = statistics.median(times)
    return {
        "echo_median_ms": median * 1e3,
        "echo_mb_per_s": len(payload) / median / 1e6,
        "echo_n": len(times),
    }


async def measure_local(client: Adder, cfg: Config) -> dict[str, float]:
    figures = await measure_sequential(
        client,
        Config(**{**asdict(cfg), "seq_warmup": cfg.local_warmup, "seq_calls": cfg.local_calls}),
        "local",
    )
    return {
        "local_median_us": figures["local_p50_us"],
        "local_mean_us": figures["local_mean_us"],
        "local_n": figures["local_n"],
    }


async def guarded(
    what: str,
    errors: list[str],
    cfg: Config,
    measure: Callable[[], Awaitable[dict[str, float]]],
) -> dict[str, float]:
    """Run one measurement under a hard time limit; record a failure instead of raising."""
    limit = 2 * cfg.budget_s + HARD_LIMIT_GRACE
    try:
        with trio.fail_after(limit):
            return await measure()
    except trio.TooSlowError:
        errors.append(f"{what}: no result within {limit:g} s (hang?)")
    except Exception as exc:
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
    return {}


async def remote_set(
    client: CalcLike, cfg: Config, payload: bytes, label: str, errors: list[str]
) -> dict[str, float]:
    figures: dict[str, float] = {}
    figures |= await guarded(
        f"{label} sequential ask",
        errors,
        cfg,
        lambda: measure_sequential(client, cfg, "remote_seq"),
    )
    figures |= await guarded(
        f"{label} {cfg.concurrency} in flight", errors, cfg, lambda: measure_inflight(client, cfg)
    )
    figures |= await guarded(f"{label} tell flood", errors, cfg, lambda: measure_tells(client, cfg))
    figures |= await guarded(
        f"{label} 1 MiB echo", errors, cfg, lambda: measure_echo(client, cfg, payload)
    )
    return figures


# --- one side of one round ----------------------------------------------------------------------


async def raw_remote(port: int, cfg: Config, payload: bytes, errors: list[str]) -> dict[str, float]:
    with trio.fail_after(CONNECT_TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as nursery:
        client = RawClient(stream)
        nursery.start_soon(client.reader)
        nursery.start_soon(client.writer)
        figures = await remote_set(client, cfg, payload, "raw", errors)
        nursery.cancel_scope.cancel()
    return figures


async def minicluster_remote(
    port: int, cfg: Config, payload: bytes, errors: list[str]
) -> dict[str, float]:
    async with open_rpc_service(name="bench-client") as service:
        gateway = await service.connect(
            f"tcp://127.0.0.1:{port}/{ENDPOINT}", CalcGateway, timeout=CONNECT_TIMEOUT
        )
        return await remote_set(gateway, cfg, payload, "minicluster", errors)


async def memory_channel_local(cfg: Config, errors: list[str]) -> dict[str, float]:
    send, receive = trio.open_memory_channel[tuple[int, int, _Slot]](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(memory_channel_server, receive)
        figures = await guarded(
            "memory-channel round trip",
            errors,
            cfg,
            lambda: measure_local(MemoryChannelAdder(send), cfg),
        )
        nursery.cancel_scope.cancel()
    return figures


async def minicluster_local(cfg: Config, errors: list[str]) -> dict[str, float]:
    async with open_rpc_service(name="bench-local") as service:
        endpoint = Calc(service, ENDPOINT)
        endpoint.start()
        gateway = endpoint.get_self_gateway(CalcGateway)
        return await guarded(
            "minicluster local ask", errors, cfg, lambda: measure_local(gateway, cfg)
        )


def run_side(
    what: str, errors: list[str], fn: Callable[..., Awaitable[dict[str, float]]], *args: Any
) -> dict[str, float]:
    """trio.run one side of a round; a crash becomes an error line, not a traceback."""
    started = time.perf_counter()
    print(f"  {what} ...", end="", file=sys.stderr, flush=True)
    try:
        figures = trio.run(partial(fn, *args, errors))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        figures = {}
    print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return figures


def run_round(cfg: Config, payload: bytes, errors: list[str]) -> dict[str, dict[str, float]]:
    baseline: dict[str, float] = {}
    minicluster: dict[str, float] = {}
    try:
        with ServerProcess("raw") as port:
            baseline |= run_side("raw remote", errors, raw_remote, port, cfg, payload)
    except RuntimeError as exc:
        errors.append(f"raw server: {exc}")
    try:
        with ServerProcess("minicluster") as port:
            minicluster |= run_side(
                "minicluster remote", errors, minicluster_remote, port, cfg, payload
            )
    except RuntimeError as exc:
        errors.append(f"minicluster server: {exc}")
    baseline |= run_side("memory channel", errors, memory_channel_local, cfg)
    minicluster |= run_side("minicluster local", errors, minicluster_local, cfg)
    return {"baseline": baseline, "minicluster": minicluster}


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    lower_is_better: bool


ROWS = [
    Row("remote_seq_p50_us", "remote ask, sequential p50", "us", True),
    Row("remote_seq_p99_us", "remote ask, sequential p99", "us", True),
    Row("remote_seq_mean_us", "remote ask, sequential mean", "us", True),
    Row("remote_inflight_calls_per_s", "remote ask, 64 in flight", "calls/s", False),
    Row("tell_flood_tells_per_s", "tell flood (+1 confirming ask)", "tells/s", False),
    Row("echo_median_ms", "1 MiB echo, median round trip", "ms", True),
    Row("echo_mb_per_s", "1 MiB echo, payload throughput", "MB/s", False),
    Row("local_median_us", "local ask, per-call median", "us", True),
    Row("local_mean_us", "local ask, per-call mean", "us", True),
]

# (what, figure key, comparison, limit) -- the ratio is always minicluster / baseline.
BARS = [
    ("remote sequential p50 <= 1.3x raw", "remote_seq_p50_us", "<=", 1.3),
    ("64-in-flight throughput >= 0.7x raw", "remote_inflight_calls_per_s", ">=", 0.7),
    ("local ask <= 2x memory-channel round trip (median)", "local_median_us", "<=", 2.0),
    ("1 MiB echo throughput >= 0.7x raw", "echo_mb_per_s", ">=", 0.7),
]


def median_of(rounds: list[dict[str, dict[str, float]]], side: str, key: str) -> float | None:
    values = [r[side][key] for r in rounds if key in r[side]]
    return statistics.median(values) if values else None


def spread_of(rounds: list[dict[str, dict[str, float]]], side: str, key: str) -> float | None:
    """(max - min) / median across rounds: how far the rounds disagree."""
    values = [r[side][key] for r in rounds if key in r[side]]
    if len(values) < 2 or statistics.median(values) == 0:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_of(base: float | None, mini: float | None) -> float | None:
    if base is None or mini is None or base == 0:
        return None
    return mini / base


def report(
    cfg: Config,
    rounds: list[dict[str, dict[str, float]]],
    errors: list[str],
    quick: bool,
    elapsed: float,
    load_before: float,
) -> dict[str, Any]:
    medians = {
        side: {row.key: median_of(rounds, side, row.key) for row in ROWS}
        for side in ("baseline", "minicluster")
    }
    ratios = {
        row.key: ratio_of(medians["baseline"][row.key], medians["minicluster"][row.key])
        for row in ROWS
    }

    print()
    print(
        f"minicluster RPC benchmark ({'quick' if quick else 'full'}): median of {len(rounds)} "
        f"interleaved rounds, {elapsed:.1f} s"
    )
    print(
        f"python {platform.python_version()}, trio {trio.__version__}, cbor2 {version('cbor2')}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    load_after = os.getloadavg()[0]
    print(f"1-minute load average before / after the run: {load_before:.2f} / {load_after:.2f}")
    print(
        f"per round: {cfg.seq_calls} sequential asks (after {cfg.seq_warmup} warm-up), "
        f"{cfg.inflight_calls} asks with {cfg.concurrency} in flight, {cfg.tells} tells, "
        f"{cfg.echo_calls} echoes of {cfg.echo_size} bytes, {cfg.local_calls} local asks"
    )
    print("baseline: remote = raw trio TCP + same CBOR framing (server in another process);")
    print("          local  = trio memory-channel round trip (request + reply Event)")
    print()
    headers = ("measure", "unit", "baseline", "minicluster", "ratio mc/base", "better")
    table = [headers]
    for row in ROWS:
        ratio = ratios[row.key]
        table.append(
            (
                row.label,
                row.unit,
                fmt(medians["baseline"][row.key]),
                fmt(medians["minicluster"][row.key]),
                "n/a" if ratio is None else f"{ratio:.2f}x",
                "lower" if row.lower_is_better else "higher",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    for n, line in enumerate(table):
        cells = [
            cell.ljust(widths[i]) if i in (0, 1, 5) else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))

    print()
    print("bars (ratio = minicluster / baseline):")
    bars: list[dict[str, Any]] = []
    for what, key, op, limit in BARS:
        ratio = ratios[key]
        if ratio is None:
            ok = False
            shown = "n/a"
        else:
            ok = ratio <= limit if op == "<=" else ratio >= limit
            shown = f"{ratio:.2f}x"
        print(f"  {'PASS' if ok else 'FAIL'}  {what:<52} ratio {shown}")
        bars.append(
            {"bar": what, "figure": key, "op": op, "limit": limit, "ratio": ratio, "pass": ok}
        )

    print()
    print("per round (baseline / minicluster):")
    for row in ROWS:
        cells = [
            f"{fmt(r['baseline'].get(row.key))} / {fmt(r['minicluster'].get(row.key))}"
            for r in rounds
        ]
        print(f"  {row.label:<32} {' | '.join(cells)}")

    spreads = {
        side: {row.key: spread_of(rounds, side, row.key) for row in ROWS}
        for side in ("baseline", "minicluster")
    }
    noisy = [
        f"{row.label} ({side}: rounds differ by {spreads[side][row.key]:.0%})"
        for row in ROWS
        for side in ("baseline", "minicluster")
        if not row.key.endswith("_p99_us")  # a tail is noisy by nature
        and (spreads[side][row.key] or 0.0) > NOISY_SPREAD
    ]
    if noisy:
        print()
        print(
            f"NOISY (rounds differ by more than {NOISY_SPREAD:.0%} of the median; "
            "other load on the machine? rerun when it is idle):"
        )
        for entry in noisy:
            print(f"  ~ {entry}")

    if errors:
        print()
        print("ERRORS:")
        for message in errors:
            print(f"  ! {message}")

    return {
        "mode": "quick" if quick else "full",
        "config": asdict(cfg),
        "environment": {
            "python": platform.python_version(),
            "trio": trio.__version__,
            "cbor2": version("cbor2"),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "elapsed_s": elapsed,
        "load_average_1min": {"before": load_before, "after": load_after},
        "spread": spreads,
        "noisy": noisy,
        "median": medians,
        "ratio_minicluster_over_baseline": ratios,
        "lower_is_better": {row.key: row.lower_is_better for row in ROWS},
        "bars": bars,
        "rounds": rounds,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke check)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--serve", choices=("raw", "minicluster"), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        if not args.port_file:
            parser.error("--serve needs --port-file")
        trio.run(serve, args.serve, args.port_file)
        return 0

    cfg = Config.quick() if args.quick else Config.full()
    if args.rounds is not None:
        if not 1 <= args.rounds <= 20:
            parser.error("--rounds must be between 1 and 20")
        cfg = Config(**{**asdict(cfg), "rounds": args.rounds})
    payload = os.urandom(cfg.echo_size)
    errors: list[str] = []
    rounds: list[dict[str, dict[str, float]]] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for n in range(cfg.rounds):
        print(f"round {n + 1}/{cfg.rounds}", file=sys.stderr, flush=True)
        rounds.append(run_round(cfg, payload, errors))
    result = report(cfg, rounds, errors, args.quick, time.perf_counter() - started, load_before)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
