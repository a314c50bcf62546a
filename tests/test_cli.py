"""The `minicluster` command as its users meet it: click's CliRunner for the in-process commands,
real processes (a cluster, TaskExecutors joining it, clients) for everything that talks TCP."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import trio
from click.testing import CliRunner
from trio._core import _run as trio_run_internals

from cli.main import cli
from minicluster import __version__
from minicluster.client import connect_cluster
from minicluster.cluster import JobGraph, JobVertex

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
MINICLUSTER = [sys.executable, "-m", "minicluster"]
READY = re.compile(r"cluster ready at (tcp://127\.0\.0\.1:(\d+))")
HEARTBEATS = ["--heartbeat-interval", "1s", "--heartbeat-timeout", "3s"]
DOCUMENTED_COMMANDS = [
    "start",
    "submit-job",
    "list-jobs",
    "job-status",
    "cancel-job",
    "inspect",
    "task-executor",
    "stop",
    "run-scenario",
    "simulate",
    "diagram",
]
T = TypeVar("T")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MINICLUSTER_ADDRESS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def assert_one_sentence(stderr: str) -> str:
    """The documented error: one line on stderr, `minicluster: <sentence>`, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("minicluster: "), line
    assert line.endswith((".", "?", "!")), line
    return line


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe` until it returns something other than None, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.25)


# --- processes ---------------------------------------------------------------------------


class Process:
    """A `minicluster` process: stdout read line by line by a thread (so the pipe never fills),
    stderr kept in a file for the assertions at the end."""

    def __init__(self, args: list[str], log_dir: Path, name: str) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(
            [*MINICLUSTER, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def expect_line(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        """The first stdout line (from here on) matching `pattern`, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.poll()}) before printing {pattern!r}; "
                    f"stdout {self.seen[-5:]}, stderr {self.stderr()[-2000:]!r}"
                )
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} printed no line matching {pattern!r} in {timeout:g} s; "
                    f"stdout {self.seen[-5:]}, stderr {self.stderr()[-2000:]!r}"
                )

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
        self._reader.join(timeout=5)
        assert self.popen.stdout is not None
        self.popen.stdout.close()
        self._stderr.close()


@contextmanager
def started(args: list[str], log_dir: Path, name: str) -> Iterator[Process]:
    process = Process(args, log_dir, name)
    try:
        yield process
    finally:
        process.close()


@contextmanager
def running_cluster(log_dir: Path, *options: str) -> Iterator[tuple[Process, str]]:
    """A `minicluster start` process on a free loopback port; yields it and its address."""
    args = ["start", "--host", "127.0.0.1", "--port", "0", "--no-live", "--no-rest", *options]
    with started(args, log_dir, "cluster") as process:
        address = process.expect_line(READY, timeout=20).group(1)
        yield process, address


@contextmanager
def joined_task_executor(
    log_dir: Path, address: str, resource_id: str, slots: int
) -> Iterator[Process]:
    """A `minicluster task-executor --join` process, once it has registered."""
    args = [
        "task-executor",
        "--join",
        address,
        "--slots",
        str(slots),
        "--id",
        resource_id,
        *HEARTBEATS,
    ]
    with started(args, log_dir, resource_id) as process:
        process.expect_line(r"registered at the ResourceManager", timeout=20)
        yield process


def client(address: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """One client command against the cluster at `address`, in its own process."""
    return subprocess.run(
        [*MINICLUSTER, *args, "--address", address],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def client_json(address: str, *args: str) -> Any:
    result = client(address, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def job_status(address: str, job_id: str) -> dict[str, Any]:
    status: dict[str, Any] = client_json(address, "job-status", job_id)
    return status


# --- in process: CliRunner ---------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version_option_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"minicluster, version {__version__}"


def test_python_dash_m_minicluster_prints_the_version() -> None:
    result = subprocess.run(
        [*MINICLUSTER, "--version"], capture_output=True, text=True, timeout=30, env=_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"minicluster, version {__version__}"


@pytest.mark.parametrize("command", DOCUMENTED_COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_run_scenario_quickstart_passes() -> None:
    result = invoke("run-scenario", str(SCENARIOS / "quickstart.yaml"), "--no-live")
    assert result.exit_code == 0, result.output
    assert "scenario quickstart PASSED" in result.stdout


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


INVALID_SCENARIOS = {
    "unknown-step-kind": (
        "name: bad\n"
        "steps:\n"
        "  - submit: {job: etl, parallelism: 2, task_duration: 1s}\n"
        "  - explode: {job: etl}\n",
        "steps[1] (line 4): unknown step kind 'explode'; did you mean 'expect'?",
    ),
    "wrong-type": (
        "name: bad\nsteps:\n  - submit: {job: etl, parallelism: four, task_duration: 1s}\n",
        "steps[0].submit.parallelism (line 3): expected a positive integer, got 'four'.",
    ),
    "unknown-job": (
        "name: bad\n"
        "steps:\n"
        "  - submit: {job: etl, parallelism: 2, task_duration: 1s}\n"
        "  - wait: {job: nope, status: RUNNING, timeout: 5s}\n",
        "steps[1].wait.job (line 4): no earlier submit step defines a job named 'nope'.",
    ),
    "unknown-task-executor": (
        "name: bad\ncluster:\n  task_executors: 2\nsteps:\n  - kill_task_executor: te-7\n",
        "steps[0].kill_task_executor (line 5): there is no TaskExecutor 'te-7' at this step "
        "(the cluster has te-1, te-2).",
    ),
    "bad-duration": (
        "name: bad\nsteps:\n  - sleep: 3 parsecs\n",
        "steps[0].sleep (line 3): unknown duration unit 'parsecs' in '3 parsecs'; "
        "use ms, s, m or h.",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_SCENARIOS))
def test_invalid_scenario_exits_2_naming_file_path_and_line(tmp_path: Path, case: str) -> None:
    text, where_and_what = INVALID_SCENARIOS[case]
    path = write(tmp_path, f"{case}.yaml", text)
    result = invoke("run-scenario", str(path), "--no-live")
    assert result.exit_code == 2, result.output
    assert assert_one_sentence(result.stderr) == f"minicluster: {path}: {where_and_what}"


def test_failed_expectation_exits_1_naming_the_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "failing.yaml",
        "name: failing\n"
        "cluster: {task_executors: 1, slots_per_executor: 1}\n"
        "steps:\n"
        "  - submit: {job: etl, parallelism: 1, task_duration: 1s}\n"
        "  - wait: {job: etl, status: FINISHED, timeout: 30s}\n"
        "  - expect: {free_slots: 5}\n",
    )
    result = invoke("run-scenario", str(path), "--no-live")
    assert result.exit_code == 1, result.output
    assert "scenario failing FAILED" in result.stdout
    line = assert_one_sentence(result.stderr)
    assert "step 3 (expect)" in line
    assert "free slots" in line


def test_report_file_has_the_documented_shape(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    result = invoke(
        "run-scenario",
        str(SCENARIOS / "quickstart.yaml"),
        "--no-live",
        "--seed",
        "3",
        "--report",
        str(report_file),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert {"scenario", "seed", "passed", "steps", "jobs", "rpc"} <= report.keys()
    assert report["scenario"] == "quickstart"
    assert report["seed"] == 3
    assert report["passed"] is True
    kinds = ["wait", "wait", "submit", "wait", "wait", "sleep", "expect", "expect"]
    assert [step["index"] for step in report["steps"]] == list(range(len(kinds)))
    assert [step["kind"] for step in report["steps"]] == kinds
    for step in report["steps"]:
        assert {"index", "kind", "ok", "at", "message"} <= step.keys()
        assert step["ok"] is True
        assert isinstance(step["at"], int | float)
        assert isinstance(step["message"], str) and step["message"]
    assert report["jobs"]["wordcount"]["status"] == "FINISHED"
    rpc = report["rpc"]
    assert {"calls", "by_method", "fencing_rejections"} <= rpc.keys()
    assert rpc["calls"] == sum(rpc["by_method"].values()) > 0
    assert rpc["by_method"]["submit_job"] == 1
    assert rpc["fencing_rejections"] == 0


def test_trace_file_has_one_json_line_per_rpc_message(tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    result = invoke(
        "run-scenario",
        str(SCENARIOS / "quickstart.yaml"),
        "--no-live",
        "--trace",
        str(trace_file),
    )
    assert result.exit_code == 0, result.output
    lines = trace_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"time", "sender", "receiver", "method", "kind", "outcome"} <= record.keys()
    times = [record["time"] for record in records]
    assert times == sorted(times)
    assert any(
        r["method"] == "submit_job" and r["receiver"] == "dispatcher" and r["outcome"] == "ok"
        for r in records
    )


def test_same_seed_writes_byte_identical_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest loads Hypothesis, whose trio hook makes trio's scheduler deterministic; a user's
    # `minicluster` process does not have it, so neither does this test.
    monkeypatch.setattr(trio_run_internals, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    traces = []
    for run in range(3):
        trace_file = tmp_path / f"trace-{run}.jsonl"
        result = invoke(
            "run-scenario",
            str(SCENARIOS / "taskexecutor-crash.yaml"),
            "--no-live",
            "--seed",
            "5",
            "--trace",
            str(trace_file),
        )
        assert result.exit_code == 0, result.output
        traces.append(trace_file.read_bytes())
    assert traces[0].count(b"\n") > 100
    assert traces[1] == traces[0]
    assert traces[2] == traces[0]


# --- a cluster process and its clients ------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a cluster process (2 TaskExecutors with 2 slots) shared by client tests."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), *HEARTBEATS) as (_, address):
        yield address


@pytest.fixture(scope="module")
def finished_job(cluster: str) -> subprocess.CompletedProcess[str]:
    """`submit-job --wait --json` of a short job, run once for the tests that need a job."""
    return client(
        cluster,
        "submit-job",
        "--name",
        "short",
        "--parallelism",
        "2",
        "--task-duration",
        "1s",
        "--wait",
        "--json",
    )


def finished_job_id(finished_job: subprocess.CompletedProcess[str]) -> str:
    assert finished_job.returncode == 0, finished_job.stderr
    job_id: str = json.loads(finished_job.stdout)["job_id"]
    return job_id


def test_submit_job_wait_exits_0_with_finished_json(
    finished_job: subprocess.CompletedProcess[str],
) -> None:
    assert finished_job.returncode == 0, finished_job.stderr
    document = json.loads(finished_job.stdout)  # exactly one JSON document on stdout
    assert {"job_id", "name", "status"} <= document.keys()
    assert document["name"] == "short"
    assert document["status"] == "FINISHED"
    assert uuid.UUID(hex=document["job_id"]).hex == document["job_id"]


def test_list_jobs_json_lists_the_submitted_job(
    cluster: str, finished_job: subprocess.CompletedProcess[str]
) -> None:
    job_id = finished_job_id(finished_job)
    jobs = client_json(cluster, "list-jobs")["jobs"]
    (job,) = [j for j in jobs if j["job_id"] == job_id]
    assert job["name"] == "short"
    assert job["status"] == "FINISHED"
    assert job["parallelism"] == 2
    assert {"start_time", "duration"} <= job.keys()


def test_job_status_json_shows_every_task(
    cluster: str, finished_job: subprocess.CompletedProcess[str]
) -> None:
    job_id = finished_job_id(finished_job)
    status = job_status(cluster, job_id)
    assert status["job_id"] == job_id
    assert status["name"] == "short"
    assert status["status"] == "FINISHED"
    tasks = status["tasks"]
    assert sorted(t["subtask"] for t in tasks) == [0, 1]
    for task in tasks:
        assert set(task) == {"vertex", "subtask", "state", "task_executor"}
        assert task["vertex"] == "task"
        assert task["state"] == "FINISHED"
        assert task["task_executor"] in {"te-1", "te-2"}


def test_inspect_json_shows_leaders_task_executors_slots_and_jobs(
    cluster: str, finished_job: subprocess.CompletedProcess[str]
) -> None:
    job_id = finished_job_id(finished_job)
    topology = client_json(cluster, "inspect")
    for leader in ("dispatcher", "resource_manager"):
        assert topology[leader]["address"].startswith(cluster + "/")
        uuid.UUID(topology[leader]["token"])  # a fencing token is a UUID
    assert isinstance(topology["job_masters"], list)
    task_executors = {te["id"]: te for te in topology["task_executors"]}
    assert set(task_executors) == {"te-1", "te-2"}
    for te in task_executors.values():
        assert te["address"].startswith(cluster + "/")
        assert [slot["index"] for slot in te["slots"]] == [0, 1]
        for slot in te["slots"]:
            assert set(slot) == {"index", "state", "job_id"}
            assert slot["state"] in {"FREE", "ALLOCATED", "ACTIVE"}
    assert {"job_id": job_id, "name": "short", "status": "FINISHED"} in topology["jobs"]


def test_cancel_job_cancels_a_running_job(cluster: str) -> None:
    submitted = client_json(
        cluster, "submit-job", "--name", "long", "--parallelism", "1", "--task-duration", "60s"
    )
    job_id = submitted["job_id"]
    result = client(cluster, "cancel-job", job_id)
    assert result.returncode == 0, result.stderr
    assert job_status(cluster, job_id)["status"] == "CANCELED"


def test_cancel_job_of_a_finished_job_exits_1(
    cluster: str, finished_job: subprocess.CompletedProcess[str]
) -> None:
    job_id = finished_job_id(finished_job)
    result = client(cluster, "cancel-job", job_id)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert job_id in line
    assert "FINISHED" in line


def test_job_status_of_an_unknown_job_exits_1_with_one_sentence(cluster: str) -> None:
    result = client(cluster, "job-status", "no-such-job")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no-such-job" in assert_one_sentence(result.stderr)


def test_client_exits_1_quickly_when_nothing_listens() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = client(address, "list-jobs", timeout=20)
    assert time.monotonic() - began < 5
    assert result.returncode == 1
    assert address in assert_one_sentence(result.stderr)


def test_stop_shuts_the_cluster_down_cleanly(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as (process, address):
        result = client(address, "stop")
        assert result.returncode == 0, result.stderr
        assert process.wait(timeout=15) == 0
        assert "Traceback" not in process.stderr()


def test_sigterm_shuts_a_serving_cluster_down_cleanly(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as (process, address):
        assert client_json(address, "list-jobs") == {"jobs": []}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "Traceback" not in process.stderr()


def test_sigterm_right_after_the_ready_line_shuts_the_cluster_down_cleanly() -> None:
    # A supervisor may stop the cluster the moment it is ready; the window is a few
    # milliseconds, so read the line straight from the pipe and try a few times.
    for _ in range(5):
        process = subprocess.Popen(
            [*MINICLUSTER, "start", "--host", "127.0.0.1", "--port", "0", "--no-live", "--no-rest"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        watchdog = threading.Timer(20, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            assert READY.search(process.stdout.readline().decode())
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


# --- a cluster with a shared secret -----------------------------------------------------


@pytest.fixture(scope="module")
def secret_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A cluster process started with --secret-file; yields its address and the file."""
    log_dir = tmp_path_factory.mktemp("secret-cluster")
    secret_file = log_dir / "secret"
    secret_file.write_text("a-long-shared-secret\n", encoding="utf-8")
    with running_cluster(log_dir, "--secret-file", str(secret_file)) as (_, address):
        yield address, secret_file


def test_secret_cluster_refuses_a_client_without_the_secret(
    secret_cluster: tuple[str, Path],
) -> None:
    address, _ = secret_cluster
    result = client(address, "list-jobs")
    assert result.returncode == 1
    assert address in assert_one_sentence(result.stderr)


def test_secret_cluster_refuses_a_client_with_a_wrong_secret(
    secret_cluster: tuple[str, Path], tmp_path: Path
) -> None:
    address, _ = secret_cluster
    wrong = write(tmp_path, "wrong", "not-the-secret\n")
    result = client(address, "list-jobs", "--secret-file", str(wrong))
    assert result.returncode == 1
    assert address in assert_one_sentence(result.stderr)


def test_secret_cluster_serves_a_client_with_the_secret(secret_cluster: tuple[str, Path]) -> None:
    address, secret_file = secret_cluster
    assert client_json(address, "list-jobs", "--secret-file", str(secret_file)) == {"jobs": []}


# --- TaskExecutors in their own processes -----------------------------------------------


def test_inspect_lists_a_joined_task_executor_with_its_slots(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, "--task-executors", "1", *HEARTBEATS) as (_, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2),
    ):

        def te_x() -> dict[str, Any] | None:
            listed = client_json(address, "inspect")["task_executors"]
            return next((te for te in listed if te["id"] == "te-x"), None)

        listed = eventually(te_x, timeout=3, what="te-x in `inspect --json`")
        assert listed["state"] == "registered"
        assert [slot["index"] for slot in listed["slots"]] == [0, 1]


def test_task_executor_process_exits_0_on_sigterm(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, "--task-executors", "0", *HEARTBEATS) as (_, address),
        joined_task_executor(tmp_path, address, "te-x", slots=1) as te_x,
    ):
        te_x.send_signal(signal.SIGTERM)
        assert te_x.wait(timeout=15) == 0
        assert "Traceback" not in te_x.stderr()


def test_job_finishes_after_its_task_executor_process_is_killed(tmp_path: Path) -> None:
    began = time.monotonic()
    cluster_options = ["--task-executors", "1", "--slots-per-executor", "1", *HEARTBEATS]
    with (
        running_cluster(tmp_path, *cluster_options) as (_, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2) as te_x,
    ):
        submitted = client_json(
            address,
            "submit-job",
            "--name",
            "survivor",
            "--parallelism",
            "3",
            "--task-duration",
            "4s",
        )
        job_id = submitted["job_id"]

        def running_on_te_x() -> dict[str, Any] | None:
            status = job_status(address, job_id)
            on_te_x = [t for t in status["tasks"] if t["task_executor"] == "te-x"]
            return status if status["status"] == "RUNNING" and on_te_x else None

        eventually(running_on_te_x, timeout=10, what="the job RUNNING with a task on te-x")
        te_x.send_signal(signal.SIGKILL)
        te_x.wait(timeout=10)
        with joined_task_executor(tmp_path, address, "te-y", slots=2):

            def ended() -> dict[str, Any] | None:
                status = job_status(address, job_id)
                return status if status["status"] in {"FINISHED", "FAILED", "CANCELED"} else None

            status = eventually(ended, timeout=25, what="the job to end")
        assert status["status"] == "FINISHED"
        assert status["restarts"] >= 1
        listed = client_json(address, "list-jobs")["jobs"]
        assert [j["status"] for j in listed if j["job_id"] == job_id] == ["FINISHED"]
    assert time.monotonic() - began < 40


def test_a_cluster_whose_stdout_nobody_reads_keeps_serving_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "minicluster", "start", "--port", "0", "--no-live", "--no-rest"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().decode().split()[-1]

        # many events, and nobody reads them: more than a pipe holds (25 jobs of 4 tasks,
        # submitted over one client connection, each waited for)
        async def submit_many() -> None:
            async with connect_cluster(address, timeout=5.0) as cluster:
                for index in range(25):
                    graph = JobGraph(uuid.uuid4(), f"j{index}", [JobVertex("task", 4, 0.1)])
                    job_id = await cluster.call(lambda d, g=graph: d.submit_job(g))
                    with trio.fail_after(20):
                        while await cluster.call(lambda d, j=job_id: d.request_job_status(j)) != (
                            "FINISHED"
                        ):
                            await trio.sleep(0.02)

        trio.run(submit_many)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_start_takes_its_cluster_from_a_config_file_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "cluster:\n  task_executors: 3\n  slots_per_executor: 1\n"
        "  heartbeat: {interval: 1s, timeout: 3s}\n"
    )
    with running_cluster(tmp_path, "--config", str(config)) as (_, address):
        topology = json.loads(client(address, "inspect", "--json").stdout)
        assert [len(te["slots"]) for te in topology["task_executors"]] == [1, 1, 1]
    with running_cluster(tmp_path, "--config", str(config), "--task-executors", "1") as (
        _,
        address,
    ):
        topology = json.loads(client(address, "inspect", "--json").stdout)
        assert [len(te["slots"]) for te in topology["task_executors"]] == [1]


def test_start_refuses_an_invalid_config_file_naming_file_path_and_line(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("cluster:\n  task_executors: many\n")
    result = invoke("start", "--port", "0", "--config", str(config))
    assert result.exit_code == 2
    assert f"{config}: cluster.task_executors (line 2):" in result.stderr
