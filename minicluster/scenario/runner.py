"""Runs a scenario on an in-process MiniCluster: steps in order, conditions checked, a report.

On a virtual clock (trio's MockClock) a seeded run is deterministic: the same seed gives the
same steps at the same virtual times and the same trace.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import IO, Any

import trio
import trio.testing

from minicluster.cluster import ClusterConfig, JobStatus, MiniCluster
from minicluster.cluster.components import endpoint_of
from minicluster.cluster.context import Event
from minicluster.cluster.gateways import DispatcherGateway
from minicluster.cluster.minicluster import stream
from minicluster.cluster.snapshot import ClusterSnapshot, JobSnapshot

from .clock import paced_clock
from .loader import (
    AddTaskExecutorStep,
    CancelStep,
    ExpectStep,
    FailoverStep,
    FailTaskStep,
    KillTaskExecutorStep,
    PartitionStep,
    Scenario,
    SleepStep,
    Step,
    StopTaskExecutorStep,
    SubmitStep,
    WaitStep,
    to_job_graph,
)


@dataclass
class StepResult:
    index: int
    kind: str
    ok: bool
    at: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "ok": self.ok,
            "at": self.at,
            "message": self.message,
        }


@dataclass
class ScenarioResult:
    scenario: str
    seed: int
    passed: bool
    steps: list[StepResult] = field(default_factory=list)
    jobs: dict[str, Any] = field(default_factory=dict)
    rpc: dict[str, Any] = field(default_factory=dict)
    virtual_time: float = 0.0
    wall_time: float = 0.0

    @property
    def failure(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def report(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "passed": self.passed,
            "steps": [s.as_dict() for s in self.steps],
            "jobs": self.jobs,
            "rpc": self.rpc,
            "duration": {"cluster_seconds": self.virtual_time, "wall_seconds": self.wall_time},
        }


class StepFailed(Exception):
    """A step did not do what it should; the message is the one-sentence reason."""


class Observer:
    """What the command line plugs in to show a run: called from the run's own task.

    `tick` refreshes a view: it is called on the cluster's events, at most every
    `refresh_interval` seconds of real time, and only for an observer that shows one
    (`shows_view`); a run without a view pays nothing for it, and a view never changes what the
    cluster does (no task of its own, so the same seed gives the same trace either way)."""

    shows_view = False
    refresh_interval = 0.1

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        pass

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        pass

    def tick(self, cluster: MiniCluster) -> None:
        pass


class _View:
    """The ClusterView that conditions read: one ClusterSnapshot, asked of the Dispatcher
    through its gateway. Jobs are found by the ids this run submitted them under."""

    def __init__(self, snapshot: ClusterSnapshot, jobs: dict[str, uuid.UUID]) -> None:
        self.snapshot = snapshot
        self.jobs = jobs
        self._by_id = {job.job_id: job for job in snapshot.jobs}

    def _job(self, job: str) -> JobSnapshot | None:
        job_id = self.jobs.get(job)
        return self._by_id.get(job_id) if job_id is not None else None

    def job_status(self, job: str) -> JobStatus | None:
        found = self._job(job)
        return found.status if found is not None else None

    def job_restarts(self, job: str) -> int:
        found = self._job(job)
        return found.restarts if found is not None else 0

    def free_slots(self) -> int:
        return self.snapshot.free_slots

    def registered_task_executors(self) -> int:
        return self.snapshot.overview.task_executors

    def fencing_rejections(self) -> int:
        return self.snapshot.fencing_rejections


def trace_line(event: Event) -> str | None:
    """One JSON line of the trace for an RPC message event, None for other events.

    Every line has time, sender, receiver, method, kind and outcome; a message about a job, a
    task or a slot also has the ids it carries (cluster.trace_detail.DETAIL_KEYS: job, slot,
    allocation, execution, vertex, subtask, attempt, state, ...), which a timeline of slots
    reads. They are keys of their own, so a reader of the first six sees what it always saw."""
    if event.kind not in ("rpc", "tell", "fencing", "dropped"):
        return None
    line: dict[str, Any] = {
        "time": event.time,
        "sender": event.sender,
        "receiver": event.receiver,
        "method": event.method,
        "kind": "tell" if event.kind == "tell" else "ask",
        "outcome": event.outcome,
    }
    if event.detail:
        for key, value in event.detail.items():
            line.setdefault(key, value)
    return json.dumps(line, sort_keys=True)


class ScenarioRun:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        clock: str,
        observer: Observer | None = None,
        trace: IO[str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.clock = clock
        self.observer = observer or Observer()
        self.trace = trace
        # job ids come from a stream of their own (the cluster draws its ids and fencing tokens
        # from others), so a job id never repeats a fencing token
        self.rng = stream(seed, "jobs")
        self.jobs: dict[str, uuid.UUID] = {}
        self._wake: trio.Event | None = None
        self.interrupted = False
        self._steps: trio.CancelScope | None = None
        self._gateway: tuple[object, DispatcherGateway] | None = None
        self._news = False
        self._recording: Callable[[], bool] = lambda: True

    def config(self) -> ClusterConfig:
        spec = self.scenario.cluster
        return ClusterConfig(
            **spec.config_values(),
            seed=self.seed,
        )

    async def run(self) -> ScenarioResult:
        """Run the steps on a fresh cluster; after ``interrupt()`` the steps stop and the
        cluster shuts down as after the last step (``run_scenario`` then raises
        KeyboardInterrupt)."""
        spec = self.scenario.cluster
        result = ScenarioResult(self.scenario.name, self.seed, passed=False)
        wall = time.perf_counter()
        cluster = MiniCluster(
            [(te.id, te.slots) for te in spec.task_executors],
            spec.slots_per_executor,
            rpc=spec.rpc,
            config=self.config(),
        )
        async with cluster:
            if self.trace is not None:
                trace = self.trace

                def write(event: Event) -> None:
                    line = trace_line(event)
                    if line is not None:
                        trace.write(line + "\n")

                cluster.events.subscribers.append(write)
                cluster.events.record_detail = True  # the ids trace lines carry
            events = cluster.events
            self._recording = lambda: events.record_rpc
            cluster.events.subscribers.append(self._saw)
            cluster.events.watchers.append(self._changed)
            if self.observer.shows_view:
                cluster.events.watchers.append(self._refresher(cluster))
            with trio.CancelScope() as steps:
                self._steps = steps
                if self.interrupted:
                    steps.cancel()
                result.passed = await self._run_steps(cluster, result)
            result.jobs = self._job_report(await self._observe(cluster))
            result.rpc = {
                "calls": cluster.events.rpc_calls,
                "by_method": dict(cluster.events.by_method),
                "fencing_rejections": cluster.events.fencing_rejections,
            }
            result.virtual_time = cluster.events.now()
            self.observer.tick(cluster)
        result.wall_time = time.perf_counter() - wall
        return result

    async def _run_steps(self, cluster: MiniCluster, result: ScenarioResult) -> bool:
        """Each step in turn until one fails; whether all of them held."""
        total = len(self.scenario.steps)
        for step in self.scenario.steps:
            self.observer.step_started(step.index, total, step, cluster)
            cluster.context.emit("step", f"{step.index + 1}/{total} {step.describe()}")
            try:
                message = await self._run_step(step, cluster)
                ok = True
            except StepFailed as exc:
                message, ok = str(exc), False
            step_result = StepResult(step.index, step.kind, ok, cluster.events.now(), message)
            result.steps.append(step_result)
            self.observer.step_finished(step_result, cluster)
            if not ok:
                return False
        return True

    def interrupt(self) -> None:
        """Stop the steps; the cluster then shuts down as after the last one."""
        self.interrupted = True
        if self._steps is not None:
            self._steps.cancel()

    def _saw(self, event: Event) -> None:
        """An event was recorded: whether a condition may see something new. A heartbeat
        that went fine changes nothing a condition reads (what follows from heartbeats, a
        TaskExecutor lost or slots freed, comes with events of its own), and a healthy
        cluster sends one every few seconds for hours: those do not wake a `wait`."""
        if not (event.outcome == "ok" and event.method is not None and "heartbeat" in event.method):
            self._news = True

    def _changed(self) -> None:
        """Something happened in the cluster: a waiting condition looks again if it may see
        something new (every change does when messages are not recorded as events)."""
        if self._wake is not None and (self._news or not self._recording()):
            self._news = False
            self._wake.set()

    def _refresher(self, cluster: MiniCluster) -> Callable[[], None]:
        """Refresh the view on the cluster's events, at most once per refresh interval of real
        time: nothing ticks in cluster time."""
        interval = self.observer.refresh_interval
        last = [0.0]

        def refresh() -> None:
            now = time.perf_counter()
            if now - last[0] >= interval:
                last[0] = now
                self.observer.tick(cluster)

        return refresh

    async def _observe(self, cluster: MiniCluster) -> ClusterSnapshot:
        """The cluster as conditions see it, asked of the Dispatcher leader through its
        gateway (as caller "observer"; snapshot queries are not traced). A Dispatcher that
        is failing over is asked again once the new leader is there."""
        while True:
            dispatcher = cluster.dispatcher
            gateway = self._gateway
            if gateway is None or gateway[0] is not dispatcher:
                gateway = self._gateway = (dispatcher, cluster.dispatcher_gateway("observer"))
            try:
                snapshot: ClusterSnapshot = await gateway[1].request_cluster_snapshot(False)
                return snapshot
            except Exception:
                if cluster.dispatcher is dispatcher:
                    raise
                self._gateway = None

    def _job_report(self, snapshot: ClusterSnapshot) -> dict[str, Any]:
        report: dict[str, Any] = {}
        by_id = {job.job_id: job for job in snapshot.jobs}
        for name, job_id in self.jobs.items():
            job = by_id.get(job_id)
            if job is None:
                continue
            report[name] = {
                "job_id": job_id.hex,
                "status": job.status.value,
                "restarts": job.restarts,
                "tasks_total": job.tasks_total,
                "tasks_finished": job.tasks_finished,
            }
        return report

    async def _check(self, step: WaitStep | ExpectStep, cluster: MiniCluster) -> tuple[bool, str]:
        view = _View(await self._observe(cluster), self.jobs)
        return step.condition.check(view)

    async def _settle(self) -> None:
        """Let what is already under way at this instant finish before a check looks."""
        if self.clock == "virtual":
            await trio.testing.wait_all_tasks_blocked()
        else:
            await trio.sleep(0.01)

    def _job_id(self, name: str) -> uuid.UUID:
        job_id = self.jobs.get(name)
        if job_id is None:
            raise StepFailed(f"job {name!r} was not submitted")
        return job_id

    async def _run_step(self, step: Step, cluster: MiniCluster) -> str:
        if isinstance(step, SubmitStep):
            graph = to_job_graph(step, self.rng, self.scenario.cluster.failover_strategy)
            try:
                job_id = await cluster.submit_job(graph)
            except Exception as exc:
                raise StepFailed(f"submitting {step.job.name!r} failed: {exc}") from None
            self.jobs[step.job.name] = job_id
            return f"submitted {step.job.name!r} as {job_id.hex}"
        if isinstance(step, WaitStep):
            # no polling: the condition is looked at again when the cluster's state changes
            # (an event), and the timeout is a plain deadline the virtual clock jumps to
            started = trio.current_time()
            with trio.move_on_after(step.timeout):
                while True:
                    self._wake = trio.Event()
                    await self._settle()
                    holds, seen = await self._check(step, cluster)
                    if holds:
                        waited = trio.current_time() - started
                        return f"{step.condition.describe()} after {waited:.3f} s"
                    await self._wake.wait()
            holds, seen = await self._check(step, cluster)
            if holds:
                return f"{step.condition.describe()}"
            raise StepFailed(
                f"waited {step.timeout:g} s for {step.condition.describe()}, but {seen}"
            )
        if isinstance(step, ExpectStep):
            await self._settle()
            holds, seen = await self._check(step, cluster)
            if not holds:
                raise StepFailed(f"expected {step.condition.describe()}, but {seen}")
            return seen
        if isinstance(step, SleepStep):
            await trio.sleep(step.duration)
            return f"slept {step.duration:g} s"
        if isinstance(step, KillTaskExecutorStep):
            await self._guard(cluster.kill_task_executor(step.task_executor))
            return f"killed {step.task_executor}"
        if isinstance(step, StopTaskExecutorStep):
            await self._guard(cluster.stop_task_executor(step.task_executor))
            return f"stopped {step.task_executor}"
        if isinstance(step, AddTaskExecutorStep):
            spec = step.task_executor
            await self._guard(cluster.add_task_executor(spec.id, spec.slots))
            return f"added {spec.id} with {spec.slots} slot(s)"
        if isinstance(step, FailTaskStep):
            job_id = self._job_id(step.job)
            await self._guard(cluster.fail_task(job_id, step.subtask, step.vertex))
            return f"failed {step.vertex}[{step.subtask}] of {step.job!r}"
        if isinstance(step, FailoverStep):
            target = step.target
            if step.job is not None:
                token = await self._guard(cluster.failover("job_master", self._job_id(step.job)))
            else:
                token = await self._guard(cluster.failover(target))
            return f"new leader for {target} with token {token}"
        if isinstance(step, PartitionStep):
            a, b = step.between
            job_id_of = self.jobs.get  # the scenario's own job names
            try:
                ends = endpoint_of(a, job_id_of), endpoint_of(b, job_id_of)
            except KeyError as exc:
                raise StepFailed(f"cannot partition {a} from {b}: {exc.args[0]}") from None
            cluster.partition_endpoints(ends[0], ends[1], step.duration, f"{a} and {b}")
            return f"partitioned {a} from {b} for {step.duration:g} s"
        if isinstance(step, CancelStep):
            job_id = self._job_id(step.job)
            status = await self._guard(cluster.cancel_job(job_id))
            return f"cancel of {step.job!r} requested ({status})"
        raise StepFailed(f"unknown step {step.kind}")  # pragma: no cover - the loader refuses

    async def _guard(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(f"{type(exc).__name__}: {exc}") from None


def run_scenario(
    scenario: Scenario,
    seed: int | None = None,
    clock: str | None = None,
    observer: Observer | None = None,
    trace: IO[str] | None = None,
    speed: float | None = None,
    stop_signals: Collection[int] = (),
) -> ScenarioResult:
    """Run a scenario to its end. `speed` paces a virtual clock (virtual seconds per real
    second) for a person watching; None runs it as fast as it goes. One of `stop_signals`
    (the command line passes SIGINT) cancels the run: the cluster stops, every task with it,
    then KeyboardInterrupt is raised. Without it trio would deliver the KeyboardInterrupt into
    whichever task runs, in the middle of the cluster."""
    if seed is None:
        seed = (
            scenario.seed if scenario.seed is not None else random.SystemRandom().randrange(2**31)
        )
    clock = clock or scenario.cluster.clock
    run = ScenarioRun(scenario, seed, clock, observer, trace)
    trio_clock: trio.abc.Clock | None = None
    if clock == "virtual":
        if speed is None:
            # Jump the clock as soon as every task waits. With TCP between components
            # (dedicated mode) a task waiting for a frame on loopback counts as waiting too, so
            # give the kernel a moment first, or the clock would run ahead of the sockets.
            threshold = 0.002 if scenario.cluster.rpc == "dedicated" else 0.0
            trio_clock = trio.testing.MockClock(autojump_threshold=threshold)
        else:
            # paced for a person: the autojump run, slowed down (same trace at any speed)
            trio_clock = paced_clock(speed)
    return trio.run(_run_until_signal, run, tuple(stop_signals), clock=trio_clock)


async def _run_until_signal(run: ScenarioRun, signals: tuple[int, ...]) -> ScenarioResult:
    if not signals:
        return await run.run()
    with trio.open_signal_receiver(*signals) as receiver:
        async with trio.open_nursery() as nursery:
            # started, and waiting, before the cluster exists: the run's tasks are scheduled
            # exactly as without it, so the trace is the same message for message
            await nursery.start(_interrupt_on_signal, receiver, run)
            result = await run.run()
            nursery.cancel_scope.cancel()
    if run.interrupted:
        raise KeyboardInterrupt
    return result


async def _interrupt_on_signal(
    receiver: Any, run: ScenarioRun, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()
    async for _ in receiver:
        run.interrupt()
        return
