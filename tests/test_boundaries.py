# ruff: noqa: E501 - the tables of cases read best one case a line
"""What a user can throw at the command line and its files: every value outside the documented
limits (docs/limits.md) is refused at the boundary with one sentence naming the flag or the file,
path and line, and exit 2, before anything starts or is sent; endless files are not read to the
end; Ctrl-C is one line and exit 130."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.errors import reported
from cli.main import cli
from minicluster import limits
from minicluster.cluster import MiniCluster
from minicluster.scenario import ScenarioError, Step, parse_job, parse_scenario
from minicluster.scenario.runner import Observer, StepResult, run_scenario

from .test_cli import MINICLUSTER, _env, assert_one_sentence

ROOT = Path(__file__).resolve().parent.parent
LONG_HOST = "h" * 100_000


def run(*args: str) -> tuple[int, str]:
    """The command in process (click's runner): exit code and its one stderr sentence."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


@contextmanager
def listening_socket() -> Iterator[socket.socket]:
    """A loopback socket that listens but never answers: a client that connects is seen."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nothing_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


# --- files: bounded reads ---------------------------------------------------------------------

ENDLESS = [
    (["submit-job", "/dev/zero"], "/dev/zero: the file is larger than 256 KiB, the limit for a job file."),
    (["run-scenario", "/dev/zero"], "/dev/zero: the file is larger than 512 KiB, the limit for a scenario file."),
    (["start", "--config", "/dev/zero"], "/dev/zero: the file is larger than 64 KiB, the limit for a config file."),
    (["list-jobs", "--secret-file", "/dev/zero"], "--secret-file /dev/zero: the file is larger than 4 KiB, the limit for a secret file."),
    (["task-executor", "--join", "tcp://127.0.0.1:1", "--secret-file", "/dev/zero"], "--secret-file /dev/zero: the file is larger than 4 KiB, the limit for a secret file."),
]  # fmt: skip


@pytest.mark.parametrize("args, message", ENDLESS, ids=[" ".join(a[:2]) for a, _ in ENDLESS])
def test_an_endless_input_file_is_refused_at_its_kinds_size_limit(
    args: list[str], message: str
) -> None:
    code, stderr = run(*args)
    assert (code, assert_one_sentence(stderr)) == (2, f"minicluster: {message}")


def test_a_pipe_that_never_ends_is_read_only_to_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "job.fifo"
    os.mkfifo(fifo)
    written = [0]

    def writer() -> None:  # writes until the reader closes its end
        with open(fifo, "wb") as out:
            try:
                while True:
                    out.write(b"#" * 65536)
                    out.flush()
                    written[0] += 65536
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    code, stderr = run("submit-job", str(fifo))
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert code == 2
    assert "larger than 256 KiB, the limit for a job file" in assert_one_sentence(stderr)
    assert written[0] < 2 * 256 * 1024 + 65536 * 4  # the reader stopped near the limit


def test_a_scenario_file_one_byte_over_the_limit_is_refused_and_one_at_it_is_read(
    tmp_path: Path,
) -> None:
    body = "name: t\nsteps:\n  - sleep: 1s\n"
    limit = limits.FILE_SIZE_LIMITS["scenario file"]
    at_limit = tmp_path / "at.yaml"
    at_limit.write_text(body + "#" * (limit - len(body) - 1) + "\n")
    over = tmp_path / "over.yaml"
    over.write_text(body + "#" * (limit - len(body)) + "\n")
    assert run("run-scenario", str(at_limit), "--no-live")[0] == 0
    code, stderr = run("run-scenario", str(over), "--no-live")
    assert code == 2
    assert assert_one_sentence(stderr) == (
        f"minicluster: {over}: the file is larger than 512 KiB, the limit for a scenario file."
    )


# --- flags ------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["start", "--port", "70000"], "--port: expected a port from 0 to 65535, got 70000."),
    (["start", "--port", "-1"], "--port: expected a port from 0 to 65535, got -1."),
    (["start", "--port", "http"], "--port: expected a port from 0 to 65535, got 'http'."),
    (["start", "--host", "a b"], "--host: expected a host name (letters, digits, '-' and '.') or an IP address, got 'a b'."),
    (["start", "--host", LONG_HOST], "--host: a host name has at most 253 characters, got 100,000."),
    (["start", "--heartbeat-interval", "0s"], "--heartbeat-interval: expected a duration of at least 1ms, got '0s'."),
    (["start", "--heartbeat-timeout", "0.0001s"], "--heartbeat-timeout: expected a duration of at least 1ms, got '0.0001s'."),
    (["start", "--rpc-timeout", "0s"], "--rpc-timeout: expected a duration of at least 1ms, got '0s'."),
    (["start", "--task-executors", "20000"], "--task-executors: expected a number of TaskExecutors from 0 to 1,000, got 20000."),
    (["start", "--slots-per-executor", str(10**9)], "--slots-per-executor: expected a number of slots from 1 to 1,024, got 1000000000."),
    (["list-jobs", "--address", "127.0.0.1"], "--address: expected tcp://HOST:PORT or HOST:PORT, got '127.0.0.1'."),
    (["list-jobs", "--address", "http://127.0.0.1:6123"], "--address: expected tcp://HOST:PORT, got the scheme 'http'; the cluster speaks only tcp."),
    (["list-jobs", "--address", "tcp://h:-5"], "--address: expected tcp://HOST:PORT with a port from 1 to 65535, got 'tcp://h:-5'."),
    (["list-jobs", "--address", "tcp://h"], "--address: expected tcp://HOST:PORT with a port, got 'tcp://h'."),
    (["list-jobs", "--address", f"tcp://{LONG_HOST}:6123"], "--address: a host name has at most 253 characters, got 100,000."),
    (["list-jobs", "--timeout", "0s"], "--timeout: expected a duration of at least 1ms, got '0s'."),
    (["submit-job", "--parallelism", str(10**12)], "--parallelism: expected a parallelism from 1 to 32,768, got 1000000000000."),
    (["submit-job", "--name", "n" * 201], "--name: expected at most 200 characters, got 201."),
    (["task-executor", "--join", "tcp://127.0.0.1:1", "--slots", "1025"], "--slots: expected a number of slots from 1 to 1,024, got 1025."),
    (["task-executor", "--join", "tcp://127.0.0.1:1", "--id", "te/1"], "--id: a TaskExecutor id holds only letters, digits, '.', '_' and '-', got 'te/1'."),
    (["task-executor", "--join", "tcp://127.0.0.1:1", "--port", "65536"], "--port: expected a port from 0 to 65535, got 65536."),
    (["run-scenario", "scenarios/quickstart.yaml", "--speed", "nan"], "--speed: expected a number from 0.01 to 10,000 or 'max', got 'nan'."),
    (["run-scenario", "scenarios/quickstart.yaml", "--speed", "inf"], "--speed: expected a number from 0.01 to 10,000 or 'max', got 'inf'."),
    (["run-scenario", "scenarios/quickstart.yaml", "--speed", "0"], "--speed: expected a number from 0.01 to 10,000 or 'max', got '0'."),
    (["simulate", "--workers", "1000"], "--workers: expected a number of processes from 1 to 64, got 1000."),
    (["simulate", "--duration", "0s"], "--duration: expected a duration of at least 1ms, got '0s'."),
]  # fmt: skip


@pytest.mark.parametrize("args, message", BAD_FLAGS, ids=[" ".join(a)[:60] for a, _ in BAD_FLAGS])
def test_a_bad_flag_exits_2_with_one_sentence_naming_the_flag_and_the_limit(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, stderr = run(*args)
    assert (code, assert_one_sentence(stderr)) == (2, f"minicluster: {message}")


def test_a_bad_address_in_the_environment_is_refused_like_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINICLUSTER_ADDRESS", "http://localhost:6123")
    code, stderr = run("list-jobs")
    assert code == 2
    assert assert_one_sentence(stderr) == (
        "minicluster: --address: expected tcp://HOST:PORT, got the scheme 'http'; the cluster "
        "speaks only tcp."
    )


def test_an_unknown_option_is_one_sentence_with_exit_2() -> None:
    code, stderr = run("list-jobs", "--rpc-timeout", "1s")
    assert code == 2
    assert assert_one_sentence(stderr) == (
        "minicluster: No such option '--rpc-timeout'. Did you mean '--timeout'?"
    )


@pytest.mark.parametrize(
    ("command", "setting"),
    [(command, s) for s in limits.CLUSTER_DURATIONS if s.flag for command in s.commands],
    ids=lambda v: v if isinstance(v, str) else v.option,
)
def test_every_cluster_duration_is_a_flag_that_refuses_zero(
    setting: limits.DurationSetting, command: str
) -> None:
    join = ["--join", "tcp://127.0.0.1:1"] if command == "task-executor" else []
    code, stderr = run(command, *join, setting.option, "0s")
    assert code == 2
    assert assert_one_sentence(stderr) == (
        f"minicluster: {setting.option}: expected a duration of at least 1ms, got '0s'."
    )


@pytest.mark.parametrize(
    "setting", [s for s in limits.CLUSTER_DURATIONS if not s.allow_zero], ids=lambda s: s.path
)
def test_every_cluster_duration_is_a_scenario_key_that_refuses_zero(
    setting: limits.DurationSetting,
) -> None:
    value = "0s"
    for key in reversed(setting.key):
        value = f"{{{key}: {value}}}"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(f"name: t\ncluster: {value}\nsteps:\n  - sleep: 1s\n", "x.yaml")
    assert str(info.value) == (
        f"x.yaml: {setting.path} (line 2): expected a duration of at least 1ms, got '0s'"
    )


def test_a_huge_parallelism_is_refused_before_anything_is_sent() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        code, stderr = run(
            "submit-job", "--parallelism", str(10**12), "--address", f"tcp://127.0.0.1:{port}"
        )
        assert code == 2
        assert "--parallelism: expected a parallelism from 1 to 32,768" in stderr
        assert nothing_connected(sock)


# --- a busy port -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["start", "--no-live"], ["task-executor", "--join", "tcp://127.0.0.1:1"]]
)
def test_a_busy_port_names_the_address_and_suggests_port_0(command: list[str]) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        code, stderr = run(*command, "--host", "127.0.0.1", "--port", str(port))
    assert code == 1
    assert assert_one_sentence(stderr) == (
        f"minicluster: cannot serve on 127.0.0.1:{port}: the address is already in use; "
        "choose another --port, or --port 0 for a free one."
    )


# --- scenario and job files -----------------------------------------------------------------


def steps(count: int, step: str = "- sleep: 1s") -> str:
    return "".join(f"  {step}\n" for _ in range(count))


TOO_BIG = [
    ("steps", "name: t\nsteps:\n" + steps(5_001),
     "steps (line 3): at most 5,000 steps in a scenario, got 5,001"),
    ("jobs", "name: t\ncluster: {task_executors: 1}\nsteps:\n"
     + "".join(f"  - submit: {{job: j{i}}}\n" for i in range(1_001)),
     "steps[1000].submit (line 1004): a scenario submits at most 1,000 jobs"),
    ("task_executors", "name: t\ncluster: {task_executors: 1001}\nsteps:\n  - sleep: 1s\n",
     "cluster.task_executors (line 2): expected at most 1,000, got 1001"),
    ("task_executor_list", "name: t\ncluster:\n  task_executors: [" + ", ".join(f"t{i}" for i in range(1001)) + "]\nsteps:\n  - sleep: 1s\n",
     "cluster.task_executors (line 3): at most 1,000 TaskExecutors, got 1,001"),
    ("added_task_executors", "name: t\ncluster: {task_executors: 1000}\nsteps:\n  - add_task_executor: te-x\n",
     "steps[0].add_task_executor (line 4): a cluster holds at most 1,000 TaskExecutors"),
    ("slots", "name: t\ncluster: {slots_per_executor: 1025}\nsteps:\n  - sleep: 1s\n",
     "cluster.slots_per_executor (line 2): expected at most 1,024, got 1025"),
    ("parallelism", "name: t\nsteps:\n  - submit: {job: a, parallelism: 32769}\n",
     "steps[0].submit.parallelism (line 3): expected at most 32,768, got 32769"),
    ("tasks", "name: t\nsteps:\n  - submit: {job: a, vertices: ["
     + ", ".join(f"{{name: v{i}, parallelism: 32768}}" for i in range(4)) + "]}\n",
     "steps[0].submit (line 3): a job has at most 100,000 tasks (the sum of its vertices' parallelism), got 131,072"),
    ("vertices", "name: t\nsteps:\n  - submit: {job: a, vertices: ["
     + ", ".join(f"{{name: v{i}}}" for i in range(1001)) + "]}\n",
     "steps[0].submit.vertices (line 3): at most 1,000 vertices in a job, got 1,001"),
    ("edges", "name: t\nsteps:\n  - submit: {job: a, vertices: [{name: v}], edges: ["
     + ", ".join("{from: v, to: w}" for _ in range(10_001)) + "]}\n",
     "steps[0].submit.edges (line 3): at most 10,000 edges in a job, got 10,001"),
    ("fail_subtasks", "name: t\nsteps:\n  - submit: {job: a, parallelism: 2, fail: {subtasks: [0, 1, 0]}}\n",
     "steps[0].submit.fail.subtasks (line 3): at most 2 subtask indexes (the vertex's parallelism), got 3"),
    ("job_name", "name: t\nsteps:\n  - submit: {job: " + "j" * 201 + "}\n",
     "steps[0].submit.job (line 3): expected at most 200 characters, got 201"),
    ("scenario_name", "name: " + "n" * 201 + "\nsteps:\n  - sleep: 1s\n",
     "name (line 1): expected at most 200 characters, got 201"),
    ("description", "name: t\ndescription: " + "d" * 10_001 + "\nsteps:\n  - sleep: 1s\n",
     "description (line 2): expected at most 10,000 characters, got 10,001"),
    ("task_executor_id", "name: t\nsteps:\n  - add_task_executor: " + "t" * 201 + "\n",
     "steps[0].add_task_executor (line 3): expected at most 200 characters, got 201"),
]  # fmt: skip


@pytest.mark.parametrize("case, text, message", TOO_BIG, ids=[c[0] for c in TOO_BIG])
def test_a_scenario_over_a_size_limit_names_file_path_and_line(
    case: str, text: str, message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    assert str(info.value) == f"x.yaml: {message}"


def test_a_scenario_just_within_the_limits_loads() -> None:
    s = parse_scenario(
        "name: t\ncluster: {task_executors: 1000, slots_per_executor: 1024}\nsteps:\n"
        "  - submit: {job: a, parallelism: 32768}\n" + steps(4_999)
    )
    assert len(s.steps) == 5_000


def test_a_50_mb_scenario_and_a_100000_step_scenario_are_refused_quickly(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "w") as out:
        out.write("name: big\nsteps:\n")
        chunk = steps(10_000)
        while out.tell() < 50_000_000:
            out.write(chunk)
    code, stderr = run("run-scenario", str(big), "--no-live")
    assert code == 2
    assert "the file is larger than 512 KiB" in assert_one_sentence(stderr)
    many = tmp_path / "many.yaml"
    many.write_text("name: many\nsteps:\n" + steps(100_000, "- sleep: 1"))
    code, stderr = run("run-scenario", str(many), "--no-live")
    assert code == 2
    assert "the file is larger than 512 KiB" in assert_one_sentence(stderr)


def test_a_typo_in_a_job_file_exits_2_with_a_did_you_mean_hint(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: etl\nparalelism: 3\n")
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        code, stderr = run("submit-job", str(job), "--address", f"tcp://127.0.0.1:{port}")
        assert nothing_connected(sock)
    assert code == 2
    assert assert_one_sentence(stderr) == (
        f"minicluster: {job}: paralelism (line 2): unknown key 'paralelism'; "
        "did you mean 'parallelism'?"
    )


def test_a_typo_in_a_scenario_exits_2_instead_of_passing_with_the_default(
    tmp_path: Path,
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\nsteps:\n"
        "  - submit: {job: a, paralelism: 3, task_duration: 1s}\n"
        "  - wait: {job: a, status: FINISHED}\n"
    )
    code, stderr = run("run-scenario", str(path), "--no-live")
    assert code == 2
    assert assert_one_sentence(stderr) == (
        f"minicluster: {path}: steps[0].submit.paralelism (line 3): unknown key 'paralelism'; "
        "did you mean 'parallelism'?"
    )


def test_a_job_file_with_an_unknown_key_far_from_any_known_one_lists_the_keys() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_job("name: etl\nowner: me\n", "job.yaml")
    assert str(info.value) == (
        "job.yaml: owner (line 2): unknown key 'owner'; the keys here are name, parallelism, "
        "task_duration, vertices, edges, restart, failover_strategy, fail, or any key starting "
        "with 'x-' for your own use"
    )


# --- the documentation ----------------------------------------------------------------------


def test_every_limit_is_documented_with_its_value() -> None:
    text = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    numbers = {
        name: value
        for name, value in vars(limits).items()
        if name.startswith(("MAX_", "MIN_")) and isinstance(value, int | float)
    }
    assert numbers
    for name, value in numbers.items():
        shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
        assert re.search(rf"\b{re.escape(shown)}\b", text), f"{name} = {shown} not in docs"
    for kind, size in limits.FILE_SIZE_LIMITS.items():
        assert f"| {kind} | {limits.format_size(size)} |" in text
    for setting in limits.CLUSTER_DURATIONS:
        assert f"`{setting.path}`" in text, setting.path


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_during_run_scenario_is_one_line_and_exit_130(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(
        "name: long\ncluster: {clock: real}\nsteps:\n"
        "  - submit: {job: a, parallelism: 2, task_duration: 10m}\n"
        "  - wait: {job: a, status: FINISHED, timeout: 10m}\n"
    )
    process = subprocess.Popen(
        [*MINICLUSTER, "run-scenario", str(path), "--no-live"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("scenario long")
        for line in process.stdout:  # the cluster runs: the signal lands among trio's tasks
            if "step 2/2" in line:
                break
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert assert_one_sentence(stderr) == "minicluster: interrupted."


@pytest.mark.parametrize(
    "interrupt",
    [
        KeyboardInterrupt(),
        BaseExceptionGroup("tasks", [KeyboardInterrupt()]),
        BaseExceptionGroup(
            "tasks", [BaseExceptionGroup("inner", [KeyboardInterrupt()]), OSError("x")]
        ),
        BaseExceptionGroup("tasks", [OSError("x"), KeyboardInterrupt()]),
    ],
    ids=["bare", "group", "nested group", "group with another error first"],
)
def test_an_interrupt_however_wrapped_is_one_line_and_exit_130(
    interrupt: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info, reported():
        raise interrupt
    assert info.value.code == 130
    assert assert_one_sentence(capsys.readouterr().err) == "minicluster: interrupted."


def test_the_job_file_examples_in_the_docs_load() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    examples = re.findall(r"```yaml job\n(.*?)```", text, flags=re.DOTALL)
    jobs = {job.name: job for job in (parse_job(e, "scenarios.md") for e in examples)}
    single, pipeline = jobs["wordcount"], jobs["orders"]
    assert (single.name, single.parallelism, single.task_count) == ("wordcount", 4, 4)
    assert [v.name for v in pipeline.vertices] == ["read", "transform", "write"]
    assert pipeline.vertices[2].fail_subtasks == [0]
    assert [(e.source, e.target, e.pattern) for e in pipeline.edges] == [
        ("read", "transform", "pointwise"),
        ("transform", "write", "all-to-all"),
    ]


class _SignalAtStep(Observer):
    """Sends this process SIGINT as the given step starts; records what the run did next."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls: list[str] = []

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        self.calls.append(f"started {index}")
        if index == self.at:
            signal.raise_signal(signal.SIGINT)

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        self.calls.append(f"finished {result.index}")

    def tick(self, cluster: MiniCluster) -> None:
        if self.calls and self.calls[-1] != "tick":
            self.calls.append("tick")


def test_sigint_stops_a_scenario_between_steps_and_the_cluster_shuts_down_first() -> None:
    scenario = parse_scenario(
        "name: long\nsteps:\n"
        "  - submit: {job: a, parallelism: 2, task_duration: 1h}\n"
        "  - wait: {job: a, status: FINISHED, timeout: 2h}\n"
        "  - sleep: 1s\n"
    )
    observer = _SignalAtStep(1)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, seed=1, observer=observer, stop_signals=(signal.SIGINT,))
    # the wait was cancelled, not finished; the last step never started; the run's closing
    # tick came after the steps stopped, before the cluster shut down and the interrupt
    assert observer.calls[-3:] == ["finished 0", "started 1", "tick"]


def test_start_takes_its_durations_from_a_config_file_and_checks_them(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("cluster:\n  heartbeat: {interval: 20s, timeout: 20s}\n")
    with listening_socket() as sock:  # were the file ignored, the cluster would not start
        port = str(sock.getsockname()[1])
        code, stderr = run("start", "--no-live", "--port", port, "--config", str(config))
    assert code == 2
    assert assert_one_sentence(stderr) == (
        f"minicluster: {config}: cluster.heartbeat (line 2): the heartbeat timeout (20s) must be "
        "longer than the interval (20s)."
    )


def test_an_address_without_a_scheme_is_a_tcp_address() -> None:
    """Addresses are tcp://HOST:PORT or HOST:PORT: the second is the first without its scheme."""
    from minicluster.limits import check_address

    assert check_address("127.0.0.1:6123") == ("127.0.0.1", 6123)
    assert check_address("tcp://127.0.0.1:6123/") == ("127.0.0.1", 6123)
    assert check_address("localhost:1") == ("localhost", 1)
