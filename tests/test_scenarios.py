"""Every shipped scenario passes, and a seeded virtual-clock run repeats exactly."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from minicluster.scenario import load_scenario
from minicluster.scenario.runner import run_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_passes(path: Path) -> None:
    result = run_scenario(load_scenario(path))
    assert result.passed, result.failure


def test_the_same_seed_writes_the_same_trace() -> None:
    scenario = load_scenario(SCENARIOS[0].parent / "taskexecutor-crash.yaml")
    traces = []
    for _ in range(2):
        out = io.StringIO()
        run_scenario(scenario, seed=11, trace=out)
        traces.append(out.getvalue())
    assert traces[0].count("\n") > 100
    assert traces[0] == traces[1]


def test_a_crash_scenario_passes_with_every_component_on_its_own_tcp_service() -> None:
    # dedicated mode: every call through the codec and loopback TCP, TaskExecutors added
    # by a step included (their services must live in the cluster, not in the step)
    scenario = load_scenario(SCENARIOS[0].parent / "taskexecutor-crash.yaml")
    scenario.cluster.rpc = "dedicated"
    result = run_scenario(scenario)
    assert result.passed, result.failure
