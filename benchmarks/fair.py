"""A fair comparison of minicluster's RPC layer with the best plain trio code and with peers.

Run by hand (never by pytest); the peers are optional (`pip install -e '.[peers]'`):

    python benchmarks/fair.py                 # 5 rounds, a few minutes
    python benchmarks/fair.py --quick         # 2 rounds of smaller counts, about a minute
    python benchmarks/fair.py --json out.jsonl --variants raw-inline,mc-suspend

Why "fair": every measurement is a fresh `python benchmarks/fair.py --one VARIANT` process (and,
for a remote variant, a fresh server process of its own), all started with the same environment
and none of them touching the allocator (the `start` command's allocator settings are not used
here, for any library). Rounds are interleaved: every round runs every variant once, the order
rotated by one each round. Each child prints one JSON line; this process prints min/median/max
over the rounds and the ratios of medians, all from this one run, with the load average.

Variants (remote: the client in the `--one` process, the server in its own child):

* raw-inline: the floor. The best plain trio + cbor2 code with minicluster's framing: the client
  sends each request straight from the calling task with `send_all` (a lock serializes concurrent
  callers; no writer task) and one reader task matches replies by id; the server decodes each
  frame from `bytes` and answers inline on its reader task, all replies of one read in one write.
* raw-task: a task per request on the server (the handler does `await trio.sleep(0)`), the
  floor for handlers that suspend; the same client.
* raw-serial: raw-task with the handlers one at a time (a fair `trio.Lock` around each): the
  floor for handlers that await while holding an endpoint's main thread (mc-suspend).
* mc-inline: minicluster (`open_rpc_service` + `connect`), handlers that never await (served
  inline on the connection's reader task).
* mc-suspend: minicluster, handlers that `await trio.sleep(0)` once, holding the endpoint's
  main thread meanwhile (calls to one endpoint run one after another).
* mc-offmain: minicluster, handlers that `await self.off_main(trio.sleep(0))`, as cluster
  endpoints wait for anything slow: the main thread serves other calls meanwhile.
* pyro5 (msgpack, threaded server, TCP_NODELAY), rpyc (ThreadedServer): synchronous clients,
  64 threads with a connection each for the in-flight figure.

Workloads: sequential `add(i, 1)` p50/p99; `add` with 64 calls in flight, calls/s; a 1 MiB echo
as the TOTAL time of N sequential round trips, reported as MB/s (N x 1 MiB / total seconds).
Local (in the `--one` process): a minicluster self-gateway ask with an inline, a suspending
and an off-main handler, a bare trio memory-channel round trip (and one whose server task awaits
once before it answers, like for like with the suspending handlers), and Pykka (ThreadingActor
`ask`).

For the 64-in-flight workload each child also reports the CPU time (user + system) that the
client and the server process spent per call, read from `os.times()` and /proc: a figure that
does not depend on how the machine schedules the two processes. `--pin 0` runs every process
on one CPU, the same for every variant, for steadier figures on a small or shared machine.

Bounded: every loop has a count and a time budget, every child a timeout after which it is
killed by its PID, servers listen on 127.0.0.1 port 0 and stop when their stdin closes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from fair_raw import ENDPOINT, RawClient, Slot, raw_inline_connection, raw_task_connection

from minicluster.rpc import RpcEndpoint, RpcGateway, open_rpc_service

MIB = 1 << 20
CHILD_TIMEOUT = 180.0
SERVER_START_TIMEOUT = 30.0
CALL_TIMEOUT = 20.0
CONCURRENCY = 64

REMOTE = [
    "raw-inline",
    "raw-task",
    "raw-serial",
    "mc-inline",
    "mc-suspend",
    "mc-offmain",
    "pyro5",
    "rpyc",
]
LOCAL = [
    "local-memchan",
    "local-memchan-suspend",
    "local-mc-inline",
    "local-mc-suspend",
    "local-mc-offmain",
    "local-pykka",
]
NEEDS = {"pyro5": "Pyro5", "rpyc": "rpyc", "local-pykka": "pykka"}

Figures = dict[str, float]


@dataclass(frozen=True)
class Counts:
    seq_warmup: int = 500
    seq_calls: int = 5000
    inflight_calls: int = 20000
    echo_calls: int = 50
    local_calls: int = 20000
    budget_s: float = 20.0  # per workload

    @classmethod
    def quick(cls) -> Counts:
        return cls(200, 2000, 5000, 20, 5000, 10.0)


# --- the endpoint under test ------------------------------------------------------------------


class CalcGateway(RpcGateway):
    async def add(self, a: int, b: int) -> int:
        raise NotImplementedError

    async def echo(self, data: bytes) -> bytes:
        raise NotImplementedError


class InlineCalc(RpcEndpoint, CalcGateway):
    """Handlers that never await: minicluster serves them on the caller's (reader's) task."""

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def echo(self, data: bytes) -> bytes:
        return data


class SuspendingCalc(RpcEndpoint, CalcGateway):
    """Handlers that await once, as cluster endpoints do: served on the endpoint's main thread."""

    async def add(self, a: int, b: int) -> int:
        await trio.sleep(0)
        return a + b

    async def echo(self, data: bytes) -> bytes:
        await trio.sleep(0)
        return data


class OffMainCalc(RpcEndpoint, CalcGateway):
    """Handlers that wait off the main thread (`off_main`), as endpoints do for anything slow:
    calls overlap, each resumes on the main thread to answer."""

    async def add(self, a: int, b: int) -> int:
        await self.off_main(trio.sleep(0))
        return a + b

    async def echo(self, data: bytes) -> bytes:
        await self.off_main(trio.sleep(0))
        return data


def calc_class(kind: str) -> type[RpcEndpoint]:
    if kind.endswith("offmain"):
        return OffMainCalc
    return SuspendingCalc if kind.endswith("suspend") else InlineCalc


# --- servers (a child of the --one process) -------------------------------------------------------


def write_port(path: str, port: int) -> None:
    Path(f"{path}.tmp").write_text(str(port))
    os.replace(f"{path}.tmp", path)


async def until_stdin_closes() -> None:
    with trio.move_on_after(CHILD_TIMEOUT):
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


async def serve_trio(kind: str, port_file: str) -> None:
    if kind.startswith("raw"):
        handlers: dict[str, Callable[[trio.SocketStream], Awaitable[None]]] = {
            "raw-inline": raw_inline_connection,
            "raw-task": raw_task_connection,
            "raw-serial": partial(raw_task_connection, one_at_a_time=True),
        }
        handler = handlers[kind]
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            write_port(port_file, listeners[0].socket.getsockname()[1])
            await until_stdin_closes()
            nursery.cancel_scope.cancel()
        return
    async with open_rpc_service("127.0.0.1", name="fair-server") as service:
        calc_class(kind)(service, ENDPOINT).start()
        assert service.port is not None
        write_port(port_file, service.port)
        await until_stdin_closes()


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(kind: str, port_file: str) -> None:
    if kind == "pyro5":
        import Pyro5.api

        Pyro5.config.SERVERTYPE = "thread"
        Pyro5.config.THREADPOOL_SIZE = 128
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
        write_port(port_file, daemon.sock.getsockname()[1])
        exit_when_stdin_closes()
        daemon.requestLoop()
    elif kind == "rpyc":
        import logging

        import rpyc
        from rpyc.utils.server import ThreadedServer

        class CalcService(rpyc.Service):  # type: ignore[misc]
            def exposed_add(self, a: int, b: int) -> int:
                return a + b

            def exposed_echo(self, data: bytes) -> bytes:
                return data

        quiet = logging.getLogger("fair-rpyc")
        quiet.setLevel(logging.WARNING)
        server = ThreadedServer(CalcService, hostname="127.0.0.1", port=0, logger=quiet)
        write_port(port_file, server.port)
        exit_when_stdin_closes()
        server.start()
    else:
        trio.run(serve_trio, kind, port_file)


class Server:
    """`fair.py --serve KIND` in a child process, stopped by closing its stdin, else by PID."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="fair-bench-")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> int:
        port_file = os.path.join(self.dir, "port")
        self.proc = proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", self.kind, "--port-file", port_file],
            stdin=subprocess.PIPE,
        )
        CURRENT_SERVER[0] = self
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.kind} server did not start")
            time.sleep(0.01)
        return int(Path(port_file).read_text())

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, 9)
                proc.wait(timeout=10)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


CURRENT_SERVER: list[Server | None] = [None]  # the --one process has one server at a time


# --- workloads ------------------------------------------------------------------------------------


class CpuMeter:
    """CPU time (user + system) of this process and of the server process, per call: unlike
    wall time it does not depend on how the machine schedules the two processes."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.start = self._now()

    def _server(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            with open(f"/proc/{self.server_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _now(self) -> tuple[float, float | None]:
        t = os.times()
        return t.user + t.system, self._server()

    def figures(self, calls: int) -> Figures:
        client, server = self._now()
        out = {"inflight_client_cpu_us": (client - self.start[0]) * 1e6 / max(calls, 1)}
        if server is not None and self.start[1] is not None:
            out["inflight_server_cpu_us"] = (server - self.start[1]) * 1e6 / max(calls, 1)
            out["inflight_cpu_us"] = out["inflight_client_cpu_us"] + out["inflight_server_cpu_us"]
        return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def seq_figures(lat_ns: list[int], prefix: str) -> Figures:
    us = [t / 1000 for t in lat_ns]
    return {f"{prefix}_p50_us": pct(us, 0.5), f"{prefix}_p99_us": pct(us, 0.99)}


async def seq_async(add: Callable[[int, int], Awaitable[int]], n: Counts, calls: int) -> list[int]:
    clock = time.perf_counter_ns
    deadline = clock() + int(n.budget_s * 1e9)
    for i in range(n.seq_warmup):
        await add(i, 1)
    out: list[int] = []
    for i in range(calls):
        start = clock()
        value = await add(i, 1)
        out.append(clock() - start)
        if value != i + 1:
            raise AssertionError(f"add({i}, 1) gave {value}")
        if start > deadline:
            break
    return out


async def inflight_async(
    add: Callable[[int, int], Awaitable[int]], n: Counts, server_pid: int | None = None
) -> Figures:
    deadline = time.perf_counter() + n.budget_s
    done = 0

    async def worker(calls: int) -> None:
        nonlocal done
        for i in range(calls):
            await add(i, 1)
            done += 1
            if not i & 31 and time.perf_counter() > deadline:
                return

    async with trio.open_nursery() as nursery:  # warm up
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker, 10)
    done = 0
    start = time.perf_counter()
    cpu = CpuMeter(server_pid)
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker, n.inflight_calls // CONCURRENCY)
    return {"inflight_calls_per_s": done / (time.perf_counter() - start)} | cpu.figures(done)


async def echo_async(echo: Callable[[bytes], Awaitable[bytes]], n: Counts) -> Figures:
    payload = os.urandom(MIB)
    await echo(payload)
    deadline = time.perf_counter() + n.budget_s
    start = time.perf_counter()
    done = 0
    for _ in range(n.echo_calls):
        if len(await echo(payload)) != MIB:
            raise AssertionError("echo lost bytes")
        done += 1
        if time.perf_counter() > deadline:
            break
    total = time.perf_counter() - start
    return {"echo_mb_per_s": done * MIB / 1e6 / total, "echo_total_s": total, "echo_n": done}


async def trio_client(kind: str, port: int, n: Counts, server_pid: int | None) -> Figures:
    figures: Figures = {}
    with trio.fail_after(CHILD_TIMEOUT):
        if kind.startswith("raw"):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream, trio.open_nursery() as nursery:
                client = RawClient(stream)
                nursery.start_soon(client.reader)
                figures |= seq_figures(await seq_async(client.add, n, n.seq_calls), "seq")
                figures |= await inflight_async(client.add, n, server_pid)
                figures |= await echo_async(client.echo, n)
                nursery.cancel_scope.cancel()
            return figures
        async with open_rpc_service(name="fair-client") as service:
            gateway = await service.connect(f"tcp://127.0.0.1:{port}/{ENDPOINT}", CalcGateway)
            figures |= seq_figures(await seq_async(gateway.add, n, n.seq_calls), "seq")
            figures |= await inflight_async(gateway.add, n, server_pid)
            figures |= await echo_async(gateway.echo, n)
    return figures


def sync_client(kind: str, port: int, n: Counts, server_pid: int | None) -> Figures:
    """Pyro5 / RPyC: a proxy per thread (they are owned by one thread)."""

    def open_proxy() -> tuple[Any, Callable[[], None]]:
        if kind == "pyro5":
            import Pyro5.api

            Pyro5.config.SERIALIZER = "msgpack"
            Pyro5.config.SOCK_NODELAY = True
            proxy = Pyro5.api.Proxy(f"PYRO:{ENDPOINT}@127.0.0.1:{port}")
            proxy._pyroTimeout = CALL_TIMEOUT
            proxy._pyroBind()
            return proxy, proxy._pyroRelease
        import rpyc

        conn = rpyc.connect("127.0.0.1", port, config={"sync_request_timeout": CALL_TIMEOUT})
        return conn.root, conn.close

    figures: Figures = {}
    proxy, close = open_proxy()
    try:
        add, echo = proxy.add, proxy.echo
        clock = time.perf_counter_ns
        deadline = time.perf_counter() + n.budget_s
        for i in range(n.seq_warmup):
            add(i, 1)
        lat: list[int] = []
        for i in range(n.seq_calls):
            start = clock()
            if add(i, 1) != i + 1:
                raise AssertionError("wrong sum")
            lat.append(clock() - start)
            if time.perf_counter() > deadline:
                break
        figures |= seq_figures(lat, "seq")
        payload = os.urandom(MIB)
        echo(payload)
        done = 0
        start_s = time.perf_counter()
        deadline = start_s + n.budget_s
        for _ in range(n.echo_calls):
            if len(echo(payload)) != MIB:
                raise AssertionError("echo lost bytes")
            done += 1
            if time.perf_counter() > deadline:
                break
        total = time.perf_counter() - start_s
        figures |= {"echo_mb_per_s": done * MIB / 1e6 / total, "echo_total_s": total}
    finally:
        close()

    count = [0] * CONCURRENCY
    errors: list[BaseException] = []
    barrier = threading.Barrier(CONCURRENCY + 1, timeout=CALL_TIMEOUT * 3)
    per = n.inflight_calls // CONCURRENCY

    def worker(k: int) -> None:
        try:
            proxy, close = open_proxy()  # a proxy belongs to the thread that opens it
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            return
        try:
            add = proxy.add
            barrier.wait()
            end = time.perf_counter() + n.budget_s
            for i in range(per):
                add(i, 1)
                count[k] += 1
                if time.perf_counter() > end:
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(CONCURRENCY)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    cpu = CpuMeter(server_pid)
    for t in threads:
        t.join(n.budget_s + CALL_TIMEOUT)
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} client threads failed, the first: {errors[0]!r}")
    figures["inflight_calls_per_s"] = sum(count) / elapsed
    return figures | cpu.figures(sum(count))


async def local_trio(kind: str, n: Counts) -> Figures:
    if kind.startswith("local-memchan"):
        send, receive = trio.open_memory_channel[tuple[int, int, Slot]](math.inf)
        suspends = kind == "local-memchan-suspend"

        async def server() -> None:
            async for a, b, slot in receive:
                if suspends:  # like a handler that awaits once
                    await trio.sleep(0)
                slot.value = a + b
                slot.event.set()

        async def add(a: int, b: int) -> int:
            slot = Slot()
            send.send_nowait((a, b, slot))
            await slot.event.wait()
            return int(slot.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            lat = await seq_async(add, n, n.local_calls)
            nursery.cancel_scope.cancel()
        return seq_figures(lat, "local")
    async with open_rpc_service(name="fair-local") as service:
        endpoint = calc_class(kind)(service, ENDPOINT)
        endpoint.start()
        gateway = endpoint.get_self_gateway(CalcGateway)
        return seq_figures(await seq_async(gateway.add, n, n.local_calls), "local")


def local_pykka(n: Counts) -> Figures:
    import pykka

    class PykkaCalc(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message[0] + message[1]

    ref = PykkaCalc.start()
    try:
        clock = time.perf_counter_ns
        deadline = time.perf_counter() + n.budget_s
        for i in range(n.seq_warmup):
            ref.ask((i, 1), timeout=CALL_TIMEOUT)
        lat: list[int] = []
        for i in range(n.local_calls):
            start = clock()
            ref.ask((i, 1), timeout=CALL_TIMEOUT)
            lat.append(clock() - start)
            if time.perf_counter() > deadline:
                break
        return seq_figures(lat, "local")
    finally:
        ref.stop(block=True, timeout=CALL_TIMEOUT)


def run_one(kind: str, n: Counts) -> Figures:
    if kind == "local-pykka":
        return local_pykka(n)
    if kind in LOCAL:
        return trio.run(local_trio, kind, n)
    with Server(kind) as port:
        pid = server.proc.pid if (server := CURRENT_SERVER[0]) and server.proc else None
        if kind in ("pyro5", "rpyc"):
            return sync_client(kind, port, n, pid)
        return trio.run(trio_client, kind, port, n, pid)


# --- the parent: rounds, table --------------------------------------------------------------------


def missing(kind: str) -> str | None:
    import importlib.util

    module = NEEDS.get(kind)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{kind}: skipped, {module} is not installed (pip install -e '.[peers]')"
    return None


def child(kind: str, quick: bool, pin: set[int] | None = None) -> Figures | str:
    cmd = [sys.executable, __file__, "--one", kind] + (["--quick"] if quick else [])

    def pinned() -> None:  # the server child inherits the client's CPUs
        if pin is not None:
            os.sched_setaffinity(0, pin)

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=pinned
    )
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, 9)
        proc.communicate(timeout=10)
        return f"{kind}: timed out after {CHILD_TIMEOUT:g} s"
    if proc.returncode != 0 or not out.strip():
        tail = err.strip().splitlines()[-1:] or ["no output"]
        return f"{kind}: exit {proc.returncode}: {tail[0]}"
    figures: Figures = json.loads(out.strip().splitlines()[-1])
    return figures


COLUMNS = [
    ("seq_p50_us", "seq p50 us", False),
    ("seq_p99_us", "seq p99 us", False),
    ("inflight_calls_per_s", "64 in flight calls/s", True),
    ("inflight_cpu_us", "64 in flight CPU us/call", False),
    ("echo_mb_per_s", "1 MiB echo MB/s", True),
]
LOCAL_COLUMNS = [("local_p50_us", "ask p50 us", False), ("local_p99_us", "ask p99 us", False)]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    f = "{:.0f}" if max(values) >= 100 else "{:.1f}"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{f.format(lo)}/{f.format(mid)}/{f.format(hi)}"


def table(
    kinds: list[str],
    results: dict[str, list[Figures]],
    columns: list[tuple[str, str, bool]],
    base: str,
) -> list[str]:
    lines = ["| variant | " + " | ".join(c[1] + " (min/med/max)" for c in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for kind in kinds:
        cells = [spread([r[key] for r in results[kind] if key in r]) for key, _, _ in columns]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"ratios of medians to {base} (above 1 is better than {base}):")
    lines.append("| variant | " + " | ".join(c[1] for c in columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for kind in kinds:
        cells = []
        for key, _, higher_better in columns:
            mine = [r[key] for r in results[kind] if key in r]
            theirs = [r[key] for r in results.get(base, []) if key in r]
            if not mine or not theirs:
                cells.append("-")
                continue
            a, b = statistics.median(mine), statistics.median(theirs)
            cells.append(f"{(a / b if higher_better else b / a):.2f}x")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", default=",".join(REMOTE + LOCAL))
    parser.add_argument("--json", help="append every measurement to this file as JSON lines")
    parser.add_argument(
        "--pin",
        help="run every client and server on these CPUs only (e.g. 0): steadier figures on "
        "a small or shared machine, the same for every variant",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = Counts.quick() if args.quick else Counts()
    if args.serve:
        serve(args.serve, args.port_file)
        return 0
    if args.one:
        print(json.dumps(run_one(args.one, counts)), flush=True)
        return 0
    if args.quick and args.rounds == 5:
        args.rounds = 2
    kinds = []
    for kind in args.variants.split(","):
        if kind not in REMOTE + LOCAL:
            parser.error(f"unknown variant {kind!r}; choose from {', '.join(REMOTE + LOCAL)}")
        reason = missing(kind)
        if reason:
            print(reason)
        else:
            kinds.append(kind)
    pin = {int(c) for c in args.pin.split(",")} if args.pin else None
    load_before = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {platform.machine()}"
        f"  {os.cpu_count()} cpus  Python {platform.python_version()}  trio {trio.__version__}"
        f"  load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        + (f"  pinned to CPU {args.pin}" if pin else ""),
        flush=True,
    )
    results: dict[str, list[Figures]] = {kind: [] for kind in kinds}
    sink = open(args.json, "a") if args.json else None  # noqa: SIM115
    try:
        for r in range(args.rounds):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                got = child(kind, args.quick, pin)
                if isinstance(got, str):
                    print(f"  ! round {r + 1}: {got}", flush=True)
                    continue
                results[kind].append(got)
                if sink is not None:
                    sink.write(json.dumps({"round": r + 1, "variant": kind, **got}) + "\n")
            print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if sink is not None:
            sink.close()
    remote = [k for k in kinds if k in REMOTE]
    local = [k for k in kinds if k in LOCAL]
    if remote:
        print()
        print("\n".join(table(remote, results, COLUMNS, "raw-inline")))
        serial = [k for k in ("raw-serial", "mc-suspend") if k in remote]
        if len(serial) == 2:
            print("\nhandlers that await once holding the endpoint, against one at a time:")
            print("\n".join(table(serial, results, COLUMNS, "raw-serial")[len(serial) + 3 :]))
        suspending = [k for k in ("raw-task", "mc-suspend", "mc-offmain") if k in remote]
        if "raw-task" in suspending and len(suspending) > 1:
            print("\nhandlers that await once, against a task per request:")
            print("\n".join(table(suspending, results, COLUMNS, "raw-task")[len(suspending) + 3 :]))
    if local:
        print()
        print("\n".join(table(local, results, LOCAL_COLUMNS, "local-memchan")))
        suspending = [
            k
            for k in ("local-memchan-suspend", "local-mc-suspend", "local-mc-offmain")
            if k in local
        ]
        if "local-memchan-suspend" in suspending and len(suspending) > 1:
            print("\nhandlers that await once, against a channel whose server awaits once:")
            lines = table(suspending, results, LOCAL_COLUMNS, "local-memchan-suspend")
            print("\n".join(lines[len(suspending) + 3 :]))
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
