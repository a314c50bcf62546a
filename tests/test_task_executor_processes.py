"""TaskExecutor identity with real processes: `task-executor --join` twice under one id, and a
TaskExecutor frozen (SIGSTOP) past the heartbeat timeout, then resumed."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.test_cli import (
    HEARTBEATS,
    assert_one_sentence,
    client_json,
    eventually,
    joined_task_executor,
    running_cluster,
    started,
)


def registered(address: str, resource_id: str) -> list[dict[str, Any]]:
    listed = client_json(address, "inspect")["task_executors"]
    return [te for te in listed if te["id"] == resource_id and te["state"] == "registered"]


def submit_and_wait(address: str, name: str, parallelism: int) -> dict[str, Any]:
    result: dict[str, Any] = client_json(
        address,
        "submit-job",
        "--name",
        name,
        "--parallelism",
        str(parallelism),
        "--task-duration",
        "200ms",
        "--wait",
        "--timeout",
        "30s",
    )
    return result


def test_a_second_task_executor_with_a_taken_id_exits_1_and_the_first_keeps_serving(
    tmp_path: Path,
) -> None:
    with (
        running_cluster(tmp_path, "--task-executors", "0", *HEARTBEATS) as (_, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2) as first,
    ):
        args = ["task-executor", "--join", address, "--id", "te-x", "--slots", "2", *HEARTBEATS]
        with started(args, tmp_path, "te-x-again") as second:
            assert second.wait(timeout=30) == 1
            sentence = assert_one_sentence(second.stderr())
            assert "te-x" in sentence and "taken" in sentence
        time.sleep(4)  # longer than the heartbeat timeout: nobody was evicted
        assert first.popen.poll() is None
        assert len(registered(address, "te-x")) == 1
        assert submit_and_wait(address, "after-the-impostor", 2)["status"] == "FINISHED"


def test_a_task_executor_resumed_after_sigstop_registers_once_and_serves_again(
    tmp_path: Path,
) -> None:
    with (
        running_cluster(tmp_path, "--task-executors", "0", *HEARTBEATS) as (_, address),
        joined_task_executor(tmp_path, address, "te-x", slots=2) as te_x,
    ):
        for round_ in range(2):
            te_x.send_signal(signal.SIGSTOP)
            eventually(
                lambda: None if registered(address, "te-x") else True,
                timeout=15,
                what="the frozen TaskExecutor declared lost",
            )
            te_x.send_signal(signal.SIGCONT)
            eventually(
                lambda: registered(address, "te-x") or None,
                timeout=20,
                what="the resumed TaskExecutor registered again",
            )
            assert len(registered(address, "te-x")) == 1
            job = submit_and_wait(address, f"after-resume-{round_}", 2)
            assert job["status"] == "FINISHED", job
