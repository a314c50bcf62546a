"""What the generator, the checker and the runs share: the fault kinds, the invariant names, the
generator's capacity rule, the settle times, and what a run and many runs yield (Violation,
RunResult, SimulationSummary).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS: tuple[str, ...] = ("kill", "partition", "failover", "task-failure", "join")

INVARIANTS: tuple[str, ...] = (
    "slot-exclusive",
    "slot-agreement",
    "fencing",
    "job-terminal",
    "job-outcome",
    "job-finished",
    "lost-task-executor",
    "ask-reply",
    "region-whole",
    "slot-reuse",
    "restart-accounting",
    "slot-request-timeout",
    "step",
    "expectation",
    "crash",
)

# the invariants a check of the checker looks after (the others name a failed step or a crash)
CHECKED_INVARIANTS = INVARIANTS[:-3]

# the states the coverage reports, by kind: Flink's JobStatus, ExecutionState and slot states
STATE_NAMES: dict[str, tuple[str, ...]] = {
    "job": (
        "RUNNING",
        "FAILING",
        "RESTARTING",
        "FINISHED",
        "FAILED",
        "CANCELLING",
        "CANCELED",
    ),
    "task": (
        "CREATED",
        "SCHEDULED",
        "DEPLOYING",
        "INITIALIZING",
        "RUNNING",
        "FINISHED",
        "CANCELING",
        "CANCELED",
        "FAILED",
    ),
    "slot": ("FREE", "ALLOCATED", "ACTIVE"),
}

MAX_VIOLATIONS_PER_RUN = 25
# The generator's capacity rule. Once the ResourceManager is older than its start-up period
# (slot_request_timeout, 300 s by default), a requirement its free slots cannot meet fails the
# job's waiting regions at once, and the restarts that follow fail the same way: the job FAILS,
# as on Flink. So from TOP_UP_MS on, generated runs keep the slots the ResourceManager can count
# on at least every job's demand at once plus CAPACITY_SPARE: TaskExecutors join at TOP_UP_MS if
# needed, and a later kill, stop or TaskExecutor-ResourceManager partition that would break the
# rule is not generated.
START_UP_PERIOD_MS = 300_000
TOP_UP_MS = START_UP_PERIOD_MS - 60_000
CAPACITY_SPARE = 4


def quiet_settle(heartbeat_timeout: float) -> float:
    """Cluster seconds after the last fault (or partition end, or new TaskExecutor) after which
    the cluster counts as quiet: heartbeats have noticed every loss (one timeout), TaskExecutors
    got through their registration backoff (at most 30 s per attempt, then a 10 s pause after an
    error) and offered their slots again."""
    return 2 * heartbeat_timeout + 45.0


def final_settle(heartbeat_timeout: float) -> float:
    """Cluster seconds after the last job ended after which everything should be released."""
    return 2 * heartbeat_timeout + 10.0


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Violation:
    """One invariant that did not hold, in one run (``seed`` reproduces it)."""

    seed: int
    invariant: str
    description: str
    at: float | None = None  # cluster seconds since the run started
    detail: str = ""
    # the scenario step whose failure this is (0-based), None when a check of the checker
    # found it: a shrink keeps a checker's violation a checker's
    step: int | None = None

    def line(self) -> str:
        """``VIOLATION seed=S: <description>``: what the command prints."""
        when = f" (at {self.at:.3f} s)" if self.at is not None else ""
        return f"VIOLATION seed={self.seed}: {self.invariant}: {self.description}{when}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "invariant": self.invariant,
            "description": self.description,
            "at": self.at,
            "detail": self.detail,
        }


@dataclass
class RunResult:
    seed: int
    events: int = 0
    virtual_time: float = 0.0
    wall_time: float = 0.0
    steps: int = 0
    steps_ok: int = 0
    violations: list[Violation] = field(default_factory=list)
    scenario_text: str = ""
    dumped: str | None = None
    # coverage: the fault kinds the run injected, the invariants whose checks ran on a relevant
    # event, and the states reached ("job:RUNNING", "task:DEPLOYING", "slot:ACTIVE")
    faults: tuple[str, ...] = ()
    exercised: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class SimulationSummary:
    first_seed: int
    runs: int = 0
    events: int = 0
    virtual_time: float = 0.0
    wall_time: float = 0.0
    clean_runs: int = 0
    clean_events: int = 0  # events of the runs without a violation
    violations: list[Violation] = field(default_factory=list)
    failed_seeds: list[int] = field(default_factory=list)
    dumped: list[str] = field(default_factory=list)
    stopped_early: bool = False  # the time limit ended the simulation before `runs`
    # coverage: how many runs injected each fault kind, exercised each invariant, reached
    # each state
    fault_runs: Counter[str] = field(default_factory=Counter)
    invariant_runs: Counter[str] = field(default_factory=Counter)
    state_runs: Counter[str] = field(default_factory=Counter)

    def cover(self, result: RunResult) -> None:
        """Count what run ``result`` exercised."""
        self.fault_runs.update(result.faults)
        self.invariant_runs.update(result.exercised)
        self.state_runs.update(result.states)

    def coverage(self) -> dict[str, dict[str, int]]:
        """Runs per fault kind, per invariant and per state, every known one listed (a zero
        is what a reader looks for)."""
        states = {
            f"{prefix}:{name}": self.state_runs[f"{prefix}:{name}"]
            for prefix, names in STATE_NAMES.items()
            for name in names
        }
        return {
            "faults": {k: self.fault_runs[k] for k in FAULT_KINDS},
            "invariants": {k: self.invariant_runs[k] for k in CHECKED_INVARIANTS},
            "states": states,
        }

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def last_seed(self) -> int:
        return self.first_seed + max(self.runs, 1) - 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "clean_runs": self.clean_runs,
            "clean_events": self.clean_events,
            "events": self.events,
            "seeds": [self.first_seed, self.last_seed] if self.runs else [],
            "cluster_seconds": round(self.virtual_time, 3),
            "wall_seconds": round(self.wall_time, 3),
            "stopped_early": self.stopped_early,
            "failed_seeds": self.failed_seeds,
            "violations": [v.as_dict() for v in self.violations],
            "dumped": self.dumped,
            "coverage": self.coverage(),
        }
