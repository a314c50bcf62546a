"""Simulation benchmark (not part of the test suite): what a virtual-clock run costs.

A simulated cluster should cost what happens in it, not how much cluster time passes. This
measures wall time, messages (or events) per wall second and cluster seconds per wall second
for:

- idle:       2 TaskExecutors x 2 slots, nothing submitted; the scenario sleeps
- busy:       the same with one job of parallelism 4 whose tasks last the whole run; the
              scenario sleeps
- busy-wait:  the same job, but the scenario waits until it is FINISHED (how scenarios wait)
- short:      jobs of parallelism 4 with 1-minute tasks, submitted one after the other (each
              waited until FINISHED), so messages keep flowing
- simulate:   `minicluster simulate` with fixed seeds (5 runs of 10m; 6 runs of 1h)

on 1 h, 6 h and 24 h of cluster time. Every run is a fresh process: `python -m minicluster
run-scenario FILE --no-live --report R.json` on a scenario generated into a temp directory,
or `python -m minicluster simulate --json`. Wall time is the one the run measures itself
(around the cluster, without interpreter start-up and imports); messages are the report's RPC
calls, events the simulator's. Repeats are interleaved across cases.

    python benchmarks/simulation.py                 # 1 h, 6 h, 24 h; 3 repeats (about 15 min)
    python benchmarks/simulation.py --quick         # 1 h and 6 h, 1 repeat (about 2 min)
    python benchmarks/simulation.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicluster.limits import MAX_JOBS_PER_SCENARIO

REPO = Path(__file__).resolve().parent.parent


HOURS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
SHORT_TASK = 60  # seconds, the task duration of the `short` case
SIMULATE_SHAPES = {"1h": (5, "10m"), "6h": (6, "1h")}  # runs, --duration per cluster time
SIMULATE_SEED = 1

HEADER = """\
name: bench-{case}
seed: 1
cluster:
  task_executors: 2
  slots_per_executor: 2
  clock: virtual
steps:
  - wait: {{registered_task_executors: 2, timeout: 10s}}
  - wait: {{free_slots: 4, timeout: 10s}}
"""


def scenario_text(case: str, seconds: int) -> str:
    """The scenario file of a case over ``seconds`` of cluster time."""
    text = HEADER.format(case=case)
    if case == "idle":
        return text + f"  - sleep: {seconds}s\n"
    if case == "busy":
        return text + (
            f"  - submit: {{job: long, parallelism: 4, task_duration: {seconds + 3600}s}}\n"
            "  - wait: {job: long, status: RUNNING, timeout: 1m}\n"
            f"  - sleep: {seconds}s\n"
        )
    if case == "busy-wait":
        return text + (
            f"  - submit: {{job: long, parallelism: 4, task_duration: {seconds}s}}\n"
            f"  - wait: {{job: long, status: FINISHED, timeout: {seconds + 600}s}}\n"
        )
    if case == "short":
        lines = [text.rstrip("\n")]
        for i in range(seconds // SHORT_TASK):  # 2 steps a job: 24 h is 2,880 of 5,000
            lines.append(f"  - submit: {{job: j{i}, parallelism: 4, task_duration: {SHORT_TASK}s}}")
            lines.append(f"  - wait: {{job: j{i}, status: FINISHED, timeout: 5m}}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown case {case!r}")


def child_env() -> dict[str, str]:
    """The same environment for every child, with this checkout first on the path."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    return env


@dataclass
class Sample:
    wall: float  # seconds, measured by the run itself
    process: float  # seconds, the whole child process
    cluster: float  # cluster seconds
    count: int  # messages (scenario) or events (simulate)


@dataclass
class Case:
    case: str
    span: str  # 1h, 6h, 24h
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def unit(self) -> str:
        return "ev" if self.case == "simulate" else "msg"

    def label(self) -> str:
        if self.case == "simulate" and self.span in SIMULATE_SHAPES:
            runs, duration = SIMULATE_SHAPES[self.span]
            return f"simulate {runs} x {duration}"
        return self.case


def run_case(case: str, span: str, folder: Path, timeout: float) -> Sample:
    """One run of a case in a fresh process."""
    seconds = HOURS[span]
    if case == "simulate":
        runs, duration = SIMULATE_SHAPES[span]
        command = [
            sys.executable, "-m", "minicluster", "simulate", "--runs", str(runs),
            "--seed", str(SIMULATE_SEED), "--duration", duration, "--json",
        ]  # fmt: skip
    else:
        scenario = folder / f"{case}-{span}.yaml"
        scenario.write_text(scenario_text(case, seconds), encoding="utf-8")
        report = folder / f"{case}-{span}.json"
        report.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "minicluster", "run-scenario", str(scenario),
            "--no-live", "--report", str(report),
        ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, env=child_env(), capture_output=True, text=True, timeout=timeout, cwd=folder
    )
    process = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"{case} {span} exited {done.returncode}: {' | '.join(tail)}")
    if case == "simulate":
        document: dict[str, Any] = json.loads(done.stdout)
        return Sample(
            document["wall_seconds"], process, document["cluster_seconds"], document["events"]
        )
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    duration = data["duration"]
    return Sample(
        duration["wall_seconds"], process, duration["cluster_seconds"], data["rpc"]["calls"]
    )


def spread(values: list[float], fmt: str) -> str:
    """min / median / max."""
    if not values:
        return "-"
    return "/".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def summary(c: Case) -> dict[str, Any]:
    walls = [s.wall for s in c.samples]
    return {
        "case": c.label(),
        "span": c.span,
        "unit": c.unit,
        "runs": len(c.samples),
        "note": c.note,
        "wall_s": walls,
        "process_s": [s.process for s in c.samples],
        "cluster_s": [s.cluster for s in c.samples],
        "count": [s.count for s in c.samples],
        "per_wall_s": [s.count / s.wall for s in c.samples],
        "cluster_s_per_wall_s": [s.cluster / s.wall for s in c.samples],
    }


def print_table(cases: list[Case]) -> None:
    print(
        f"{'case':<18} {'cluster':>8} {'n':>2} {'wall s (min/med/max)':>22} "
        f"{'count (median)':>18} {'count/s (min/med/max)':>24} "
        f"{'cluster-s/wall-s (min/med/max)':>31}"
    )
    for c in cases:
        if not c.samples:
            print(f"{c.label():<18} {c.span:>8}  -  {c.note}")
            continue
        cluster = statistics.median(s.cluster for s in c.samples)
        count = f"{int(statistics.median(s.count for s in c.samples)):,} {c.unit}"
        print(
            f"{c.label():<18} {cluster / 3600:>7.2f}h {len(c.samples):>2} "
            f"{spread([s.wall for s in c.samples], '.2f'):>22} {count:>18} "
            f"{spread([s.count / s.wall for s in c.samples], ',.0f'):>24} "
            f"{spread([s.cluster / s.wall for s in c.samples], ',.0f'):>31}"
            + (f"  ({c.note})" if c.note else "")
        )
    sims = [c for c in cases if c.case == "simulate" and c.samples]
    for c in sims:
        hours = [s.cluster / 3600 / s.wall for s in c.samples]
        print(f"{c.label()}: {spread(hours, '.3f')} cluster-hours per wall-second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 h and 6 h only, 1 repeat")
    parser.add_argument("--repeats", type=int, help="runs of each case (default 3, quick 1)")
    parser.add_argument(
        "--cases", default="idle,busy,busy-wait,short,simulate", help="comma-separated"
    )
    parser.add_argument("--spans", help="comma-separated, of 1h,6h,24h")
    parser.add_argument(
        "--max-case-seconds",
        type=float,
        default=120.0,
        help="skip a longer span of a case whose projected wall time is above this",
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if not 1 <= repeats <= 20:
        parser.error("--repeats: from 1 to 20")
    spans = args.spans.split(",") if args.spans else (["1h", "6h"] if args.quick else list(HOURS))
    names = args.cases.split(",")
    for name in names:
        if name not in ("idle", "busy", "busy-wait", "short", "simulate"):
            parser.error(f"unknown case {name!r}")
    for span in spans:
        if span not in HOURS:
            parser.error(f"unknown span {span!r}")

    cases: list[Case] = []
    skipped: dict[str, str] = {}  # case -> why its longer spans are skipped
    previous: dict[str, tuple[str, float]] = {}  # case -> (span, median wall)
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        folder = Path(tmp)
        for span in spans:
            group: list[Case] = []
            for name in names:
                case = Case(name, span)
                cases.append(case)
                if name == "simulate" and span not in SIMULATE_SHAPES:
                    case.note = "not run: simulate has runs of 1 h at most here"
                    continue
                if name in skipped:
                    case.note = skipped[name]
                    continue
                if name == "short" and HOURS[span] // SHORT_TASK > MAX_JOBS_PER_SCENARIO:
                    skipped[name] = case.note = (
                        f"skipped: {HOURS[span] // SHORT_TASK:,} jobs, a scenario submits at "
                        f"most {MAX_JOBS_PER_SCENARIO:,}"
                    )
                    continue
                if name in previous and name != "simulate":
                    before, wall = previous[name]
                    projected = wall * HOURS[span] / HOURS[before]
                    if projected > args.max_case_seconds:
                        skipped[name] = case.note = (
                            f"skipped: {before} took {wall:.1f} s, {span} would take about "
                            f"{projected:.0f} s > {args.max_case_seconds:g} s"
                        )
                        continue
                group.append(case)
            for r in range(repeats):  # interleaved: every case once per round
                for case in group:
                    if case.note:
                        continue
                    bound = args.max_case_seconds * 3 + 60
                    try:
                        sample = run_case(case.case, span, folder, bound)
                    except subprocess.TimeoutExpired:
                        case.note = f"stopped after {bound:.0f} s"
                        skipped[case.case] = f"skipped: {span} ran over {bound:.0f} s"
                        continue
                    case.samples.append(sample)
                    print(
                        f"{case.label()} {span} round {r + 1}/{repeats}: {sample.wall:.2f} s, "
                        f"{sample.count:,} {case.unit}",
                        file=sys.stderr,
                    )
            for case in group:
                if case.samples:
                    previous[case.case] = (span, statistics.median(s.wall for s in case.samples))
    print()
    print_table(cases)
    if args.json:
        document = {
            "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d"),
            "repeats": repeats,
            "cases": [summary(c) for c in cases],
        }
        Path(args.json).write_text(json.dumps(document, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
