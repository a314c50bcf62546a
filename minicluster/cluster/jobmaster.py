"""The JobMaster: one per job. Its slot pool, region scheduling, failover and connections share
one state machine, as Flink's JobMaster, DefaultScheduler and DeclarativeSlotPoolBridge do; the
pieces live in modules of their own: the state records and constants in jobmaster_state.py, the
slot pool and scheduling by pipelined region in slot_pool.py (SlotPoolMixin), failures and
restarts in failover.py (FailoverMixin); this module keeps the endpoint itself: its lifecycle, the
ResourceManager connection, TaskExecutors, ending and queries.

The JobMaster registers at the ResourceManager, declares the slots its job needs,
keeps the slots TaskExecutors offer in its slot pool, schedules the job by pipelined region (each
region's slots as one bulk), reuses a slot once its tasks are done, follows task states and
restarts failed regions with a fixed delay (Flink's JobMaster, DefaultScheduler,
PipelinedRegionSchedulingStrategy, DeclarativeSlotPool and FixedDelayRestartBackoffTimeStrategy).

How slots flow, as in Flink:

- every region waiting for slots is a *bulk*: it asks for one slot per slot sharing group
  (subtask index) it runs; the job declares to the ResourceManager as many slots as there are
  groups in use or waited for, and lowers the declaration as groups finish;
- an offered slot is accepted while the pool holds fewer slots than declared; a free slot in the
  pool goes to the oldest bulk that lacks one, and a bulk is deployed once it has all its slots;
- a group's slot goes back to the pool when its last task ends, and serves the next bulk;
- a slot the pool no longer needs goes back to its TaskExecutor after `slot_idle_timeout`, and all
  of them when the job ends;
- a bulk that cannot be fulfilled even with every slot of the pool for `slot_request_timeout`
  fails with NoResourceAvailableError (Flink's PhysicalSlotRequestBulkChecker), and so do all
  waiting bulks when the ResourceManager says it cannot meet the requirements.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import trio

from minicluster.rpc import FencedRpcEndpoint, ask_with_callback
from minicluster.rpc.endpoint_host import EndpointHost

from .components import RESOURCE_MANAGER, job_master_endpoint
from .context import ClusterContext
from .failover import FailoverMixin
from .gateways import JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway
from .heartbeat import HeartbeatSender, HeartbeatTimeout, OnDone
from .jobmaster_state import (
    _HOLDS_SLOT,
    _REPORTED_FROM,
    BULK_TIMEOUT,
    MAX_LISTED_TASKS,
    NOT_ENOUGH_RESOURCES,
    Execution,
    _Bulk,
    _PendingRestart,
    _PoolSlot,
    _TaskManager,
)
from .model import (
    AllocatedSlotInfo,
    AllocatedSlotReport,
    ExecutionState,
    JobGraph,
    JobNotFoundError,
    JobStatus,
    RegistrationResponse,
    TaskExecutorToJobManagerHeartbeatPayload,
)
from .slot_pool import SlotPoolMixin
from .snapshot import (
    ExecutionSnapshot,
    JobSnapshot,
    PendingRequestSnapshot,
    SlotAssignmentSnapshot,
)
from .topology import ExecutionVertexId, build_topology

# names that tests and the simulator import from here, where they lived before the split
__all__ = [
    "BULK_TIMEOUT",
    "MAX_LISTED_TASKS",
    "NOT_ENOUGH_RESOURCES",
    "_HOLDS_SLOT",
    "_REPORTED_FROM",
    "Execution",
    "JobMaster",
    "_Bulk",
    "_PendingRestart",
    "_PoolSlot",
    "_TaskManager",
]


class JobMaster(SlotPoolMixin, FailoverMixin, FencedRpcEndpoint, JobMasterGateway):
    def __init__(
        self,
        service: EndpointHost,  # the Dispatcher's service: JobMasters live where it lives
        context: ClusterContext,
        token: uuid.UUID,
        job_graph: JobGraph,
        on_status: Callable[[JobMaster, JobStatus], None],
    ) -> None:
        super().__init__(service, token, job_master_endpoint(job_graph.job_id))
        self.context = context
        self.config = context.config
        self.job = job_graph
        self.job_id = job_graph.job_id
        self.topology = build_topology(job_graph)
        self.status = JobStatus.CREATED
        self._on_status = on_status
        # failures the restart strategy allowed (Flink's FixedDelayRestartBackoffTimeStrategy
        # counts every failure that restarts something, region by region)
        self.restarts = 0
        self.failure_cause: str | None = None
        # the slot pool
        self.pool: dict[uuid.UUID, _PoolSlot] = {}
        self._pool_by_place: dict[tuple[str, int], _PoolSlot] = {}  # (TaskExecutor, slot index)
        self._free: dict[uuid.UUID, _PoolSlot] = {}  # pool slots no group uses, oldest first
        self._group_slot: dict[int, _PoolSlot] = {}
        # per slot sharing group: the waiting bulks that need it plus its slot-holding tasks;
        # a group is in demand while this is above zero
        self._group_users: dict[int, int] = {}
        self._pending: dict[int, _Bulk] = {}  # region index -> its bulk, oldest first
        self._restarts_pending: list[_PendingRestart] = []
        self._idle_check_scheduled = False
        # executions: the current attempt of each subtask, and every live one by id
        self.executions: dict[ExecutionVertexId, Execution] = {}
        self.state_counts: dict[ExecutionState, int] = dict.fromkeys(ExecutionState, 0)
        self._by_id: dict[uuid.UUID, Execution] = {}
        self.task_managers: dict[str, _TaskManager] = {}
        self.rm_gateway: ResourceManagerGateway | None = None
        self.rm_token: uuid.UUID | None = None
        self.rm_last_heartbeat = 0.0
        self._rm_heartbeat_timeout = HeartbeatTimeout(
            self, self.config.heartbeat_timeout, self._rm_heartbeat_timed_out
        )
        self._declared: int | None = None
        self._declaring = False
        self._unwatch_rm: Any = None
        self.started_at = context.events.now()
        self.ended_at: float | None = None
        self._tm_heartbeats = HeartbeatSender(
            self,
            self.config.heartbeat_interval,
            self.config.heartbeat_timeout,
            self.config.heartbeat_rpc_failure_threshold,
            self._request_tm_heartbeat,
            self._task_manager_lost,
            self._tm_heartbeat_payload,
        )
        for region in self.topology.regions:
            for vertex, subtask in region.vertices:
                execution = Execution(vertex, subtask, 0, region.index)
                self.executions[(vertex, subtask)] = execution
        self.state_counts[ExecutionState.CREATED] = len(self.executions)

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def required(self) -> int:
        """Slots the job needs now: every slot sharing group in use or waited for."""
        return len(self._group_users)

    @property
    def pending_slots(self) -> int:
        """Slots waiting bulks still lack (what views show as the job's pending demand)."""
        return sum(
            1
            for bulk in self._pending.values()
            for group in bulk.region.groups
            if group not in self._group_slot
        )

    @property
    def _live(self) -> bool:
        """Running, or restarting some of its regions: tasks may run, fail and get slots."""
        return self.status is JobStatus.RUNNING or self.status is JobStatus.RESTARTING

    def _emit(self, kind: str, message: str) -> None:
        self.context.emit(kind, message, sender=self.endpoint_id)

    def _set_status(self, status: JobStatus) -> None:
        if status is self.status:
            return
        self._emit("job", f"job {self.name} {self.status.value} -> {status.value}")
        self.status = status
        if status.is_globally_terminal:
            self.ended_at = self.context.events.now()
        self._on_status(self, status)

    def _transition(self, execution: Execution, state: ExecutionState) -> None:
        """Every state change goes here: counts stay exact without a scan, and a slot sharing
        group counts the tasks that hold its slot."""
        old = execution.state
        counts = self.state_counts
        counts[old] -= 1
        counts[state] += 1
        execution.state = state
        held_before, held_after = old in _HOLDS_SLOT, state in _HOLDS_SLOT
        if held_after and not held_before:
            self._use_group(execution.subtask)
        elif held_before and not held_after:
            self._unuse_group(execution.subtask)
        if state.is_terminal:
            if execution.execution_id is not None:
                self._by_id.pop(execution.execution_id, None)
            if self._restarts_pending:
                self._maybe_restart()

    # --- lifecycle ----------------------------------------------------------------------

    async def on_start(self) -> None:
        self._tm_heartbeats.start()
        self._unwatch_rm = self.context.ha.watch(RESOURCE_MANAGER, self._rm_leader_changed)
        # as Flink: the job is RUNNING before it has a slot; its tasks wait in SCHEDULED
        self._set_status(JobStatus.RUNNING)
        self._schedule_regions(self.topology.regions)

    async def on_stop(self) -> None:
        if self._unwatch_rm is not None:
            self._unwatch_rm()

    # --- the ResourceManager ----------------------------------------------------------------

    def _rm_leader_changed(self, address: str, token: uuid.UUID) -> None:
        self.run_async(lambda: self._connect_to_rm(address, token))

    async def _connect_to_rm(self, address: str, token: uuid.UUID) -> None:
        if token == self.rm_token:
            return
        self.rm_token, self.rm_gateway, self._declared = token, None, None
        backoff = self.config.declare_initial_backoff
        while self.rm_token == token and not self.status.is_globally_terminal:
            try:
                gateway = await self.off_main(
                    self.rpc_service.connect(
                        address, ResourceManagerGateway, token, caller=self.endpoint_id
                    )
                )
                response = await self.off_main(
                    gateway.register_job_master(self.fencing_token, self.job_id, self.address)
                )
                if response.success and self.rm_token == token:
                    self.rm_gateway = gateway
                    self.rm_last_heartbeat = trio.current_time()
                    self._rm_heartbeat_timeout.reset()
                    self._declare()
                    return
            except Exception as exc:
                self._emit("registration", f"registration at the ResourceManager failed: {exc}")
            await self.off_main(trio.sleep(backoff))
            backoff = min(backoff * 2, self.config.declare_max_backoff)

    def _declare(self) -> None:
        """Tell the ResourceManager how many slots the job needs, retrying until it listens.
        Changes within `slot_request_max_interval` go out as one declaration (Flink's
        slot.request.max-interval, 20 ms)."""
        if not self._declaring:
            self._declaring = True
            self.schedule_run_async(self._declare_loop, self.config.slot_request_max_interval)

    async def _declare_loop(self) -> None:
        backoff = self.config.declare_initial_backoff
        try:
            while self.rm_gateway is not None and self._declared != self._wanted():
                wanted, gateway = self._wanted(), self.rm_gateway
                try:
                    await self.off_main(
                        gateway.declare_required_resources(self.fencing_token, self.job_id, wanted)
                    )
                    if gateway is self.rm_gateway:
                        self._declared = wanted
                except Exception as exc:
                    self._emit("slots", f"declaring {wanted} slots failed: {exc}; retrying")
                    await self.off_main(trio.sleep(backoff))
                    backoff = min(backoff * 2, self.config.declare_max_backoff)
        finally:
            self._declaring = False

    def _wanted(self) -> int:
        return 0 if self.status.is_globally_terminal else self.required

    async def heartbeat_from_resource_manager(self) -> None:
        self.rm_last_heartbeat = trio.current_time()
        if self.rm_gateway is not None:
            self._rm_heartbeat_timeout.reset()
            self.rm_gateway.heartbeat_from_job_manager(self.job_id)

    def _rm_heartbeat_timed_out(self) -> None:
        """No heartbeat request from the ResourceManager within the timeout (reset by each)."""
        if self.rm_gateway is not None:
            self._emit("heartbeat", "heartbeat of the ResourceManager timed out; reconnecting")
            self.disconnect_resource_manager("heartbeat timed out")

    def disconnect_resource_manager(self, cause: str) -> None:
        self._emit("registration", f"disconnected from the ResourceManager: {cause}")
        self._rm_heartbeat_timeout.stop()
        self.rm_gateway, self.rm_token = None, None
        leader = self.context.ha.leader(RESOURCE_MANAGER)
        if leader is not None:
            self._rm_leader_changed(*leader)

    def notify_not_enough_resources(self, acquired: int, required: int) -> None:
        """The ResourceManager cannot meet the job's requirements (it does so only once it is
        older than its start-up period): fail every waiting bulk, as Flink's
        DeclarativeSlotPoolBridge fails its pending requests."""
        self._emit("slots", f"the ResourceManager has {acquired} of the {required} slots needed")
        if self._pending and self._live:
            self._fail_bulks(list(self._pending.values()), NOT_ENOUGH_RESOURCES)

    # --- TaskExecutors ------------------------------------------------------------------

    async def register_task_manager(
        self, job_id: uuid.UUID, resource_id: str, address: str, session_id: uuid.UUID
    ) -> RegistrationResponse:
        """Flink's JobMaster#registerTaskManager: refuse a foreign job; acknowledge the same
        session again without touching anything; replace an older session (its slots and
        tasks are gone)."""
        if job_id != self.job_id:
            return RegistrationResponse.rejection(
                f"the JobMaster of job {self.job_id.hex} is not responsible for job {job_id.hex}"
            )
        known = self.task_managers.get(resource_id)
        if known is not None:
            if known.session_id == session_id:
                return RegistrationResponse(True)
            self._task_manager_lost(resource_id, "it registered again with a new session")
        gateway = await self.off_main(
            self.rpc_service.connect(address, TaskExecutorGateway, caller=self.endpoint_id)
        )
        current = self.task_managers.get(resource_id)
        if current is not None and current.session_id == session_id:
            return RegistrationResponse(True)
        self.task_managers[resource_id] = _TaskManager(resource_id, address, session_id, gateway)
        self._tm_heartbeats.monitor(resource_id)
        return RegistrationResponse(True)

    def disconnect_task_manager(self, resource_id: str, cause: str) -> None:
        self._task_manager_lost(resource_id, cause)

    def _request_tm_heartbeat(self, resource_id: str, timeout: float, on_done: OnDone) -> None:
        manager = self.task_managers.get(resource_id)
        if manager is None:
            on_done(None, None)
            return
        report = AllocatedSlotReport(
            self.job_id,
            [
                AllocatedSlotInfo(s.slot_index, s.allocation_id)
                for s in self.pool.values()
                if s.task_executor == resource_id
            ],
        )

        def done(result: Any, error: BaseException | None) -> None:
            if isinstance(error, JobNotFoundError):
                # it dropped the job (our heartbeats timed out there): its slots are gone
                cause = str(error)
                self.run_async(lambda: self._task_manager_lost(resource_id, cause))
            on_done(result, error)

        ask_with_callback(
            manager.gateway,
            "heartbeat_from_job_manager",
            self.job_id,
            report,
            timeout=timeout,
            on_done=done,
        )

    def heartbeat_from_task_manager(
        self, resource_id: str, payload: TaskExecutorToJobManagerHeartbeatPayload
    ) -> None:
        self._tm_heartbeats.receive_heartbeat(resource_id, payload)

    def _tm_heartbeat_payload(self, resource_id: str, payload: Any) -> None:
        """Flink's execution deployment reconciliation: a task the TaskExecutor runs for this
        job that the JobMaster does not know (any more) is cancelled there."""
        manager = self.task_managers.get(resource_id)
        if manager is None or not isinstance(payload, TaskExecutorToJobManagerHeartbeatPayload):
            return
        unknown = [e for e in payload.executions if e not in self._by_id]
        if unknown:
            self.start_background(
                self._cancel_tasks, [(manager.gateway, execution_id) for execution_id in unknown]
            )

    def _task_manager_lost(self, resource_id: str, cause: str) -> None:
        """Release the TaskExecutor's slots; each task that ran there fails (region by region)."""
        manager = self.task_managers.pop(resource_id, None)
        self._tm_heartbeats.unmonitor(resource_id)
        if manager is not None:
            # as Flink's JobMaster: the TaskExecutor lets go of the job's slots and tasks, and
            # does not offer them to a later leader of this job
            manager.gateway.disconnect_job_manager(self.job_id, cause)
        lost = [s for s in self.pool.values() if s.task_executor == resource_id]
        if manager is None and not lost:
            return
        self._emit("failure", f"lost TaskExecutor {resource_id}: {cause}")
        for slot in lost:
            self.pool.pop(slot.allocation_id, None)
            self._pool_by_place.pop((slot.task_executor, slot.slot_index), None)
            self._free.pop(slot.allocation_id, None)
            if slot.group is not None and self._group_slot.get(slot.group) is slot:
                del self._group_slot[slot.group]
                self._rescan_bulks()
        for execution in [e for e in self._by_id.values() if e.task_executor == resource_id]:
            self._execution_failed(execution, f"TaskExecutor {resource_id} was lost: {cause}")
        self._declare()

    # --- ending -------------------------------------------------------------------------

    async def cancel(self) -> None:
        if self.status.is_globally_terminal or self.status is JobStatus.CANCELLING:
            return
        self._set_status(JobStatus.CANCELLING)
        for bulk in list(self._pending.values()):
            self._remove_bulk(bulk)
        self._cancel_executions(list(self.executions.values()))
        self._maybe_cancelled()

    async def fail_task(self, vertex: str | None, subtask: int) -> None:
        """Fail the current attempt of a subtask, in whatever state it is (scenario faults)."""
        name = vertex or self.job.vertices[0].name
        execution = self.executions.get((name, subtask))
        if execution is None:
            raise ValueError(f"job {self.name} has no subtask {name}[{subtask}]")
        if execution.state.is_terminal or not self._live:
            raise ValueError(
                f"{name}[{subtask}] is {execution.state.value} in a {self.status.value} job: "
                "there is nothing to fail"
            )
        if execution.state is ExecutionState.SCHEDULED:
            bulk = self._pending.get(execution.region)
            if bulk is not None:
                self._remove_bulk(bulk)
        self._execution_failed(execution, f"{name}[{subtask}] failed (injected by the user)")

    def _job_reached_terminal_state(self, status: JobStatus) -> None:
        self._set_status(status)
        for bulk in list(self._pending.values()):
            self._remove_bulk(bulk)
        self._restarts_pending.clear()
        self._cancel_executions(list(self.executions.values()))
        slots = list(self.pool.values())
        self.pool.clear()
        self._pool_by_place.clear()
        self._free.clear()
        self._group_slot.clear()
        self._declare()
        self._release_and_leave(slots, f"job {status.value}")

    def _release_and_leave(self, slots: list[_PoolSlot], cause: str) -> None:
        """Flink's order at the end of a job: free the slots at their TaskExecutors, say goodbye
        to the TaskExecutors and to the ResourceManager, then stop this JobMaster (the
        Dispatcher keeps the job's final details). All of them are sent at once, so that the
        ResourceManager hears the goodbye (one hop) before the TaskExecutors' news of the freed
        slots (two hops), as in Flink."""
        for slot in slots:
            manager = self.task_managers.get(slot.task_executor)
            if manager is not None:
                manager.gateway.free_slot(slot.allocation_id, cause)
        for manager in list(self.task_managers.values()):
            manager.gateway.disconnect_job_manager(self.job_id, cause)
        if self.rm_gateway is not None:
            self.rm_gateway.disconnect_job_manager(self.job_id, self.status, cause)
        self.run_async(self._leave)

    def _leave(self) -> None:
        self.context.ha.revoke(job_master_endpoint(self.job_id))
        self.close_async()

    # --- queries ------------------------------------------------------------------------

    async def request_job_snapshot(self, executions: bool = True) -> JobSnapshot:
        """Bounded as the Dispatcher's job queries: a job of 100,000 tasks would make a reply
        larger than a client's decoder accepts."""
        return self.job_snapshot(executions=executions).bounded()

    async def request_job_details(self) -> dict[str, Any]:
        return self.job_snapshot().bounded().as_dict()

    def job_snapshot(self, *, executions: bool = True) -> JobSnapshot:
        """The job as this JobMaster has it, never suspending: what views, the Dispatcher and
        the simulator's invariants read. Without `executions` the tasks, pending requests and
        pool are left out (a cheap look at the counts of a job of thousands of tasks)."""
        now = self.context.events.now()
        ended = self.status.is_globally_terminal
        tasks: tuple[ExecutionSnapshot, ...] = ()
        assignments: tuple[SlotAssignmentSnapshot, ...] = ()
        live: tuple[uuid.UUID, ...] = ()
        held = self._group_slot
        pending = tuple(
            PendingRequestSnapshot(
                index,
                bulk.region.slots,
                bulk.request,
                sum(1 for group in bulk.region.groups if group not in held),
            )
            for index, bulk in self._pending.items()
        )
        restarting = tuple(
            sorted({index for restart in self._restarts_pending for index in restart.regions})
        )
        if executions:
            tasks = tuple(
                ExecutionSnapshot(
                    e.vertex,
                    e.subtask,
                    e.attempt,
                    e.state,
                    e.task_executor,
                    e.region,
                    e.execution_id,
                    e.allocation_id,
                )
                for e in self.executions.values()
            )
            assignments = tuple(
                SlotAssignmentSnapshot(
                    s.allocation_id, s.task_executor, s.slot_index, s.group, s.free_since
                )
                for s in self.pool.values()
            )
            live = tuple(self._by_id)
        return JobSnapshot(
            job_id=self.job_id,
            name=self.name,
            status=self.status,
            parallelism=self.job.max_parallelism,
            start_time=self.started_at,
            duration=(self.ended_at or now) - self.started_at,
            tasks_total=len(self.executions),
            tasks_finished=self.state_counts[ExecutionState.FINISHED],
            task_states=tuple((s.value, n) for s, n in self.state_counts.items() if n),
            restarts=self.restarts,
            restart_attempts=self.job.restart.attempts,
            failover_strategy=self.job.failover_strategy,
            regions=len(self.topology.regions),
            slots_required=self._wanted(),
            slots_held=len(self.pool),
            slots_pending=0 if ended else sum(p.missing for p in pending),
            failure_cause=self.failure_cause,
            tasks=tasks,
            pending_requests=pending,
            restarting_regions=restarting,
            slot_assignments=assignments,
            live_executions=live,
            job_master_token=self.fencing_token,
            active_allocations=tuple(
                {
                    e.allocation_id: None
                    for e in self._by_id.values()
                    if e.allocation_id is not None and not e.state.is_terminal
                }
            ),
            vertices=tuple((v.name, v.parallelism) for v in self.job.vertices),
            edges=tuple((e.source, e.target, e.pattern) for e in self.job.edges),
        )
