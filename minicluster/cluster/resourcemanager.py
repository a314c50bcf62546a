"""The ResourceManager and its slot manager: TaskExecutors register and report slots, JobMasters
declare how many slots they need, and the slot manager makes it so (Flink's declarative
resource management, FLIP-138)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import trio

from minicluster.limits import MAX_SLOTS_PER_TASK_EXECUTOR, MAX_TASKS_PER_JOB
from minicluster.rpc import FencedRpcEndpoint, RpcService, RpcTimeoutError, ask_with_callback

from .components import RESOURCE_MANAGER, job_master_endpoint
from .context import ClusterContext
from .gateways import JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway
from .heartbeat import HeartbeatSender, OnDone
from .model import (
    ClusterError,
    JobStatus,
    RegistrationResponse,
    SlotID,
    SlotState,
    SlotStatus,
    TaskExecutorHeartbeatPayload,
    TaskExecutorRegistration,
    UnknownTaskExecutorError,
)
from .snapshot import ResourceOverview, SlotSnapshot, TaskExecutorSnapshot


@dataclass
class _TaskExecutorRecord:
    resource_id: str
    address: str
    instance_id: uuid.UUID
    gateway: TaskExecutorGateway
    slots: int
    session_id: uuid.UUID | None = None


@dataclass
class _Slot:
    slot_id: SlotID
    state: str = "FREE"  # FREE, PENDING (requested), ALLOCATED
    job_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None


@dataclass
class _JobMasterRecord:
    job_id: uuid.UUID
    address: str
    token: uuid.UUID
    gateway: JobMasterGateway


@dataclass
class _Requirement:
    """A job's declared slots and where its JobMaster is: kept (RETAIN) when the JobMaster is
    lost, so that slots keep going to the job's address, as Flink's slot manager does."""

    slots: int
    address: str
    shortage_reported: bool = False


class ResourceManager(FencedRpcEndpoint, ResourceManagerGateway):
    def __init__(self, service: RpcService, context: ClusterContext, token: uuid.UUID) -> None:
        super().__init__(service, token, RESOURCE_MANAGER)
        self.context = context
        self.config = context.config
        self.task_executors: dict[str, _TaskExecutorRecord] = {}
        self.slots: dict[SlotID, _Slot] = {}
        self.job_masters: dict[uuid.UUID, _JobMasterRecord] = {}
        self.requirements: dict[uuid.UUID, _Requirement] = {}
        self._check_scheduled = False
        # the registration attempt each TaskExecutor made last (Flink compares gateway futures)
        self._registering: dict[str, object] = {}
        # Flink's standalone start-up period (resourcemanager.standalone.start-up-time, by
        # default slot.request.timeout): until it is over, requirements no slot can meet wait
        self.fail_unfulfillable = False
        self._te_heartbeats = HeartbeatSender(
            self,
            self.config.heartbeat_interval,
            self.config.heartbeat_timeout,
            self.config.heartbeat_rpc_failure_threshold,
            self._request_te_heartbeat,
            self._task_executor_lost,
            self._te_heartbeat_payload,
        )
        self._jm_heartbeats = HeartbeatSender(
            self,
            self.config.heartbeat_interval,
            self.config.heartbeat_timeout,
            self.config.heartbeat_rpc_failure_threshold,
            self._request_jm_heartbeat,
            self._job_master_lost,
        )

    async def on_start(self) -> None:
        self._te_heartbeats.start()
        self._jm_heartbeats.start()
        self.schedule_run_async(self._start_up_period_over, self.config.slot_request_timeout)

    def _start_up_period_over(self) -> None:
        self.fail_unfulfillable = True
        self._schedule_check()

    def _emit(self, kind: str, message: str) -> None:
        self.context.emit(kind, message, sender=self.endpoint_id)

    # --- TaskExecutors --------------------------------------------------------------------

    async def register_task_executor(
        self, registration: TaskExecutorRegistration, timeout: float = 10.0
    ) -> RegistrationResponse:
        resource_id = registration.resource_id
        if not 1 <= registration.slots <= MAX_SLOTS_PER_TASK_EXECUTOR:
            return RegistrationResponse.rejection(
                f"TaskExecutor {resource_id} offers {registration.slots} slots; a "
                f"TaskExecutor has 1 to {MAX_SLOTS_PER_TASK_EXECUTOR}"
            )
        attempt = self._registering[resource_id] = object()
        gateway = await self.off_main(
            self.rpc_service.connect(
                registration.address, TaskExecutorGateway, caller=self.endpoint_id
            )
        )
        if self._registering.get(resource_id) is not attempt:
            # a later registration of the same TaskExecutor overtook this one (Flink: "Ignoring
            # outdated TaskExecutorGateway connection"): it must not overwrite the newer one
            return RegistrationResponse(
                False, reason=f"a newer registration of TaskExecutor {resource_id} is under way"
            )
        old = self.task_executors.get(resource_id)
        if old is not None and self._another_process(old, registration):
            # two live processes under one id would evict each other forever: ask the one
            # we know whether it is still there; if so, the newcomer is refused
            alive = await self.off_main(self._answers(old))
            if self._registering.get(resource_id) is not attempt:
                return RegistrationResponse(
                    False, reason=f"a newer registration of TaskExecutor {resource_id} is under way"
                )
            if alive and self.task_executors.get(resource_id) is old:
                del self._registering[resource_id]
                self._emit(
                    "registration",
                    f"refused a second TaskExecutor with the id {resource_id} "
                    f"(from {registration.address})",
                )
                return RegistrationResponse.rejection(
                    f"the id {resource_id} is taken by a running TaskExecutor at "
                    f"{old.address}; give this one another id"
                )
            old = self.task_executors.get(resource_id)
        del self._registering[resource_id]
        if old is not None:
            self._remove_task_executor(resource_id, "it registered again", tell_te=False)
        instance_id = self.context.new_id()
        self.task_executors[resource_id] = _TaskExecutorRecord(
            resource_id,
            registration.address,
            instance_id,
            gateway,
            registration.slots,
            registration.session_id,
        )
        for index in range(registration.slots):
            slot_id = SlotID(resource_id, index)
            self.slots[slot_id] = _Slot(slot_id)
        self._te_heartbeats.monitor(resource_id)
        self._emit("registration", f"TaskExecutor {resource_id} registered")
        return RegistrationResponse(True, instance_id)

    @staticmethod
    def _another_process(old: _TaskExecutorRecord, registration: TaskExecutorRegistration) -> bool:
        """A registration from a different process than the one registered under the id: a
        new session at a new address (a retry, or a restart at the same address, is not)."""
        return (
            registration.session_id is not None
            and old.session_id is not None
            and registration.session_id != old.session_id
            and registration.address != old.address
        )

    async def _answers(self, record: _TaskExecutorRecord) -> bool:
        """Whether a registered TaskExecutor still answers (a heartbeat request, briefly)."""
        try:
            with trio.fail_after(min(self.config.rpc_timeout, 2 * self.config.heartbeat_interval)):
                await record.gateway.heartbeat_from_resource_manager(self.fencing_token)
            return True
        except Exception:
            return False

    async def send_slot_report(
        self, resource_id: str, instance_id: uuid.UUID, slots: list[SlotStatus]
    ) -> None:
        record = self.task_executors.get(resource_id)
        if record is None or record.instance_id != instance_id:
            raise UnknownTaskExecutorError(
                f"TaskExecutor {resource_id} with instance {instance_id} is not registered"
            )
        self._apply_slot_report(slots)
        self._schedule_check()

    def _apply_slot_report(self, report: list[SlotStatus]) -> bool:
        """Take the TaskExecutor's word for its slots; whether that changed anything."""
        changed = False
        for status in report:
            slot = self.slots.get(status.slot_id)
            if slot is None or slot.state == "PENDING":
                continue
            if status.state is SlotState.FREE:
                if slot.state != "FREE":
                    slot.state, slot.job_id, slot.allocation_id = "FREE", None, None
                    changed = True
            elif (
                slot.state != "ALLOCATED"
                or slot.job_id != status.job_id
                or slot.allocation_id != status.allocation_id
            ):
                slot.state, slot.job_id, slot.allocation_id = (
                    "ALLOCATED",
                    status.job_id,
                    status.allocation_id,
                )
                changed = True
        return changed

    def heartbeat_from_task_manager(
        self, resource_id: str, payload: TaskExecutorHeartbeatPayload
    ) -> None:
        self._te_heartbeats.receive_heartbeat(resource_id, payload)

    def _te_heartbeat_payload(self, resource_id: str, payload: Any) -> None:
        """The slot report in a heartbeat: reconcile what the slot manager thinks."""
        if resource_id not in self.task_executors or not isinstance(
            payload, TaskExecutorHeartbeatPayload
        ):
            return
        # as Flink's slot manager: requirements are checked again only if the report changed
        # what it knew (reportSlotStatus returns whether it did)
        if self._apply_slot_report(
            [s for s in payload.slots if s.slot_id.task_executor == resource_id]
        ):
            self._schedule_check()

    def _request_te_heartbeat(self, resource_id: str, timeout: float, on_done: OnDone) -> None:
        record = self.task_executors.get(resource_id)
        if record is None:
            on_done(None, None)
            return
        ask_with_callback(
            record.gateway,
            "heartbeat_from_resource_manager",
            self.fencing_token,
            timeout=timeout,
            on_done=on_done,
        )

    def _task_executor_lost(self, resource_id: str, cause: str) -> None:
        self._emit("heartbeat", f"lost TaskExecutor {resource_id}: {cause}")
        self._remove_task_executor(resource_id, cause, tell_te=True)
        self._schedule_check()

    def _remove_task_executor(self, resource_id: str, cause: str, tell_te: bool) -> None:
        record = self.task_executors.pop(resource_id, None)
        if record is None:
            return
        self._te_heartbeats.unmonitor(resource_id)
        affected_jobs: list[uuid.UUID] = []
        for index in range(record.slots):
            slot = self.slots.pop(SlotID(resource_id, index), None)
            if slot is not None and slot.job_id is not None and slot.job_id not in affected_jobs:
                affected_jobs.append(slot.job_id)
        if tell_te:
            record.gateway.disconnect_resource_manager(cause)
        for job_id in affected_jobs:
            jm = self.job_masters.get(job_id)
            if jm is not None:
                jm.gateway.disconnect_task_manager(resource_id, cause)

    def notify_slot_available(
        self, resource_id: str, instance_id: uuid.UUID, slot_id: SlotID, allocation_id: uuid.UUID
    ) -> None:
        record = self.task_executors.get(resource_id)
        slot = self.slots.get(slot_id)
        if record is None or record.instance_id != instance_id or slot is None:
            return
        if slot.allocation_id == allocation_id:
            slot.state, slot.job_id, slot.allocation_id = "FREE", None, None
            self._schedule_check()

    def disconnect_task_manager(self, resource_id: str, cause: str) -> None:
        self._emit("registration", f"TaskExecutor {resource_id} disconnected: {cause}")
        self._remove_task_executor(resource_id, cause, tell_te=False)
        self._schedule_check()

    # --- JobMasters -----------------------------------------------------------------------

    async def register_job_master(
        self, jm_token: uuid.UUID, job_id: uuid.UUID, jm_address: str
    ) -> RegistrationResponse:
        leader = self.context.ha.leader(job_master_endpoint(job_id))
        if leader is None or leader[1] != jm_token:
            return RegistrationResponse(
                False, reason=f"{jm_token} is not the leader of job {job_id.hex}"
            )
        gateway = await self.off_main(
            self.rpc_service.connect(
                jm_address, JobMasterGateway, jm_token, caller=self.endpoint_id
            )
        )
        self.job_masters[job_id] = _JobMasterRecord(job_id, jm_address, jm_token, gateway)
        self._jm_heartbeats.monitor(job_id.hex)
        return RegistrationResponse(True, self.context.new_id())

    async def declare_required_resources(
        self, jm_token: uuid.UUID, job_id: uuid.UUID, slots: int
    ) -> None:
        record = self.job_masters.get(job_id)
        if record is None or record.token != jm_token:
            raise ClusterError(
                f"the JobMaster of job {job_id.hex} with {jm_token} is not registered"
            )
        if not 0 <= slots <= MAX_TASKS_PER_JOB:
            # a job never needs more slots than it has tasks
            raise ClusterError(f"a job declares 0 to {MAX_TASKS_PER_JOB:,} slots, not {slots:,}")
        if slots <= 0:
            self.requirements.pop(job_id, None)
        else:
            self.requirements[job_id] = _Requirement(slots, record.address)
        self._schedule_check()

    def disconnect_job_manager(self, job_id: uuid.UUID, job_status: JobStatus, cause: str) -> None:
        """Flink's ResourceManager#disconnectJobManager: a job that ended has its requirements
        cleared and TaskExecutors free the slots no JobMaster took (CLEAR); a JobMaster that
        merely went away leaves them for its successor (RETAIN)."""
        if self.job_masters.get(job_id) is None:
            return
        self._close_job_master_connection(job_id, clear=job_status.is_globally_terminal)

    def _close_job_master_connection(self, job_id: uuid.UUID, clear: bool) -> None:
        self.job_masters.pop(job_id, None)
        self._jm_heartbeats.unmonitor(job_id.hex)
        if clear:
            self._clear_requirements(job_id)

    def _clear_requirements(self, job_id: uuid.UUID) -> None:
        self.requirements.pop(job_id, None)
        for record in self.task_executors.values():
            # in order with the slot requests to that TaskExecutor: one still on its way
            # for this job is freed too
            self.start_background_in_order(
                record.resource_id, self._send_free_inactive_slots, record.gateway, job_id
            )

    async def _send_free_inactive_slots(
        self, gateway: TaskExecutorGateway, job_id: uuid.UUID
    ) -> None:
        gateway.free_inactive_slots(job_id)

    def heartbeat_from_job_manager(self, job_id: uuid.UUID) -> None:
        self._jm_heartbeats.receive_heartbeat(job_id.hex)

    def _request_jm_heartbeat(self, job_hex: str, timeout: float, on_done: OnDone) -> None:
        record = self.job_masters.get(uuid.UUID(hex=job_hex))
        if record is None:
            on_done(None, None)
            return
        ask_with_callback(
            record.gateway, "heartbeat_from_resource_manager", timeout=timeout, on_done=on_done
        )

    def _job_master_lost(self, job_hex: str, cause: str) -> None:
        """Its heartbeats stopped: keep the job's requirements and tell the JobMaster, which
        registers again if it is still there (Flink: RETAIN, disconnectResourceManager)."""
        self._emit("heartbeat", f"lost the JobMaster of job {job_hex}: {cause}")
        job_id = uuid.UUID(hex=job_hex)
        record = self.job_masters.get(job_id)
        self._close_job_master_connection(job_id, clear=False)
        if record is not None:
            record.gateway.disconnect_resource_manager(f"the ResourceManager lost us: {cause}")

    # --- the slot manager -----------------------------------------------------------------

    def _schedule_check(self) -> None:
        """Check requirements a little later, once for many changes (Flink's
        slotmanager.requirement-check.delay). Besides saving work, the delay keeps a new leader
        from trading slots with JobMasters at a frantic pace before every TaskExecutor has
        reported what it holds."""
        if not self._check_scheduled:
            self._check_scheduled = True
            self.schedule_run_async(self._run_check, self.config.requirement_check_delay)

    def _run_check(self) -> None:
        self._check_scheduled = False
        self._check_resources()

    def _check_resources(self) -> None:
        """Match declared requirements with free slots, in declaration order."""
        for job_id in [j for j in self.requirements if self._job_ended(j)]:
            self._clear_requirements(job_id)
        held: dict[uuid.UUID, int] = {}
        for slot in self.slots.values():
            if slot.job_id is not None and slot.state in ("PENDING", "ALLOCATED"):
                held[slot.job_id] = held.get(slot.job_id, 0) + 1
        free = [s for s in self.slots.values() if s.state == "FREE"]
        free.reverse()
        for job_id, requirement in self.requirements.items():
            required = requirement.slots
            missing = required - held.get(job_id, 0)
            while missing > 0 and free:
                slot = free.pop()
                missing -= 1
                self._request_slot(slot, job_id, requirement.address)
            if missing <= 0:
                continue
            acquired = required - missing
            if not requirement.shortage_reported:
                requirement.shortage_reported = True
                self._emit(
                    "slots",
                    f"not enough slots for job {job_id.hex[:8]}: {acquired} of {required}",
                )
            record = self.job_masters.get(job_id)
            if self.fail_unfulfillable and record is not None:
                # past the start-up period, Flink's slot manager tells the JobMaster, whose
                # waiting slot requests then fail
                record.gateway.notify_not_enough_resources(acquired, required)

    def _job_ended(self, job_id: uuid.UUID) -> bool:
        """No JobMaster registered and none elected: the job ended without a goodbye that
        reached us (its JobMaster was between two ResourceManager connections, or we had
        dropped it). Its requirements would take slots for nobody forever (Flink's
        ResourceManager watches each job's leader too, in its JobLeaderIdService)."""
        return (
            job_id not in self.job_masters
            and self.context.ha.leader(job_master_endpoint(job_id)) is None
        )

    def _request_slot(self, slot: _Slot, job_id: uuid.UUID, address: str) -> None:
        allocation_id = self.context.new_id()
        slot.state, slot.job_id, slot.allocation_id = "PENDING", job_id, allocation_id
        te = self.task_executors[slot.slot_id.task_executor]
        self.start_background_in_order(
            te.resource_id,
            self._send_slot_request,
            te.gateway,
            slot,
            job_id,
            allocation_id,
            address,
        )

    async def _send_slot_request(
        self,
        gateway: TaskExecutorGateway,
        slot: _Slot,
        job_id: uuid.UUID,
        allocation_id: uuid.UUID,
        jm_address: str,
    ) -> None:
        error: Exception | None = None
        try:
            await gateway.request_slot(
                slot.slot_id, job_id, allocation_id, jm_address, self.fencing_token
            )
        except Exception as exc:
            error = exc
        self.run_async(lambda: self._slot_request_done(slot, allocation_id, error))

    def _slot_request_done(
        self, slot: _Slot, allocation_id: uuid.UUID, error: Exception | None
    ) -> None:
        if self.slots.get(slot.slot_id) is not slot or slot.allocation_id != allocation_id:
            return
        if error is None:
            slot.state = "ALLOCATED"
            return
        self._emit("slots", f"slot request for {slot.slot_id} failed: {error}")
        if isinstance(error, RpcTimeoutError):
            slot.state, slot.job_id, slot.allocation_id = "FREE", None, None
            self._schedule_check()
            return
        # Occupied or refused: the TaskExecutor knows better; its next report tells us.
        slot.state, slot.job_id, slot.allocation_id = "ALLOCATED", None, None
        self._schedule_check()

    # --- views ------------------------------------------------------------------------

    async def request_overview(self) -> dict[str, Any]:
        return self.resource_overview().as_dict()

    async def request_resource_overview(self, detail: bool = True) -> ResourceOverview:
        return self.resource_overview(detail)

    def resource_overview(self, detail: bool = True) -> ResourceOverview:
        """What this ResourceManager knows, never suspending: registered TaskExecutors with
        their slots as it sees them (FREE, PENDING, ALLOCATED), requirements, JobMasters.
        Without `detail`, only the counts."""
        if not detail:
            return ResourceOverview(
                task_executors=len(self.task_executors),
                slots_total=len(self.slots),
                slots_free=sum(1 for s in self.slots.values() if s.state == "FREE"),
                jobs_with_requirements=len(self.requirements),
            )
        by_te: dict[str, list[SlotSnapshot]] = {}
        free = 0
        for slot in self.slots.values():
            free += slot.state == "FREE"
            by_te.setdefault(slot.slot_id.task_executor, []).append(
                SlotSnapshot(slot.slot_id.index, slot.state, slot.job_id, None, slot.allocation_id)
            )
        registered = tuple(
            TaskExecutorSnapshot(
                id=record.resource_id,
                address=record.address,
                state="registered",
                heartbeat_age=self.heartbeat_age(record.resource_id),
                slots=tuple(sorted(by_te.get(record.resource_id, ()), key=lambda s: s.index)),
                instance_id=record.instance_id,
            )
            for record in self.task_executors.values()
        )
        return ResourceOverview(
            task_executors=len(self.task_executors),
            slots_total=len(self.slots),
            slots_free=free,
            jobs_with_requirements=len(self.requirements),
            registered=registered,
            requirements=tuple((job_id, r.slots) for job_id, r in self.requirements.items()),
            job_masters=tuple(self.job_masters),
        )

    def heartbeat_age(self, resource_id: str) -> float | None:
        last = self._te_heartbeats.last_seen(resource_id)
        return None if last is None else trio.current_time() - last
