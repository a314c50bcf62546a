"""Generating a run's scenario from its seed: a random cluster, random jobs and a random fault
schedule, written as scenario YAML (flow style, so the loader reads back exactly what was meant).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from minicluster.cluster.components import JOB_MASTER_NAME_PREFIX
from minicluster.cluster.model import JobEdge, JobGraph, JobVertex
from minicluster.cluster.topology import build_topology
from minicluster.simulate.common import (
    CAPACITY_SPARE,
    FAULT_KINDS,
    TOP_UP_MS,
    final_settle,
    quiet_settle,
)

# how long a TaskExecutor cut off from the ResourceManager stays away after the partition: the
# heartbeat timeout noticed, then its registration backoff (see quiet_settle)
_REJOIN_MS = 45_000


# ---------------------------------------------------------------------------------------------
# Scenario generation


def parse_faults(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"kill,partition"`` (or a list) as fault kinds in canonical order; ``""`` or ``"none"``
    for none. Raises ValueError naming an unknown kind."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = {item.strip().lower() for item in items if item.strip()}
    kinds.discard("none")
    unknown = sorted(kinds - set(FAULT_KINDS))
    if unknown:
        raise ValueError(
            f"unknown fault kind {unknown[0]!r}; the kinds are {', '.join(FAULT_KINDS)}"
        )
    return tuple(k for k in FAULT_KINDS if k in kinds)


def _dur(ms: int) -> str:
    """Milliseconds as a scenario duration that parses back to exactly ``ms / 1000``."""
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms // 1000}.{ms % 1000:03d}".rstrip("0") + "s"


_PLAIN = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_.\-]*|[0-9]+(?:\.[0-9]+)?(?:ms|s))\Z")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})


def _flow(value: Any) -> str:
    """A value in YAML flow style (what the scenario loader reads back unchanged)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


@dataclass
class _Vertex:
    name: str
    parallelism: int
    duration_ms: int
    fail: tuple[list[int], int, int] | None = None  # subtasks, after (ms), attempts


@dataclass
class _Job:
    name: str
    submit_ms: int
    vertices: list[_Vertex]
    edges: list[tuple[str, str, str]]
    restart_delay_ms: int
    cancel_ms: int | None = None
    earliest_finish_ms: int = 0
    jm_failovers: int = 0
    restart_attempts: int = 3

    @property
    def max_ms(self) -> int:
        return max(v.duration_ms for v in self.vertices)

    @property
    def parallelism(self) -> int:
        return max(v.parallelism for v in self.vertices)

    @property
    def injected_failures(self) -> int:
        """Failures the job's own tasks inject into one JobMaster's run: each failing subtask
        fails in its first ``attempts`` attempts (attempts count per execution)."""
        return sum(len(v.fail[0]) * v.fail[2] for v in self.vertices if v.fail is not None)

    @property
    def regions(self) -> int:
        """Its pipelined regions: region failover counts one failure per failed region."""
        graph = JobGraph(
            uuid.UUID(int=0),
            self.name,
            [JobVertex(v.name, v.parallelism) for v in self.vertices],
            [JobEdge(a, b, pattern) for a, b, pattern in self.edges],
        )
        return len(build_topology(graph).regions)

    def submit_value(self) -> dict[str, Any]:
        vertices: list[dict[str, Any]] = []
        for v in self.vertices:
            entry: dict[str, Any] = {
                "name": v.name,
                "parallelism": v.parallelism,
                "task_duration": _dur(v.duration_ms),
            }
            if v.fail is not None:
                subtasks, after, attempts = v.fail
                entry["fail"] = {"subtasks": subtasks, "after": _dur(after), "attempts": attempts}
            vertices.append(entry)
        value: dict[str, Any] = {"job": self.name, "vertices": vertices}
        if self.edges:
            value["edges"] = [{"from": a, "to": b, "pattern": p} for a, b, p in self.edges]
        value["restart"] = {
            "attempts": self.restart_attempts,
            "delay": _dur(self.restart_delay_ms),
        }
        return value


@dataclass
class _Step:
    ms: int
    kind: str
    value: Any
    comment: str = ""


class _Generator:
    """The random plan of one run, written as scenario YAML."""

    def __init__(
        self, seed: int, faults: Sequence[str], duration: float, swarm: bool = False
    ) -> None:
        self.seed = seed
        self.allowed = tuple(faults)
        self.swarm = swarm
        self.duration_ms = max(1000, round(duration * 1000))
        # a string seed hashes the same in every process (sha512), unlike hash() of a str
        self.rng = random.Random(f"minicluster-simulate:{seed}")
        self.faults, self.rates = swarm_faults(seed, self.allowed) if swarm else (self.allowed, {})
        self.injected: set[str] = set()  # the kinds the plan really injects

    def rate(self, kind: str) -> float:
        """How much more (or less) often than by default this run injects ``kind``."""
        return self.rates.get(kind, 1.0)

    def text(self) -> str:
        rng, window = self.rng, self.duration_ms
        interval = rng.choice([500, 1000, 2000])
        timeout = interval * rng.randint(3, 6)
        rpc_timeout = rng.choice([1000, 2000, 5000, 10000])
        ha_delay = rng.choice([0, 0, 0, 50, 500])
        live: dict[str, int] = {}
        for i in range(1, rng.randint(2, 6) + 1):
            live[f"te-{i}"] = rng.randint(1, 4)
        initial = dict(live)
        next_te = len(live) + 1
        gone: list[str] = []

        jobs = self._jobs(window)
        timed = [k for k in ("kill", "partition", "failover", "join") if k in self.faults]
        occurrences: list[tuple[int, int, str, _Job | None]] = []
        for job in jobs:
            occurrences.append((job.submit_ms, 0, "submit", job))
            if job.cancel_ms is not None:
                occurrences.append((job.cancel_ms, 1, "cancel", job))
        if window > TOP_UP_MS:
            occurrences.append((TOP_UP_MS, 2, "top-up", None))
        demand = sum(job.parallelism for job in jobs) + CAPACITY_SPARE
        # TaskExecutors cut off from the ResourceManager: until when they are away, and slots
        away: dict[str, tuple[int, int]] = {}

        def counted(ms: int) -> int:
            """Slots the ResourceManager can count on at `ms` (away TaskExecutors not)."""
            gone_away = sum(n for te, (until, n) in away.items() if until > ms and te in live)
            return sum(live.values()) - gone_away

        def spare_te(ms: int, lasts_until: int | None) -> list[str]:
            """TaskExecutors whose loss (for good, or until `lasts_until`) keeps the rule."""
            if (lasts_until if lasts_until is not None else window + 1) < TOP_UP_MS:
                return sorted(live)  # over before the top-up
            return sorted(te for te in live if counted(ms) - live[te] >= demand)

        fault_count = 0
        if timed:
            fault_count = rng.randint(max(1, window // 60_000), max(1, window // 20_000))
            if self.swarm:
                scale = sum(self.rate(k) for k in timed) / len(timed)
                fault_count = max(1, round(fault_count * scale))
            for _ in range(fault_count):
                occurrences.append((rng.randint(0, window), 2, "fault", None))
        occurrences.sort(key=lambda o: (o[0], o[1]))

        steps: list[_Step] = []
        submitted: list[_Job] = []
        cancelled: set[str] = set()
        partition_end = 0
        for ms, _, what, item in occurrences:
            if what == "submit":
                assert item is not None
                submitted.append(item)
                steps.append(_Step(ms, "submit", item, "workload"))
                continue
            if what == "cancel":
                assert item is not None
                cancelled.add(item.name)
                steps.append(_Step(ms, "cancel", item.name, "workload: the user cancels"))
                continue
            if what == "top-up":
                while counted(ms) < demand:
                    te, next_te = f"te-{next_te}", next_te + 1
                    live[te] = 4
                    steps.append(
                        _Step(
                            ms,
                            "add_task_executor",
                            {"id": te, "slots": 4},
                            "capacity: every job's slots before the start-up period ends",
                        )
                    )
                continue
            killable = spare_te(ms, None)
            kinds = [k for k in timed if k != "kill" or killable]
            kinds = [k for k in kinds if k != "partition" or live or submitted]
            if not kinds:
                continue
            if self.swarm:
                kind = rng.choices(kinds, [self.rate(k) for k in kinds])[0]
            else:
                kind = rng.choice(kinds)
            self.injected.add(kind)
            if kind == "kill":
                te = rng.choice(killable)
                del live[te]
                gone.append(te)
                if rng.random() < 0.7:
                    steps.append(_Step(ms, "kill_task_executor", te, "fault: crash"))
                else:
                    steps.append(_Step(ms, "stop_task_executor", te, "fault: graceful stop"))
            elif kind == "join":
                if gone and rng.random() < 0.4:
                    te = rng.choice(gone)
                    gone.remove(te)
                    note = "fault: a TaskExecutor restarts under its old id"
                else:
                    te, next_te = f"te-{next_te}", next_te + 1
                    note = "fault: a TaskExecutor joins"
                live[te] = rng.randint(1, 4)
                steps.append(_Step(ms, "add_task_executor", {"id": te, "slots": live[te]}, note))
            elif kind == "partition":
                length = rng.randint(2, max(2, 3 * timeout // 100)) * 100
                cut_off = spare_te(ms, ms + length + _REJOIN_MS)
                shapes = []
                if cut_off:
                    shapes.append("te-rm")
                if live and submitted:
                    shapes.append("te-jm")
                if submitted:
                    shapes.append("rm-jm")
                if not shapes:
                    continue
                shape = rng.choice(shapes)
                te = rng.choice(cut_off if shape == "te-rm" else sorted(live)) if live else ""
                jm = f"{JOB_MASTER_NAME_PREFIX}{rng.choice(submitted).name}" if submitted else ""
                between = {
                    "te-rm": [te, "resource_manager"],
                    "te-jm": [te, jm],
                    "rm-jm": ["resource_manager", jm],
                }[shape]
                if shape == "te-rm":
                    away[te] = (ms + length + _REJOIN_MS, live[te])
                partition_end = max(partition_end, ms + length)
                steps.append(
                    _Step(
                        ms,
                        "partition",
                        {"between": between, "duration": _dur(length)},
                        "fault: network partition",
                    )
                )
            else:  # failover
                # a JobMaster can only fail over while its job surely has not ended yet: not
                # cancelled, and not possibly finished (its longest task cannot be done)
                movable = [
                    j
                    for j in submitted
                    if j.name not in cancelled and ms <= j.earliest_finish_ms - 1000
                ]
                roll = rng.random()
                if movable and roll < 0.5:
                    moved = rng.choice(movable)
                    moved.jm_failovers += 1
                    moved.earliest_finish_ms = ms + moved.max_ms
                    target: Any = {"job_master": moved.name}
                elif roll < 0.8:
                    target = "resource_manager"
                else:
                    target = "dispatcher"
                steps.append(_Step(ms, "failover", target, "fault: leader failover"))

        for job in jobs:
            # region failover counts a failure per failed region: a lost TaskExecutor costs
            # one restart for each region that ran there, and a fault can cost a region a few
            # (lost, then a refused deployment, then a slot found gone); each JobMaster counts
            # afresh, so JobMaster failovers need no more
            job.restart_attempts = 10 + 3 * fault_count * job.regions + job.injected_failures

        # the quiet period: no more faults, enough slots for every job at once
        quiet: list[_Step] = []
        need = demand
        have = sum(live.values())
        while have < need:
            te, next_te = f"te-{next_te}", next_te + 1
            live[te] = 4
            have += 4
            quiet.append(
                _Step(window, "add_task_executor", {"id": te, "slots": 4}, "quiet: enough slots")
            )
        settled = max(window, partition_end) + round(quiet_settle(timeout / 1000) * 1000) + 1000
        quiet.append(
            _Step(
                settled,
                "expect",
                {"registered_task_executors": len(live)},
                "quiescence checkpoint: everything registered, slots agree",
            )
        )
        for job in jobs:
            per_run = job.max_ms + job.restart_delay_ms + 2 * timeout
            runs = 3 + (job.injected_failures + 1) * (job.jm_failovers + 1)
            limit = 60_000 + runs * per_run
            limit = (limit + 999) // 1000 * 1000
            quiet.append(
                _Step(
                    settled,
                    "wait",
                    {
                        "job": job.name,
                        "status": ["FINISHED", "FAILED", "CANCELED"],
                        "timeout": _dur(limit),
                    },
                    "every job reaches a terminal state",
                )
            )
        lines = self._header(initial, interval, timeout, rpc_timeout, ha_delay, jobs, fault_count)
        lines.extend(self._steps(steps, quiet, timeout))
        lines.append(
            "  - expect: "
            + _flow({"free_slots": sum(live.values())})
            + "  # final checkpoint: every slot free again"
        )
        for job in jobs:
            status = "CANCELED" if job.cancel_ms is not None else "FINISHED"
            lines.append("  - expect: " + _flow({"job": job.name, "status": status}))
        return "\n".join(lines) + "\n"

    def _jobs(self, window: int) -> list[_Job]:
        rng = self.rng
        count = rng.randint(1, min(6, 2 + window // 120_000))
        longest = min(120_000, max(2_000, window // 4))
        plans: list[tuple[int, list[_Vertex], list[tuple[str, str, str]], int]] = []
        for index in range(count):
            submit = rng.randint(0, min(5000, window // 4)) if index == 0 else None
            if submit is None:
                submit = rng.randint(0, window * 4 // 5)
            names = [["map"], ["source", "sink"], ["source", "map", "sink"]][rng.randint(0, 2)]
            vertices = []
            for name in names:
                parallelism = rng.randint(1, 6)
                duration = rng.randint(5, longest // 100) * 100
                fail = None
                if "task-failure" in self.faults and rng.random() < 0.35 * self.rate(
                    "task-failure"
                ):
                    self.injected.add("task-failure")
                    count = rng.randint(1, min(2, parallelism))
                    subtasks = sorted(rng.sample(range(parallelism), count))
                    after = rng.randint(1, duration // 100 - 1) * 100
                    fail = (subtasks, after, rng.randint(1, 2))
                vertices.append(_Vertex(name, parallelism, duration, fail))
            edges = [
                (names[i], names[i + 1], rng.choice(["all-to-all", "pointwise"]))
                for i in range(len(names) - 1)
            ]
            plans.append((submit, vertices, edges, rng.choice([0, 200, 1000, 2000])))
        plans.sort(key=lambda p: p[0])
        jobs = []
        for index, (submit, vertices, edges, delay) in enumerate(plans):
            job = _Job(f"job-{index + 1}", submit, vertices, edges, delay)
            job.earliest_finish_ms = submit + job.max_ms
            if job.max_ms >= 2500 and rng.random() < 0.15:
                job.cancel_ms = rng.randint(submit + 200, submit + job.max_ms - 1000)
            jobs.append(job)
        return jobs

    def _header(
        self,
        initial: dict[str, int],
        interval: int,
        timeout: int,
        rpc_timeout: int,
        ha_delay: int,
        jobs: list[_Job],
        fault_count: int,
    ) -> list[str]:
        kinds = ",".join(self.faults) or "none"
        allowed = ",".join(self.allowed) or "none"
        window = _dur(self.duration_ms)
        swarm = "" if self.swarm else " --no-swarm"
        lines = [
            f"# Generated by `minicluster simulate --seed {self.seed} --runs 1 --faults {allowed} "
            f"--duration {window}{swarm}`.",
            "# Rerun it (same seed, same trace): minicluster run-scenario THIS_FILE",
            "# Rerun it with the invariant checks: minicluster simulate --replay THIS_FILE",
            *(
                [
                    "# Swarm: this run enables "
                    + (
                        ", ".join(f"{k} x{self.rate(k):g}" for k in self.faults)
                        if self.faults
                        else "no fault kind"
                    )
                ]
                if self.swarm
                else []
            ),
            f"name: simulate-seed-{self.seed}",
            "description: "
            + _flow(
                f"{len(jobs)} random job(s) on {len(initial)} TaskExecutor(s) under "
                f"{fault_count} random fault(s) ({kinds}) over {window}, then a quiet period."
            ),
            f"seed: {self.seed}",
            "cluster:",
            "  task_executors:",
        ]
        lines.extend(f"    - {_flow({'id': te, 'slots': slots})}" for te, slots in initial.items())
        lines.append("  rpc: shared")
        lines.append("  clock: virtual")
        lines.append(
            f"  heartbeat: {_flow({'interval': _dur(interval), 'timeout': _dur(timeout)})}"
        )
        lines.append(f"  rpc_timeout: {_dur(rpc_timeout)}")
        if ha_delay:
            lines.append(f"  ha: {_flow({'notification_delay': _dur(ha_delay)})}")
        lines.append("steps:")
        return lines

    def _steps(self, steps: list[_Step], quiet: list[_Step], timeout: int) -> list[str]:
        lines: list[str] = []
        now = 0
        for step in [*steps, *quiet]:
            if step.ms > now:
                lines.append(f"  - sleep: {_dur(step.ms - now)}")
                now = step.ms
            value = step.value.submit_value() if isinstance(step.value, _Job) else step.value
            comment = f"  # t={_dur(step.ms)}" + (f" {step.comment}" if step.comment else "")
            lines.append(f"  - {step.kind}: {_flow(value)}{comment}")
        settle = round(final_settle(timeout / 1000) * 1000) + 1000
        lines.append(f"  - sleep: {_dur(settle)}  # every job has ended: let the cluster settle")
        return lines


def generate_scenario(
    seed: int, faults: Sequence[str] = FAULT_KINDS, duration: float = 600.0, swarm: bool = False
) -> str:
    """The scenario YAML of run ``seed``: the same seed, kinds and duration give the same text."""
    return generate_run(seed, faults, duration, swarm)[0]


def generate_run(
    seed: int, faults: Sequence[str] = FAULT_KINDS, duration: float = 600.0, swarm: bool = False
) -> tuple[str, tuple[str, ...]]:
    """The scenario YAML of run ``seed`` and the fault kinds it really injects."""
    generator = _Generator(seed, faults, duration, swarm)
    text = generator.text()
    return text, tuple(k for k in FAULT_KINDS if k in generator.injected)


# a swarm run's rate of a kind, relative to the default: rarer, as often, more often
_SWARM_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)


def swarm_faults(seed: int, allowed: Sequence[str]) -> tuple[tuple[str, ...], dict[str, float]]:
    """Swarm testing: the fault kinds run ``seed`` enables (a random non-empty subset of
    ``allowed``) and each one's rate. A run with fewer kinds goes deeper into each (a partition
    is not always cut short by a kill), which finds bugs that all kinds at once keep hidden.
    Drawn from a generator of its own, so that the rest of the plan stays the seed's."""
    if not allowed:
        return (), {}
    rng = random.Random(f"minicluster-simulate-swarm:{seed}")
    chosen = [k for k in allowed if rng.random() < 0.5]
    if not chosen:
        chosen = [rng.choice(list(allowed))]
    rates = {k: rng.choice(_SWARM_RATES) for k in chosen}
    return tuple(chosen), rates
