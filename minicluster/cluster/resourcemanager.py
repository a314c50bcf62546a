"""The ResourceManager and its slot manager: TaskExecutors register and report slots, JobMasters
declare how many slots they need, and the slot manager makes it so (Flink's declarative
resource management, FLIP-138)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import trio

from minicluster.rpc import FencedRpcEndpoint, RpcService, RpcTimeoutError

from .context import RESOURCE_MANAGER, ClusterContext, job_master_component
from .gateways import JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway
from .heartbeat import HeartbeatSender
from .model import (
    ClusterError,
    RegistrationResponse,
    SlotID,
    SlotState,
    SlotStatus,
    TaskExecutorRegistration,
    UnknownTaskExecutorError,
)


@dataclass
class _TaskExecutorRecord:
    resource_id: str
    address: str
    instance_id: uuid.UUID
    gateway: TaskExecutorGateway
    slots: int


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
    notified_shortage: bool = False


class ResourceManager(FencedRpcEndpoint, ResourceManagerGateway):
    def __init__(self, service: RpcService, context: ClusterContext, token: uuid.UUID) -> None:
        super().__init__(service, token, RESOURCE_MANAGER)
        self.context = context
        self.config = context.config
        self.task_executors: dict[str, _TaskExecutorRecord] = {}
        self.slots: dict[SlotID, _Slot] = {}
        self.job_masters: dict[uuid.UUID, _JobMasterRecord] = {}
        self.requirements: dict[uuid.UUID, int] = {}
        self._check_scheduled = False
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

    def _emit(self, kind: str, message: str) -> None:
        self.context.emit(kind, message, sender=self.endpoint_id)

    # --- TaskExecutors --------------------------------------------------------------------

    async def register_task_executor(
        self, registration: TaskExecutorRegistration, timeout: float = 10.0
    ) -> RegistrationResponse:
        resource_id = registration.resource_id
        gateway = await self.off_main(
            self.rpc_service.connect(
                registration.address, TaskExecutorGateway, caller=self.endpoint_id
            )
        )
        old = self.task_executors.get(resource_id)
        if old is not None:
            self._remove_task_executor(resource_id, "it registered again", tell_te=False)
        instance_id = self.context.new_id()
        self.task_executors[resource_id] = _TaskExecutorRecord(
            resource_id, registration.address, instance_id, gateway, registration.slots
        )
        for index in range(registration.slots):
            slot_id = SlotID(resource_id, index)
            self.slots[slot_id] = _Slot(slot_id)
        self._te_heartbeats.monitor(resource_id)
        self._emit("registration", f"TaskExecutor {resource_id} registered")
        return RegistrationResponse(True, instance_id)

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

    def _apply_slot_report(self, report: list[SlotStatus]) -> None:
        for status in report:
            slot = self.slots.get(status.slot_id)
            if slot is None or slot.state == "PENDING":
                continue
            if status.state is SlotState.FREE:
                slot.state, slot.job_id, slot.allocation_id = "FREE", None, None
            else:
                slot.state, slot.job_id, slot.allocation_id = (
                    "ALLOCATED",
                    status.job_id,
                    status.allocation_id,
                )

    def _te_heartbeat_payload(self, resource_id: str, report: Any) -> None:
        if resource_id in self.task_executors and isinstance(report, list):
            self._apply_slot_report(report)

    async def _request_te_heartbeat(self, resource_id: str) -> Any:
        record = self.task_executors.get(resource_id)
        if record is None:
            return None
        return await record.gateway.heartbeat_from_resource_manager(self.fencing_token)

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

    async def heartbeat_from_task_manager(self, resource_id: str) -> None:
        return None

    # --- JobMasters -----------------------------------------------------------------------

    async def register_job_master(
        self, jm_token: uuid.UUID, job_id: uuid.UUID, jm_address: str
    ) -> RegistrationResponse:
        leader = self.context.ha.leader(job_master_component(job_id))
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
        if slots <= 0:
            self.requirements.pop(job_id, None)
        else:
            self.requirements[job_id] = slots
        record.notified_shortage = False
        self._schedule_check()

    def disconnect_job_manager(self, job_id: uuid.UUID, cause: str) -> None:
        self._remove_job_master(job_id)

    def _remove_job_master(self, job_id: uuid.UUID) -> None:
        self.job_masters.pop(job_id, None)
        self.requirements.pop(job_id, None)
        self._jm_heartbeats.unmonitor(job_id.hex)

    async def _request_jm_heartbeat(self, job_hex: str) -> Any:
        record = self.job_masters.get(uuid.UUID(hex=job_hex))
        if record is None:
            return None
        return await record.gateway.heartbeat_from_resource_manager()

    def _job_master_lost(self, job_hex: str, cause: str) -> None:
        self._emit("heartbeat", f"lost the JobMaster of job {job_hex}: {cause}")
        self._remove_job_master(uuid.UUID(hex=job_hex))

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
        held: dict[uuid.UUID, int] = {}
        for slot in self.slots.values():
            if slot.job_id is not None and slot.state in ("PENDING", "ALLOCATED"):
                held[slot.job_id] = held.get(slot.job_id, 0) + 1
        free = [s for s in self.slots.values() if s.state == "FREE"]
        free.reverse()
        for job_id, required in self.requirements.items():
            missing = required - held.get(job_id, 0)
            record = self.job_masters.get(job_id)
            if record is None:
                continue
            while missing > 0 and free:
                slot = free.pop()
                missing -= 1
                self._request_slot(slot, job_id, record)
            if missing > 0 and not record.notified_shortage:
                record.notified_shortage = True
                available = required - missing
                self._emit(
                    "slots",
                    f"not enough slots for job {job_id.hex[:8]}: {available} of {required}",
                )
                record.gateway.notify_not_enough_resources(available, required)

    def _request_slot(self, slot: _Slot, job_id: uuid.UUID, record: _JobMasterRecord) -> None:
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
            record.address,
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
        return self.overview()

    def overview(self) -> dict[str, Any]:
        free = sum(1 for s in self.slots.values() if s.state == "FREE")
        return {
            "task_executors": len(self.task_executors),
            "slots_total": len(self.slots),
            "slots_free": free,
            "jobs_with_requirements": len(self.requirements),
        }

    def heartbeat_age(self, resource_id: str) -> float | None:
        last = self._te_heartbeats.last_seen(resource_id)
        return None if last is None else trio.current_time() - last
