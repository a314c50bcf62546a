"""`minicluster simulate`: seeded random workloads under random faults, invariants checked.

Registered in cli/main.py with ``cli.add_command(simulate)``. Only parsing, output and exit codes
live here; the simulation is minicluster.simulate.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from minicluster.limits import MAX_WORKERS
from minicluster.scenario import Scenario, load_scenario
from minicluster.simulate import (
    FAULT_KINDS,
    RunResult,
    SimulationSummary,
    Violation,
    check_scenario,
    parse_faults,
    run_one,
)
from minicluster.simulate import (
    simulate as run_simulation,
)
from minicluster.simulate.dask_sweep import DaskUnavailableError, dask_executor
from minicluster.simulate.shrink import shrink as shrink_run

from .errors import EXIT_FAILED, EXIT_USAGE, fail, reported
from .params import ADDRESS, POSITIVE_DURATION, Count
from .simulate_progress import SweepProgress

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Faults(click.ParamType):  # type: ignore[type-arg]
    name = "kinds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_faults(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _summary_line(summary: SimulationSummary) -> str:
    seeds = (
        f"seed {summary.first_seed}"
        if summary.runs == 1
        else f"seeds {summary.first_seed}..{summary.last_seed}"
    )
    verdict = (
        "no violations"
        if summary.ok
        else f"{len(summary.violations)} violation(s) in {len(summary.failed_seeds)} run(s)"
    )
    stopped = " (time limit reached)" if summary.stopped_early else ""
    return (
        f"simulated {summary.runs} run(s) ({seeds}), {summary.events} events, "
        f"{_seconds(summary.virtual_time)} of cluster time in {_seconds(summary.wall_time)}"
        f"{stopped}: {verdict}; {summary.clean_runs} run(s) ({summary.clean_events} events) "
        "without a violation"
    )


def _coverage_lines(summary: SimulationSummary) -> list[str]:
    """The coverage table: per fault kind, invariant and state, in how many runs (a zero says
    what these runs never tried)."""
    coverage = summary.coverage()
    lines = [f"coverage ({summary.runs} run(s)), runs per item:"]
    titles = {
        "faults": "fault injected",
        "invariants": "invariant checked",
        "states": "state reached",
    }
    for section, title in titles.items():
        items = coverage[section]
        width = max(len(name) for name in items)
        lines.append(f"  {title}:")
        cells = [f"{name:<{width}} {count:>6}" for name, count in items.items()]
        per_row = max(1, 96 // (width + 10))
        for start in range(0, len(cells), per_row):
            lines.append("    " + "   ".join(cells[start : start + per_row]))
    return lines


@click.command("simulate", context_settings=CONTEXT)
@click.option(
    "--runs", type=click.IntRange(1), default=100, show_default=True, help="How many runs."
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=None,
    help="Seed of the first run; run i uses SEED+i. Default: a random one (printed).",
)
@click.option(
    "--faults",
    type=_Faults(),
    default=",".join(FAULT_KINDS),
    show_default=True,
    help="Fault kinds to inject, comma-separated (or 'none').",
)
@click.option(
    "--duration",
    type=POSITIVE_DURATION,
    default="10m",
    show_default=True,
    help="Cluster time with faults per run; a quiet period follows.",
)
@click.option(
    "--dump-scenario",
    "dump_dir",
    type=click.Path(file_okay=False),
    help="Write each failing run as DIR/simulate-seed-S.yaml (for run-scenario).",
)
@click.option(
    "--time-limit",
    type=POSITIVE_DURATION,
    default=None,
    help="Start no run after this much wall-clock time (a soak with a budget).",
)
@click.option(
    "--workers",
    type=Count(1, MAX_WORKERS, "a number of processes"),
    default=1,
    show_default=True,
    help="Processes to use.",
)
@click.option(
    "--dask-scheduler",
    "dask_scheduler",
    type=ADDRESS,
    default=None,
    help="Run the seeds as tasks on the Dask cluster whose scheduler is at tcp://HOST:PORT "
    "(needs minicluster[dask]; instead of --workers).",
)
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(dir_okay=False),
    help="Run this scenario file with the invariant checks instead of generated runs.",
)
@click.option(
    "--shrink",
    is_flag=True,
    help="Shrink the first failing run to the smallest scenario that breaks the same invariant"
    " (written with --dump-scenario).",
)
@click.option(
    "--swarm/--no-swarm",
    default=True,
    show_default=True,
    help="Each run enables its own random subset of --faults, each at its own rate.",
)
@click.option("-v", "--verbose", is_flag=True, help="One line per run, and violation details.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def simulate(
    runs: int,
    seed: int | None,
    faults: tuple[str, ...],
    duration: float,
    dump_dir: str | None,
    time_limit: float | None,
    workers: int,
    dask_scheduler: str | None,
    replay_file: str | None,
    shrink: bool,
    swarm: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Seeded virtual-clock runs of random workloads under random faults, with the cluster's
    invariants checked after every event and at quiescence.

    Prints one line per violation, `VIOLATION seed=S: ...`; `--runs 1 --seed S` (with the same
    --faults and --duration) repeats that run, and --dump-scenario writes it as a scenario that
    `minicluster run-scenario` repeats message for message. Exits 1 if any invariant was
    violated.

    \b
    Examples:
      minicluster simulate --runs 50 --seed 1 --duration 2m
      minicluster simulate --runs 1000 --time-limit 30m --workers 2 --dump-scenario failing/
      minicluster simulate --replay failing/simulate-seed-17.yaml
      minicluster simulate --runs 10000 --duration 2m --dask-scheduler tcp://10.0.0.5:8786
    """
    with reported():
        if replay_file is not None:
            _replay(replay_file, dump_dir, verbose, as_json)
            return

        def on_violation(violation: Violation) -> None:
            if not as_json:
                click.echo(violation.line())
                if verbose and violation.detail:
                    for line in violation.detail.splitlines():
                        click.echo(f"    {line}")

        progress = None if as_json else SweepProgress(runs, time_limit)

        def on_run(result: RunResult) -> None:
            if progress is not None:
                progress.run_done(result)
            if verbose and not as_json:
                verdict = "ok" if result.ok else f"{len(result.violations)} violation(s)"
                where = f", dumped to {result.dumped}" if result.dumped else ""
                click.echo(
                    f"run seed={result.seed}: {result.events} events, "
                    f"{result.virtual_time:.1f} s of cluster time in {result.wall_time:.2f} s, "
                    f"{verdict}{where}"
                )

        if dask_scheduler is not None and workers > 1:
            fail("--dask-scheduler and --workers do not go together: pick one", EXIT_USAGE)
        with ExitStack() as stack:
            executor, slots = None, 1
            if dask_scheduler is not None:
                try:
                    executor, slots = stack.enter_context(dask_executor(dask_scheduler))
                except DaskUnavailableError as exc:
                    fail(str(exc), EXIT_USAGE)
            if progress is not None:
                stack.enter_context(progress)
            summary = run_simulation(
                runs,
                seed,
                faults,
                duration,
                dump_dir,
                on_violation,
                on_run,
                time_limit=time_limit,
                workers=workers,
                swarm=swarm,
                executor=executor,
                executor_slots=slots,
            )
        if as_json:
            document = summary.as_dict()
            document["faults"] = list(faults)
            document["duration"] = duration
            document["swarm"] = swarm
            click.echo(json.dumps(document, indent=2))
        else:
            for line in _coverage_lines(summary):
                click.echo(line)
            click.echo(_summary_line(summary))
            if not summary.ok:
                kinds = ",".join(faults) or "none"
                click.echo(
                    f"reproduce a run with: minicluster simulate --runs 1 --seed SEED "
                    f"--faults {kinds} --duration {duration:g}s"
                )
                for path in summary.dumped:
                    click.echo(f"scenario written: {path}")
        if shrink and not summary.ok:
            _shrink(summary.failed_seeds[0], faults, duration, swarm, dump_dir, as_json)
        if not summary.ok:
            fail(
                f"{len(summary.violations)} invariant violation(s) in "
                f"{len(summary.failed_seeds)} of {summary.runs} run(s)",
                EXIT_FAILED,
            )


def _shrink(
    seed: int,
    faults: tuple[str, ...],
    duration: float,
    swarm: bool,
    dump_dir: str | None,
    as_json: bool,
) -> None:
    """Shrink run ``seed`` (rerun here: same seed, same run) and write the result."""
    found = shrink_run(run_one(seed, faults, duration, swarm))
    where = None
    if dump_dir is not None:
        folder = Path(dump_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"simulate-seed-{seed}-shrunk.yaml"
        text = found.text.replace("\nseed: ", "\nchecks: invariants\nseed: ", 1)
        path.write_text(found.header(seed) + text, encoding="utf-8")
        where = str(path)
    if as_json:
        return
    budget = " (budget spent)" if found.exhausted else ""
    click.echo(
        f"shrunk seed={seed}: {found.original_steps} steps -> {found.steps} in "
        f"{found.attempts} candidate run(s){budget}; it still breaks {found.invariant}"
    )
    if where is not None:
        click.echo(f"shrunk scenario written: {where} (minicluster run-scenario {where})")
    else:
        click.echo("add --dump-scenario DIR to write the shrunk scenario")


def run_checked(scenario: Scenario, seed: int | None, trace_file: str | None) -> None:
    """run-scenario of a scenario with ``checks: invariants``: the run with every check of
    simulate; its violations printed, exit 1 on any."""
    if trace_file is not None:
        with open(trace_file, "w", encoding="utf-8") as trace:
            result = check_scenario(scenario, seed, trace)
    else:
        result = check_scenario(scenario, seed)
    for violation in result.violations:
        click.echo(violation.line())
    verdict = "no violations" if result.ok else f"{len(result.violations)} violation(s)"
    click.echo(
        f"ran {scenario.name} (seed {result.seed}) with the invariant checks: "
        f"{result.steps_ok}/{result.steps} steps ok, {result.events} events, "
        f"{_seconds(result.virtual_time)} of cluster time: {verdict}"
    )
    if not result.ok:
        fail(f"{len(result.violations)} invariant violation(s) in {scenario.name}", EXIT_FAILED)


def _replay(path: str, dump_dir: str | None, verbose: bool, as_json: bool) -> None:
    scenario = load_scenario(path)
    for warning in scenario.warnings:
        click.echo(f"minicluster: warning: {warning}", err=True)
    if dump_dir is not None:
        fail(
            "--dump-scenario does not go with --replay: the scenario is a file already", EXIT_USAGE
        )
    result = check_scenario(scenario)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenario": str(Path(path)),
                    "seed": result.seed,
                    "events": result.events,
                    "cluster_seconds": round(result.virtual_time, 3),
                    "steps": result.steps,
                    "steps_ok": result.steps_ok,
                    "violations": [v.as_dict() for v in result.violations],
                },
                indent=2,
            )
        )
    else:
        for violation in result.violations:
            click.echo(violation.line())
            if verbose and violation.detail:
                for line in violation.detail.splitlines():
                    click.echo(f"    {line}")
        verdict = "no violations" if result.ok else f"{len(result.violations)} violation(s)"
        click.echo(
            f"replayed {scenario.name} (seed {result.seed}): {result.steps_ok}/{result.steps} "
            f"steps ok, {result.events} events, {_seconds(result.virtual_time)} of cluster time "
            f"in {_seconds(result.wall_time)}: {verdict}"
        )
    if not result.ok:
        fail(f"{len(result.violations)} invariant violation(s) in {path}", EXIT_FAILED)
