"""The `minicluster` command as a person at the console meets it, through real processes: what
a failure says (one sentence, never a traceback), the exit codes of Ctrl-C and of a closed
pipe, a TaskExecutor that cannot join, a peer that is not a cluster, and what `stop` ends."""

from __future__ import annotations

import http.server
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from tests.test_cli import (
    HEARTBEATS,
    assert_one_sentence,
    client,
    client_json,
    joined_task_executor,
    running_cluster,
    started,
)

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


def test_a_client_says_a_peer_sending_random_bytes_is_not_a_cluster() -> None:
    data = b"\x9f" + random.Random(7).randbytes(63)  # a header announcing ~2.6 GB
    with random_bytes_server(data) as address:
        result = client(address, "list-jobs", "--timeout", "5s", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"{address} is not a minicluster cluster" in line
    assert "9f" in line


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "tcp://127.0.0.1:{port}"])
def test_a_client_says_connection_refused_naming_the_address(address: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client(address.format(port=port), "list-jobs", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"cannot connect to tcp://127.0.0.1:{port}: connection refused" in line


# --- a TaskExecutor that cannot join -----------------------------------------------------


@pytest.mark.parametrize("form", ["tcp://{}", "{}"])
def test_a_task_executor_joining_nothing_says_why_and_gives_up_after_join_timeout(
    tmp_path: Path, form: str
) -> None:
    address = free_address()
    args = ["task-executor", "--join", form.format(address), "--join-timeout", "2s"]
    began = time.monotonic()
    with started(args, tmp_path, "te") as te:
        te.expect_line(
            rf"cannot connect to tcp://{address}: connection refused; retrying in 1 s", timeout=10
        )
        assert te.wait(timeout=15) == 1
        line = assert_one_sentence(te.stderr())
    assert time.monotonic() - began < 10
    assert "unreachable for 2 s (--join-timeout)" in line
    assert f"tcp://{address}: connection refused" in line


def test_ctrl_c_ends_a_task_executor_with_exit_130_and_one_line(tmp_path: Path) -> None:
    args = ["task-executor", "--join", free_address(), "--join-timeout", "30s"]
    with started(args, tmp_path, "te") as te:
        te.expect_line("retrying in", timeout=10)
        te.send_signal(signal.SIGINT)
        assert te.wait(timeout=15) == 130
        assert "interrupted" in assert_one_sentence(te.stderr())


# --- start and stop -----------------------------------------------------------------------


def test_ctrl_c_ends_start_with_exit_130_and_one_line(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as (cluster, _):
        cluster.send_signal(signal.SIGINT)
        assert cluster.wait(timeout=15) == 130
        line = assert_one_sentence(cluster.stderr())
    assert "interrupted" in line and "shut down cleanly" in line


def test_start_log_file_keeps_one_wall_clock_line_per_event(tmp_path: Path) -> None:
    log_file = tmp_path / "events.log"
    with running_cluster(tmp_path, "--log-file", str(log_file)) as (cluster, address):
        job = client_json(address, "submit-job", "--name", "logged", "--task-duration", "10ms")
        cluster.expect_line(WALL_CLOCK, timeout=5)  # stdout's event lines are stamped alike
        client(address, "stop")
        assert cluster.wait(timeout=15) == 0
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
    assert any("cluster shutdown requested" in line for line in lines)


def test_stop_ends_the_jobs_says_their_final_states_and_joined_task_executors_exit_0(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    with (
        running_cluster(tmp_path, "--task-executors", "0", *HEARTBEATS) as (cluster, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2) as te_x,
    ):
        job = client_json(address, "submit-job", "--name", "long", "--task-duration", "60s")
        result = client(address, "stop")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            f"ended job long ({job['job_id']}): CANCELED (was {job['status']})",
            "cluster stopped",
        ]
        assert cluster.wait(timeout=15) == 0
        assert te_x.wait(timeout=10) == 0
        te_x.expect_line("the cluster is stopping: the cluster was stopped", timeout=5)
        assert te_x.stderr().strip() == (
            "task executor te-x stopped: the cluster was stopped (minicluster stop)"
        )
    assert time.monotonic() - began < 20
