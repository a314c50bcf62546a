"""Benchmark minicluster's RPC layer against other Python RPC and actor libraries, in one run.

Run by hand (never by pytest); the peers are an optional extra (`pip install -e '.[peers]'`):

    python benchmarks/peers.py            # full run, a few minutes
    python benchmarks/peers.py --quick    # smoke check, under a minute
    python benchmarks/peers.py --json out.json --peers minicluster,rpyc

The same workload for every remote peer, each figure the median of `--rounds` interleaved rounds
(every round runs every peer once, the order rotated by one peer each round):

* sequential `add(i, 1)` round trips: p50, p99 (and mean) per call;
* `add(i, 1)` with 64 calls in flight: calls/s over 20,000 calls;
* a 1 MiB echo (random bytes): median time per round trip.

Remote peers, each server in its own process (this file started again with the hidden
`--serve KIND --port-file F` mode, listening on 127.0.0.1 port 0), the client in this process:

* raw trio + cbor2: the floor, the raw server and multiplexing client of benchmarks/rpc.py (same
  framing as minicluster); 64 trio tasks share one connection.
* minicluster: `open_rpc_service` + `connect`; 64 trio tasks share one gateway proxy (one TCP
  connection, calls multiplexed by id).
* Pyro5 (msgpack serializer, threaded server with a pool of 128, TCP_NODELAY on both sides):
  Pyro5 proxies are synchronous and owned by one thread, so 64 threads with one proxy (one
  connection) each.
* RPyC (ThreadedServer, one thread per connection): 64 threads with one connection each (the
  row "RPyC"), and separately `rpyc.async_` pipelining 64 requests on one connection from one
  thread (the row "RPyC async_", calls/s only).
* dask distributed: a `distributed.core.Server` with `add`/`echo` handlers; the client is
  `distributed.core.rpc` on asyncio; 64 asyncio tasks share one `rpc` object, which opens a
  connection per concurrent call (as dask itself does).
* grpc.aio: no code generation; generic handlers (`grpc.method_handlers_generic_handler`) over
  raw bytes, `add` packed with `struct` ('!qq' -> '!q'), `echo` passes the bytes through; one
  channel (HTTP/2), 64 asyncio tasks share it.

Local (in this process): minicluster's local ask through `endpoint.get_self_gateway(...)`, Pykka
(ThreadingActor: a typed proxy call `proxy.add(a, b).get()` and a plain `ref.ask((a, b))`), and a
bare trio memory-channel round trip for reference.

Peers run with their defaults otherwise; notably RPyC zlib-compresses every frame over 3000
bytes (level 1), which dominates its 1 MiB echo. The bars compare minicluster with the best
figure of any peer row (raw trio+cbor2 is the floor, not a peer) and, for the local ask, with the
faster of the two Pykka calls.

A peer whose package is missing is skipped with its reason printed. Every loop is bounded in count
and in time, every measurement runs under a hard time limit (synchronous clients in a helper
thread joined with a timeout, with socket timeouts on every call), and the whole run has a
watchdog, so a hang shows up as an error line instead of a stuck benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from minicluster.rpc import open_rpc_service


def _load_rpc_bench() -> ModuleType:
    """benchmarks/rpc.py (not a package): its raw trio + cbor2 server and client, its Calc."""
    path = Path(__file__).resolve().with_name("rpc.py")
    spec = importlib.util.spec_from_file_location("_minicluster_bench_rpc", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rpc_bench = _load_rpc_bench()

ENDPOINT = rpc_bench.ENDPOINT
SERVER_START_TIMEOUT = 60.0
SERVER_MAX_LIFETIME = 3600.0
CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 20.0  # socket / per-call timeout of the synchronous clients
HARD_LIMIT_GRACE = 15.0
NOISY_SPREAD = 0.25
PYRO_THREADPOOL = 128
GRPC_SERVICE = "minicluster.bench.Calc"
GRPC_MAX_MESSAGE = 8 << 20
ADD_REQUEST = struct.Struct("!qq")
ADD_REPLY = struct.Struct("!q")

AddSync = Callable[[int, int], int]
EchoSync = Callable[[bytes], bytes]
AddAsync = Callable[[int, int], Awaitable[int]]
EchoAsync = Callable[[bytes], Awaitable[bytes]]
Figures = dict[str, float]


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int
    seq_warmup: int
    seq_calls: int
    inflight_warmup: int  # calls per in-flight slot before the clock starts
    inflight_calls: int
    concurrency: int
    echo_warmup: int
    echo_calls: int
    echo_size: int
    local_warmup: int
    local_calls: int
    budget_s: float  # soft time limit of one measurement loop; the hard limit adds a grace
    watchdog_s: float  # the whole run

    @classmethod
    def full(cls) -> Config:
        return cls(
            rounds=3,
            seq_warmup=500,
            seq_calls=3000,
            inflight_warmup=8,
            inflight_calls=20000,
            concurrency=64,
            echo_warmup=10,
            echo_calls=200,
            echo_size=1 << 20,
            local_warmup=1000,
            local_calls=20000,
            budget_s=30.0,
            watchdog_s=1800.0,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            rounds=3,
            seq_warmup=100,
            seq_calls=500,
            inflight_warmup=4,
            inflight_calls=2000,
            concurrency=64,
            echo_warmup=2,
            echo_calls=10,
            echo_size=1 << 20,
            local_warmup=200,
            local_calls=2000,
            budget_s=3.0,
            watchdog_s=150.0,
        )

    @property
    def hard_limit(self) -> float:
        return 2 * self.budget_s + HARD_LIMIT_GRACE


# --- measurement loops: one shape for every peer ------------------------------------------------


def latency_figures(latencies_ns: list[int], elapsed_ns: int, prefix: str) -> Figures:
    latencies_ns.sort()
    return {
        f"{prefix}_p50_us": rpc_bench.percentile(latencies_ns, 0.50) / 1e3,
        f"{prefix}_p99_us": rpc_bench.percentile(latencies_ns, 0.99) / 1e3,
        f"{prefix}_mean_us": elapsed_ns / len(latencies_ns) / 1e3,
        f"{prefix}_n": len(latencies_ns),
    }


def echo_figures(times: list[float], size: int) -> Figures:
    median = statistics.median(times)
    return {"echo_ms": median * 1e3, "echo_mb_per_s": size / median / 1e6, "echo_n": len(times)}


async def seq_async(add: AddAsync, budget: float, warmup: int, calls: int, prefix: str) -> Figures:
    """Works under trio and asyncio alike: it only awaits the call."""
    deadline = time.perf_counter() + budget
    for i in range(warmup):
        if await add(i, 1) != i + 1:
            raise AssertionError(f"add({i}, 1) returned a wrong value")
        if time.perf_counter() > deadline:
            break
    clock = time.perf_counter_ns
    latencies: list[int] = []
    deadline = time.perf_counter() + budget
    start = clock()
    for i in range(calls):
        t0 = clock()
        result = await add(i, 1)
        latencies.append(clock() - t0)
        if result != i + 1:
            raise AssertionError(f"add({i}, 1) returned {result!r}")
        if not i & 63 and time.perf_counter() > deadline:
            break
    return latency_figures(latencies, clock() - start, prefix)


def seq_sync(add: AddSync, budget: float, warmup: int, calls: int, prefix: str) -> Figures:
    deadline = time.perf_counter() + budget
    for i in range(warmup):
        if add(i, 1) != i + 1:
            raise AssertionError(f"add({i}, 1) returned a wrong value")
        if time.perf_counter() > deadline:
            break
    clock = time.perf_counter_ns
    latencies: list[int] = []
    deadline = time.perf_counter() + budget
    start = clock()
    for i in range(calls):
        t0 = clock()
        result = add(i, 1)
        latencies.append(clock() - t0)
        if result != i + 1:
            raise AssertionError(f"add({i}, 1) returned {result!r}")
        if not i & 63 and time.perf_counter() > deadline:
            break
    return latency_figures(latencies, clock() - start, prefix)


async def echo_async(echo: EchoAsync, cfg: Config, payload: bytes) -> Figures:
    deadline = time.perf_counter() + cfg.budget_s
    for n in range(cfg.echo_warmup):
        result = await echo(payload)
        if n == 0 and result != payload:
            raise AssertionError("echo returned different bytes")
        if time.perf_counter() > deadline:
            break
    times: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    for _ in range(cfg.echo_calls):
        t0 = time.perf_counter()
        result = await echo(payload)
        times.append(time.perf_counter() - t0)
        if len(result) != len(payload):
            raise AssertionError(f"echo returned {len(result)} bytes, sent {len(payload)}")
        if time.perf_counter() > deadline:
            break
    return echo_figures(times, len(payload))


def echo_sync(echo: EchoSync, cfg: Config, payload: bytes) -> Figures:
    deadline = time.perf_counter() + cfg.budget_s
    for n in range(cfg.echo_warmup):
        result = echo(payload)
        if n == 0 and result != payload:
            raise AssertionError("echo returned different bytes")
        if time.perf_counter() > deadline:
            break
    times: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    for _ in range(cfg.echo_calls):
        t0 = time.perf_counter()
        result = echo(payload)
        times.append(time.perf_counter() - t0)
        if len(result) != len(payload):
            raise AssertionError(f"echo returned {len(result)} bytes, sent {len(payload)}")
        if time.perf_counter() > deadline:
            break
    return echo_figures(times, len(payload))


Job = Callable[[], Coroutine[Any, Any, None]]
Spawner = Callable[[list[Job]], Awaitable[None]]


async def trio_run_all(fns: list[Job]) -> None:
    async with trio.open_nursery() as nursery:
        for fn in fns:
            nursery.start_soon(fn)


async def asyncio_run_all(fns: list[Job]) -> None:
    async with asyncio.TaskGroup() as group:
        for fn in fns:
            group.create_task(fn())


async def inflight_async(add: AddAsync, cfg: Config, run_all: Spawner) -> Figures:
    """`concurrency` tasks of the peer's own event loop share one client."""
    concurrency = cfg.concurrency
    done = 0
    deadline = math.inf

    def worker(calls: int) -> Job:
        async def run() -> None:
            nonlocal done
            for i in range(calls):
                result = await add(i, 1)
                if result != i + 1:
                    raise AssertionError(f"add({i}, 1) returned {result!r}")
                done += 1
                if not i & 15 and time.perf_counter() > deadline:
                    return

        return run

    async def run(total: int) -> float:
        share, extra = divmod(total, concurrency)
        start = time.perf_counter()
        await run_all([worker(share + (1 if k < extra else 0)) for k in range(concurrency)])
        return time.perf_counter() - start

    deadline = time.perf_counter() + cfg.budget_s
    await run(concurrency * cfg.inflight_warmup)
    done = 0
    deadline = time.perf_counter() + cfg.budget_s
    elapsed = await run(cfg.inflight_calls)
    return {"inflight_calls_per_s": done / elapsed, "inflight_n": done}


class SyncClient:
    """One synchronous connection: `add`, and `close`."""

    def __init__(self, add: AddSync, close: Callable[[], None]) -> None:
        self.add = add
        self.close = close


def inflight_threads(open_client: Callable[[], SyncClient], cfg: Config) -> Figures:
    """`concurrency` threads, each with its own client (connection), started together.

    Connecting and a few warm-up calls happen before a barrier; the clock runs from the barrier
    to the last thread's last reply (closing the connections is not timed)."""
    concurrency = cfg.concurrency
    share, extra = divmod(cfg.inflight_calls, concurrency)
    barrier = threading.Barrier(concurrency + 1, timeout=CONNECT_TIMEOUT + cfg.budget_s)
    done = [0] * concurrency
    finished = [0.0] * concurrency
    failures: list[BaseException] = []

    def worker(k: int) -> None:
        client: SyncClient | None = None
        try:
            client = open_client()
            add = client.add
            for i in range(cfg.inflight_warmup):
                if add(i, 1) != i + 1:
                    raise AssertionError(f"add({i}, 1) returned a wrong value")
            barrier.wait()
            deadline = time.perf_counter() + cfg.budget_s
            for i in range(share + (1 if k < extra else 0)):
                result = add(i, 1)
                if result != i + 1:
                    raise AssertionError(f"add({i}, 1) returned {result!r}")
                done[k] += 1
                if not i & 15 and time.perf_counter() > deadline:
                    break
            finished[k] = time.perf_counter()
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    threads = [
        threading.Thread(target=worker, args=(k,), name=f"bench-client-{k}", daemon=True)
        for k in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        limit = time.monotonic() + CALL_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, limit - time.monotonic()))
        raise RuntimeError(
            f"a client thread failed before the start: {failures[0]!r}"
            if failures
            else "client threads not ready in time"
        ) from None
    start = time.perf_counter()
    limit = time.monotonic() + cfg.budget_s + CALL_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, limit - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("client threads still running after the time limit")
    if failures:
        raise RuntimeError(f"{len(failures)} client thread(s) failed, first: {failures[0]!r}")
    total = sum(done)
    return {"inflight_calls_per_s": total / (max(finished) - start), "inflight_n": total}


# --- hard limits ---------------------------------------------------------------------------------


async def guarded_trio(
    what: str, errors: list[str], cfg: Config, measure: Callable[[], Awaitable[Figures]]
) -> Figures:
    try:
        with trio.fail_after(cfg.hard_limit):
            return await measure()
    except trio.TooSlowError:
        errors.append(f"{what}: no result within {cfg.hard_limit:g} s (hang?)")
    except Exception as exc:
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
    return {}


async def guarded_asyncio(
    what: str, errors: list[str], cfg: Config, measure: Callable[[], Awaitable[Figures]]
) -> Figures:
    try:
        async with asyncio.timeout(cfg.hard_limit):
            return await measure()
    except TimeoutError:
        errors.append(f"{what}: no result within {cfg.hard_limit:g} s (hang?)")
    except Exception as exc:
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
    return {}


def guarded_sync(
    what: str, errors: list[str], cfg: Config, measure: Callable[[], Figures]
) -> Figures:
    """Run a blocking measurement in a helper thread, joined with the hard limit.

    A measurement that overruns is abandoned (its daemon thread is left to the socket timeouts
    and to the server's exit at the end of the round)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["figures"] = measure()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"bench {what}", daemon=True)
    thread.start()
    thread.join(cfg.hard_limit)
    if thread.is_alive():
        errors.append(f"{what}: no result within {cfg.hard_limit:g} s (hang?)")
        return {}
    if "error" in box:
        exc = box["error"]
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return {}
    figures: Figures = box["figures"]
    return figures


# --- servers in their own process ----------------------------------------------------------------


def exit_when_parent_done() -> None:
    """The parent holds our stdin open; EOF (or the maximum lifetime) ends this process."""

    def watch() -> None:
        try:
            sys.stdin.buffer.read()
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()
    timer = threading.Timer(SERVER_MAX_LIFETIME, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def serve_pyro5(port_file: str) -> None:
    import Pyro5.api

    Pyro5.config.SERVERTYPE = "thread"
    Pyro5.config.THREADPOOL_SIZE = PYRO_THREADPOOL
    Pyro5.config.SOCK_NODELAY = True

    @Pyro5.api.expose
    @Pyro5.api.behavior(instance_mode="single")
    class PyroCalc:
        def add(self, a: int, b: int) -> int:
            return a + b

        def echo(self, data: bytes) -> bytes:
            return data

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    daemon.register(PyroCalc(), objectId=ENDPOINT)
    rpc_bench.write_port_file(port_file, daemon.sock.getsockname()[1])
    exit_when_parent_done()
    daemon.requestLoop()


def serve_rpyc(port_file: str) -> None:
    import rpyc
    from rpyc.utils.server import ThreadedServer

    class CalcService(rpyc.Service):  # type: ignore[misc]
        def exposed_add(self, a: int, b: int) -> int:
            return a + b

        def exposed_echo(self, data: bytes) -> bytes:
            return data

    quiet = logging.getLogger("bench-rpyc-server")
    quiet.setLevel(logging.WARNING)
    server = ThreadedServer(CalcService, hostname="127.0.0.1", port=0, logger=quiet)
    rpc_bench.write_port_file(port_file, server.port)
    exit_when_parent_done()
    server.start()


def serve_dask(port_file: str) -> None:
    from distributed.core import Server

    logging.getLogger("distributed").setLevel(logging.WARNING)  # after dask's own logging setup

    def add(a: int, b: int) -> int:
        return a + b

    def echo(data: bytes) -> bytes:
        return data

    async def main() -> None:
        # scratch space inside the port file's directory, which the parent removes
        server = Server(  # type: ignore[no-untyped-call]
            {"add": add, "echo": echo},
            local_directory=os.path.dirname(os.path.abspath(port_file)),
            needs_workdir=False,
        )
        await server.listen("tcp://127.0.0.1:0")  # type: ignore[no-untyped-call]
        rpc_bench.write_port_file(port_file, server.port)
        exit_when_parent_done()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_grpc(port_file: str) -> None:
    import grpc

    async def add(request: tuple[int, int], context: Any) -> int:
        return request[0] + request[1]

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    def pack_reply(value: int) -> bytes:
        return ADD_REPLY.pack(value)

    async def main() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ]
        )
        handlers = {
            "Add": grpc.unary_unary_rpc_method_handler(
                add, request_deserializer=ADD_REQUEST.unpack, response_serializer=pack_reply
            ),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),  # raw bytes both ways
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        rpc_bench.write_port_file(port_file, port)
        exit_when_parent_done()
        await server.wait_for_termination()

    asyncio.run(main())


def serve(kind: str, port_file: str) -> None:
    if kind in ("raw", "minicluster"):
        trio.run(rpc_bench.serve, kind, port_file)
    elif kind == "pyro5":
        serve_pyro5(port_file)
    elif kind == "rpyc":
        serve_rpyc(port_file)
    elif kind == "dask":
        serve_dask(port_file)
    elif kind == "grpc":
        serve_grpc(port_file)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


_children: set[subprocess.Popen[bytes]] = set()


class ServerProcess:
    """`python benchmarks/peers.py --serve KIND` in a child process; yields its port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._dir = tempfile.mkdtemp(prefix="peers-bench-")
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
        _children.add(proc)
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
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  ! {self.kind} server did not exit on EOF; killing it", file=sys.stderr)
                proc.kill()
                proc.wait(timeout=10)
            _children.discard(proc)
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


# --- remote clients (this process) -----------------------------------------------------------


def raw_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    async def main() -> Figures:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as nursery:
            client = rpc_bench.RawClient(stream)
            nursery.start_soon(client.reader)
            nursery.start_soon(client.writer)
            figures = await trio_steps("raw", client.add, client.echo, cfg, payload, errors)
            nursery.cancel_scope.cancel()
        return figures

    return trio.run(main)


def minicluster_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    async def main() -> Figures:
        async with open_rpc_service(name="bench-client") as service:
            gateway = await service.connect(
                f"tcp://127.0.0.1:{port}/{ENDPOINT}", rpc_bench.CalcGateway, timeout=CONNECT_TIMEOUT
            )
            return await trio_steps("minicluster", gateway.add, gateway.echo, cfg, payload, errors)

    return trio.run(main)


async def trio_steps(
    label: str, add: AddAsync, echo: EchoAsync, cfg: Config, payload: bytes, errors: list[str]
) -> Figures:
    figures: Figures = {}
    figures |= await guarded_trio(
        f"{label} sequential",
        errors,
        cfg,
        lambda: seq_async(add, cfg.budget_s, cfg.seq_warmup, cfg.seq_calls, "seq"),
    )
    figures |= await guarded_trio(
        f"{label} {cfg.concurrency} in flight",
        errors,
        cfg,
        lambda: inflight_async(add, cfg, trio_run_all),
    )
    figures |= await guarded_trio(
        f"{label} 1 MiB echo", errors, cfg, lambda: echo_async(echo, cfg, payload)
    )
    return figures


async def asyncio_steps(
    label: str, add: AddAsync, echo: EchoAsync, cfg: Config, payload: bytes, errors: list[str]
) -> Figures:
    figures: Figures = {}
    figures |= await guarded_asyncio(
        f"{label} sequential",
        errors,
        cfg,
        lambda: seq_async(add, cfg.budget_s, cfg.seq_warmup, cfg.seq_calls, "seq"),
    )
    figures |= await guarded_asyncio(
        f"{label} {cfg.concurrency} in flight",
        errors,
        cfg,
        lambda: inflight_async(add, cfg, asyncio_run_all),
    )
    figures |= await guarded_asyncio(
        f"{label} 1 MiB echo", errors, cfg, lambda: echo_async(echo, cfg, payload)
    )
    return figures


def sync_steps(
    label: str,
    open_client: Callable[[], tuple[SyncClient, EchoSync]],
    cfg: Config,
    payload: bytes,
    errors: list[str],
) -> Figures:
    """Each step opens its own connection inside the thread that uses it (Pyro5 proxies belong
    to one thread); connecting happens during the warm-up, before the clock starts."""

    def sequential() -> Figures:
        client, _ = open_client()
        try:
            return seq_sync(client.add, cfg.budget_s, cfg.seq_warmup, cfg.seq_calls, "seq")
        finally:
            client.close()

    def echo_step() -> Figures:
        client, echo = open_client()
        try:
            return echo_sync(echo, cfg, payload)
        finally:
            client.close()

    figures: Figures = {}
    figures |= guarded_sync(f"{label} sequential", errors, cfg, sequential)
    figures |= guarded_sync(
        f"{label} {cfg.concurrency} threads",
        errors,
        cfg,
        lambda: inflight_threads(lambda: open_client()[0], cfg),
    )
    figures |= guarded_sync(f"{label} 1 MiB echo", errors, cfg, echo_step)
    return figures


def pyro5_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    import Pyro5.api

    Pyro5.config.SERIALIZER = "msgpack"
    Pyro5.config.SOCK_NODELAY = True
    uri = f"PYRO:{ENDPOINT}@127.0.0.1:{port}"

    def open_client() -> tuple[SyncClient, EchoSync]:
        proxy = Pyro5.api.Proxy(uri)
        proxy._pyroTimeout = CALL_TIMEOUT
        proxy._pyroBind()
        return SyncClient(proxy.add, proxy._pyroRelease), proxy.echo

    return sync_steps("pyro5", open_client, cfg, payload, errors)


def rpyc_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    import rpyc

    config = {"sync_request_timeout": CALL_TIMEOUT}

    def connect() -> Any:
        return rpyc.connect("127.0.0.1", port, config=config, keepalive=False)

    def open_client() -> tuple[SyncClient, EchoSync]:
        conn = connect()
        root = conn.root
        return SyncClient(root.add, conn.close), root.echo  # netrefs looked up once

    figures = sync_steps("rpyc", open_client, cfg, payload, errors)

    def pipelined() -> Figures:
        """`concurrency` `rpyc.async_` requests in flight on one connection, one thread."""
        conn = connect()
        try:
            add = rpyc.async_(conn.root.add)
            window: deque[tuple[int, Any]] = deque()

            def settle() -> None:
                i, result = window.popleft()
                result.set_expiry(CALL_TIMEOUT)
                if result.value != i + 1:
                    raise AssertionError(f"add({i}, 1) returned {result.value!r}")

            def run(total: int) -> int:
                deadline = time.perf_counter() + cfg.budget_s
                sent = 0
                for i in range(total):
                    if len(window) >= cfg.concurrency:
                        settle()
                    window.append((i, add(i, 1)))
                    sent += 1
                    if not i & 63 and time.perf_counter() > deadline:
                        break
                while window:
                    settle()
                return sent

            run(cfg.concurrency * cfg.inflight_warmup)
            start = time.perf_counter()
            done = run(cfg.inflight_calls)
            elapsed = time.perf_counter() - start
            return {"inflight_async_calls_per_s": done / elapsed, "inflight_async_n": done}
        finally:
            conn.close()

    figures |= guarded_sync(f"rpyc async_ {cfg.concurrency} in flight", errors, cfg, pipelined)
    return figures


def dask_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    from distributed.core import rpc

    logging.getLogger("distributed").setLevel(logging.WARNING)  # after dask's own logging setup

    async def main() -> Figures:
        remote_rpc = rpc(f"tcp://127.0.0.1:{port}", timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        async with remote_rpc as remote:

            async def add(a: int, b: int) -> int:
                return int(await remote.add(a=a, b=b))

            async def echo(data: bytes) -> bytes:
                return bytes(await remote.echo(data=data))

            return await asyncio_steps("dask", add, echo, cfg, payload, errors)

    return asyncio.run(main())


def grpc_side(port: int, cfg: Config, payload: bytes, errors: list[str]) -> Figures:
    import grpc

    def pack_request(request: tuple[int, int]) -> bytes:
        return ADD_REQUEST.pack(*request)

    def unpack_reply(data: bytes) -> int:
        value: int = ADD_REPLY.unpack(data)[0]
        return value

    async def main() -> Figures:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ],
        ) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT)
            except TimeoutError:
                raise RuntimeError(f"channel not ready within {CONNECT_TIMEOUT:g} s") from None
            add_stub = channel.unary_unary(
                f"/{GRPC_SERVICE}/Add",
                request_serializer=pack_request,
                response_deserializer=unpack_reply,
            )
            echo_stub = channel.unary_unary(f"/{GRPC_SERVICE}/Echo")  # raw bytes both ways

            async def add(a: int, b: int) -> int:
                value: int = await add_stub((a, b), timeout=CALL_TIMEOUT)
                return value

            async def echo(data: bytes) -> bytes:
                value: bytes = await echo_stub(data, timeout=CALL_TIMEOUT)
                return value

            return await asyncio_steps("grpc", add, echo, cfg, payload, errors)

    return asyncio.run(main())


# --- local (in process) -----------------------------------------------------------------------


def memory_channel_local(cfg: Config, errors: list[str]) -> Figures:
    async def main() -> Figures:
        send, receive = trio.open_memory_channel[Any](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rpc_bench.memory_channel_server, receive)
            adder = rpc_bench.MemoryChannelAdder(send)
            figures = await guarded_trio(
                "trio memory channel",
                errors,
                cfg,
                lambda: seq_async(
                    adder.add, cfg.budget_s, cfg.local_warmup, cfg.local_calls, "local"
                ),
            )
            nursery.cancel_scope.cancel()
        return figures

    return trio.run(main)


def minicluster_local(cfg: Config, errors: list[str]) -> Figures:
    async def main() -> Figures:
        async with open_rpc_service(name="bench-local") as service:
            endpoint = rpc_bench.Calc(service, ENDPOINT)
            endpoint.start()
            gateway = endpoint.get_self_gateway(rpc_bench.CalcGateway)
            return await guarded_trio(
                "minicluster local ask",
                errors,
                cfg,
                lambda: seq_async(
                    gateway.add, cfg.budget_s, cfg.local_warmup, cfg.local_calls, "local"
                ),
            )

    return trio.run(main)


def pykka_local(cfg: Config, errors: list[str]) -> Figures:
    import pykka

    class PykkaCalc(pykka.ThreadingActor):
        def add(self, a: int, b: int) -> int:
            return a + b

        def on_receive(self, message: Any) -> Any:
            a, b = message
            return a + b

    ref = PykkaCalc.start()
    try:
        proxy = ref.proxy()

        def proxy_add(a: int, b: int) -> int:
            value: int = proxy.add(a, b).get(timeout=CALL_TIMEOUT)
            return value

        def ask_add(a: int, b: int) -> int:
            return int(ref.ask((a, b), block=True, timeout=CALL_TIMEOUT))

        figures = guarded_sync(
            "pykka proxy",
            errors,
            cfg,
            lambda: seq_sync(proxy_add, cfg.budget_s, cfg.local_warmup, cfg.local_calls, "local"),
        )
        ask = guarded_sync(
            "pykka ask",
            errors,
            cfg,
            lambda: seq_sync(ask_add, cfg.budget_s, cfg.local_warmup, cfg.local_calls, "local"),
        )
        figures |= {key.replace("local_", "local_ask_"): value for key, value in ask.items()}
        return figures
    finally:
        ref.stop(block=True, timeout=CALL_TIMEOUT)


# --- peers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    modules: tuple[str, ...]  # importable modules it needs
    packages: str  # what to pip install
    server: str | None  # --serve kind; None for an in-process peer
    run: Callable[..., Figures]
    client: str  # how the client drives 64 calls in flight (or the local call)


REMOTE_PEERS = [
    Peer(
        "raw",
        "raw trio+cbor2",
        (),
        "",
        "raw",
        raw_side,
        "floor: benchmarks/rpc.py's raw client; 64 trio tasks, one connection",
    ),
    Peer(
        "minicluster",
        "minicluster",
        (),
        "",
        "minicluster",
        minicluster_side,
        "64 trio tasks share one gateway proxy (one connection, multiplexed)",
    ),
    Peer(
        "pyro5",
        "Pyro5",
        ("Pyro5", "msgpack"),
        "Pyro5 msgpack",
        "pyro5",
        pyro5_side,
        "msgpack serializer; 64 threads, one proxy (one connection) each",
    ),
    Peer(
        "rpyc",
        "RPyC",
        ("rpyc",),
        "rpyc",
        "rpyc",
        rpyc_side,
        "64 threads, one connection each; also rpyc.async_ with 64 in flight on one connection",
    ),
    Peer(
        "dask",
        "dask distributed",
        ("distributed",),
        "distributed",
        "dask",
        dask_side,
        "distributed.core.rpc on asyncio; 64 tasks share one rpc (a connection per call)",
    ),
    Peer(
        "grpc",
        "grpc.aio",
        ("grpc",),
        "grpcio",
        "grpc",
        grpc_side,
        "generic handlers, struct/raw bytes; 64 asyncio tasks share one channel",
    ),
]

LOCAL_PEERS = [
    Peer(
        "memory_channel",
        "trio memory channel",
        (),
        "",
        None,
        memory_channel_local,
        "reference: request through a memory channel, reply by trio.Event",
    ),
    Peer(
        "minicluster_local",
        "minicluster local",
        (),
        "",
        None,
        minicluster_local,
        "endpoint.get_self_gateway(CalcGateway).add(i, 1)",
    ),
    Peer(
        "pykka",
        "Pykka",
        ("pykka",),
        "pykka",
        None,
        pykka_local,
        "ThreadingActor: proxy.add(i, 1).get() and ref.ask((i, 1))",
    ),
]

PACKAGE_VERSIONS = ("trio", "cbor2", "Pyro5", "msgpack", "rpyc", "distributed", "grpcio", "pykka")


def missing_reason(peer: Peer) -> str | None:
    missing = [name for name in peer.modules if importlib.util.find_spec(name) is None]
    if missing:
        return f"module(s) {', '.join(missing)} not installed (pip install {peer.packages})"
    return None


# --- rounds ----------------------------------------------------------------------------------


def run_side(what: str, errors: list[str], fn: Callable[[], Figures]) -> Figures:
    """One side of a round; a crash becomes an error line, not a traceback."""
    started = time.perf_counter()
    print(f"  {what} ...", end="", file=sys.stderr, flush=True)
    try:
        figures = fn()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        figures = {}
    print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return figures


def rotated(items: Sequence[Peer], by: int) -> list[Peer]:
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


def run_round(
    n: int, remote: list[Peer], local: list[Peer], cfg: Config, payload: bytes, errors: list[str]
) -> dict[str, Figures]:
    figures: dict[str, Figures] = {}
    for peer in rotated(remote, n):
        assert peer.server is not None
        try:
            with ServerProcess(peer.server) as port:
                figures[peer.key] = run_side(
                    f"{peer.label} remote", errors, partial(peer.run, port, cfg, payload, errors)
                )
        except RuntimeError as exc:
            errors.append(f"{peer.label} server: {exc}")
            figures[peer.key] = {}
    for peer in rotated(local, n):
        figures[peer.key] = run_side(f"{peer.label}", errors, partial(peer.run, cfg, errors))
    return figures


# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    lower_is_better: bool


REMOTE_COLUMNS = [
    Column("seq_p50_us", "seq p50 us", True),
    Column("seq_p99_us", "seq p99 us", True),
    Column("inflight_calls_per_s", "calls/s @64", False),
    Column("echo_ms", "1 MiB echo ms", True),
]
LOCAL_COLUMNS = [
    Column("local_p50_us", "ask p50 us", True),
    Column("local_p99_us", "ask p99 us", True),
    Column("local_mean_us", "ask mean us", True),
]


@dataclass(frozen=True)
class TableRow:
    key: str  # row id in the JSON
    label: str
    peer: str  # whose figures
    rename: dict[str, str]  # column key -> figure key, where they differ
    columns: tuple[str, ...] | None = None  # only these columns (None: all)


def remote_rows(remote: list[Peer]) -> list[TableRow]:
    rows: list[TableRow] = []
    for peer in remote:
        rows.append(TableRow(peer.key, peer.label, peer.key, {}))
        if peer.key == "rpyc":
            rows.append(
                TableRow(
                    "rpyc_async",
                    "RPyC async_ (1 conn)",
                    "rpyc",
                    {"inflight_calls_per_s": "inflight_async_calls_per_s"},
                    ("inflight_calls_per_s",),
                )
            )
    return rows


def local_rows(local: list[Peer]) -> list[TableRow]:
    rows: list[TableRow] = []
    for peer in local:
        if peer.key == "pykka":
            rows.append(TableRow("pykka_proxy", "Pykka proxy .get()", "pykka", {}))
            rows.append(
                TableRow(
                    "pykka_ask",
                    "Pykka ask",
                    "pykka",
                    {key: key.replace("local_", "local_ask_") for key in _local_keys()},
                )
            )
        else:
            rows.append(TableRow(peer.key, peer.label, peer.key, {}))
    return rows


def _local_keys() -> list[str]:
    return [column.key for column in LOCAL_COLUMNS]


def row_values(
    rounds: list[dict[str, Figures]], row: TableRow, columns: list[Column]
) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for column in columns:
        if row.columns is not None and column.key not in row.columns:
            continue
        figure = row.rename.get(column.key, column.key)
        values[column.key] = [r[row.peer][figure] for r in rounds if figure in r.get(row.peer, {})]
    return values


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(headers: Sequence[str], lines: Sequence[Sequence[str]], left: int = 1) -> None:
    table = [list(headers), *[list(line) for line in lines]]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    for n, line in enumerate(table):
        cells = [
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


@dataclass(frozen=True)
class Bar:
    what: str
    value: float | None  # minicluster's figure
    reference: float | None  # what it is compared with
    reference_name: str
    op: str  # "<=" or ">="
    limit: float  # on value / reference


def bar_result(bar: Bar) -> dict[str, Any]:
    if bar.value is None or bar.reference is None or bar.reference == 0:
        return {**asdict(bar), "ratio": None, "pass": None, "margin": None}
    ratio = bar.value / bar.reference
    ok = ratio <= bar.limit if bar.op == "<=" else ratio >= bar.limit
    margin = ratio / bar.limit - 1 if bar.op == "<=" else 1 - ratio / bar.limit
    return {**asdict(bar), "ratio": ratio, "pass": ok, "margin": margin}


def best(
    medians: dict[str, dict[str, float | None]], rows: list[TableRow], key: str, lower: bool
) -> tuple[str, float | None]:
    candidates: list[tuple[float, str]] = []
    for row in rows:
        value = medians[row.key].get(key)
        if row.peer not in ("raw", "minicluster") and value is not None:
            candidates.append((value, row.label))
    if not candidates:
        return ("no peer", None)
    chosen = min(candidates) if lower else max(candidates)
    return (chosen[1], chosen[0])


def report(
    cfg: Config,
    remote: list[Peer],
    local: list[Peer],
    skipped: dict[str, str],
    rounds: list[dict[str, Figures]],
    errors: list[str],
    quick: bool,
    elapsed: float,
    load_before: float,
) -> dict[str, Any]:
    rrows, lrows = remote_rows(remote), local_rows(local)
    values: dict[str, dict[str, list[float]]] = {}
    medians: dict[str, dict[str, float | None]] = {}
    for rows, columns in ((rrows, REMOTE_COLUMNS), (lrows, LOCAL_COLUMNS)):
        for row in rows:
            values[row.key] = row_values(rounds, row, columns)
            medians[row.key] = {
                key: statistics.median(v) if v else None for key, v in values[row.key].items()
            }

    def ratio_to(reference_row: str, row_key: str, key: str) -> float | None:
        mine = medians.get(row_key, {}).get(key)
        ref = medians.get(reference_row, {}).get(key)
        if mine is None or not ref:
            return None
        return mine / ref

    ratios = {
        row.key: {c.key: ratio_to("minicluster", row.key, c.key) for c in REMOTE_COLUMNS}
        for row in rrows
    } | {
        row.key: {c.key: ratio_to("minicluster_local", row.key, c.key) for c in LOCAL_COLUMNS}
        for row in lrows
    }

    versions: dict[str, str | None] = {}
    for name in PACKAGE_VERSIONS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None

    print()
    print(
        f"minicluster vs peers ({'quick' if quick else 'full'}): median of {len(rounds)} "
        f"interleaved rounds, {elapsed:.1f} s"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    )
    load_after = os.getloadavg()[0]
    print(f"1-minute load average before / after the run: {load_before:.2f} / {load_after:.2f}")
    print(
        f"per peer and round: {cfg.seq_calls} sequential add(i, 1) (after {cfg.seq_warmup} "
        f"warm-up), {cfg.inflight_calls} calls with {cfg.concurrency} in flight, "
        f"{cfg.echo_calls} echoes of {cfg.echo_size} bytes; local: {cfg.local_calls} asks"
    )
    for name, reason in skipped.items():
        print(f"SKIPPED {name}: {reason}")

    print()
    print("remote (server in another process, 127.0.0.1); ratio = peer / minicluster")
    print("  (times: < 1 means the peer is faster; calls/s: > 1 means the peer is faster)")
    headers = ["peer", *[c.label for c in REMOTE_COLUMNS]]
    headers += ["p50 ratio", "p99 ratio", "calls/s ratio", "echo ratio"]
    lines = []
    for row in rrows:
        lines.append(
            [
                row.label,
                *[fmt(medians[row.key].get(c.key)) for c in REMOTE_COLUMNS],
                *[fmt_ratio(ratios[row.key].get(c.key)) for c in REMOTE_COLUMNS],
            ]
        )
    print_table(headers, lines)

    print()
    print("local ask (in process); ratio = peer / minicluster local")
    headers = ["peer", *[c.label for c in LOCAL_COLUMNS], "p50 ratio", "p99 ratio", "mean ratio"]
    lines = []
    for row in lrows:
        lines.append(
            [
                row.label,
                *[fmt(medians[row.key].get(c.key)) for c in LOCAL_COLUMNS],
                *[fmt_ratio(ratios[row.key].get(c.key)) for c in LOCAL_COLUMNS],
            ]
        )
    print_table(headers, lines)

    print()
    print("clients:")
    for peer in [*remote, *local]:
        print(f"  {peer.label:<20} {peer.client}")

    mc = medians.get("minicluster", {})
    raw = medians.get("raw", {})
    best_tput = best(medians, rrows, "inflight_calls_per_s", lower=False)
    best_p50 = best(medians, rrows, "seq_p50_us", lower=True)
    best_echo = best(medians, rrows, "echo_ms", lower=True)
    pykka_rows = [r for r in lrows if r.peer == "pykka"]
    best_pykka = best(medians, pykka_rows, "local_p50_us", lower=True)
    mc_local = medians.get("minicluster_local", {}).get("local_p50_us")
    bars = [
        Bar(
            "64-in-flight calls/s >= 2x the best peer's",
            mc.get("inflight_calls_per_s"),
            best_tput[1],
            best_tput[0],
            ">=",
            2.0,
        ),
        Bar(
            "64-in-flight calls/s >= 0.8x raw trio+cbor2",
            mc.get("inflight_calls_per_s"),
            raw.get("inflight_calls_per_s"),
            "raw trio+cbor2",
            ">=",
            0.8,
        ),
        Bar(
            "sequential p50 <= the best peer's",
            mc.get("seq_p50_us"),
            best_p50[1],
            best_p50[0],
            "<=",
            1.0,
        ),
        Bar(
            "sequential p50 <= 1.2x raw trio+cbor2",
            mc.get("seq_p50_us"),
            raw.get("seq_p50_us"),
            "raw trio+cbor2",
            "<=",
            1.2,
        ),
        Bar(
            "local ask p50 >= 3x faster than Pykka's (<= 1/3)",
            mc_local,
            best_pykka[1],
            best_pykka[0],
            "<=",
            1 / 3,
        ),
        Bar(
            "1 MiB echo <= the best peer's",
            mc.get("echo_ms"),
            best_echo[1],
            best_echo[0],
            "<=",
            1.0,
        ),
    ]
    print()
    print("bars (ratio = minicluster / reference):")
    results = []
    for bar in bars:
        result = bar_result(bar)
        results.append(result)
        if result["ratio"] is None:
            detail = "no verdict: a figure is missing (peer skipped or failed)"
        else:
            detail = (
                f"minicluster {fmt(bar.value)} vs {bar.reference_name} {fmt(bar.reference)}: "
                f"ratio {result['ratio']:.2f}, needs {bar.op} {bar.limit:.2f}"
            )
            if not result["pass"]:
                detail += (
                    f" (short by {result['margin']:.0%})"
                    if bar.op == ">="
                    else f" (over by {result['margin']:.0%})"
                )
        status = "N/A " if result["pass"] is None else "PASS" if result["pass"] else "FAIL"
        print(f"  {status}  {bar.what:<50} {detail}")

    print()
    print("per round (in run order within a round, rotated each round):")
    for rows, columns in ((rrows, REMOTE_COLUMNS), (lrows, LOCAL_COLUMNS)):
        for row in rows:
            for column in columns:
                if column.key not in values[row.key]:
                    continue
                figure = row.rename.get(column.key, column.key)
                cells = [fmt(r.get(row.peer, {}).get(figure)) for r in rounds]
                print(f"  {row.label + ' ' + column.label:<36} {' | '.join(cells)}")

    noisy = []
    for rows, columns in ((rrows, REMOTE_COLUMNS), (lrows, LOCAL_COLUMNS)):
        for row in rows:
            for column in columns:
                series = values[row.key].get(column.key, [])
                if len(series) < 2 or "_p99_" in column.key:  # a tail is noisy by nature
                    continue
                mid = statistics.median(series)
                spread = (max(series) - min(series)) / mid if mid else 0.0
                if spread > NOISY_SPREAD:
                    noisy.append(f"{row.label} {column.label}: rounds differ by {spread:.0%}")
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
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "versions": versions,
        },
        "elapsed_s": elapsed,
        "load_average_1min": {"before": load_before, "after": load_after},
        "skipped": skipped,
        "clients": {peer.key: peer.client for peer in [*remote, *local]},
        "median": medians,
        "ratio_peer_over_minicluster": ratios,
        "bars": results,
        "noisy": noisy,
        "rounds": rounds,
        "errors": errors,
    }


# --- main ----------------------------------------------------------------------------------------


def start_watchdog(limit: float) -> threading.Timer:
    def fire() -> None:
        print(
            f"\nWATCHDOG: the run took longer than {limit:g} s; stopping the servers and exiting",
            file=sys.stderr,
            flush=True,
        )
        for proc in list(_children):
            try:
                proc.kill()
            except OSError:
                pass
        os._exit(3)

    timer = threading.Timer(limit, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (under a minute)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    all_keys = [p.key for p in [*REMOTE_PEERS, *LOCAL_PEERS]]
    parser.add_argument(
        "--peers",
        metavar="LIST",
        help=f"comma-separated subset of {','.join(all_keys)} (default: all)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        if not args.port_file:
            parser.error("--serve needs --port-file")
        serve(args.serve, args.port_file)
        return 0

    cfg = Config.quick() if args.quick else Config.full()
    if args.rounds is not None:
        if not 1 <= args.rounds <= 20:
            parser.error("--rounds must be between 1 and 20")
        cfg = Config(**{**asdict(cfg), "rounds": args.rounds})
    wanted = set(all_keys)
    if args.peers:
        wanted = {name.strip() for name in args.peers.split(",") if name.strip()}
        unknown = wanted - set(all_keys)
        if unknown:
            parser.error(f"unknown peer(s) {', '.join(sorted(unknown))}; know {all_keys}")

    skipped: dict[str, str] = {}
    remote: list[Peer] = []
    local: list[Peer] = []
    for peers, chosen in ((REMOTE_PEERS, remote), (LOCAL_PEERS, local)):
        for peer in peers:
            if peer.key not in wanted:
                continue
            reason = missing_reason(peer)
            if reason is not None:
                skipped[peer.label] = reason
                print(f"skipping {peer.label}: {reason}", file=sys.stderr)
                continue
            chosen.append(peer)

    watchdog = start_watchdog(cfg.watchdog_s)
    payload = os.urandom(cfg.echo_size)
    errors: list[str] = []
    rounds: list[dict[str, Figures]] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for n in range(cfg.rounds):
        print(f"round {n + 1}/{cfg.rounds}", file=sys.stderr, flush=True)
        rounds.append(run_round(n, remote, local, cfg, payload, errors))
    elapsed = time.perf_counter() - started
    result = report(cfg, remote, local, skipped, rounds, errors, args.quick, elapsed, load_before)
    watchdog.cancel()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
