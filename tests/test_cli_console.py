"""The `minicluster` command as a person at the console meets it, through real processes: what
a failure says (one sentence, never a traceback), the exit codes of Ctrl-C and of a closed
pipe, a TaskExecutor that cannot join, a peer that is not a cluster, and what `stop` ends."""

from __future__ import annotations

import http.server
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import trio

from minicluster.cluster.gateways import TaskExecutorGateway
from minicluster.rpc import open_rpc_service
from tests.test_cli import (
    HEARTBEATS,
    MINICLUSTER,
    ROOT,
    _env,
    assert_one_sentence,
    client,
    client_json,
    joined_task_executor,
    running_cluster,
    started,
)
from tests.test_cli import Process as Process

WALL_CLOCK = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] ")


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def http_server() -> Iterator[str]:
    """A tiny HTTP server on a free loopback port, served by a thread; yields HOST:PORT."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def random_bytes_server(data: bytes) -> Iterator[str]:
    """A loopback server that sends `data` to whoever connects, then waits for them to leave."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(data)
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=15)


# --- a peer that is not a minicluster cluster -------------------------------------------


def test_a_client_says_an_http_server_at_the_address_is_not_a_cluster() -> None:
    with http_server() as address:
        result = client(address, "list-jobs", "--timeout", "5s", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"{address} answered like an HTTP server" in line
    assert "not a minicluster cluster" in line


def test_a_task_executor_joining_an_http_server_says_so_and_exits_1(tmp_path: Path) -> None:
    with (
        http_server() as address,
        started(["task-executor", "--join", address], tmp_path, "te") as te,
    ):
        assert te.wait(timeout=15) == 1
        line = assert_one_sentence(te.stderr())
    assert f"{address} answered like an HTTP server" in line


def test_a_client_says_a_peer_sending_random_bytes_is_not_a_cluster() -> None:
    data = b"\x9f" + random.Random(7).randbytes(63)  # a header announcing ~2.6 GB
    with random_bytes_server(data) as address:
        result = client(address, "list-jobs", "--timeout", "5s", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"{address} is not a minicluster cluster" in line
    assert "9f" in line


def test_a_client_says_connection_refused_naming_the_address() -> None:
    address = "127.0.0.1:{port}"  # tcp://HOST:PORT: test_cli's nothing-listens test
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client(address.format(port=port), "list-jobs", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"cannot connect to tcp://127.0.0.1:{port}: connection refused" in line


# --- a TaskExecutor that cannot join -----------------------------------------------------


def test_a_task_executor_joining_nothing_says_why_and_gives_up_after_join_timeout(
    tmp_path: Path,
) -> None:
    address = free_address()  # HOST:PORT, as a person types it; tcp://HOST:PORT in test_cli
    args = ["task-executor", "--join", address, "--join-timeout", "1500ms"]
    began = time.monotonic()
    with started(args, tmp_path, "te") as te:
        te.expect_line(
            rf"cannot connect to tcp://{address}: connection refused; retrying in 1 s", timeout=10
        )
        assert te.wait(timeout=15) == 1
        line = assert_one_sentence(te.stderr())
    assert time.monotonic() - began < 10
    assert "unreachable for 1.5 s (--join-timeout)" in line
    assert f"tcp://{address}: connection refused" in line


def test_ctrl_c_ends_a_task_executor_with_exit_130_and_one_line(tmp_path: Path) -> None:
    args = ["task-executor", "--join", free_address(), "--join-timeout", "30s"]
    with started(args, tmp_path, "te") as te:
        te.expect_line("retrying in", timeout=10)
        te.send_signal(signal.SIGINT)
        assert te.wait(timeout=15) == 130
        assert "interrupted" in assert_one_sentence(te.stderr())


# --- start and stop -----------------------------------------------------------------------


def test_start_on_a_busy_port_names_it_and_suggests_port_0_in_a_real_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*MINICLUSTER, "start", "--no-live", "--port", str(port)],
            capture_output=True, text=True, timeout=30, env=_env(),
        )  # fmt: skip
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"cannot serve on 127.0.0.1:{port}: the address is already in use" in line
    assert "--port 0" in line


def test_ctrl_c_shuts_start_down_cleanly_with_exit_0_and_its_log_file_keeps_every_event(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "events.log"
    with running_cluster(tmp_path, "--log-file", str(log_file)) as (cluster, address):
        job = client_json(address, "submit-job", "--name", "logged", "--task-duration", "10ms")
        cluster.expect_line(rf"{job['job_id']}.*FINISHED", timeout=10)
        assert WALL_CLOCK.match(cluster.seen[-1])  # stdout's event lines are stamped alike
        cluster.send_signal(signal.SIGINT)
        assert cluster.wait(timeout=15) == 0  # a clean shutdown, as after SIGTERM or stop
        line = assert_one_sentence(cluster.stderr())
    assert "interrupted" in line and "shut down cleanly" in line
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    stamps = []
    for line in lines:
        match = WALL_CLOCK.match(line)
        assert match, line
        stamps.append(datetime.fromisoformat(match.group(1)))
    assert stamps == sorted(stamps)
    assert abs((datetime.now() - stamps[-1]).total_seconds()) < 60
    assert any(job["job_id"] in line and "FINISHED" in line for line in lines)
    assert any("registered" in line for line in lines)


def test_stop_ends_the_jobs_and_joined_task_executors_but_a_stopping_notice_alone_ends_none(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    with (
        running_cluster(tmp_path, "--task-executors", "0", *HEARTBEATS) as (cluster, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2) as te_x,
    ):
        # anyone can say the cluster stops: with the cluster still there, nothing ends
        te_address = re.search(r"serving at (\S+),", te_x.seen[0])
        assert te_address, te_x.seen

        async def say_the_cluster_stops() -> None:
            async with open_rpc_service() as service:
                te = await service.connect(te_address.group(1), TaskExecutorGateway)
                await te.cluster_stopping("not true")

        trio.run(say_the_cluster_stops)
        te_x.expect_line("the cluster is stopping: not true", timeout=5)
        time.sleep(1.5)  # a look for the leaders (every second): the cluster answers
        assert te_x.popen.poll() is None
        (listed,) = client_json(address, "inspect")["task_executors"]
        assert (listed["id"], listed["state"]) == ("te-x", "registered")
        # `stop`: the jobs end, the cluster says so, te-x exits 0
        job = client_json(address, "submit-job", "--name", "long", "--task-duration", "60s")
        result = client(address, "stop")
        assert result.returncode == 0, result.stderr
        ended, stopped = result.stdout.splitlines()
        assert re.fullmatch(
            rf"ended job long \({job['job_id']}\): CANCELED \(was (CREATED|RUNNING)\)", ended
        )
        assert stopped == "cluster stopped"
        assert cluster.wait(timeout=15) == 0
        assert te_x.wait(timeout=10) == 0
        te_x.expect_line("the cluster is stopping: the cluster was stopped", timeout=5)
        assert te_x.stderr().strip() == (
            "task executor te-x stopped: the cluster was stopped (minicluster stop)"
        )
    assert time.monotonic() - began < 25


# --- one shared cluster: one TaskExecutor with one slot -----------------------------------


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a cluster process with a single slot, shared by the tests below."""
    options = ["--task-executors", "1", "--slots-per-executor", "1", *HEARTBEATS]
    with running_cluster(tmp_path_factory.mktemp("one-slot"), *options) as (_, address):
        yield address


def run_together(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several `minicluster` commands at once (each a process of its own), as they finish."""
    processes = [
        subprocess.Popen(
            [*MINICLUSTER, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for args in commands
    ]
    results = []
    try:
        for args, process in zip(commands, processes, strict=True):
            stdout, stderr = process.communicate(timeout=30)
            results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def test_every_client_command_takes_host_port_without_tcp(one_slot: str) -> None:
    bare = one_slot.removeprefix("tcp://")
    assert bare != one_slot  # the other tests use tcp://HOST:PORT
    commands = [
        ["list-jobs"],
        ["submit-job", "--parallelism", "1", "--task-duration", "10ms"],
        ["cancel-job", "no-such-job"],
    ]  # one option (address_option) for every client command; three of them here
    results = run_together(*([*c, "--address", bare] for c in commands))
    for result in results:
        assert "Traceback" not in result.stderr
        if result.args[0] == "cancel-job":  # reached the cluster, which has no such job
            assert result.returncode == 1
            assert "no job matching 'no-such-job'" in assert_one_sentence(result.stderr)
        else:
            assert result.returncode == 0, result.stderr


BAD_ADDRESSES = [
    (["list-jobs", "--address", "http://127.0.0.1:8000"],
     "--address: expected tcp://HOST:PORT, got the scheme 'http'"),
    (["task-executor", "--join", "http://127.0.0.1:8000"],
     "--join: expected tcp://HOST:PORT, got the scheme 'http'"),
    (["submit-job", "--timeout", "0s"], "--timeout: expected a duration of at least 1ms, got '0s'"),
]  # fmt: skip


def test_a_bad_address_or_timeout_is_exit_2_and_one_sentence_in_a_real_process() -> None:
    results = run_together(*(args for args, _ in BAD_ADDRESSES))
    for result, (_, message) in zip(results, BAD_ADDRESSES, strict=True):
        assert result.returncode == 2, result.args
        assert message in assert_one_sentence(result.stderr)


HUGE_SUBMIT = """
import sys, uuid, trio
from minicluster.client import connect_cluster
from minicluster.cluster import JobGraph, JobVertex

async def main():
    async with connect_cluster(sys.argv[1]) as client:
        graph = JobGraph(uuid.uuid4(), "huge", [JobVertex("task", 10**12, 1.0)])
        try:
            await client.call(lambda d: d.submit_job(graph))
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("accepted")

trio.run(main)
"""


def test_the_dispatcher_refuses_a_parallelism_over_flinks_limit_and_keeps_no_job(
    one_slot: str,
) -> None:
    # a client that skips the command line's check: the cluster's boundary holds on its own
    result = subprocess.run(
        [sys.executable, "-c", HUGE_SUBMIT, one_slot],
        capture_output=True,
        text=True,
        timeout=30,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ProtocolError"), result.stdout
    assert "must be from 1 to 32,768" in result.stdout
    listed = client_json(one_slot, "list-jobs")["jobs"]
    assert [job for job in listed if job["name"] == "huge"] == []


def test_submit_job_wait_shows_elapsed_time_task_states_and_pending_slots(one_slot: str) -> None:
    result = client(
        one_slot, "submit-job", "--name", "waves", "--parallelism", "3",
        "--task-duration", "300ms", "--wait",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and "\033" not in result.stderr  # plain lines in a pipe
    assert any(re.fullmatch(r"waves: RUNNING, .*waiting for 2 slots.* \(\d+s\)", x) for x in lines)
    assert any("1 running" in line for line in lines), lines
    assert re.fullmatch(r"waves: FINISHED, 3/3 finished, 0 restarts \(\d+s\)", lines[-1])


def test_job_status_shows_the_pending_demand_of_a_waiting_job(one_slot: str) -> None:
    blocker = client_json(one_slot, "submit-job", "--name", "blocker", "--task-duration", "60s",
                          "--parallelism", "1")  # fmt: skip
    waiting = client_json(one_slot, "submit-job", "--name", "starved", "--parallelism", "2",
                          "--task-duration", "10ms")  # fmt: skip
    try:
        result = client(one_slot, "job-status", waiting["job_id"])
    finally:
        client(one_slot, "cancel-job", blocker["job_id"])  # then the starved job runs
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"starved ({waiting['job_id']}): ")
    assert first.endswith("waiting for 2 slots")


def test_ctrl_c_during_submit_job_wait_says_the_job_keeps_running_and_how_to_cancel_it(
    one_slot: str, tmp_path: Path
) -> None:
    args = ["submit-job", "--name", "long", "--task-duration", "60s", "--parallelism", "1",
            "--wait", "--address", one_slot]  # fmt: skip
    with started(args, tmp_path, "submit") as submit:
        job_id = submit.expect_line(r"^([0-9a-f]{32})$", timeout=10).group(1)
        wait_for_stderr(submit, "long: RUNNING")
        submit.send_signal(signal.SIGINT)
        assert submit.wait(timeout=10) == 130
        line = assert_one_sentence(submit.stderr().splitlines()[-1])
    assert f"job long ({job_id}) keeps running" in line
    assert f"`minicluster cancel-job {job_id} --address {one_slot}`" in line
    # still running: cancel-job exits 0 only for a job it ends (1 for one that had ended)
    assert client(one_slot, "cancel-job", job_id).returncode == 0


@pytest.mark.parametrize(
    "args",
    [["inspect", "--watch"], ["simulate", "--runs", "1000", "--workers", "1"]],
    ids=["inspect --watch", "simulate"],
)
def test_ctrl_c_ends_a_long_running_client_command_with_exit_130_and_one_line(
    one_slot: str, tmp_path: Path, args: list[str]
) -> None:
    address = ["--address", one_slot] if args[0] == "inspect" else []
    with started([*args, *address], tmp_path, args[0]) as process:
        if args[0] == "inspect":
            process.expect_line("te-1", timeout=10)  # the first view is out: it watches
        else:
            time.sleep(1.5)  # runs under way
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        assert assert_one_sentence(process.stderr()) == "minicluster: interrupted."


def wait_for_stderr(process: Process, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.stderr():
        assert time.monotonic() < deadline, f"no {text!r} on stderr: {process.stderr()!r}"
        time.sleep(0.05)


# --- a reader that goes away: `| head` ------------------------------------------------------


def run_into_a_closed_pipe(*args: str) -> tuple[int, str]:
    """The command with its stdout a pipe whose reader has already gone, as after `| head`
    has its lines; its exit code and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*MINICLUSTER, *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, timeout=60, env=_env(),
        )  # fmt: skip
    finally:
        os.close(write_end)
    return result.returncode, result.stderr


def test_list_jobs_into_a_closed_pipe_exits_quietly(one_slot: str) -> None:
    code, stderr = run_into_a_closed_pipe("list-jobs", "--address", one_slot)
    assert (code, stderr) == (141, "")


def test_run_scenario_piped_to_head_stops_the_run_and_exits_quietly() -> None:
    # `run-scenario scale.yaml | head -3`: three lines read, then the reader goes away while
    # the cluster runs (the run stops as on Ctrl-C, but the exit is SIGPIPE's, silent)
    process = subprocess.Popen(
        [*MINICLUSTER, "run-scenario", str(ROOT / "scenarios" / "scale.yaml")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        head = [process.stdout.readline() for _ in range(3)]
        process.stdout.close()
        assert process.wait(timeout=30) == 141
        assert process.stderr.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()  # type: ignore[union-attr]
    assert head[0].startswith(b"scenario scale")
