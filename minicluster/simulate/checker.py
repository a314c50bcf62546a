"""The invariant checker: watches a running cluster and reports every violation of the invariants
that the package's docstring lists, after every event and at quiescence.

InvariantChecker keeps the state (declared in checker_state) and the event hook, the full scans
at quiescence and the diagnosis; the checks after every event come from one mixin per family:
slot_checks (slot-exclusive, fencing, job-finished), scheduling_checks (region-whole,
slot-reuse, restart-accounting, slot-request-timeout) and liveness_checks (lost-task-executor,
ask-reply).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import trio

from minicluster.cluster import MiniCluster
from minicluster.cluster.components import (
    DISPATCHER,
    RESOURCE_MANAGER,
    job_of,
    task_executor_of,
)
from minicluster.cluster.context import Event
from minicluster.cluster.jobmaster import JobMaster
from minicluster.cluster.model import JobStatus, SlotID, SlotState
from minicluster.cluster.resourcemanager import ResourceManager
from minicluster.cluster.snapshot import JobSnapshot
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc import RpcService
from minicluster.rpc.reply import Reply
from minicluster.simulate.checker_state import (
    _BULK_TIMEOUT_PREFIX,
    _DEPLOYED,
    _EPSILON,
    _FULL_SCAN_LIMIT,
    _IN_SLOT,
    _NOT_ENOUGH_PREFIX,
    _REPLY_WAIT_CODE,
    _TELL_GRACE,
    _WAITING,
    CheckerState,
    _region_attempts,
    _short,
    _slot_text,
    _Started,
    _te_slot_view,
    _waiting_asks,
)
from minicluster.simulate.liveness_checks import LivenessChecks
from minicluster.simulate.scheduling_checks import SchedulingChecks
from minicluster.simulate.slot_checks import SlotChecks

# the names of the checker's modules stay importable from here, as before the split
__all__ = [
    "InvariantChecker",
    "_BULK_TIMEOUT_PREFIX",
    "_DEPLOYED",
    "_EPSILON",
    "_FULL_SCAN_LIMIT",
    "_IN_SLOT",
    "_NOT_ENOUGH_PREFIX",
    "_REPLY_WAIT_CODE",
    "_TELL_GRACE",
    "_WAITING",
    "CheckerState",
    "_Started",
    "_region_attempts",
    "_short",
    "_slot_text",
    "_te_slot_view",
    "_waiting_asks",
]


# which invariants each check after an event (or at quiescence) looks after: a run "exercised"
# an invariant when one of its checks ran on an event that could break it
_TASK_EXECUTOR_CHECKS = ("slot-exclusive", "fencing")
_JOB_MASTER_CHECKS = ("slot-exclusive", "job-finished")
_SCHEDULING_CHECKS = ("region-whole", "slot-reuse", "restart-accounting", "slot-request-timeout")
_QUIET_CHECKS = ("slot-agreement", "slot-exclusive", "ask-reply")
_JOB_STATUS_REACHED = {status.value: status for status in JobStatus}


class InvariantChecker(SlotChecks, SchedulingChecks, LivenessChecks):
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
        self._job_views: dict[JobMaster, JobSnapshot] = {}  # per event: see job_view
        # coverage: the invariants whose check ran on a relevant event, and the states seen
        # (enum members, so that recording one is a set insertion and nothing more)
        self.exercised: set[str] = set()
        self.states_seen: set[enum.Enum] = set()
        self._hook_services()

    # --- hooks ----------------------------------------------------------------------------

    def _hook_services(self) -> None:
        for service in self.cluster.services:
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
        if (
            event.outcome == "ok"
            and (method := event.method) is not None
            and (
                method == "heartbeat_from_resource_manager"
                or (method == "heartbeat_from_job_manager" and event.receiver == RESOURCE_MANAGER)
            )
        ):
            # a heartbeat request from the ResourceManager, or a JobMaster's answer to it,
            # changes nothing but a timestamp: the next event's checks see the same state
            return
        self._job_views.clear()
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
        exercised = self.exercised
        if self._asks:
            exercised.add("ask-reply")
            self._check_asks()
        if cluster.resource_manager is not self._rms[-1]:
            self._rms.append(cluster.resource_manager)
            self._rm_tenures[-1] = (self._rm_tenures[-1][0], now)
            self._rm_tenures.append((now, None))
            self._rm_registered = set(cluster.resource_manager.task_executors)
            self._lost_since.clear()  # a new leader considers nobody lost
        if len(cluster.services) != len(self._hooked):
            self._hook_services()
        kind = event.kind
        sender_job = job_of(event.sender)
        if (
            kind == "failure"
            and sender_job is not None
            and event.message.startswith("NoResourceAvailableException: ")
        ):
            failing = self._job_master(sender_job)
            if failing is not None:
                exercised.add("slot-request-timeout")
                self.check_no_resource_failure(failing, event.message, now)
        for endpoint_id in (event.sender, event.receiver):
            if endpoint_id is None:
                continue
            resource_id = task_executor_of(endpoint_id)
            job = job_of(endpoint_id) if resource_id is None else None
            if resource_id is not None:
                te = cluster.task_executors.get(resource_id)
                if te is not None:
                    exercised.update(_TASK_EXECUTOR_CHECKS)
                    self.check_task_executor(te, now)
            elif job is not None:
                jm = self._job_master(job)
                if jm is not None:
                    exercised.update(_JOB_MASTER_CHECKS)
                    self.check_job_master(jm, now)
            elif endpoint_id == RESOURCE_MANAGER:
                self._track_lost(now)
        if kind == "rpc" or kind == "tell":
            receiver = event.receiver
            receiver_job = job_of(receiver)
            if (
                receiver is not None
                and event.outcome == "ok"
                and (receiver in (RESOURCE_MANAGER, DISPATCHER) or receiver_job is not None)
            ):
                exercised.add("fencing")
                self.check_fenced_receiver(receiver)
            if receiver_job is not None:
                # the JobMaster has handled a call: its state is whole again
                handled = self._job_master(receiver_job)
                if handled is not None:
                    exercised.update(_SCHEDULING_CHECKS)
                    self.check_scheduling(handled, now)
        elif kind == "job" and event.sender is not None:
            status = _JOB_STATUS_REACHED.get(event.message.rpartition(" -> ")[2])
            if status is not None:
                self.states_seen.add(status)
            if (
                event.message.endswith(("-> FINISHED", "-> FAILED", "-> CANCELED"))
                and sender_job is not None
            ):
                self.job_ended_at = now
                ended = self._job_master(sender_job)
                if ended is not None and event.message.endswith("-> FINISHED"):
                    exercised.add("job-finished")
                    self.check_finished_job(ended, now)
                elif ended is not None and event.message.endswith("-> FAILED"):
                    exercised.add("restart-accounting")
                    self.check_failed_job(ended)
        elif kind == "failure" and event.sender is not None:
            self.last_failure[event.sender] = event.message
        if self._lost_since:
            exercised.add("lost-task-executor")
            self.check_lost_task_executors(now)

    # --- at quiescence ----------------------------------------------------------------------

    def check_quiet(self) -> None:
        """Full scan, for a quiet cluster: the ResourceManager, the TaskExecutors and the
        JobMasters agree on every slot; asks are answered."""
        cluster = self.cluster
        rm = cluster.resource_manager
        live = cluster.task_executors
        store = cluster.store
        now = cluster.events.now()
        self._job_views.clear()
        self.exercised.update(_QUIET_CHECKS)
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
                        f"{self.job_name(slot.job_id)}, which is {status} and has no JobMaster",
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
                    f"{self.job_name(job_id)}, which has ended",
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
                        f"{self.job_name(slot.job_id)} after every job ended",
                        key=f"final:{rid}/{slot.index}",
                    )
        for service in cluster.services:
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
