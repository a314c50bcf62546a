"""Swarm mode: each run enables its own fault kinds at its own rates, deterministically per
seed; the summary counts what the runs exercised."""

from __future__ import annotations

from click.testing import CliRunner

from cli.simulate_cmd import simulate as simulate_command
from minicluster.simulate import FAULT_KINDS, generate_scenario, simulate
from minicluster.simulate.generator import swarm_faults


def test_a_swarm_run_enables_a_non_empty_subset_of_the_allowed_kinds_per_seed() -> None:
    subsets = {swarm_faults(seed, FAULT_KINDS)[0] for seed in range(40)}
    assert all(subset and set(subset) <= set(FAULT_KINDS) for subset in subsets)
    assert len(subsets) > 5  # runs differ in their kinds
    assert swarm_faults(3, FAULT_KINDS) == swarm_faults(3, FAULT_KINDS)
    assert swarm_faults(3, ("kill",))[0] == ("kill",)


def test_a_swarm_scenario_is_the_same_for_the_same_seed_and_names_its_kinds() -> None:
    text = generate_scenario(4, FAULT_KINDS, 120.0, swarm=True)
    assert text == generate_scenario(4, FAULT_KINDS, 120.0, swarm=True)
    kinds, rates = swarm_faults(4, FAULT_KINDS)
    assert "# Swarm: this run enables " + ", ".join(f"{k} x{rates[k]:g}" for k in kinds) in text


def test_the_summary_counts_runs_per_fault_invariant_and_state() -> None:
    summary = simulate(6, 1, FAULT_KINDS, 60.0, swarm=True)
    coverage = summary.coverage()
    assert set(coverage["faults"]) == set(FAULT_KINDS)
    assert sum(coverage["faults"].values()) >= 6  # every run injects a kind or more
    assert coverage["invariants"]["slot-exclusive"] == 6
    assert coverage["invariants"]["job-terminal"] == 6
    assert coverage["states"]["job:FINISHED"] >= 1
    assert coverage["states"]["task:RUNNING"] >= 1
    assert coverage["states"]["slot:ACTIVE"] >= 1
    # a kind no run enabled is counted in no run
    assert simulate(3, 1, ("kill",), 60.0, swarm=True).coverage()["faults"]["partition"] == 0


def test_the_command_prints_the_coverage_table_before_its_summary() -> None:
    outcome = CliRunner().invoke(
        simulate_command, ["--runs", "2", "--seed", "1", "--duration", "1m"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "  invariant checked:" in outcome.output
    assert "job:FINISHED" in outcome.output
    assert outcome.output.splitlines()[-1].startswith("simulated 2 run(s)")
