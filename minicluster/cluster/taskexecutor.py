"""The TaskExecutor: a slot table, registration at the ResourceManager, slot offers to
JobMasters, and tasks that run for their simulated duration."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from minicluster.limits import MAX_NAME_LENGTH
from minicluster.rpc import (
    RpcEndpoint,
    RpcService,
    RpcTimeoutError,
    register_error,
)
from minicluster.rpc.scheduled import ScheduledRun

from .components import RESOURCE_MANAGER, job_master_endpoint, task_executor_endpoint
from .context import ClusterContext
from .gateways import JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway
from .heartbeat import HeartbeatTimeout
from .model import (
    AllocatedSlotReport,
    ClusterError,
    ExecutionState,
    JobNotFoundError,
    SlotID,
    SlotOccupiedError,
    SlotOffer,
    SlotState,
    SlotStatus,
    TaskDeploymentDescriptor,
    TaskExecutionState,
    TaskExecutorHeartbeatPayload,
    TaskExecutorRegistration,
    TaskExecutorToJobManagerHeartbeatPayload,
    TaskSubmissionError,
)
from .snapshot import SlotSnapshot, TaskExecutorSnapshot, TaskSnapshot

UPDATE_ATTEMPTS = 20


@register_error
class SlotAllocationError(ClusterError):
    """A slot request the TaskExecutor cannot take (not registered with that ResourceManager)."""


@dataclass
class TaskSlot:
    index: int
    state: SlotState = SlotState.FREE
    job_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None
    offered: bool = False
    accepted: bool = False  # the JobMaster took it into its pool
    allocated_at: float = 0.0  # when it was allocated (or offered to a new leader)
    accepted_at: float = 0.0  # when the JobMaster took it
    tasks: set[uuid.UUID] = field(default_factory=set)


@dataclass
class _Task:
    """A simulated task: no trio task of its own, only its end as a scheduled run (a cluster
    of 20,000 running tasks holds 20,000 heap entries, not 20,000 sleeping tasks)."""

    tdd: TaskDeploymentDescriptor
    state: ExecutionState = ExecutionState.DEPLOYING
    end: ScheduledRun | None = None
    cancelled: bool = False


@dataclass
class _JobManagerConnection:
    job_id: uuid.UUID
    address: str | None = None
    token: uuid.UUID | None = None
    gateway: JobMasterGateway | None = None
    registered: bool = False
    last_heartbeat: float = 0.0
    heartbeat_timeout: HeartbeatTimeout | None = None
    unwatch: Any = None
    offering: bool = False  # an offer loop runs; others only ask it to go again
    offer_again: bool = False


class TaskExecutor(RpcEndpoint, TaskExecutorGateway):
    def __init__(
        self,
        service: RpcService,
        context: ClusterContext,
        resource_id: str,
        slots: int,
        on_fatal_error: Callable[[str], None] | None = None,
        on_cluster_stopping: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(service, task_executor_endpoint(resource_id))
        self._on_cluster_stopping = on_cluster_stopping
        self.resource_id = resource_id
        self.context = context
        self.config = context.config
        # this process's session (Flink's TaskManager session id): a JobMaster tells a repeated
        # registration of ours from a new process under the same id by it
        self.session_id = context.new_id()
        self._on_fatal_error = on_fatal_error
        self.fatal_error: str | None = None
        self._registration_deadline: ScheduledRun | None = None
        self.slots = [TaskSlot(i) for i in range(slots)]
        self._slot_ids = [SlotID(resource_id, i) for i in range(slots)]  # one each, reused
        self.tasks: dict[uuid.UUID, _Task] = {}
        self.registration_state = "registering"
        # the ResourceManager connection
        self.rm_address: str | None = None
        self.rm_token: uuid.UUID | None = None
        self.rm_gateway: ResourceManagerGateway | None = None
        self.instance_id: uuid.UUID | None = None
        self.rm_last_heartbeat = 0.0
        self._rm_heartbeat_timeout = HeartbeatTimeout(
            self, self.config.heartbeat_timeout, self._rm_heartbeat_timed_out
        )
        self._registration_epoch = 0
        self._unwatch_rm: Any = None
        self.jobs: dict[uuid.UUID, _JobManagerConnection] = {}

    # --- lifecycle ----------------------------------------------------------------------

    async def on_start(self) -> None:
        self._start_registration_timeout()
        self._unwatch_rm = self.context.ha.watch(RESOURCE_MANAGER, self._rm_leader_changed)

    def _start_registration_timeout(self) -> None:
        """Flink's taskmanager.registration.timeout: not registered at a ResourceManager for
        that long, the TaskExecutor gives up (a fatal error: its process exits)."""
        if self._registration_deadline is None:
            self._registration_deadline = self.schedule_run_async(
                self._registration_timed_out, self.config.registration_timeout
            )

    def _stop_registration_timeout(self) -> None:
        if self._registration_deadline is not None:
            self._registration_deadline.cancel()
            self._registration_deadline = None

    def _registration_timed_out(self) -> None:
        self._registration_deadline = None
        if self.registration_state != "registered":
            self._fatal(
                f"could not register at the ResourceManager within "
                f"{self.config.registration_timeout:g} s (taskmanager.registration.timeout)"
            )

    def _fatal(self, cause: str) -> None:
        """Give up: stop registering, tell the owner (a `task-executor` process exits 1)."""
        if self.fatal_error is not None:
            return
        self.fatal_error = cause
        self._registration_epoch += 1
        self.registration_state = "failed"
        self._emit("failure", f"TaskExecutor {self.resource_id} gives up: {cause}")
        if self._on_fatal_error is not None:
            self._on_fatal_error(cause)
        else:
            self.close_async()

    async def on_stop(self) -> None:
        if self._unwatch_rm is not None:
            self._unwatch_rm()
        for connection in self.jobs.values():
            if connection.unwatch is not None:
                connection.unwatch()

    def disconnect_gracefully(self) -> None:
        """On a graceful stop: tell the ResourceManager we are going (Flink's
        disconnectTaskManager)."""
        if self.rm_gateway is not None and self.registration_state == "registered":
            self.rm_gateway.disconnect_task_manager(self.resource_id, "TaskExecutor stopped")
        self.registration_state = "stopped"

    def _emit(self, kind: str, message: str) -> None:
        self.context.emit(kind, message, sender=self.endpoint_id)

    # --- registration at the ResourceManager -------------------------------------------

    def _rm_leader_changed(self, address: str, token: uuid.UUID) -> None:
        self.run_async(lambda: self._connect_to_rm(address, token))

    def _connect_to_rm(self, address: str, token: uuid.UUID) -> None:
        if token == self.rm_token or self.fatal_error is not None:
            return
        self.rm_address, self.rm_token = address, token
        self.instance_id = None
        self.rm_gateway = None
        self.registration_state = "registering"
        self._registration_epoch += 1
        self._start_registration_timeout()
        self.run_async(self._register_at_rm)

    async def _register_at_rm(self) -> None:
        """Flink's RetryingRegistration: timeouts 100 ms doubling to 30 s; a pause after an
        error or a refusal."""
        epoch = self._registration_epoch
        config = self.config
        timeout = config.registration_initial_timeout
        attempt = 0
        while epoch == self._registration_epoch and self.rm_address is not None:
            attempt += 1
            address, token = self.rm_address, self.rm_token
            delay = 0.0
            try:
                gateway = await self.off_main(
                    self.rpc_service.connect(
                        address,
                        ResourceManagerGateway,
                        token,
                        timeout=timeout,
                        caller=self.endpoint_id,
                    )
                )
                registration = TaskExecutorRegistration(
                    self.resource_id, self.address, len(self.slots), self.session_id
                )
                response = await self.off_main(
                    gateway.register_task_executor(registration, timeout)
                )
            except RpcTimeoutError:
                self._emit(
                    "registration", f"registration attempt {attempt} timed out ({timeout:g} s)"
                )
                timeout = min(timeout * 2, config.registration_max_timeout)
                continue
            except Exception as exc:
                self._emit("registration", f"registration attempt {attempt} failed: {exc}")
                delay = config.registration_error_delay
            else:
                if epoch != self._registration_epoch:
                    return
                if response.success:
                    self.rm_gateway = gateway
                    self.instance_id = response.instance_id
                    self.registration_state = "registered"
                    self.rm_last_heartbeat = trio.current_time()
                    self._rm_heartbeat_timeout.reset()
                    self._stop_registration_timeout()
                    self._emit(
                        "registration", f"registered at the ResourceManager ({attempt} attempts)"
                    )
                    assert self.instance_id is not None
                    self.start_background(self._send_slot_report, gateway, self.instance_id)
                    return
                if response.rejected:
                    # Flink's TaskExecutorRegistrationRejection: retrying cannot help
                    self._fatal(f"the ResourceManager rejected the registration: {response.reason}")
                    return
                self._emit("registration", f"registration refused: {response.reason}")
                delay = config.registration_refused_delay
            await self.off_main(trio.sleep(delay))

    async def _send_slot_report(
        self, gateway: ResourceManagerGateway, instance_id: uuid.UUID
    ) -> None:
        try:
            report = await self.call_async(self.slot_report)
            await gateway.send_slot_report(self.resource_id, instance_id, report)
        except Exception as exc:
            # as Flink: a ResourceManager that does not take our report does not know us as
            # we think it does; register again
            cause = f"slot report failed: {exc}"
            self.run_async(lambda: self._slot_report_failed(instance_id, cause))

    def _slot_report_failed(self, instance_id: uuid.UUID, cause: str) -> None:
        if self.instance_id != instance_id:
            return  # an older registration's report; a newer one is under way
        self._emit("registration", f"{cause}; registering again")
        self._rm_lost()

    def slot_report(self) -> list[SlotStatus]:
        ids = self._slot_ids
        return [SlotStatus(ids[s.index], s.state, s.job_id, s.allocation_id) for s in self.slots]

    # The TaskExecutor side of heartbeats: a silent ResourceManager or JobMaster is noticed
    # when its timeout passes (reset by each heartbeat), not by a check every interval.

    def _rm_heartbeat_timed_out(self) -> None:
        if self.registration_state != "registered":
            return
        timeout = self.config.heartbeat_timeout
        self._emit("heartbeat", f"heartbeat of the ResourceManager timed out after {timeout:g} s")
        self._release_everything("lost the ResourceManager")
        self._rm_lost()

    def _jm_heartbeat_timed_out(self, job_id: uuid.UUID, connection: _JobManagerConnection) -> None:
        if self.jobs.get(job_id) is not connection or not connection.registered:
            return
        self._emit("heartbeat", f"heartbeat of {job_master_endpoint(job_id)} timed out")
        self._job_manager_lost(job_id, "heartbeat of the JobMaster timed out")

    def _reset_jm_heartbeat_timeout(
        self, job_id: uuid.UUID, connection: _JobManagerConnection
    ) -> None:
        if connection.heartbeat_timeout is None:
            connection.heartbeat_timeout = HeartbeatTimeout(
                self,
                self.config.heartbeat_timeout,
                lambda: self._jm_heartbeat_timed_out(job_id, connection),
            )
        connection.heartbeat_timeout.reset()

    def _release_everything(self, cause: str) -> None:
        """Cut off from the ResourceManager, which will soon count us lost: stop our tasks and
        give up our slots, telling the JobMasters, so that nothing runs on a TaskExecutor the
        cluster has written off."""
        for job_id, connection in list(self.jobs.items()):
            if connection.gateway is not None:
                connection.gateway.disconnect_task_manager(self.resource_id, cause)
            self._job_manager_lost(job_id, cause)

    def _rm_lost(self) -> None:
        if self.fatal_error is not None:
            return
        self.rm_gateway = None
        self.instance_id = None
        self._rm_heartbeat_timeout.stop()
        self.registration_state = "registering"
        self._registration_epoch += 1
        self._start_registration_timeout()
        if self.rm_address is not None:
            self.run_async(self._register_at_rm)

    # --- TaskExecutorGateway -----------------------------------------------------------

    async def request_slot(
        self,
        slot_id: SlotID,
        job_id: uuid.UUID,
        allocation_id: uuid.UUID,
        target_address: str,
        rm_token: uuid.UUID,
    ) -> None:
        if self.registration_state != "registered" or rm_token != self.rm_token:
            raise SlotAllocationError(
                f"{self.resource_id} is not registered at the ResourceManager with token {rm_token}"
            )
        if not 0 <= slot_id.index < len(self.slots):
            raise SlotAllocationError(f"{self.resource_id} has no slot {slot_id.index}")
        slot = self.slots[slot_id.index]
        if slot.state is not SlotState.FREE and slot.allocation_id != allocation_id:
            raise SlotOccupiedError(
                f"slot {slot_id} is held by allocation {slot.allocation_id} of job {slot.job_id}"
            )
        if slot.state is SlotState.FREE:
            slot.state, slot.job_id, slot.allocation_id = SlotState.ALLOCATED, job_id, allocation_id
            slot.offered = slot.accepted = False
            slot.allocated_at = trio.current_time()
            self._watch_slot_timeout(slot)
        self._connect_to_job(job_id)
        self._start_offering(job_id)

    def _start_offering(self, job_id: uuid.UUID) -> None:
        connection = self.jobs.get(job_id)
        if connection is None:
            return
        if connection.offering:
            connection.offer_again = True
            return
        connection.offering = True
        self.run_async(lambda: self._offer_loop(connection))

    async def _offer_loop(self, connection: _JobManagerConnection) -> None:
        try:
            while True:
                connection.offer_again = False
                await self._offer_slots(connection.job_id)
                if not connection.offer_again or self.jobs.get(connection.job_id) is not connection:
                    return
        finally:
            connection.offering = False

    def _connect_to_job(self, job_id: uuid.UUID) -> None:
        if job_id in self.jobs:
            return
        connection = self.jobs[job_id] = _JobManagerConnection(job_id)

        def leader_changed(address: str, token: uuid.UUID) -> None:
            self.run_async(lambda: self._job_leader_changed(job_id, address, token))

        connection.unwatch = self.context.ha.watch(job_master_endpoint(job_id), leader_changed)

    def _job_leader_changed(self, job_id: uuid.UUID, address: str, token: uuid.UUID) -> None:
        connection = self.jobs.get(job_id)
        if connection is None or connection.token == token:
            return
        connection.address, connection.token = address, token
        connection.gateway, connection.registered = None, False
        if connection.heartbeat_timeout is not None:
            connection.heartbeat_timeout.stop()
        # A new JobMaster leader: the old one's tasks are failed, the slots offered anew.
        for task in list(self.tasks.values()):
            if task.tdd.job_id == job_id:
                self._cancel_task(task)
        for slot in self.slots:
            if slot.job_id == job_id:
                slot.offered = slot.accepted = False
                slot.allocated_at = trio.current_time()
                self._watch_slot_timeout(slot)
        self._start_offering(job_id)

    async def _offer_slots(self, job_id: uuid.UUID) -> None:
        """Register at the job's JobMaster if needed, then offer every slot of the job not
        offered yet; re-offer on timeout, free what the JobMaster rejects."""
        connection = self.jobs.get(job_id)
        while connection is not None and self.jobs.get(job_id) is connection:
            if connection.address is None or connection.token is None:
                return  # no leader yet; the leader watch calls us again
            token = connection.token
            try:
                if not connection.registered:
                    gateway = await self.off_main(
                        self.rpc_service.connect(
                            connection.address,
                            JobMasterGateway,
                            token,
                            caller=self.endpoint_id,
                        )
                    )
                    response = await self.off_main(
                        gateway.register_task_manager(
                            job_id, self.resource_id, self.address, self.session_id
                        )
                    )
                    if connection.token != token or self.jobs.get(job_id) is not connection:
                        continue
                    if not response.success:
                        if response.rejected:
                            self._emit(
                                "registration",
                                f"{job_master_endpoint(job_id)} rejected us: {response.reason}",
                            )
                            self._job_manager_lost(job_id, response.reason)
                            return
                        raise ClusterError(response.reason)
                    connection.gateway, connection.registered = gateway, True
                    connection.last_heartbeat = trio.current_time()
                    self._reset_jm_heartbeat_timeout(job_id, connection)
                offers = [
                    SlotOffer(s.allocation_id, s.index)
                    for s in self.slots
                    if s.job_id == job_id and not s.offered and s.allocation_id is not None
                ]
                if not offers:
                    return
                for slot in self.slots:
                    if slot.job_id == job_id and slot.allocation_id in {
                        o.allocation_id for o in offers
                    }:
                        slot.offered = True
                assert connection.gateway is not None
                accepted = await self.off_main(
                    connection.gateway.offer_slots(
                        self.resource_id, offers, self.config.offer_timeout
                    )
                )
            except RpcTimeoutError:
                for slot in self.slots:
                    if slot.job_id == job_id:
                        slot.offered = False
                self._emit(
                    "offer", f"slot offer to {job_master_endpoint(job_id)} timed out; re-offering"
                )
                continue
            except Exception as exc:
                self._emit("offer", f"slot offer to {job_master_endpoint(job_id)} failed: {exc}")
                for slot in self.slots:
                    if slot.job_id == job_id:
                        slot.offered = False
                await self.off_main(trio.sleep(self.config.registration_error_delay))
                continue
            accepted_ids = {o.allocation_id for o in accepted}
            for offer in offers:
                if offer.allocation_id not in accepted_ids:
                    self._free_slot(offer.allocation_id, "the JobMaster rejected the offer")
                else:
                    taken = self._slot_of(offer.allocation_id)
                    if taken is not None:
                        taken.accepted = True
                        taken.accepted_at = trio.current_time()
            return

    def _watch_slot_timeout(self, slot: TaskSlot) -> None:
        """Flink's taskmanager.slot.timeout: a slot no JobMaster takes within it goes back.
        One scheduled run per allocation (Flink's TimerService), at its deadline."""
        allocation_id = slot.allocation_id
        limit = self.config.slot_timeout

        def check() -> None:
            if (
                slot.allocation_id != allocation_id
                or allocation_id is None
                or slot.accepted
                or slot.tasks
            ):
                return
            left = slot.allocated_at + limit - trio.current_time()
            if left > 0:  # offered anew since (a new JobMaster leader): count from then
                self.schedule_run_async(check, left)
                return
            self._emit("slots", f"slot {slot.index} was not taken by a JobMaster in time")
            self._free_slot(allocation_id, "slot timeout")

        self.schedule_run_async(check, limit)

    async def submit_task(self, tdd: TaskDeploymentDescriptor, jm_token: uuid.UUID) -> None:
        connection = self.jobs.get(tdd.job_id)
        if connection is None or connection.token != jm_token or not connection.registered:
            raise TaskSubmissionError(
                f"{self.resource_id} is not connected to the JobMaster of job {tdd.job_id.hex} "
                f"with token {jm_token}"
            )
        slot = self._slot_of(tdd.allocation_id)
        if slot is None or slot.job_id != tdd.job_id:
            raise TaskSubmissionError(
                f"no slot of {self.resource_id} is allocated to {tdd.allocation_id} for this job"
            )
        task = _Task(tdd)
        self.tasks[tdd.execution_id] = task
        slot.tasks.add(tdd.execution_id)
        slot.state = SlotState.ACTIVE
        # the task's thread starts on a later turn of the main thread, after the answer
        self.run_async(lambda: self._task_started(task))

    def _task_started(self, task: _Task) -> None:
        """INITIALIZING, then RUNNING (initialization takes no simulated time; Flink reports
        both states), then FINISHED after its duration, or FAILED if told to."""
        if task.cancelled or self.tasks.get(task.tdd.execution_id) is not task:
            return
        tdd = task.tdd
        self._report(tdd, ExecutionState.INITIALIZING, None)
        self._report(tdd, ExecutionState.RUNNING, None)
        if tdd.fail_after is not None and tdd.fail_after < tdd.duration:
            error = f"injected failure of {tdd.vertex}[{tdd.subtask}]"
            task.end = self.schedule_run_async(
                lambda: self._task_ended(tdd, ExecutionState.FAILED, error), tdd.fail_after
            )
        else:
            task.end = self.schedule_run_async(
                lambda: self._task_ended(tdd, ExecutionState.FINISHED, None), tdd.duration
            )

    def _cancel_task(self, task: _Task) -> None:
        """Cancel a running task: it reports CANCELED on a later turn of the main thread."""
        if task.cancelled:
            return
        task.cancelled = True
        if task.end is not None:
            task.end.cancel()
        tdd = task.tdd
        self.run_async(lambda: self._task_ended(tdd, ExecutionState.CANCELED, None))

    def _report(
        self, tdd: TaskDeploymentDescriptor, state: ExecutionState, error: str | None
    ) -> None:
        task = self.tasks.get(tdd.execution_id)
        if task is not None:
            task.state = state
        connection = self.jobs.get(tdd.job_id)
        if connection is None or connection.gateway is None:
            return
        gateway = connection.gateway
        update = TaskExecutionState(tdd.job_id, tdd.execution_id, state, error)
        self.start_background_in_order(tdd.job_id, self._send_update, gateway, update)

    async def _send_update(self, gateway: JobMasterGateway, update: TaskExecutionState) -> None:
        """Deliver a task's state; a final state is retried until the JobMaster has it (or is
        gone: a new leader or a lost connection makes the update moot)."""
        attempts = 1 if not update.state.is_terminal else UPDATE_ATTEMPTS
        for attempt in range(attempts):
            try:
                # the ask's own timeout (shared timer, no cancel scope per update)
                await gateway.update_task_execution_state(
                    update, self.config.heartbeat_interval * 2
                )
                return
            except Exception:
                pass
            connection = self.jobs.get(update.job_id)
            if connection is None or connection.gateway is not gateway:
                return
            await trio.sleep(min(self.config.heartbeat_interval, 0.1 * 2**attempt))

    def _task_ended(
        self, tdd: TaskDeploymentDescriptor, state: ExecutionState, error: str | None
    ) -> None:
        task = self.tasks.pop(tdd.execution_id, None)
        if task is None:
            return
        self._report(tdd, state, error)
        slot = self._slot_of(tdd.allocation_id)
        if slot is not None:
            slot.tasks.discard(tdd.execution_id)
            if not slot.tasks and slot.state is SlotState.ACTIVE:
                slot.state = SlotState.ALLOCATED

    async def cancel_task(self, execution_id: uuid.UUID) -> None:
        task = self.tasks.get(execution_id)
        if task is not None:
            self._cancel_task(task)

    def free_slot(self, allocation_id: uuid.UUID, cause: str) -> None:
        self._free_slot(allocation_id, cause)

    def _free_slot(self, allocation_id: uuid.UUID | None, cause: str) -> None:
        slot = self._slot_of(allocation_id)
        if slot is None or allocation_id is None:
            return
        for execution_id in list(slot.tasks):
            task = self.tasks.pop(execution_id, None)
            if task is not None:  # gone with its slot: nothing more to report
                task.cancelled = True
                if task.end is not None:
                    task.end.cancel()
        slot.tasks.clear()
        slot.state, slot.job_id, slot.allocation_id, slot.offered = (
            SlotState.FREE,
            None,
            None,
            False,
        )
        slot.accepted = False
        # the release completes on a later turn of the main thread (Flink's TaskSlot closes
        # asynchronously), and only then does the ResourceManager hear of it
        index = slot.index
        self.run_async(lambda: self._notify_slot_available(index, allocation_id))
        job_ids = {s.job_id for s in self.slots if s.job_id is not None}
        for job_id in list(self.jobs):
            if job_id not in job_ids:
                self._close_job_connection(job_id)

    def _notify_slot_available(self, index: int, allocation_id: uuid.UUID) -> None:
        if self.rm_gateway is not None and self.instance_id is not None:
            self.rm_gateway.notify_slot_available(
                self.resource_id, self.instance_id, SlotID(self.resource_id, index), allocation_id
            )

    def free_inactive_slots(self, job_id: uuid.UUID) -> None:
        """The ResourceManager no longer tracks the job: free its slots that no JobMaster has
        taken (Flink's freeInactiveSlots; an accepted slot is the JobMaster's to free)."""
        for slot in self.slots:
            if slot.job_id == job_id and not slot.accepted and not slot.tasks:
                self._free_slot(slot.allocation_id, "the job's requirements were cleared")

    async def heartbeat_from_resource_manager(self, rm_token: uuid.UUID) -> None:
        if rm_token != self.rm_token or self.rm_gateway is None:
            return
        self.rm_last_heartbeat = trio.current_time()
        self._rm_heartbeat_timeout.reset()
        payload = TaskExecutorHeartbeatPayload(self.slot_report())
        self.rm_gateway.heartbeat_from_task_manager(self.resource_id, payload)

    async def heartbeat_from_job_manager(
        self, job_id: uuid.UUID, report: AllocatedSlotReport
    ) -> None:
        connection = self.jobs.get(job_id)
        if connection is None:
            # we dropped the job (its JobMaster timed out here): say so, so that the JobMaster
            # stops counting on our slots instead of deploying into them
            raise JobNotFoundError(f"{self.resource_id} holds nothing for job {job_id.hex}")
        now = trio.current_time()
        connection.last_heartbeat = now
        self._reset_jm_heartbeat_timeout(job_id, connection)
        self._free_no_longer_used_slots(job_id, report, now)
        if connection.gateway is not None:
            executions = [e for e, t in self.tasks.items() if t.tdd.job_id == job_id]
            connection.gateway.heartbeat_from_task_manager(
                self.resource_id, TaskExecutorToJobManagerHeartbeatPayload(executions)
            )

    def _free_no_longer_used_slots(
        self, job_id: uuid.UUID, report: AllocatedSlotReport, now: float
    ) -> None:
        """Flink's TaskExecutor#freeNoLongerUsedSlots: an active slot of the job that the
        JobMaster's report leaves out is not the JobMaster's any more. A slot accepted within
        the last heartbeat interval is spared: the report may have left before the offer
        arrived."""
        reported = {info.allocation_id for info in report.slots}
        grace = self.config.heartbeat_interval
        for slot in self.slots:
            if (
                slot.job_id == job_id
                and slot.accepted
                and slot.allocation_id not in reported
                and now - slot.accepted_at > grace
            ):
                self._emit("slots", f"slot {slot.index} is no longer used by the JobMaster")
                self._free_slot(slot.allocation_id, "slot no longer used by the JobMaster")

    def disconnect_resource_manager(self, cause: str) -> None:
        self._emit("registration", f"the ResourceManager disconnected us: {cause}")
        self._rm_lost()

    async def cluster_stopping(self, cause: str) -> None:
        """The cluster says it shuts down: tell the owner, which ends a `task-executor` process
        once the cluster is indeed gone. Anyone who can reach us can say this, so nothing
        changes here: a false notice, with the cluster still there, is only a log line."""
        cause = cause[:MAX_NAME_LENGTH]
        self._emit("registration", f"the cluster is stopping: {cause}")
        if self._on_cluster_stopping is not None:
            self._on_cluster_stopping(cause)

    def disconnect_job_manager(self, job_id: uuid.UUID, cause: str) -> None:
        self._job_manager_lost(job_id, cause)

    def _job_manager_lost(self, job_id: uuid.UUID, cause: str) -> None:
        """Fail the job's tasks and free its slots (Flink: JobLeaderListener#jobManagerLost)."""
        for slot in self.slots:
            if slot.job_id == job_id:
                self._free_slot(slot.allocation_id, cause)
        self._close_job_connection(job_id)

    def _close_job_connection(self, job_id: uuid.UUID) -> None:
        connection = self.jobs.pop(job_id, None)
        if connection is not None and connection.unwatch is not None:
            connection.unwatch()

    def _slot_of(self, allocation_id: uuid.UUID | None) -> TaskSlot | None:
        if allocation_id is None:
            return None
        for slot in self.slots:
            if slot.allocation_id == allocation_id:
                return slot
        return None

    def task_executor_snapshot(self) -> TaskExecutorSnapshot:
        """This TaskExecutor as it sees itself, never suspending: its registration, slots,
        tasks and the leaders it follows (what views and the simulator's invariants read)."""
        now = trio.current_time()
        age = now - self.rm_last_heartbeat if self.registration_state == "registered" else None
        return TaskExecutorSnapshot(
            id=self.resource_id,
            address=self.address,
            state=self.registration_state,
            heartbeat_age=None if age is None or math.isinf(age) else age,
            slots=tuple(
                SlotSnapshot(
                    s.index, s.state.value, s.job_id, None, s.allocation_id, tuple(s.tasks)
                )
                for s in self.slots
            ),
            instance_id=self.instance_id,
            rm_token=self.rm_token,
            job_leaders=tuple((job_id, c.token) for job_id, c in self.jobs.items()),
            tasks=tuple(
                TaskSnapshot(
                    t.tdd.execution_id,
                    t.tdd.job_id,
                    t.tdd.allocation_id,
                    t.tdd.vertex,
                    t.tdd.subtask,
                    t.tdd.attempt,
                    t.tdd.duration,
                    t.state,
                )
                for t in self.tasks.values()
            ),
        )
