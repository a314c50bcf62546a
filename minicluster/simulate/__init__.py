"""``minicluster simulate``: seeded random workloads under random faults, with the cluster's
invariants checked after every event and at quiescence.

Every run is a scenario (the format of scenario files), generated from the run's seed: a random
cluster, random jobs, a random fault schedule over ``duration`` of cluster time, then a quiet
period (no more faults, TaskExecutors added until every job can have its slots) with
quiescence checks. The generated YAML is parsed back by the scenario loader and that parsed
scenario is what runs, on the scenario runner with a virtual clock; so the file that
``--dump-scenario`` writes is exactly what ran, and ``minicluster run-scenario FILE`` repeats the
run message for message (same seed, same trace). ``check_scenario`` runs any scenario file with
the same checks (``minicluster simulate --replay FILE``).

The invariants (each violation names one):

``slot-exclusive``
    a slot is never held by two allocations: every task a TaskExecutor runs belongs to the
    allocation holding its slot, and no JobMaster holds one slot under two allocations
    (after every event); no two live JobMasters hold the same slot (at quiescence).
``slot-agreement``
    once the cluster is quiet, the ResourceManager, the TaskExecutors and the JobMasters agree
    on every slot (who holds it under which allocation), every running TaskExecutor is
    registered, and nothing is held for a job that has ended.
``fencing``
    no call with a stale fencing token is acted on: a fenced endpoint (ResourceManager,
    Dispatcher, JobMaster) acts only while its token is the published leader's, a TaskExecutor
    accepts slots only from the ResourceManager leader it follows and tasks only from the
    JobMaster leader it is connected to (after every event).
``job-terminal``
    every job reaches a terminal state once faults stop and enough slots exist (a ``wait`` of
    the scenario); ``job-outcome``: with a restart budget sized for the faults, a job that was
    not cancelled ends FINISHED. Region failover counts a failure per failed region, so the
    budget grows with the job's regions; and past the ResourceManager's start-up period (300 s)
    a requirement it cannot meet fails the job by design, so from 240 s on the generator keeps
    the slots the ResourceManager can count on at every job's demand plus a spare.
``job-finished``
    a FINISHED job had every subtask finish exactly once in its current attempt (attempts are
    per execution: a region restart gives its subtasks new ones): one execution per subtask,
    deployed to a TaskExecutor and finished no earlier than its duration after its deployment
    (checked when the job turns FINISHED).
``region-whole``
    a pipelined region is deployed as a whole: its subtasks share one attempt, none waits for
    slots (CREATED, SCHEDULED) while another is deployed, and each DEPLOYING, INITIALIZING or
    RUNNING one sits in the pool slot of its slot sharing group (after every call a JobMaster
    handled, and at quiescence).
``slot-reuse``
    a free slot in a job's pool never stays unused while a waiting region lacks one; while the
    pool holds more slots than the job's demand, no free slot is idle longer than twice
    ``slot_idle_timeout`` (after every call a JobMaster handled).
``restart-accounting``
    restarts never exceed the fixed-delay strategy's attempts; the region restarts applied
    never exceed the restarts counted; in a RUNNING or RESTARTING job every FAILED or CANCELED
    subtask's region awaits its restart; a JobMaster fails its job only with no attempt left.
``slot-request-timeout``
    a region the whole pool cannot serve fails within twice ``slot_request_timeout``; a
    bulk-timeout NoResourceAvailableException comes no earlier than the timeout after the
    region began waiting and only while the pool is too small; a not-enough-resources one only
    once a ResourceManager leader is past its start-up period.
``lost-task-executor``
    no task runs on a TaskExecutor that the ResourceManager has considered lost for longer than
    the heartbeat timeout (plus one heartbeat interval: the TaskExecutor checks its heartbeats
    once per interval).
``ask-reply``
    every ask gets a reply or an error: none stays pending past its timeout (after every
    event), none without a timeout is pending at quiescence.
``step`` / ``expectation`` / ``crash``
    a step of the scenario failed for another reason, or the run raised.

The package: ``common`` (fault kinds, invariant names, results), ``generator`` (the scenario of
a seed), ``checker`` (InvariantChecker; its state in ``checker_state``, its checks in
``slot_checks``, ``scheduling_checks`` and ``liveness_checks``) and, here, the runs
(``check_scenario``, ``run_one``, ``simulate``). The runs live in this module so that
``minicluster.simulate.run_one`` and ``minicluster.simulate.run_scenario`` are the very names
they call: replacing either on this module (as the tests do to plant a failing run) takes
effect.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import IO

import trio

from minicluster.cluster import MiniCluster
from minicluster.cluster.model import ExecutionState, JobStatus, SlotState
from minicluster.scenario import (
    AddTaskExecutorStep,
    CancelStep,
    ExpectStep,
    FailoverStep,
    FailTaskStep,
    FreeSlotsCondition,
    JobStatusCondition,
    KillTaskExecutorStep,
    PartitionStep,
    RegisteredTaskExecutorsCondition,
    Scenario,
    Step,
    StopTaskExecutorStep,
    WaitStep,
    parse_scenario,
)
from minicluster.scenario.runner import Observer, StepResult, run_scenario
from minicluster.simulate.checker import InvariantChecker
from minicluster.simulate.common import (
    CAPACITY_SPARE,
    FAULT_KINDS,
    INVARIANTS,
    MAX_VIOLATIONS_PER_RUN,
    START_UP_PERIOD_MS,
    TOP_UP_MS,
    RunResult,
    SimulationSummary,
    Violation,
    final_settle,
    quiet_settle,
)
from minicluster.simulate.generator import generate_run, generate_scenario, parse_faults

_STATE_KIND: dict[type, str] = {JobStatus: "job", ExecutionState: "task", SlotState: "slot"}

__all__ = [
    "CAPACITY_SPARE",
    "MAX_VIOLATIONS_PER_RUN",
    "START_UP_PERIOD_MS",
    "TOP_UP_MS",
    "FAULT_KINDS",
    "INVARIANTS",
    "InvariantChecker",
    "RunResult",
    "SimulationSummary",
    "Violation",
    "check_scenario",
    "dump_scenario",
    "final_settle",
    "generate_scenario",
    "parse_faults",
    "quiet_settle",
    "run_one",
    "simulate",
]

# ---------------------------------------------------------------------------------------------
# Running a scenario with the checks


_FAULT_STEPS = (
    KillTaskExecutorStep,
    StopTaskExecutorStep,
    AddTaskExecutorStep,
    FailTaskStep,
    FailoverStep,
    PartitionStep,
    CancelStep,
)


class _CheckingObserver(Observer):
    """Plugs the checker into the scenario runner: attaches at the first step (before any
    cluster task has run), checks quiescence at ``expect`` steps of a quiet cluster, and turns
    failed steps into violations."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.checker: InvariantChecker | None = None
        self.violations: list[Violation] = []
        self.disturbed_until = 0.0  # cluster time of the last fault's end
        self._failed_step: int | None = None  # while a failed step is reported

    def _add(self, invariant: str, description: str, detail: str = "") -> None:
        at = self.checker.cluster.events.now() if self.checker is not None else None
        self.violations.append(
            Violation(self.seed, invariant, description, at, detail, self._failed_step)
        )

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        if self.checker is None:
            self.checker = InvariantChecker(cluster, self._add)
            cluster.events.subscribers.append(self.checker.on_event)

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        checker = self.checker
        assert checker is not None
        step = self.scenario.steps[result.index]
        now = cluster.events.now()
        condition = getattr(step, "condition", None)
        if isinstance(condition, JobStatusCondition):
            checker.exercised.add("job-terminal" if isinstance(step, WaitStep) else "job-outcome")
        if isinstance(step, _FAULT_STEPS):
            end = now + (step.duration if isinstance(step, PartitionStep) else 0.0)
            self.disturbed_until = max(self.disturbed_until, end)
        if isinstance(step, ExpectStep):
            self._checkpoint(cluster, now)
        if result.ok:
            return
        self._failed_step = result.index
        try:
            self._step_failed(step, result, checker)
        finally:
            self._failed_step = None

    def _step_failed(self, step: Step, result: StepResult, checker: InvariantChecker) -> None:
        condition = getattr(step, "condition", None)
        if isinstance(step, WaitStep) and isinstance(condition, JobStatusCondition):
            self._add(
                "job-terminal",
                f"{condition.job} did not reach {' or '.join(s.value for s in condition.statuses)}"
                f" within {step.timeout:g} s once faults stopped and enough slots existed: "
                f"{result.message}",
                checker.job_diagnosis(condition.job),
            )
        elif isinstance(step, ExpectStep) and isinstance(condition, JobStatusCondition):
            self._add(
                "job-outcome",
                f"{result.message} (restart budget sized for the faults)",
                checker.job_diagnosis(condition.job),
            )
        elif isinstance(step, ExpectStep | WaitStep) and isinstance(
            condition, RegisteredTaskExecutorsCondition | FreeSlotsCondition
        ):
            if not any(v.invariant.startswith("slot-") for v in self.violations):
                self._add("slot-agreement", f"at a quiet checkpoint: {result.message}")
        elif isinstance(step, ExpectStep | WaitStep):
            self._add("expectation", f"step {result.index + 1} ({step.kind}): {result.message}")
        else:
            self._add(
                "step",
                f"step {result.index + 1} ({step.describe()}) failed: {result.message}",
            )

    def _checkpoint(self, cluster: MiniCluster, now: float) -> None:
        """The runner settled (every task blocked) before this expect: check it, if quiet."""
        checker = self.checker
        assert checker is not None
        timeout = cluster.config.heartbeat_timeout
        if any(until > trio.current_time() for until in cluster.partitions.values()):
            return
        if now - self.disturbed_until < quiet_settle(timeout):
            return
        ended = checker.job_ended_at
        all_ended = all(r.status.is_globally_terminal for r in cluster.store.jobs.values())
        if all_ended and (ended is None or now - ended >= final_settle(timeout)):
            checker.check_final()
        else:
            checker.check_quiet()


def check_scenario(
    scenario: Scenario,
    seed: int | None = None,
    trace: IO[str] | None = None,
) -> RunResult:
    """Run a scenario on a virtual clock with every invariant checked."""
    if seed is None:
        seed = scenario.seed if scenario.seed is not None else 0
    observer = _CheckingObserver(scenario, seed)
    result = RunResult(seed)
    wall = time.perf_counter()
    try:
        outcome = run_scenario(scenario, seed=seed, clock="virtual", observer=observer, trace=trace)
    except Exception as exc:  # a task of the cluster raised: the runtime crashed
        observer.violations.append(
            Violation(
                seed,
                "crash",
                f"the run raised {type(exc).__name__}: {exc}",
                None,
                "".join(traceback.format_exception(exc)),
            )
        )
    else:
        result.virtual_time = outcome.virtual_time
        result.steps = len(scenario.steps)
        result.steps_ok = sum(1 for s in outcome.steps if s.ok)
    result.wall_time = time.perf_counter() - wall
    if observer.checker is not None:
        result.events = observer.checker.events
        result.exercised = tuple(sorted(observer.checker.exercised))
        result.states = tuple(
            sorted(f"{_STATE_KIND[type(s)]}:{s.value}" for s in observer.checker.states_seen)
        )
    violations = observer.violations
    if len(violations) > MAX_VIOLATIONS_PER_RUN:
        extra = len(violations) - MAX_VIOLATIONS_PER_RUN + 1
        violations = violations[: MAX_VIOLATIONS_PER_RUN - 1]
        violations.append(
            Violation(seed, "expectation", f"... and {extra} more violation(s) in this run")
        )
    result.violations = violations
    return result


def run_one(
    seed: int, faults: Sequence[str] = FAULT_KINDS, duration: float = 600.0, swarm: bool = False
) -> RunResult:
    """Generate run ``seed`` (with ``swarm``, its own subset of ``faults``), run it with the
    checks, and keep its scenario text."""
    text, injected = generate_run(seed, faults, duration, swarm)
    scenario = parse_scenario(text, f"simulate-seed-{seed}.yaml", generated=True)
    result = check_scenario(scenario, seed)
    result.scenario_text = text
    result.faults = injected
    return result


def dump_scenario(result: RunResult, directory: str | Path) -> Path:
    """Write the run's scenario as ``DIR/simulate-seed-S.yaml``, its violations as comments."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"simulate-seed-{result.seed}.yaml"
    notes = [f"# {line}" for v in result.violations for line in v.line().splitlines()]
    header = "# Violations found in this run:\n" + "\n".join(notes) + "\n" if notes else ""
    path.write_text(header + result.scenario_text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Many runs


def simulate(
    runs: int = 100,
    seed: int | None = None,
    faults: Sequence[str] = FAULT_KINDS,
    duration: float = 600.0,
    dump_dir: str | Path | None = None,
    on_violation: Callable[[Violation], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    *,
    time_limit: float | None = None,
    workers: int = 1,
    swarm: bool = False,
    executor: Executor | None = None,
    executor_slots: int = 1,
) -> SimulationSummary:
    """``runs`` seeded runs, seeds ``seed``, ``seed + 1``, ...; ``seed`` None picks one at
    random. ``time_limit`` (wall seconds) stops starting runs once passed. ``workers`` > 1
    runs that many processes; an ``executor`` (a Dask cluster's, say: see dask_sweep) runs
    them wherever it runs things, ``executor_slots`` at a time. Either way results arrive in
    seed order, and each run is the one ``run_one(seed)`` makes anywhere. ``swarm``: each run
    enables its own subset of ``faults`` (see generator.swarm_faults)."""
    if runs < 0:
        raise ValueError("runs must not be negative")
    faults = parse_faults(faults)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    summary = SimulationSummary(first_seed=seed)
    started = time.perf_counter()

    def over_time() -> bool:
        return time_limit is not None and time.perf_counter() - started >= time_limit

    def account(result: RunResult) -> None:
        summary.runs += 1
        summary.cover(result)
        summary.events += result.events
        summary.virtual_time += result.virtual_time
        if result.ok:
            summary.clean_runs += 1
            summary.clean_events += result.events
        else:
            summary.failed_seeds.append(result.seed)
            if dump_dir is not None:
                result.dumped = str(dump_scenario(result, dump_dir))
                summary.dumped.append(result.dumped)
            for violation in result.violations:
                summary.violations.append(violation)
                if on_violation is not None:
                    on_violation(violation)
        if on_run is not None:
            on_run(result)

    def run_on(pool: Executor, slots: int) -> None:
        """Keep twice as many runs submitted as the pool runs at once; take their results in
        seed order."""
        pending: deque[Future[RunResult]] = deque()
        index = 0
        while True:
            while index < runs and len(pending) < 2 * slots:
                if over_time():
                    summary.stopped_early = True
                    index = runs
                    break
                pending.append(pool.submit(run_one, seed + index, faults, duration, swarm))
                index += 1
            if not pending:
                break
            account(pending.popleft().result())

    if executor is not None:
        run_on(executor, max(1, executor_slots))
    elif workers <= 1:
        for index in range(runs):
            if over_time():
                summary.stopped_early = True
                break
            account(run_one(seed + index, faults, duration, swarm))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            run_on(pool, workers)
    summary.wall_time = time.perf_counter() - started
    return summary
