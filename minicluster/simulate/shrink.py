"""Shrinking a failing run: the smallest scenario that still breaks the same invariant.

A generated scenario is flow-style YAML, one step a line, one TaskExecutor a line, so a
reduction is a set of lines dropped or one value rewritten. Each candidate is parsed and run
in-process on the virtual clock with every check (``check_scenario``); it is kept when a
violation of the SAME invariant (by name; the message may differ) comes out, found the same
way: by a check of the checker, or by a failed step (a dropped TaskExecutor makes the final
``expect: free_slots`` fail, which is not the bug being shrunk). The passes, in
order, until one round changes nothing or the budget (attempts and wall seconds) runs out:

- drop a job (its submit, cancel, waits, expects and the partitions naming its JobMaster);
- drop a TaskExecutor (from the cluster, and every step naming it);
- drop steps, delta-debugging style (halves, then quarters, ... then single steps);
- halve each sleep, each task duration and each wait's timeout.

Runs are seeded, so a candidate's result is the same every time: a kept candidate is a
scenario that fails on its own, the dumped file included.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from minicluster.scenario import ScenarioError, parse_scenario
from minicluster.simulate.common import RunResult

# a shrink that outgrows these stops with the smallest scenario found so far
MAX_SHRINK_ATTEMPTS = 400
MAX_SHRINK_SECONDS = 60.0

_STEP = re.compile(r"  - (?P<kind>[a-z_]+): ")
_CLUSTER_TE = re.compile(r"    - \{id: (?P<id>[^,}]+)")
# a duration this short is not halved again: the scenario is no simpler for it
_SHORTEST_MS = 100
_JOB = re.compile(r"\b(job-\d+)\b")
_DURATION = re.compile(
    r"(?P<key>sleep: |task_duration: |timeout: )(?P<value>[0-9.]+)(?P<unit>ms|s)"
)


@dataclass
class ShrinkResult:
    """The smallest failing scenario found, and how it was reached."""

    invariant: str
    original_steps: int
    text: str
    steps: int
    result: RunResult
    attempts: int = 0
    # the kept reductions in order, each with how many times in a row it was kept
    history: list[tuple[str, int]] = field(default_factory=list)
    exhausted: bool = False  # the budget ran out before a round changed nothing

    def header(self, seed: int) -> str:
        """YAML comments for the dumped file: where it came from and how it was shrunk."""
        lines = [
            f"# Shrunk from run seed {seed}: {self.original_steps} steps -> {self.steps}, "
            f"in {self.attempts} candidate run(s); it still breaks {self.invariant}.",
            "# Reproduce: minicluster run-scenario THIS_FILE (checks: invariants)",
            "# Shrink steps:",
            *(f"#   {line}" + (f" (x{n})" if n > 1 else "") for line, n in self.history),
        ]
        if self.exhausted:
            lines.append("#   (the shrink budget ran out: a smaller one may exist)")
        lines.extend(
            f"# {v.line()}" for v in self.result.violations if v.invariant == self.invariant
        )
        return "\n".join(lines) + "\n"


def _split(text: str) -> tuple[list[str], list[str], list[str]]:
    """(lines up to 'steps:', step lines, the rest: nothing today)."""
    lines = text.splitlines()
    at = lines.index("steps:")
    return lines[: at + 1], lines[at + 1 :], []


def _join(head: list[str], steps: list[str]) -> str:
    return "\n".join([*head, *steps]) + "\n"


def _count_steps(steps: list[str]) -> int:
    return sum(1 for line in steps if _STEP.match(line))


def _ms(match: re.Match[str]) -> float:
    value = float(match["value"])
    return value if match["unit"] == "ms" else value * 1000


def _halved(match: re.Match[str]) -> str:
    ms = _ms(match)
    if ms <= _SHORTEST_MS:
        return match[0]
    half = max(_SHORTEST_MS, round(ms / 2))
    written = f"{half}ms" if half < 1000 else f"{half / 1000:g}s"
    return f"{match['key']}{written}"


def shrink(
    result: RunResult,
    invariant: str | None = None,
    *,
    check: Callable[[str, int], RunResult] | None = None,
    max_attempts: int = MAX_SHRINK_ATTEMPTS,
    time_limit: float = MAX_SHRINK_SECONDS,
) -> ShrinkResult:
    """Shrink failing run ``result`` while ``invariant`` (default: its first violation's)
    still fails. ``check(text, seed)`` runs a candidate (default: parse and check_scenario)."""
    if not result.violations:
        raise ValueError("only a failing run can be shrunk")
    first = next((v for v in result.violations if v.invariant == invariant), None)
    if first is None:
        first = result.violations[0]
    target, by_step = first.invariant, first.step is not None
    seed = result.seed
    run = check if check is not None else _check_text
    head, steps, _ = _split(result.scenario_text)
    best = ShrinkResult(
        target, _count_steps(steps), result.scenario_text, _count_steps(steps), result
    )
    started = time.perf_counter()

    def out_of_budget() -> bool:
        return best.attempts >= max_attempts or time.perf_counter() - started >= time_limit

    def attempt(new_head: list[str], new_steps: list[str], note: str) -> bool:
        nonlocal head, steps
        if out_of_budget():
            best.exhausted = True
            return False
        best.attempts += 1
        text = _join(new_head, new_steps)
        outcome = run(text, seed)
        if not any(
            v.invariant == target and (v.step is not None) == by_step for v in outcome.violations
        ):
            return False
        head, steps = new_head, new_steps
        best.text, best.result, best.steps = text, outcome, _count_steps(new_steps)
        line = f"{note}, {best.steps} steps left"
        if best.history and best.history[-1][0] == line:
            best.history[-1] = (line, best.history[-1][1] + 1)
        else:
            best.history.append((line, 1))
        return True

    changed = True
    while changed and not out_of_budget():
        changed = False
        # drop a job, and every step naming it
        for job in sorted({m for line in steps for m in _JOB.findall(line)}):
            kept = [line for line in steps if not re.search(rf"\b{job}\b", line)]
            if kept != steps and attempt(head, kept, f"dropped {job}"):
                changed = True
        # drop a TaskExecutor, from the cluster and from every step
        for line in list(head):
            te = _CLUSTER_TE.match(line)
            if te is None or line not in head:
                continue
            name = te["id"]
            cluster_tes = [x for x in head if _CLUSTER_TE.match(x)]
            if len(cluster_tes) <= 1:
                break
            new_head = [x for x in head if x != line]
            kept = [x for x in steps if not re.search(rf"\b{re.escape(name)}\b", x)]
            if attempt(new_head, kept, f"dropped TaskExecutor {name}"):
                changed = True
        # drop steps, delta-debugging style
        chunks = 2
        while len(steps) >= 1 and not out_of_budget():
            size = max(1, -(-len(steps) // chunks))
            dropped = False
            for start in range(0, len(steps), size):
                candidate = steps[:start] + steps[start + size :]
                what = steps[start : start + size]
                note = f"dropped {len(what)} line(s) from step line {start + 1}"
                if attempt(head, candidate, note):
                    dropped = changed = True
                    chunks = max(chunks - 1, 2)
                    break
            if not dropped:
                if size == 1:
                    break
                chunks = min(len(steps), chunks * 2)
        # halve each duration: sleeps, task durations, wait timeouts
        for index in range(len(steps)):
            if index >= len(steps) or not _DURATION.search(steps[index]):
                continue
            line = steps[index]
            shorter = _DURATION.sub(_halved, line)
            if shorter != line:
                candidate = [*steps[:index], shorter, *steps[index + 1 :]]
                kind = m["kind"] if (m := _STEP.match(line)) else "step"
                if attempt(head, candidate, f"halved the durations of a {kind} step"):
                    changed = True
    return best


def _check_text(text: str, seed: int) -> RunResult:
    from minicluster.simulate import check_scenario

    try:
        scenario = parse_scenario(text, f"simulate-seed-{seed}-shrunk.yaml")
    except ScenarioError:
        return RunResult(seed)  # a candidate the loader refuses fails nothing
    result = check_scenario(scenario, seed)
    result.scenario_text = text
    return result
