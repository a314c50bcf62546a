"""Scenario, job and config files refuse what they do not know, where it is written: a typo is
an error at load time (exit 2, file, path, line, a did-you-mean hint), never a default that
runs and passes; keys starting with x- are the user's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicluster.scenario import (
    ScenarioError,
    SubmitStep,
    WaitStep,
    load_job_file,
    parse_job,
    parse_scenario,
)
from minicluster.scenario.loader import parse_cluster_config

ROOT = Path(__file__).resolve().parent.parent


def minicluster(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, this checkout first on its path."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "minicluster", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_of(parse: object, text: str, file: str = "x.yaml") -> str:
    assert callable(parse)
    with pytest.raises(ScenarioError) as info:
        parse(text, file)
    return str(info.value)


def test_unknown_key_in_job_file_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: etl\ntask_duration: 2s\nparalelism: 3\n")
    with pytest.raises(ScenarioError) as info:
        load_job_file(job)
    assert (info.value.file, info.value.path, info.value.line) == (str(job), "paralelism", 3)
    assert str(info.value) == (
        f"{job}: paralelism (line 3): unknown key 'paralelism'; did you mean 'parallelism'?"
    )


def test_a_job_file_with_a_typo_exits_2_before_contacting_the_cluster(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("name: etl\nvertices:\n  - {name: a, paralelism: 3}\n")
    # port 1 answers nobody: a command that got as far as the cluster would exit 1, not 2
    result = minicluster("submit-job", "job.yaml", "--address", "tcp://127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "minicluster: job.yaml: vertices[0].paralelism (line 3): unknown key 'paralelism'; "
        "did you mean 'parallelism'?\n"
    )


def test_typo_in_scenario_step_fails_the_load_not_the_run(tmp_path: Path) -> None:
    text = (
        "name: typo\n"
        "steps:\n"
        "  - submit: {job: a, parallelism: 2}\n"
        "  - wait: {job: a, status: FINISHED}\n"
        "  - submit: {job: b, task_duration: 1s,\n"
        "             paralelism: 3}\n"
    )
    assert error_of(parse_scenario, text) == (
        "x.yaml: steps[2].submit.paralelism (line 6): unknown key 'paralelism'; "
        "did you mean 'parallelism'?"
    )
    (tmp_path / "typo.yaml").write_text(text)
    result = minicluster("run-scenario", "typo.yaml", "--no-live", cwd=tmp_path)
    assert result.returncode == 2
    assert "RUNNING" not in result.stdout  # not one step ran: job a was never submitted
    assert result.stderr == (
        "minicluster: typo.yaml: steps[2].submit.paralelism (line 6): unknown key "
        "'paralelism'; did you mean 'parallelism'?\n"
    )


PLAIN_SCENARIO = """\
name: t
cluster:
  task_executors: [{id: te-a, slots: 2}]
  heartbeat: {interval: 1s, timeout: 5s}
steps:
  - submit:
      job: a
      vertices: [{name: v, parallelism: 2, fail: {subtasks: 0, after: 1s}}]
      restart: {attempts: 1, delay: 1s}
  - wait: {job: a, restarts: {min: 1}, timeout: 10s}
  - partition: {between: [te-a, {job_master: a}], duration: 1s}
  - kill_task_executor: {id: te-a}
"""

# the same scenario with an x- key in every map, and defaults shared through an x- anchor
EXTENDED_SCENARIO = """\
name: t
x-owner: team-a
x-defaults: &vertex {parallelism: 2, x-why: shared by the vertices}
cluster:
  x-note: one TaskExecutor is enough
  task_executors: [{id: te-a, slots: 2, x-rack: r1}]
  heartbeat: {interval: 1s, timeout: 5s, x-source: Flink's defaults scaled down}
steps:
  - submit:
      job: a
      x-ticket: none
      vertices: [{<<: *vertex, name: v, fail: {subtasks: 0, after: 1s, x-: empty suffix}}]
      restart: {attempts: 1, delay: 1s, x-n: 1}
    x-comment: a step may carry notes beside its kind
  - wait: {job: a, restarts: {min: 1, x-max: later}, timeout: 10s, x-y: [1, 2]}
  - partition: {between: [te-a, {job_master: a, x-z: 1}], duration: 1s, x-w: {deep: map}}
  - kill_task_executor: {id: te-a, x-why: crash}
"""


def test_extension_keys_are_allowed() -> None:
    plain = parse_scenario(PLAIN_SCENARIO, "t.yaml")
    extended = parse_scenario(EXTENDED_SCENARIO, "t.yaml")
    assert extended.cluster == plain.cluster
    assert [s.describe() for s in extended.steps] == [s.describe() for s in plain.steps]
    submit, wait = extended.steps[:2]
    assert isinstance(submit, SubmitStep) and isinstance(wait, WaitStep)
    assert submit.job == plain.jobs["a"]
    assert wait.condition == plain.steps[1].condition  # type: ignore[union-attr]

    job = parse_job("name: j\nx-owner: me\nparallelism: 3\n", "job.yaml")
    assert job == parse_job("name: j\nparallelism: 3\n", "job.yaml")
    config = parse_cluster_config("x-site: lab\ncluster: {task_executors: 1, x-a: b}\n")
    assert [te.id for te in config.task_executors] == ["te-1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: t\nx_owner: me\nsteps: [sleep: 1s]\n",
            "x_owner (line 2): unknown key 'x_owner'; the keys here are name, description, "
            "seed, checks, cluster, steps, or any key starting with 'x-' for your own use",
        ),
        (
            "name: t\nX-owner: me\nsteps: [sleep: 1s]\n",
            "X-owner (line 2): unknown key 'X-owner'; the keys here are name, description, "
            "seed, checks, cluster, steps, or any key starting with 'x-' for your own use",
        ),
    ],
    ids=["underscore", "capital X"],
)
def test_a_key_that_only_resembles_an_extension_is_refused(text: str, message: str) -> None:
    assert error_of(parse_scenario, text) == f"x.yaml: {message}"


def test_a_step_of_extension_keys_only_has_no_kind() -> None:
    assert error_of(parse_scenario, "name: t\nsteps:\n  - x-todo: later\n") == (
        "x.yaml: steps[0] (line 3): a step needs one key naming its kind, got an empty map"
    )


# One refusal of each kind, at the key that holds it: type, range, finiteness, size, unknown.
JOB_FILE_REFUSALS = {
    "type": (
        "name: j\nparallelism: four\n",
        "parallelism (line 2): expected a positive integer, got 'four'",
    ),
    "range": (
        "name: j\nparallelism: 40000\n",
        "parallelism (line 2): expected at most 32,768, got 40000",
    ),
    "restart range": (
        "name: j\nrestart:\n  attempts: 2000000\n",
        "restart.attempts (line 3): expected at most 1,000,000, got 2000000",
    ),
    "fail attempts range": (
        "name: j\nfail: {subtasks: 0, attempts: 2000000}\n",
        "fail.attempts (line 2): expected at most 1,000,000, got 2000000",
    ),
    "finiteness": (
        "name: j\ntask_duration: .inf\n",
        "task_duration (line 2): a duration must be finite, got inf",
    ),
    "duration range": (
        "name: j\nrestart: {delay: 9999999999999999999999s}\n",
        "restart.delay (line 2): expected at most 168h (a week of cluster time), "
        "got '9999999999999999999999s'",
    ),
    "size": (
        f"name: {'n' * 201}\n",
        "name (line 1): expected at most 200 characters, got 201",
    ),
    "unknown": (
        "name: j\nrestart: {attempts: 1, dealy: 2s}\n",
        "restart.dealy (line 2): unknown key 'dealy'; did you mean 'delay'?",
    ),
}


@pytest.mark.parametrize("case", list(JOB_FILE_REFUSALS))
def test_a_job_file_is_refused_at_the_key_that_is_wrong(case: str) -> None:
    text, message = JOB_FILE_REFUSALS[case]
    assert error_of(parse_job, text, "job.yaml") == f"job.yaml: {message}"


def test_a_sleep_longer_than_a_week_is_refused_rather_than_run_for_ever() -> None:
    text = "name: t\nsteps:\n  - submit: {job: a}\n  - sleep: 9999999999999999999999s\n"
    assert error_of(parse_scenario, text) == (
        "x.yaml: steps[1].sleep (line 4): expected at most 168h (a week of cluster time), "
        "got '9999999999999999999999s'"
    )
    week = parse_scenario("name: t\nsteps:\n  - sleep: 168h\n")
    assert week.steps[0].describe() == "sleep 168h"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "clustr:\n  task_executors: 3\n",
            "clustr (line 1): unknown key 'clustr'; did you mean 'cluster'?",
        ),
        (
            "task_executors: 3\n",
            "task_executors (line 1): 'task_executors' belongs in the cluster: section",
        ),
    ],
    ids=["typo", "cluster key at the top"],
)
def test_a_config_file_refuses_what_it_would_otherwise_ignore(text: str, message: str) -> None:
    assert error_of(parse_cluster_config, text, "c.yaml") == f"c.yaml: {message}"


def test_a_scenario_file_serves_as_a_config_file() -> None:
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text(encoding="utf-8")
    spec = parse_cluster_config(text, "quickstart.yaml")
    assert spec == parse_scenario(text, "quickstart.yaml").cluster
