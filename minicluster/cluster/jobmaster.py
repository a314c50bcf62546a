"""The JobMaster: one per job. Registers at the ResourceManager, declares the slots it needs,
takes offered slots into its slot pool, deploys tasks as slots arrive, follows their states,
and restarts the job with a fixed delay on failures (Flink's JobMaster + DefaultScheduler)."""

from __future__ import annotations

import functools
import heapq
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from minicluster.rpc import FencedRpcEndpoint, RpcService

from .context import RESOURCE_MANAGER, ClusterContext, job_master_component
from .gateways import JobMasterGateway, ResourceManagerGateway, TaskExecutorGateway
from .heartbeat import HeartbeatSender
from .model import (
    ExecutionState,
    JobGraph,
    JobNotFoundError,
    JobStatus,
    SlotOffer,
    TaskDeploymentDescriptor,
    TaskExecutionState,
    TaskSubmissionError,
)


@dataclass
class _PoolSlot:
    allocation_id: uuid.UUID
    task_executor: str
    slot_index: int
    share_index: int  # which subtask of every vertex this slot runs (Flink's slot sharing)


@dataclass
class Execution:
    vertex: str
    subtask: int
    attempt: int
    execution_id: uuid.UUID | None = None
    state: ExecutionState = ExecutionState.CREATED
    task_executor: str | None = None
    allocation_id: uuid.UUID | None = None


@dataclass
class _TaskManager:
    resource_id: str
    address: str
    gateway: TaskExecutorGateway


class JobMaster(FencedRpcEndpoint, JobMasterGateway):
    def __init__(
        self,
        service: RpcService,
        context: ClusterContext,
        token: uuid.UUID,
        job_graph: JobGraph,
        on_status: Callable[[JobMaster, JobStatus], None],
    ) -> None:
        super().__init__(service, token, job_master_component(job_graph.job_id))
        self.context = context
        self.config = context.config
        self.job = job_graph
        self.job_id = job_graph.job_id
        self.status = JobStatus.CREATED
        self._on_status = on_status
        self.attempt = 0
        self.restarts = 0
        self.required = job_graph.max_parallelism
        self.pool: dict[uuid.UUID, _PoolSlot] = {}
        self._pool_by_place: dict[tuple[str, int], _PoolSlot] = {}  # (TaskExecutor, slot index)
        self._free_indices = list(range(self.required))
        self.executions: dict[tuple[str, int], Execution] = {}
        self.state_counts: dict[ExecutionState, int] = dict.fromkeys(ExecutionState, 0)
        self._by_id: dict[uuid.UUID, Execution] = {}
        self.task_managers: dict[str, _TaskManager] = {}
        self.rm_gateway: ResourceManagerGateway | None = None
        self.rm_token: uuid.UUID | None = None
        self.rm_last_heartbeat = 0.0
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
        )
        self._new_executions()

    @property
    def name(self) -> str:
        return self.job.name

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

    def _new_executions(self) -> None:
        self.executions.clear()
        self._by_id.clear()
        for vertex in self.job.vertices:
            for subtask in range(vertex.parallelism):
                self.executions[(vertex.name, subtask)] = Execution(
                    vertex.name, subtask, self.attempt
                )
        self.state_counts = dict.fromkeys(ExecutionState, 0)
        self.state_counts[ExecutionState.CREATED] = len(self.executions)

    def _transition(self, execution: Execution, state: ExecutionState) -> None:
        """Every state change goes here, so that counts stay exact without a scan."""
        counts = self.state_counts
        counts[execution.state] -= 1
        counts[state] += 1
        execution.state = state

    # --- lifecycle ----------------------------------------------------------------------

    async def on_start(self) -> None:
        self._tm_heartbeats.start()
        self.schedule_run_async(self._check_rm_heartbeat, self.config.heartbeat_interval)
        self._unwatch_rm = self.context.ha.watch(RESOURCE_MANAGER, self._rm_leader_changed)
        self._set_status(JobStatus.RUNNING)
        for execution in self.executions.values():
            self._transition(execution, ExecutionState.SCHEDULED)

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
                    self._declare()
                    return
            except Exception as exc:
                self._emit("registration", f"registration at the ResourceManager failed: {exc}")
            await self.off_main(trio.sleep(backoff))
            backoff = min(backoff * 2, self.config.declare_max_backoff)

    def _declare(self) -> None:
        """Tell the ResourceManager how many slots the job needs, retrying until it listens."""
        if not self._declaring:
            self._declaring = True
            self.run_async(self._declare_loop)

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

    def _check_rm_heartbeat(self) -> None:
        timeout = self.config.heartbeat_timeout
        if self.rm_gateway is not None and trio.current_time() - self.rm_last_heartbeat > timeout:
            self._emit("heartbeat", "heartbeat of the ResourceManager timed out; reconnecting")
            self.disconnect_resource_manager("heartbeat timed out")
        self.schedule_run_async(self._check_rm_heartbeat, self.config.heartbeat_interval)

    def disconnect_resource_manager(self, cause: str) -> None:
        self.rm_gateway, self.rm_token = None, None
        leader = self.context.ha.leader(RESOURCE_MANAGER)
        if leader is not None:
            self._rm_leader_changed(*leader)

    def notify_not_enough_resources(self, available: int, required: int) -> None:
        self._emit("slots", f"the ResourceManager has {available} of the {required} slots needed")

    # --- TaskExecutors and slots ------------------------------------------------------------

    async def register_task_manager(self, resource_id: str, address: str) -> None:
        if resource_id in self.task_managers:
            return
        gateway = await self.off_main(
            self.rpc_service.connect(address, TaskExecutorGateway, caller=self.endpoint_id)
        )
        self.task_managers[resource_id] = _TaskManager(resource_id, address, gateway)
        self._tm_heartbeats.monitor(resource_id)

    async def offer_slots(
        self, resource_id: str, offers: list[SlotOffer], timeout: float = 10.0
    ) -> list[SlotOffer]:
        if resource_id not in self.task_managers or self.status.is_globally_terminal:
            return []
        accepted: list[SlotOffer] = []
        for offer in offers:
            if offer.allocation_id in self.pool:
                accepted.append(offer)
                continue
            stale = self._pool_slot_at(resource_id, offer.slot_index)
            if stale is not None:
                # the TaskExecutor freed that allocation behind our back: it is gone
                self._drop_pool_slot(stale, "its slot came back under a new allocation")
            share_index = self._free_share_index()
            if share_index is None:
                continue
            slot = _PoolSlot(offer.allocation_id, resource_id, offer.slot_index, share_index)
            self.pool[offer.allocation_id] = slot
            self._pool_by_place[(resource_id, offer.slot_index)] = slot
            accepted.append(offer)
            if self.status is JobStatus.RUNNING:
                self._deploy(slot)
        return accepted

    def _pool_slot_at(self, resource_id: str, slot_index: int) -> _PoolSlot | None:
        slot = self._pool_by_place.get((resource_id, slot_index))
        return slot if slot is not None and slot.allocation_id in self.pool else None

    def _drop_pool_slot(self, slot: _PoolSlot, cause: str) -> None:
        """A slot we counted on is not ours any more: fail what ran in it, need another."""
        if self.pool.pop(slot.allocation_id, None) is None:
            return
        self._pool_by_place.pop((slot.task_executor, slot.slot_index), None)
        heapq.heappush(self._free_indices, slot.share_index)
        self._emit("slots", f"lost slot {slot.task_executor}/{slot.slot_index}: {cause}")
        affected = [
            e
            for e in self.executions.values()
            if e.allocation_id == slot.allocation_id and not e.state.is_terminal
        ]
        for execution in affected:
            self._transition(execution, ExecutionState.FAILED)
        if affected:
            self._failure(f"slot {slot.task_executor}/{slot.slot_index} was lost: {cause}")
        elif self.status is JobStatus.RUNNING:
            for execution in self.executions.values():
                if execution.allocation_id == slot.allocation_id:
                    execution.allocation_id = None
        self._declare()

    def _free_share_index(self) -> int | None:
        """The lowest subtask index no pooled slot runs yet (a heap: offers are O(log n))."""
        return heapq.heappop(self._free_indices) if self._free_indices else None

    def _deploy(self, slot: _PoolSlot) -> None:
        manager = self.task_managers.get(slot.task_executor)
        if manager is None:
            return
        for vertex in self.job.vertices:
            if vertex.parallelism <= slot.share_index:
                continue
            execution = self.executions[(vertex.name, slot.share_index)]
            if execution.state not in (ExecutionState.CREATED, ExecutionState.SCHEDULED):
                continue
            execution.execution_id = self.context.new_id()
            self._transition(execution, ExecutionState.DEPLOYING)
            execution.task_executor = slot.task_executor
            execution.allocation_id = slot.allocation_id
            self._by_id[execution.execution_id] = execution
            fails = (
                slot.share_index in vertex.fail_subtasks and self.restarts < vertex.fail_attempts
            )
            tdd = TaskDeploymentDescriptor(
                self.job_id,
                execution.execution_id,
                vertex.name,
                slot.share_index,
                self.attempt,
                slot.allocation_id,
                vertex.task_duration,
                vertex.fail_after if fails else None,
            )
            self.start_background_in_order(manager.resource_id, self._submit, manager.gateway, tdd)

    async def _submit(self, gateway: TaskExecutorGateway, tdd: TaskDeploymentDescriptor) -> None:
        try:
            await gateway.submit_task(tdd, self.fencing_token)
        except TaskSubmissionError as exc:
            # the TaskExecutor does not hold that slot for us (any more): drop it from the pool
            cause = f"deploying {tdd.vertex}[{tdd.subtask}] was refused: {exc}"
            self.run_async(lambda: self._submission_refused(tdd, cause))
        except Exception as exc:
            message = f"deploying {tdd.vertex}[{tdd.subtask}] failed: {exc}"
            self.run_async(lambda: self._execution_failed(tdd.execution_id, message))

    def _submission_refused(self, tdd: TaskDeploymentDescriptor, cause: str) -> None:
        slot = self.pool.get(tdd.allocation_id)
        if slot is not None:
            self._drop_pool_slot(slot, cause)
        else:
            self._execution_failed(tdd.execution_id, cause)

    async def update_task_execution_state(self, state: TaskExecutionState) -> None:
        execution = self._by_id.get(state.execution_id)
        if execution is None or execution.state.is_terminal:
            return
        self._transition(execution, state.state)
        if state.state is ExecutionState.FINISHED:
            if self.status is JobStatus.RUNNING and self.state_counts[
                ExecutionState.FINISHED
            ] == len(self.executions):
                self._job_reached_terminal_state(JobStatus.FINISHED)
        elif state.state is ExecutionState.FAILED:
            self._failure(f"{execution.vertex}[{execution.subtask}] failed: {state.error}")
        elif state.state is ExecutionState.CANCELED:
            self._maybe_cancelled()

    def _execution_failed(self, execution_id: uuid.UUID | None, message: str) -> None:
        execution = self._by_id.get(execution_id) if execution_id else None
        if execution is None or execution.state.is_terminal:
            return
        self._transition(execution, ExecutionState.FAILED)
        self._failure(message)

    def _failure(self, cause: str) -> None:
        """Fixed-delay restart of the whole job, or FAILED once the attempts are used up."""
        if self.status is not JobStatus.RUNNING:
            return
        self._emit("failure", cause)
        self._cancel_executions()
        if self.restarts < self.job.restart.attempts:
            self.restarts += 1
            self._set_status(JobStatus.RESTARTING)
            self.schedule_run_async(self._restart, self.job.restart.delay)
        else:
            self._set_status(JobStatus.FAILING)
            self._job_reached_terminal_state(JobStatus.FAILED)

    def _cancel_executions(self) -> None:
        cancels: list[tuple[TaskExecutorGateway, uuid.UUID]] = []
        for execution in self.executions.values():
            if execution.state.is_terminal or execution.execution_id is None:
                continue
            self._transition(execution, ExecutionState.CANCELING)
            manager = self.task_managers.get(execution.task_executor or "")
            if manager is not None:
                cancels.append((manager.gateway, execution.execution_id))
        if cancels:
            # one task sends them all: spawning a task per cancel dominated restarts at scale
            self.start_background(self._cancel_tasks, cancels)

    async def _cancel_tasks(self, cancels: list[tuple[TaskExecutorGateway, uuid.UUID]]) -> None:
        for gateway, execution_id in cancels:
            try:
                await gateway.cancel_task(execution_id)
            except Exception:
                pass
            self.run_async(functools.partial(self._cancel_done, execution_id))

    def _cancel_done(self, execution_id: uuid.UUID) -> None:
        execution = self._by_id.get(execution_id)
        if execution is not None and execution.state is ExecutionState.CANCELING:
            self._transition(execution, ExecutionState.CANCELED)
        self._maybe_cancelled()

    def _maybe_cancelled(self) -> None:
        if self.status is JobStatus.CANCELLING and all(
            e.state.is_terminal or e.execution_id is None for e in self.executions.values()
        ):
            self._job_reached_terminal_state(JobStatus.CANCELED)

    def _restart(self) -> None:
        if self.status is not JobStatus.RESTARTING:
            return
        self.attempt += 1
        self._new_executions()
        self._set_status(JobStatus.RUNNING)
        for execution in self.executions.values():
            self._transition(execution, ExecutionState.SCHEDULED)
        for slot in sorted(self.pool.values(), key=lambda s: s.share_index):
            self._deploy(slot)
        self._declare()

    def disconnect_task_manager(self, resource_id: str, cause: str) -> None:
        self._task_manager_lost(resource_id, cause)

    async def _request_tm_heartbeat(self, resource_id: str) -> Any:
        manager = self.task_managers.get(resource_id)
        if manager is None:
            return None
        try:
            return await manager.gateway.heartbeat_from_job_manager(self.job_id)
        except JobNotFoundError as refusal:
            # it dropped the job (our heartbeats timed out there): its slots are gone
            cause = str(refusal)
            self.run_async(lambda: self._task_manager_lost(resource_id, cause))
            raise

    def _task_manager_lost(self, resource_id: str, cause: str) -> None:
        """Release the TaskExecutor's slots and restart what ran there."""
        manager = self.task_managers.pop(resource_id, None)
        self._tm_heartbeats.unmonitor(resource_id)
        if manager is not None:
            # as Flink's JobMaster: the TaskExecutor lets go of the job's slots and tasks, and
            # does not offer them to a later leader of this job
            manager.gateway.disconnect_job_manager(self.job_id, cause)
        lost = [a for a, s in self.pool.items() if s.task_executor == resource_id]
        for allocation_id in lost:
            lost_slot = self.pool.pop(allocation_id)
            self._pool_by_place.pop((lost_slot.task_executor, lost_slot.slot_index), None)
            heapq.heappush(self._free_indices, lost_slot.share_index)
        if manager is None and not lost:
            return
        self._emit("failure", f"lost TaskExecutor {resource_id}: {cause}")
        affected = [
            e
            for e in self.executions.values()
            if e.task_executor == resource_id and not e.state.is_terminal
        ]
        for execution in affected:
            self._transition(execution, ExecutionState.FAILED)
        if affected:
            self._failure(f"TaskExecutor {resource_id} was lost: {cause}")
        elif self.status is JobStatus.RUNNING:
            # slots lost before their tasks were deployed: they are simply needed again
            for execution in self.executions.values():
                if (
                    execution.task_executor == resource_id
                    and execution.state is ExecutionState.CREATED
                ):
                    self._transition(execution, ExecutionState.SCHEDULED)
        self._declare()

    # --- ending -------------------------------------------------------------------------

    async def cancel(self) -> None:
        if self.status.is_globally_terminal or self.status is JobStatus.CANCELLING:
            return
        self._set_status(JobStatus.CANCELLING)
        self._cancel_executions()
        self._maybe_cancelled()

    async def fail_task(self, vertex: str | None, subtask: int) -> None:
        name = vertex or self.job.vertices[0].name
        execution = self.executions.get((name, subtask))
        if execution is None:
            raise ValueError(f"job {self.name} has no subtask {name}[{subtask}]")
        if execution.state.is_terminal or execution.execution_id is None:
            raise ValueError(f"{name}[{subtask}] is {execution.state.value}, not running")
        self._transition(execution, ExecutionState.FAILED)
        self._failure(f"{name}[{subtask}] failed (injected by the user)")

    def _job_reached_terminal_state(self, status: JobStatus) -> None:
        self._set_status(status)
        self._cancel_executions()
        slots = list(self.pool.values())
        self.pool.clear()
        self._pool_by_place.clear()
        self._free_indices = []
        self._declare()
        self.start_background(self._release_and_leave, slots, f"job {status.value}")

    async def _release_and_leave(self, slots: list[_PoolSlot], cause: str) -> None:
        """Free the job's slots at their TaskExecutors, say goodbye, and stop this JobMaster
        (the Dispatcher keeps the job's final details)."""
        for slot in slots:
            manager = self.task_managers.get(slot.task_executor)
            if manager is not None:
                try:
                    await manager.gateway.free_slot(slot.allocation_id, cause)
                except Exception:
                    pass
        self.run_async(lambda: self._leave(cause))

    def _leave(self, cause: str) -> None:
        self.disconnect_all(cause)
        self.context.ha.revoke(job_master_component(self.job_id))
        self.close_async()

    def disconnect_all(self, cause: str) -> None:
        """Before this JobMaster goes away: tell its TaskExecutors and the ResourceManager."""
        for manager in self.task_managers.values():
            manager.gateway.disconnect_job_manager(self.job_id, cause)
        if self.rm_gateway is not None:
            self.rm_gateway.disconnect_job_manager(self.job_id, cause)

    # --- queries ------------------------------------------------------------------------

    async def request_job_details(self) -> dict[str, Any]:
        return self.details()

    def details(self) -> dict[str, Any]:
        now = self.context.events.now()
        finished = self.state_counts[ExecutionState.FINISHED]
        return {
            "job_id": self.job_id.hex,
            "name": self.name,
            "status": self.status.value,
            "parallelism": self.job.max_parallelism,
            "restarts": self.restarts,
            "tasks_total": len(self.executions),
            "tasks_finished": finished,
            "start_time": self.started_at,
            "duration": (self.ended_at or now) - self.started_at,
            "tasks": [
                {
                    "vertex": e.vertex,
                    "subtask": e.subtask,
                    "state": e.state.value,
                    "task_executor": e.task_executor,
                }
                for e in self.executions.values()
            ],
        }
