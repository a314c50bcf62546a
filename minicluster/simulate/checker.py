"""The invariant checker: watches a running cluster and reports every violation of the invariants
that the package's docstring lists, after every event and at quiescence.

Over 800 lines because it is one class, InvariantChecker, whose checks share the state it keeps
between events (the slots, leaders and asks it has seen); cutting the class in two would spread
that state over modules without making either half readable alone.
"""

from __future__ import annotations

import heapq
import itertools
import math
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from minicluster.cluster import ExecutionState, JobStatus, MiniCluster
from minicluster.cluster.context import Event
from minicluster.cluster.jobmaster import BULK_TIMEOUT, NOT_ENOUGH_RESOURCES, JobMaster
from minicluster.cluster.model import SlotID, SlotState
from minicluster.cluster.resourcemanager import ResourceManager
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc import FencedRpcEndpoint, RpcEndpoint, RpcService
from minicluster.rpc.reply import Reply

_EPSILON = 1e-6
# a JobMaster with more executions than this has its regions scanned only when its task
# counts, restarts or slots changed (a replayed scale scenario has thousands per job)
_FULL_SCAN_LIMIT = 200
# how long a ResourceManager's tell may take to arrive after a new leader took over
_TELL_GRACE = 1.0
_WAITING = frozenset({ExecutionState.CREATED, ExecutionState.SCHEDULED})
_IN_SLOT = frozenset(
    {ExecutionState.DEPLOYING, ExecutionState.INITIALIZING, ExecutionState.RUNNING}
)
_DEPLOYED = _IN_SLOT | {ExecutionState.FINISHED}
_BULK_TIMEOUT_PREFIX = "NoResourceAvailableException: " + BULK_TIMEOUT.split("{")[0]
_NOT_ENOUGH_PREFIX = "NoResourceAvailableException: " + NOT_ENOUGH_RESOURCES


# ---------------------------------------------------------------------------------------------
# The invariant checker


_REPLY_WAIT_CODE = Reply.wait.__code__


def _short(value: uuid.UUID | None) -> str:
    return value.hex[:8] if value is not None else "none"


@dataclass
class _Started:
    task_executor: str
    at: float
    vertex: str
    subtask: int
    attempt: int
    duration: float


class InvariantChecker:
    """Watches one MiniCluster: cheap checks after every event (only what the event can have
    changed: the TaskExecutor, JobMaster or ResourceManager it names), full scans when asked
    at quiescence. Each violation is reported once, to ``report(invariant, description,
    detail)`` and in ``violations``."""

    def __init__(
        self,
        cluster: MiniCluster,
        report: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.config = cluster.config
        self.violations: list[tuple[float, str, str, str]] = []
        self._report = report
        self._reported: set[str] = set()
        self.events = 0
        self.errors = 0
        # TaskExecutors (by object: a TaskExecutor restarted under its old id is a new one)
        self._te_tasks: dict[TaskExecutor, set[uuid.UUID]] = {}
        self._te_allocations: dict[TaskExecutor, list[uuid.UUID | None]] = {}
        self._started: dict[uuid.UUID, _Started] = {}
        # JobMasters by job hex, oldest first; finished executions per JobMaster
        self._jms: dict[str, list[JobMaster]] = {}
        self._records: dict[str, Any] = {}
        self._finished: dict[JobMaster, dict[tuple[int, str, int], uuid.UUID]] = {}
        self._finished_at: dict[uuid.UUID, float] = {}
        self._signature: dict[JobMaster, tuple[int, int]] = {}
        self._region_signature: dict[JobMaster, tuple[Any, ...]] = {}
        # per JobMaster and region: when it was last seen not waiting for slots, and the
        # waiting bulk (by identity) seen unfulfillable since when
        self._idle_region_at: dict[JobMaster, dict[int, float]] = {}
        self._unfulfillable: dict[JobMaster, dict[int, tuple[object, float]]] = {}
        self.last_failure: dict[str, str] = {}
        self.job_ended_at: float | None = None
        # ResourceManagers, oldest first; TaskExecutors the current one considers lost
        self._rms: list[ResourceManager] = [cluster.resource_manager]
        # each leader's tenure (start, end): the start-up period runs from its start
        self._rm_tenures: list[tuple[float, float | None]] = [(cluster.events.now(), None)]
        self._rm_registered: set[str] = set(cluster.resource_manager.task_executors)
        self._lost_since: dict[str, float] = {}
        # asks: (deadline, n, reply), by deadline
        self._asks: list[tuple[float, int, Reply]] = []
        self._ask_numbers = itertools.count()
        self._hooked: set[int] = set()
        self._hook_services()

    # --- reporting ----------------------------------------------------------------------

    def violation(self, invariant: str, description: str, detail: str = "", key: str = "") -> None:
        key = f"{invariant}:{key or description}"
        if key in self._reported:
            return
        self._reported.add(key)
        self.violations.append((self.cluster.events.now(), invariant, description, detail))
        if self._report is not None:
            self._report(invariant, description, detail)

    def _job_name(self, job_id: uuid.UUID | None) -> str:
        if job_id is None:
            return "no job"
        record = self.cluster.store.jobs.get(job_id)
        return record.graph.name if record is not None else f"job {job_id.hex[:8]}"

    # --- hooks ----------------------------------------------------------------------------

    def _hook_services(self) -> None:
        for service in self.cluster._services:
            if id(service) not in self._hooked:
                self._hooked.add(id(service))
                self._hook_timeouts(service)

    def _hook_timeouts(self, service: RpcService) -> None:
        timeouts = service.timeouts
        original = timeouts.add
        asks = self._asks
        numbers = self._ask_numbers

        def add(reply: Reply, timeout: float) -> None:
            original(reply, timeout)
            heapq.heappush(asks, (trio.current_time() + timeout, next(numbers), reply))

        setattr(timeouts, "add", add)  # noqa: B010 - an instance attribute shadows the method

    # --- after every event ----------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        self.events += 1
        try:
            self._on_event(event)
        except Exception as exc:  # a bug of the checker must not take the cluster down
            self.errors += 1
            self.violation(
                "crash",
                f"the invariant checker failed on {event.kind} event: {exc!r}",
                traceback.format_exc(),
                key=f"checker:{type(exc).__name__}:{exc}",
            )

    def _on_event(self, event: Event) -> None:
        cluster = self.cluster
        now = event.time
        if self._asks:
            self._check_asks()
        if cluster.resource_manager is not self._rms[-1]:
            self._rms.append(cluster.resource_manager)
            self._rm_tenures[-1] = (self._rm_tenures[-1][0], now)
            self._rm_tenures.append((now, None))
            self._rm_registered = set(cluster.resource_manager.task_executors)
            self._lost_since.clear()  # a new leader considers nobody lost
        if len(cluster._services) != len(self._hooked):
            self._hook_services()
        kind = event.kind
        if (
            kind == "failure"
            and event.sender is not None
            and event.sender.startswith("jobmaster-")
            and event.message.startswith("NoResourceAvailableException: ")
        ):
            failing = self._job_master(event.sender[10:])
            if failing is not None:
                self.check_no_resource_failure(failing, event.message, now)
        for endpoint_id in (event.sender, event.receiver):
            if endpoint_id is None:
                continue
            if endpoint_id.startswith("taskexecutor-"):
                te = cluster.task_executors.get(endpoint_id[13:])
                if te is not None:
                    self.check_task_executor(te, now)
            elif endpoint_id.startswith("jobmaster-"):
                jm = self._job_master(endpoint_id[10:])
                if jm is not None:
                    self.check_job_master(jm, now)
            elif endpoint_id == "resourcemanager":
                self._track_lost(now)
        if kind == "rpc" or kind == "tell":
            receiver = event.receiver
            if (
                receiver is not None
                and event.outcome == "ok"
                and (
                    receiver == "resourcemanager"
                    or receiver == "dispatcher"
                    or receiver.startswith("jobmaster-")
                )
            ):
                self.check_fenced_receiver(receiver)
            if receiver is not None and receiver.startswith("jobmaster-"):
                # the JobMaster has handled a call: its state is whole again
                handled = self._job_master(receiver[10:])
                if handled is not None:
                    self.check_scheduling(handled, now)
        elif kind == "job" and event.sender is not None:
            if event.message.endswith(
                ("-> FINISHED", "-> FAILED", "-> CANCELED")
            ) and event.sender.startswith("jobmaster-"):
                self.job_ended_at = now
                ended = self._job_master(event.sender[10:])
                if ended is not None and event.message.endswith("-> FINISHED"):
                    self.check_finished_job(ended, now)
                elif ended is not None and event.message.endswith("-> FAILED"):
                    self.check_failed_job(ended)
        elif kind == "failure" and event.sender is not None:
            self.last_failure[event.sender] = event.message
        if self._lost_since:
            self.check_lost_task_executors(now)

    def _job_master(self, job_hex: str) -> JobMaster | None:
        """The JobMaster of the job: the current one, or the last one seen if it has ended."""
        record = self._records.get(job_hex)
        if record is None:
            for job_id, candidate in self.cluster.store.jobs.items():
                if job_id.hex == job_hex:
                    record = self._records[job_hex] = candidate
                    break
            else:
                return None
        seen = self._jms.get(job_hex)
        if seen is None:
            seen = self._jms[job_hex] = []
        jm = record.job_master
        if jm is not None and (not seen or seen[-1] is not jm):
            seen.append(jm)
        return seen[-1] if seen else None

    # slot-exclusive and fencing, at one TaskExecutor
    def check_task_executor(self, te: TaskExecutor, now: float) -> None:
        tasks = te.tasks
        rid = te.resource_id
        in_slots = 0
        for slot in te.slots:
            for execution_id in slot.tasks:
                in_slots += 1
                task = tasks.get(execution_id)
                if task is None:
                    self.violation(
                        "slot-exclusive",
                        f"slot {rid}/{slot.index} lists task {_short(execution_id)} that "
                        f"TaskExecutor {rid} does not run",
                        key=f"{rid}/{slot.index}/{execution_id}",
                    )
                elif task.tdd.allocation_id != slot.allocation_id or task.tdd.job_id != slot.job_id:
                    tdd = task.tdd
                    self.violation(
                        "slot-exclusive",
                        f"slot {rid}/{slot.index} is held by allocation "
                        f"{_short(slot.allocation_id)} of {self._job_name(slot.job_id)} but runs "
                        f"{tdd.vertex}[{tdd.subtask}] of {self._job_name(tdd.job_id)} under "
                        f"allocation {_short(tdd.allocation_id)}",
                        key=f"{rid}/{slot.index}/{execution_id}",
                    )
        if in_slots != len(tasks):
            placed = {e for slot in te.slots for e in slot.tasks}
            for execution_id, task in tasks.items():
                if execution_id not in placed:
                    tdd = task.tdd
                    self.violation(
                        "slot-exclusive",
                        f"TaskExecutor {rid} runs {tdd.vertex}[{tdd.subtask}] of "
                        f"{self._job_name(tdd.job_id)} in no slot (allocation "
                        f"{_short(tdd.allocation_id)})",
                        key=f"{rid}/none/{execution_id}",
                    )
        known = self._te_tasks.get(te)
        if known is None:
            known = self._te_tasks[te] = set()
        if len(tasks) != len(known) or not known.issuperset(tasks):
            for execution_id in tasks.keys() - known:
                self._task_deployed(te, execution_id, now)
            self._te_tasks[te] = set(tasks)
        allocations = [slot.allocation_id for slot in te.slots]
        before = self._te_allocations.get(te)
        if before != allocations:
            for index, allocation_id in enumerate(allocations):
                if allocation_id is not None and (before is None or before[index] != allocation_id):
                    self._slot_allocated(te, index, allocation_id)
            self._te_allocations[te] = allocations

    def _task_deployed(self, te: TaskExecutor, execution_id: uuid.UUID, now: float) -> None:
        tdd = te.tasks[execution_id].tdd
        self._started[execution_id] = _Started(
            te.resource_id, now, tdd.vertex, tdd.subtask, tdd.attempt, tdd.duration
        )
        # which JobMaster deployed it: the one that created the execution
        candidates = self._jms.get(tdd.job_id.hex)
        if not candidates:
            self._job_master(tdd.job_id.hex)
            candidates = self._jms.get(tdd.job_id.hex) or []
        creator = next((jm for jm in reversed(candidates) if execution_id in jm._by_id), None)
        if creator is None and len(candidates) == 1:
            creator = candidates[0]  # an execution of an earlier attempt of the only leader
        if creator is None:
            return
        connection = te.jobs.get(tdd.job_id)
        followed = connection.token if connection is not None else None
        if followed != creator.fencing_token:
            self.violation(
                "fencing",
                f"TaskExecutor {te.resource_id} accepted {tdd.vertex}[{tdd.subtask}] of "
                f"{self._job_name(tdd.job_id)} from the JobMaster with token "
                f"{_short(creator.fencing_token)} while it follows the JobMaster leader "
                f"{_short(followed)}",
                key=f"task:{execution_id}",
            )

    def _slot_allocated(self, te: TaskExecutor, index: int, allocation_id: uuid.UUID) -> None:
        slot_id = SlotID(te.resource_id, index)
        for rm in reversed(self._rms):
            slot = rm.slots.get(slot_id)
            if slot is not None and slot.allocation_id == allocation_id:
                if rm.fencing_token != te.rm_token:
                    self.violation(
                        "fencing",
                        f"TaskExecutor {te.resource_id} accepted allocation "
                        f"{_short(allocation_id)} of slot {slot_id} from the ResourceManager "
                        f"with token {_short(rm.fencing_token)} while it follows the leader "
                        f"{_short(te.rm_token)}",
                        key=f"allocation:{allocation_id}",
                    )
                return

    # slot-exclusive and job-finished bookkeeping, at one JobMaster
    def check_job_master(self, jm: JobMaster, now: float) -> None:
        idle_at = self._idle_region_at.get(jm)
        if idle_at is None:
            idle_at = self._idle_region_at[jm] = {}
        pending = jm._pending
        if len(pending) < len(jm.topology.regions):
            for region in jm.topology.regions:
                if region.index not in pending:
                    idle_at[region.index] = now
        pool = jm.pool
        if len(pool) > 1:
            holders: dict[tuple[str, int], uuid.UUID] = {}
            for allocation_id, slot in pool.items():
                where = (slot.task_executor, slot.slot_index)
                other = holders.get(where)
                if other is not None:
                    self.violation(
                        "slot-exclusive",
                        f"the JobMaster of {jm.name} holds slot {where[0]}/{where[1]} under two "
                        f"allocations, {_short(other)} and {_short(allocation_id)}",
                        key=f"pool:{jm.job_id}:{where}",
                    )
                holders[where] = allocation_id
        # restarts and finishes are what can add a finished execution
        signature = (jm.restarts, jm.state_counts[ExecutionState.FINISHED])
        if self._signature.get(jm) != signature:
            self._signature[jm] = signature
            finished = self._finished.get(jm)
            if finished is None:
                finished = self._finished[jm] = {}
            for execution in jm.executions.values():
                if execution.state is not ExecutionState.FINISHED:
                    continue
                execution_id = execution.execution_id
                key = (execution.attempt, execution.vertex, execution.subtask)
                earlier = finished.get(key)
                if earlier is None and execution_id is not None:
                    finished[key] = execution_id
                    self._finished_at.setdefault(execution_id, now)
                elif earlier is not None and earlier != execution_id:
                    self.violation(
                        "job-finished",
                        f"{execution.vertex}[{execution.subtask}] of {jm.name} finished twice "
                        f"in attempt {execution.attempt} (executions {_short(earlier)} and "
                        f"{_short(execution_id)})",
                        key=f"twice:{jm.job_id}:{key}",
                    )

    def check_finished_job(self, jm: JobMaster, now: float) -> None:
        """When a job turns FINISHED: every subtask finished exactly once in its current
        attempt (attempts are per execution: a region restart gives its subtasks new ones),
        after running on a TaskExecutor for its whole duration."""
        self.check_job_master(jm, now)
        expected = {(v.name, s) for v in jm.job.vertices for s in range(v.parallelism)}
        problems: list[str] = []
        if set(jm.executions) != expected:
            problems.append(f"its executions are {sorted(jm.executions)}, not {sorted(expected)}")
        durations = {v.name: v.task_duration for v in jm.job.vertices}
        finished = self._finished.get(jm, {})
        for (vertex, subtask), execution in sorted(jm.executions.items()):
            name = f"{vertex}[{subtask}]"
            if execution.state is not ExecutionState.FINISHED:
                problems.append(f"{name} is {execution.state.value}")
                continue
            attempt = execution.attempt
            execution_id = execution.execution_id
            if execution_id is None or finished.get((attempt, vertex, subtask)) != execution_id:
                problems.append(f"{name} has no single finished execution in attempt {attempt}")
                continue
            started = self._started.get(execution_id)
            if started is None:
                problems.append(f"{name} finished without running on any TaskExecutor")
                continue
            if (started.vertex, started.subtask, started.attempt) != (vertex, subtask, attempt):
                problems.append(
                    f"{name}: the TaskExecutor ran {started.vertex}[{started.subtask}] of "
                    f"attempt {started.attempt} under the execution id of attempt {attempt}"
                )
            ran = self._finished_at.get(execution_id, now) - started.at
            if ran + _EPSILON < durations.get(vertex, 0.0):
                problems.append(
                    f"{name} finished {ran:.3f} s after its deployment to "
                    f"{started.task_executor}, before its duration of {durations[vertex]:g} s"
                )
        if problems:
            self.violation(
                "job-finished",
                f"{jm.name} is FINISHED but not every subtask finished exactly once in its "
                "current attempt: " + "; ".join(problems[:4]),
                "\n".join(problems),
                key=f"finished:{jm.job_id}:{jm.fencing_token}",
            )

    # region-whole, slot-reuse, restart-accounting and slot-request-timeout, at one JobMaster
    def check_scheduling(self, jm: JobMaster, now: float) -> None:
        """After the JobMaster handled a call (between calls its state is whole): regions are
        deployed whole into their groups' slots, free slots serve waiting regions and idle
        ones go back, every failure is accounted for, and no region waits for slots that
        cannot come beyond the slot request timeout."""
        status = jm.status
        if status.is_globally_terminal:
            return
        live = status is JobStatus.RUNNING or status is JobStatus.RESTARTING
        pool = jm.pool
        if jm.restarts > jm.job.restart.attempts:
            self.violation(
                "restart-accounting",
                f"{jm.name} counts {jm.restarts} restarts, more than the "
                f"{jm.job.restart.attempts} its fixed-delay strategy allows",
                key=f"budget:{jm.job_id}:{jm.fencing_token}",
            )
        signature = (
            jm.restarts,
            len(pool),
            len(jm._pending),
            len(jm._restarts_pending),
            *jm.state_counts.values(),
        )
        if len(jm.executions) <= _FULL_SCAN_LIMIT or self._region_signature.get(jm) != signature:
            self._region_signature[jm] = signature
            self._check_regions(jm, live)
        if not live:
            return
        free = [slot for slot in pool.values() if slot.group is None]
        if free and jm._pending and jm.pending_slots:
            self.violation(
                "slot-reuse",
                f"the JobMaster of {jm.name} keeps {len(free)} free slot(s) in its pool while "
                f"waiting regions lack {jm.pending_slots}",
                key=f"unused:{jm.job_id}:{jm.fencing_token}",
            )
        if free and len(pool) > jm.required:
            idle = self.config.slot_idle_timeout
            clock = trio.current_time()
            for slot in free:
                if clock - slot.free_since > 2 * idle + _EPSILON:
                    self.violation(
                        "slot-reuse",
                        f"the JobMaster of {jm.name} holds {len(pool)} slot(s) for a demand of "
                        f"{jm.required}, and slot {slot.task_executor}/{slot.slot_index} has "
                        f"been idle for {clock - slot.free_since:.3f} s (slot idle timeout "
                        f"{idle:g} s)",
                        key=f"hoard:{jm.job_id}:{slot.allocation_id}:{slot.free_since}",
                    )
        self._check_waiting_bulks(jm, now)

    def _check_regions(self, jm: JobMaster, live: bool) -> None:
        restarting = {index for restart in jm._restarts_pending for index in restart.regions}
        pool = jm.pool
        applied = highest = 0
        for region in jm.topology.regions:
            executions = [jm.executions[v] for v in region.vertices]
            attempt = executions[0].attempt
            applied += attempt
            highest = max(highest, attempt)
            where = f"region {region.index} of {jm.name}"
            names = ", ".join(f"{e.vertex}[{e.subtask}]#{e.attempt}" for e in executions[:6])
            if any(e.attempt != attempt for e in executions):
                self.violation(
                    "region-whole",
                    f"{where} runs its subtasks in different attempts ({names})",
                    key=f"attempts:{jm.job_id}:{jm.fencing_token}:{region.index}",
                )
            waiting = [e for e in executions if e.state in _WAITING]
            deployed = [e for e in executions if e.state in _DEPLOYED]
            if waiting and deployed:
                self.violation(
                    "region-whole",
                    f"{where} is deployed in part: {deployed[0].vertex}[{deployed[0].subtask}] "
                    f"is {deployed[0].state.value} while {waiting[0].vertex}"
                    f"[{waiting[0].subtask}] is {waiting[0].state.value}",
                    key=f"partial:{jm.job_id}:{jm.fencing_token}:{region.index}:{attempt}",
                )
            for execution in executions:
                if execution.state in _IN_SLOT:
                    slot = pool.get(execution.allocation_id) if execution.allocation_id else None
                    if (
                        slot is None
                        or slot.group != execution.subtask
                        or slot.task_executor != execution.task_executor
                    ):
                        held = (
                            "no slot of the pool"
                            if slot is None
                            else f"a slot of group {slot.group} on {slot.task_executor}"
                        )
                        self.violation(
                            "region-whole",
                            f"{execution.vertex}[{execution.subtask}] of {jm.name} is "
                            f"{execution.state.value} in {held}, not in the slot of its slot "
                            f"sharing group {execution.subtask}",
                            key=f"slot:{jm.job_id}:{execution.execution_id}",
                        )
                elif (
                    live
                    and execution.state in (ExecutionState.FAILED, ExecutionState.CANCELED)
                    and region.index not in restarting
                ):
                    self.violation(
                        "restart-accounting",
                        f"{execution.vertex}[{execution.subtask}] of {jm.name} is "
                        f"{execution.state.value} in a {jm.status.value} job, and its region "
                        f"{region.index} waits for no restart",
                        key=f"dropped:{jm.job_id}:{execution.execution_id or id(execution)}",
                    )
        restarted = highest if jm.job.failover_strategy == "full" else applied
        if restarted > jm.restarts:
            self.violation(
                "restart-accounting",
                f"{jm.name} restarted its regions {restarted} time(s) (region attempts "
                f"{_region_attempts(jm)}) but counts {jm.restarts} restart(s)",
                key=f"uncounted:{jm.job_id}:{jm.fencing_token}:{restarted}",
            )

    def _check_waiting_bulks(self, jm: JobMaster, now: float) -> None:
        """A region that the whole pool could not serve must fail within twice the slot
        request timeout (the JobMaster checks once per timeout)."""
        seen = self._unfulfillable.get(jm)
        if seen is None:
            seen = self._unfulfillable[jm] = {}
        pending = jm._pending
        for index in [i for i in seen if i not in pending]:
            del seen[index]
        held = len(jm.pool)
        bound = 2 * self.config.slot_request_timeout
        for index, bulk in pending.items():
            if bulk.region.slots <= held:
                seen.pop(index, None)
                continue
            since = seen.get(index)
            if since is None or since[0] is not bulk:
                seen[index] = (bulk, now)
            elif now - since[1] > bound + _EPSILON:
                self.violation(
                    "slot-request-timeout",
                    f"region {index} of {jm.name} has waited {now - since[1]:.3f} s for "
                    f"{bulk.region.slots} slot(s) with {held} in the pool, beyond twice the slot "
                    f"request timeout of {self.config.slot_request_timeout:g} s",
                    key=f"waits:{jm.job_id}:{id(bulk)}",
                )

    def check_no_resource_failure(self, jm: JobMaster, message: str, now: float) -> None:
        """A region failed for want of slots: by its bulk's timeout, only after waiting that
        long with more slots than the pool holds; by the ResourceManager's word, only once a
        ResourceManager leader was past its start-up period."""
        timeout = self.config.slot_request_timeout
        if message.startswith(_NOT_ENOUGH_PREFIX):
            grown = any(
                (end if end is not None else now) - start >= timeout - _EPSILON
                and (end is None or end >= now - _TELL_GRACE)
                for start, end in self._rm_tenures
            )
            if not grown:
                start = self._rm_tenures[-1][0]
                self.violation(
                    "slot-request-timeout",
                    f"{jm.name} failed a region with NoResourceAvailableException on the word of "
                    f"a ResourceManager leader {now - start:.3f} s old, within its start-up "
                    f"period of {timeout:g} s",
                    key=f"startup:{jm.job_id}:{now}",
                )
            return
        if not message.startswith(_BULK_TIMEOUT_PREFIX):
            return
        restarting = {index for restart in jm._restarts_pending for index in restart.regions}
        idle_at = self._idle_region_at.get(jm, {})
        for execution in jm.executions.values():
            if execution.state is not ExecutionState.FAILED or execution.region in restarting:
                continue  # not the execution failing now
            region = jm.topology.regions[execution.region]
            began = idle_at.get(region.index, jm.started_at)
            if now - began + _EPSILON < timeout:
                self.violation(
                    "slot-request-timeout",
                    f"region {region.index} of {jm.name} failed with NoResourceAvailableException "
                    f"{now - began:.3f} s after it began waiting for slots, before the slot "
                    f"request timeout of {timeout:g} s",
                    key=f"early:{jm.job_id}:{execution.execution_id or id(execution)}",
                )
            elif region.slots <= len(jm.pool):
                self.violation(
                    "slot-request-timeout",
                    f"region {region.index} of {jm.name} failed for its slot request timeout "
                    f"although the pool holds {len(jm.pool)} slot(s) for its {region.slots}",
                    key=f"fulfillable:{jm.job_id}:{execution.execution_id or id(execution)}",
                )

    def check_failed_job(self, jm: JobMaster) -> None:
        """A JobMaster fails its job only when the restart strategy allows no more restarts."""
        if jm.restarts < jm.job.restart.attempts:
            self.violation(
                "restart-accounting",
                f"{jm.name} is FAILED after {jm.restarts} of the {jm.job.restart.attempts} "
                "restarts its fixed-delay strategy allows",
                key=f"failed:{jm.job_id}:{jm.fencing_token}",
            )

    # fencing at fenced endpoints
    def check_fenced_receiver(self, endpoint_id: str) -> None:
        """An ok call at a fenced endpoint passed its token check, so it carried the
        endpoint's token: that token must be the published leader's (or leadership revoked
        with no successor yet)."""
        endpoint: RpcEndpoint | None = None
        for service in self.cluster._services:
            endpoint = service.lookup_endpoint(endpoint_id)
            if endpoint is not None:
                break
        if not isinstance(endpoint, FencedRpcEndpoint):
            return
        leader = self.cluster.ha.leader(endpoint_id)
        if leader is not None and leader[1] != endpoint.fencing_token:
            self.violation(
                "fencing",
                f"{endpoint_id} acted on a call carrying token {_short(endpoint.fencing_token)} "
                f"while {_short(leader[1])} is the leader's",
                key=f"fenced:{endpoint_id}:{endpoint.fencing_token}",
            )

    # lost TaskExecutors
    def _track_lost(self, now: float) -> None:
        registered = self.cluster.resource_manager.task_executors.keys()
        if registered != self._rm_registered:
            live = self.cluster.task_executors
            for rid in self._rm_registered - registered:
                te = live.get(rid)
                if te is not None and te.registration_state != "stopped":
                    self._lost_since[rid] = now
            for rid in registered - self._rm_registered:
                self._lost_since.pop(rid, None)
            self._rm_registered = set(registered)

    def check_lost_task_executors(self, now: float) -> None:
        bound = self.config.heartbeat_timeout + self.config.heartbeat_interval
        for rid, since in list(self._lost_since.items()):
            te = self.cluster.task_executors.get(rid)
            if te is None or te.registration_state == "stopped":
                del self._lost_since[rid]
            elif now - since > bound + _EPSILON and te.tasks:
                del self._lost_since[rid]
                names = ", ".join(
                    f"{t.tdd.vertex}[{t.tdd.subtask}] of {self._job_name(t.tdd.job_id)}"
                    for t in list(te.tasks.values())[:3]
                )
                self.violation(
                    "lost-task-executor",
                    f"TaskExecutor {rid} still runs {len(te.tasks)} task(s) ({names}) "
                    f"{now - since:.3f} s after the ResourceManager declared it lost (heartbeat "
                    f"timeout {self.config.heartbeat_timeout:g} s, interval "
                    f"{self.config.heartbeat_interval:g} s)",
                    key=f"{rid}:{since}",
                )

    # asks
    def _check_asks(self) -> None:
        asks = self._asks
        now = trio.current_time()
        while asks:
            deadline, _, reply = asks[0]
            if reply._done:
                heapq.heappop(asks)
            elif deadline + _EPSILON < now:
                heapq.heappop(asks)
                self.violation(
                    "ask-reply",
                    f"an ask is still waiting for its reply {now - deadline:.3f} s after its "
                    f"timeout ({self._describe_reply(reply)})",
                    key=f"ask:{id(reply)}:{deadline}",
                )
            else:
                return

    def _describe_reply(self, reply: Reply) -> str:
        for found, describe, _ in _waiting_asks():
            if found is reply:
                return describe
        return "no task waits for it any more"

    # --- at quiescence ----------------------------------------------------------------------

    def check_quiet(self) -> None:
        """Full scan, for a quiet cluster: the ResourceManager, the TaskExecutors and the
        JobMasters agree on every slot; asks are answered."""
        cluster = self.cluster
        rm = cluster.resource_manager
        live = cluster.task_executors
        store = cluster.store
        now = cluster.events.now()
        self._check_asks()
        for te in live.values():
            self.check_task_executor(te, now)
        for job_record in store.jobs.values():
            if job_record.job_master is not None:
                self.check_scheduling(job_record.job_master, now)
        for rid, te in live.items():
            record = rm.task_executors.get(rid)
            if record is None:
                self.violation(
                    "slot-agreement",
                    f"TaskExecutor {rid} runs but is not registered at the ResourceManager "
                    f"(it is {te.registration_state})",
                    key=f"unregistered:{rid}",
                )
                continue
            if te.registration_state != "registered" or te.instance_id != record.instance_id:
                self.violation(
                    "slot-agreement",
                    f"TaskExecutor {rid} is {te.registration_state} with instance "
                    f"{_short(te.instance_id)}, the ResourceManager has it registered as "
                    f"{_short(record.instance_id)}",
                    key=f"instance:{rid}",
                )
            for slot in te.slots:
                slot_id = SlotID(rid, slot.index)
                rm_slot = rm.slots.get(slot_id)
                if rm_slot is None:
                    self.violation(
                        "slot-agreement",
                        f"the ResourceManager does not know slot {slot_id}",
                        key=f"noslot:{slot_id}",
                    )
                    continue
                te_view = (
                    ("FREE", None, None)
                    if slot.state is SlotState.FREE
                    else ("ALLOCATED", slot.job_id, slot.allocation_id)
                )
                rm_view = (rm_slot.state, rm_slot.job_id, rm_slot.allocation_id)
                if te_view != rm_view:
                    self.violation(
                        "slot-agreement",
                        f"slot {slot_id}: TaskExecutor {rid} has it {_slot_text(*te_view, self)}, "
                        f"the ResourceManager {_slot_text(*rm_view, self)}",
                        key=f"rm:{slot_id}:{te_view}:{rm_view}",
                    )
        for rid in rm.task_executors:
            if rid not in live:
                self.violation(
                    "slot-agreement",
                    f"the ResourceManager still has TaskExecutor {rid} registered, which is "
                    f"{cluster.te_states.get(rid, 'gone')}",
                    key=f"ghost:{rid}",
                )
        holders: dict[tuple[str, int], list[str]] = {}
        for job_record in store.jobs.values():
            jm = job_record.job_master
            if jm is None:
                continue
            for allocation_id, pool_slot in jm.pool.items():
                where = (pool_slot.task_executor, pool_slot.slot_index)
                holders.setdefault(where, []).append(f"{jm.name} ({_short(allocation_id)})")
                host = live.get(pool_slot.task_executor)
                held = (
                    host.slots[pool_slot.slot_index]
                    if host is not None and 0 <= pool_slot.slot_index < len(host.slots)
                    else None
                )
                if held is None or held.allocation_id != allocation_id or held.job_id != jm.job_id:
                    at_te = (
                        f"TaskExecutor {pool_slot.task_executor} is "
                        f"{cluster.te_states.get(pool_slot.task_executor, 'gone')}"
                        if host is None
                        else f"the TaskExecutor has it "
                        f"{_slot_text(*_te_slot_view(held), self) if held else 'not at all'}"
                    )
                    self.violation(
                        "slot-agreement",
                        f"the JobMaster of {jm.name} holds slot {where[0]}/{where[1]} under "
                        f"allocation {_short(allocation_id)}, but {at_te}",
                        key=f"jm:{jm.job_id}:{allocation_id}",
                    )
            required = rm.requirements.get(jm.job_id)
            if jm.status.is_globally_terminal and required:
                self.violation(
                    "slot-agreement",
                    f"the ResourceManager still wants {required} slot(s) for {jm.name}, "
                    f"which is {jm.status.value}",
                    key=f"requirement:{jm.job_id}",
                )
        for where, names in holders.items():
            if len(names) > 1:
                self.violation(
                    "slot-exclusive",
                    f"slot {where[0]}/{where[1]} is held by {len(names)} allocations at once: "
                    + ", ".join(names),
                    key=f"holders:{where}",
                )
        for rid, te in live.items():
            for slot in te.slots:
                if slot.job_id is None:
                    continue
                owner = store.jobs.get(slot.job_id)
                jm = owner.job_master if owner is not None else None
                if jm is None:
                    status = owner.status.value if owner is not None else "unknown"
                    self.violation(
                        "slot-agreement",
                        f"TaskExecutor {rid} still holds slot {rid}/{slot.index} for "
                        f"{self._job_name(slot.job_id)}, which is {status} and has no JobMaster",
                        key=f"orphan:{rid}/{slot.index}:{slot.allocation_id}",
                    )
                elif slot.allocation_id not in jm.pool:
                    self.violation(
                        "slot-agreement",
                        f"TaskExecutor {rid} holds slot {rid}/{slot.index} for {jm.name} "
                        f"(allocation {_short(slot.allocation_id)}), but its JobMaster does not",
                        key=f"unpooled:{rid}/{slot.index}:{slot.allocation_id}",
                    )
        for job_id, required in rm.requirements.items():
            wanted = store.jobs.get(job_id)
            if wanted is None or wanted.status.is_globally_terminal:
                self.violation(
                    "slot-agreement",
                    f"the ResourceManager still wants {required} slot(s) for "
                    f"{self._job_name(job_id)}, which has ended",
                    key=f"requirement:{job_id}",
                )

    def check_final(self) -> None:
        """Once every job has ended and the cluster settled: nothing is held, nothing runs,
        no JobMaster is left, and no ask without a timeout waits."""
        cluster = self.cluster
        self.check_quiet()
        for record in cluster.store.jobs.values():
            if not record.status.is_globally_terminal:
                return  # not final yet: a wait step reports the job
        for rid, te in cluster.task_executors.items():
            for slot in te.slots:
                orphan = f"slot-agreement:orphan:{rid}/{slot.index}:{slot.allocation_id}"
                if slot.state is not SlotState.FREE and orphan not in self._reported:
                    self.violation(
                        "slot-agreement",
                        f"slot {rid}/{slot.index} is still {slot.state.value} for "
                        f"{self._job_name(slot.job_id)} after every job ended",
                        key=f"final:{rid}/{slot.index}",
                    )
        for service in cluster._services:
            for endpoint in service.endpoints:
                if isinstance(endpoint, JobMaster):
                    self.violation(
                        "slot-agreement",
                        f"the JobMaster of {endpoint.name} still runs ({endpoint.status.value}) "
                        "after its job ended",
                        key=f"jm-left:{endpoint.job_id}:{endpoint.fencing_token}",
                    )
        for _, describe, timeout in _waiting_asks():
            if timeout is None or math.isinf(timeout):
                self.violation(
                    "ask-reply",
                    f"{describe} has no timeout and is still waiting for its reply at quiescence",
                    key=f"forever:{describe}",
                )

    # --- diagnosis ------------------------------------------------------------------------

    def job_diagnosis(self, job_name: str) -> str:
        cluster = self.cluster
        job_id = cluster.store.by_name.get(job_name)
        record = cluster.store.jobs.get(job_id) if job_id is not None else None
        if record is None or job_id is None:
            return f"job {job_name} is not known"
        rm = cluster.resource_manager
        seen = self._jms.get(job_id.hex)
        jm = record.job_master or (seen[-1] if seen else None)
        lines = [f"job {job_name}: {record.status.value}, {record.failovers} JobMaster failover(s)"]
        if jm is not None:
            counts = {s.value: n for s, n in jm.state_counts.items() if n}
            lines.append(
                f"JobMaster {_short(jm.fencing_token)}: {jm.status.value}, "
                f"restarts {jm.restarts}/{jm.job.restart.attempts}, region attempts "
                f"{_region_attempts(jm)}, pool {len(jm.pool)}/{jm.required} slot(s) "
                f"({jm.pending_slots} pending), tasks {counts}, task managers "
                f"{sorted(jm.task_managers)}, registered at the ResourceManager: "
                f"{jm.rm_gateway is not None}"
            )
            failure = self.last_failure.get(jm.endpoint_id)
            if failure:
                lines.append(f"last failure: {failure}")
        lines.append(
            f"ResourceManager: requirement {rm.requirements.get(job_id)}, registered JobMaster "
            f"{job_id in rm.job_masters}, {sum(s.state == 'FREE' for s in rm.slots.values())} "
            f"free of {len(rm.slots)} slot(s), TaskExecutors {sorted(rm.task_executors)}"
        )
        return "\n".join(lines)


def _region_attempts(jm: JobMaster) -> list[int]:
    """The attempt of each pipelined region (that of its first subtask)."""
    return [jm.executions[region.vertices[0]].attempt for region in jm.topology.regions]


def _te_slot_view(slot: Any) -> tuple[str, uuid.UUID | None, uuid.UUID | None]:
    if slot.state is SlotState.FREE:
        return ("FREE", None, None)
    return ("ALLOCATED", slot.job_id, slot.allocation_id)


def _slot_text(
    state: str, job_id: uuid.UUID | None, allocation_id: uuid.UUID | None, checker: Any
) -> str:
    if state == "FREE" and job_id is None:
        return "FREE"
    owner = checker._job_name(job_id) if job_id is not None else "no job"
    return f"{state} for {owner} (allocation {_short(allocation_id)})"


def _waiting_asks() -> Iterator[tuple[Reply, str, float | None]]:
    """Every task of this trio run that waits in ``Reply.wait`` for an unsettled reply: the
    reply, what the ask was, and its timeout."""
    root = trio.lowlevel.current_root_task()
    stack = [root] if root is not None else []
    while stack:
        task = stack.pop()
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
        awaitable: Any = task.coro
        for _ in range(200):
            if awaitable is None:
                break
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is not None and frame.f_code is _REPLY_WAIT_CODE:
                local = frame.f_locals
                reply = local.get("self")
                if isinstance(reply, Reply) and not reply._done:
                    describe = local.get("describe")
                    text = describe() if callable(describe) else "an ask"
                    yield reply, str(text), local.get("timeout")
                break
            awaitable = getattr(awaitable, "cr_await", None) or getattr(
                awaitable, "gi_yieldfrom", None
            )
