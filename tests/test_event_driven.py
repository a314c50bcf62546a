"""Cost follows work: a scenario's `wait` looks at the cluster when something happened, not on a
poll; a live view has no task in cluster time (same seed, same trace, view or not); job ids,
ids and fencing tokens come from independent streams of the seed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from minicluster.cluster import MiniCluster
from minicluster.scenario import load_scenario, parse_scenario
from minicluster.scenario.runner import Observer, StepResult, run_scenario

SCENARIOS = Path(__file__).parent.parent / "scenarios"

SIX_HOURS = """
name: six-hours
seed: 3
cluster: {task_executors: 2, slots_per_executor: 2}
steps:
  - submit: {job: long, parallelism: 4, task_duration: 6h}
  - wait: {job: long, status: FINISHED, timeout: 7h}
"""


def test_a_six_hour_wait_looks_at_the_cluster_only_when_something_happened(
    monkeypatch: Any,
) -> None:
    scenario = parse_scenario(SIX_HOURS, "six-hours.yaml")
    looks = 0
    condition_type = type(scenario.steps[1].condition)  # type: ignore[attr-defined]
    real_check = condition_type.check

    def counted(self: Any, view: Any) -> Any:
        nonlocal looks
        looks += 1
        return real_check(self, view)

    monkeypatch.setattr(condition_type, "check", counted)
    result = run_scenario(scenario)
    assert result.passed, result.failure
    # a poll every 50 ms of cluster time would look 432,000 times; heartbeats that went fine
    # (every 10 s, 2,160 rounds) wake nobody: only the job's own changes do
    assert looks < 50
    assert result.virtual_time >= 6 * 3600


class _Viewer(Observer):
    """A live view that reads the cluster as the console does."""

    shows_view = True
    refresh_interval = 0.0  # every event: the most a view can do

    def __init__(self) -> None:
        self.ticks = 0

    def tick(self, cluster: MiniCluster) -> None:
        self.ticks += 1
        cluster.snapshot()


def test_the_same_seed_writes_the_same_trace_with_and_without_a_live_view() -> None:
    scenario = load_scenario(SCENARIOS / "taskexecutor-crash.yaml")
    plain, viewed = io.StringIO(), io.StringIO()
    run_scenario(scenario, seed=5, trace=plain)
    viewer = _Viewer()
    run_scenario(scenario, seed=5, trace=viewed, observer=viewer)
    assert viewer.ticks > 100
    assert plain.getvalue().count("\n") > 100
    assert plain.getvalue() == viewed.getvalue()


class _Tokens(Observer):
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.job_ids: set[str] = set()

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        snapshot = cluster.snapshot()
        self.tokens.add(str(snapshot.dispatcher.token))
        self.tokens.add(str(snapshot.resource_manager.token))
        self.tokens.update(str(jm.token) for jm in snapshot.job_masters)
        self.job_ids.update(str(job.job_id) for job in snapshot.jobs)


def test_job_ids_never_equal_fencing_tokens() -> None:
    for name in ("resourcemanager-failover", "jobmaster-failover", "quickstart"):
        observer = _Tokens()
        result = run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), observer=observer)
        assert result.passed, result.failure
        assert observer.job_ids and len(observer.tokens) >= 3
        assert not observer.job_ids & observer.tokens, name


def test_a_seeded_run_puts_trios_scheduler_back_as_it_was(monkeypatch: Any) -> None:
    """trio's deterministic scheduling is process-wide and private: a seeded run switches it on
    for itself only (under pytest, Hypothesis has switched it on already: start from off)."""
    from trio._core import _run

    monkeypatch.setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    seen: list[bool] = []

    class Peek(Observer):
        def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
            seen.append(_run._ALLOW_DETERMINISTIC_SCHEDULING)

    result = run_scenario(load_scenario(SCENARIOS / "quickstart.yaml"), seed=9, observer=Peek())
    assert result.passed
    assert seen and all(seen)  # on while the seeded cluster runs
    assert _run._ALLOW_DETERMINISTIC_SCHEDULING is False  # off again after it


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in SCENARIOS.glob("*.yaml") if p.stem != "scale")
)
def test_a_paced_run_writes_the_same_trace_as_a_flat_out_one_and_takes_its_time(
    name: str,
) -> None:
    """The live view's pacing slows the autojump run down without changing it: the clock
    jumps when and where it would, after a pause in real time."""
    import time

    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    flat, paced = io.StringIO(), io.StringIO()
    result = run_scenario(scenario, seed=5, trace=flat)
    speed = 5000.0
    started = time.perf_counter()
    run_scenario(scenario, seed=5, trace=paced, speed=speed)
    took = time.perf_counter() - started
    assert flat.getvalue() == paced.getvalue()
    assert took >= result.virtual_time / speed * 0.9
