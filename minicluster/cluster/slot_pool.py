"""The JobMaster's slot pool and its scheduling by pipelined region, as a mixin of JobMaster
(Flink's DeclarativeSlotPool, PipelinedRegionSchedulingStrategy and
PhysicalSlotRequestBulkChecker): see jobmaster.py for how slots flow."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from .jobmaster_base import JobMasterParts
from .jobmaster_state import (
    _REPORTED_FROM,
    BULK_TIMEOUT,
    Execution,
    _Bulk,
    _PoolSlot,
)
from .model import (
    ExecutionState,
    JobStatus,
    SlotOffer,
    TaskDeploymentDescriptor,
    TaskExecutionState,
    TaskSubmissionError,
)
from .topology import PipelinedRegion

if TYPE_CHECKING:
    from .gateways import TaskExecutorGateway


class SlotPoolMixin(JobMasterParts):
    """The slot pool and region scheduling of JobMaster; only JobMaster mixes it in."""

    # --- the slot pool ------------------------------------------------------------------

    def _use_group(self, group: int) -> None:
        self._group_users[group] = self._group_users.get(group, 0) + 1

    def _unuse_group(self, group: int) -> None:
        users = self._group_users[group] - 1
        if users > 0:
            self._group_users[group] = users
            return
        del self._group_users[group]
        slot = self._group_slot.pop(group, None)
        if slot is not None and slot.allocation_id in self.pool:
            slot.group = None
            slot.free_since = trio.current_time()
            self._free[slot.allocation_id] = slot
            self._assign_free_slots()
        self._declare()
        self._schedule_idle_check()

    async def offer_slots(
        self, resource_id: str, offers: list[SlotOffer], timeout: float = 10.0
    ) -> list[SlotOffer]:
        if resource_id not in self.task_managers or self.status.is_globally_terminal:
            return []
        accepted: list[SlotOffer] = []
        now = trio.current_time()
        for offer in offers:
            if offer.allocation_id in self.pool:
                accepted.append(offer)
                continue
            stale = self._pool_slot_at(resource_id, offer.slot_index)
            if stale is not None:
                # the TaskExecutor freed that allocation behind our back: it is gone
                self._drop_pool_slot(stale, "its slot came back under a new allocation")
            if len(self.pool) >= self.required:
                continue  # more than the job asked for: the TaskExecutor frees it
            slot = _PoolSlot(offer.allocation_id, resource_id, offer.slot_index, None, now)
            self.pool[offer.allocation_id] = slot
            self._pool_by_place[(resource_id, offer.slot_index)] = slot
            self._free[offer.allocation_id] = slot
            accepted.append(offer)
        if accepted:
            self._assign_free_slots()
        return accepted

    def _pool_slot_at(self, resource_id: str, slot_index: int) -> _PoolSlot | None:
        slot = self._pool_by_place.get((resource_id, slot_index))
        return slot if slot is not None and slot.allocation_id in self.pool else None

    def _assign_free_slots(self) -> None:
        """Give free pool slots to the oldest waiting bulks; deploy the bulks that are whole."""
        if not self._live:
            return
        fulfilled: list[_Bulk] = []
        group_slot, free = self._group_slot, self._free
        for bulk in self._pending.values():
            groups = bulk.region.groups
            index = bulk.cursor
            while index < len(groups):
                group = groups[index]
                if group not in group_slot:
                    if not free:
                        break
                    slot = free.pop(next(iter(free)))
                    slot.group = group
                    group_slot[group] = slot
                index += 1
            bulk.cursor = index
            if index < len(groups):
                break
            fulfilled.append(bulk)
        for bulk in fulfilled:
            self._bulk_fulfilled(bulk)

    def _rescan_bulks(self) -> None:
        """A group lost its slot: waiting bulks look at all their groups again."""
        for bulk in self._pending.values():
            bulk.cursor = 0

    def _drop_pool_slot(self, slot: _PoolSlot, cause: str) -> None:
        """A slot we counted on is not ours any more: fail what ran in it, need another."""
        if self.pool.pop(slot.allocation_id, None) is None:
            return
        self._pool_by_place.pop((slot.task_executor, slot.slot_index), None)
        self._free.pop(slot.allocation_id, None)
        self._emit("slots", f"lost slot {slot.task_executor}/{slot.slot_index}: {cause}")
        if slot.group is not None and self._group_slot.get(slot.group) is slot:
            del self._group_slot[slot.group]
            self._rescan_bulks()
        for execution in self._executions_in(slot.allocation_id):
            self._execution_failed(
                execution, f"slot {slot.task_executor}/{slot.slot_index} was lost: {cause}"
            )
        self._declare()

    def _executions_in(self, allocation_id: uuid.UUID) -> list[Execution]:
        return [e for e in list(self._by_id.values()) if e.allocation_id == allocation_id]

    def _schedule_idle_check(self) -> None:
        if not self._idle_check_scheduled and len(self.pool) > self.required:
            self._idle_check_scheduled = True
            self.schedule_run_async(self._release_idle_slots, self.config.slot_idle_timeout)

    def _release_idle_slots(self) -> None:
        """Flink's slot.idle.timeout: free slots the job has not needed for that long go back
        to their TaskExecutors (and so to the ResourceManager)."""
        self._idle_check_scheduled = False
        if self.status.is_globally_terminal:
            return
        now = trio.current_time()
        excess = len(self.pool) - self.required
        idle = [
            s for s in self._free.values() if now - s.free_since >= self.config.slot_idle_timeout
        ]
        release = idle[: max(0, excess)]
        for slot in release:
            del self.pool[slot.allocation_id]
            del self._free[slot.allocation_id]
            self._pool_by_place.pop((slot.task_executor, slot.slot_index), None)
        if release:
            self._emit("slots", f"released {len(release)} idle slot(s)")
            self._free_slots(release, "slot no longer needed by the job")
        self._schedule_idle_check()

    def _free_slots(self, slots: list[_PoolSlot], cause: str) -> None:
        for slot in slots:
            manager = self.task_managers.get(slot.task_executor)
            if manager is not None:
                manager.gateway.free_slot(slot.allocation_id, cause)

    # --- scheduling by pipelined region --------------------------------------------------

    def _schedule_regions(self, regions: Iterable[PipelinedRegion]) -> None:
        """Each region asks for its slots as one bulk (PipelinedRegionSchedulingStrategy)."""
        now = trio.current_time()
        new: list[_Bulk] = []
        for region in regions:
            for vertex_id in region.vertices:
                execution = self.executions[vertex_id]
                if execution.state is ExecutionState.CREATED:
                    self._transition(execution, ExecutionState.SCHEDULED)
            bulk = _Bulk(region, now)
            self._pending[region.index] = bulk
            for group in region.groups:
                self._use_group(group)
            new.append(bulk)
        self._assign_free_slots()
        waiting = [b for b in new if self._pending.get(b.region.index) is b]
        if waiting:
            # one timer per scheduling round, not one per bulk (thousands of regions at scale)
            self.schedule_run_async(
                functools.partial(self._check_bulks, waiting), self.config.slot_request_timeout
            )
        self._declare()

    def _check_bulks(self, bulks: list[_Bulk]) -> None:
        """Flink's PhysicalSlotRequestBulkChecker: a bulk that cannot be fulfilled even with
        every slot of the pool, for a whole timeout, fails."""
        if not self._live:
            return
        now = trio.current_time()
        timeout = self.config.slot_request_timeout
        still: list[_Bulk] = []
        timed_out: list[_Bulk] = []
        for bulk in bulks:
            if self._pending.get(bulk.region.index) is not bulk:
                continue
            if bulk.region.slots <= len(self.pool):
                bulk.unfulfillable_since = None
            elif bulk.unfulfillable_since is None:
                bulk.unfulfillable_since = now
            elif now - bulk.unfulfillable_since >= timeout:
                timed_out.append(bulk)
                continue
            still.append(bulk)
        if timed_out:
            self._fail_bulks(timed_out, BULK_TIMEOUT.format(timeout=timeout))
        still = [b for b in still if self._pending.get(b.region.index) is b]
        if still and self._live:
            self.schedule_run_async(functools.partial(self._check_bulks, still), timeout)

    def _remove_bulk(self, bulk: _Bulk) -> None:
        if self._pending.get(bulk.region.index) is not bulk:
            return
        del self._pending[bulk.region.index]
        for group in bulk.region.groups:
            self._unuse_group(group)

    def _fail_bulks(self, bulks: list[_Bulk], cause: str) -> None:
        """Waiting bulks whose slots will not come: each fails its region's first task with
        NoResourceAvailableError, a failure like any other for the restart strategy."""
        self._emit("slots", f"NoResourceAvailableException: {cause}")
        for bulk in bulks:
            if self._pending.get(bulk.region.index) is not bulk:
                continue
            self._remove_bulk(bulk)
            first = self.executions[bulk.region.vertices[0]]
            if not first.state.is_terminal:
                self._execution_failed(first, f"NoResourceAvailableException: {cause}")

    def _bulk_fulfilled(self, bulk: _Bulk) -> None:
        """Every group of the region has its slot: deploy the region's tasks."""
        if self._pending.get(bulk.region.index) is not bulk:
            return
        for vertex_id in bulk.region.vertices:
            execution = self.executions[vertex_id]
            slot = self._group_slot.get(execution.subtask)
            if execution.state is ExecutionState.SCHEDULED and slot is not None:
                self._deploy(execution, slot)
        self._remove_bulk(bulk)

    def _deploy(self, execution: Execution, slot: _PoolSlot) -> None:
        manager = self.task_managers.get(slot.task_executor)
        execution.execution_id = self.context.new_id()
        execution.task_executor = slot.task_executor
        execution.allocation_id = slot.allocation_id
        self._by_id[execution.execution_id] = execution
        self._transition(execution, ExecutionState.DEPLOYING)
        vertex = next(v for v in self.job.vertices if v.name == execution.vertex)
        fails = (
            execution.subtask in vertex.fail_subtasks and execution.attempt < vertex.fail_attempts
        )
        tdd = TaskDeploymentDescriptor(
            self.job_id,
            execution.execution_id,
            execution.vertex,
            execution.subtask,
            execution.attempt,
            slot.allocation_id,
            vertex.task_duration,
            vertex.fail_after if fails else None,
        )
        if manager is None:
            self._execution_failed(execution, f"{slot.task_executor} is not registered")
            return
        manager.executions.add(execution.execution_id)
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
            self.run_async(lambda: self._execution_id_failed(tdd.execution_id, message))

    def _submission_refused(self, tdd: TaskDeploymentDescriptor, cause: str) -> None:
        slot = self.pool.get(tdd.allocation_id)
        if slot is not None:
            self._drop_pool_slot(slot, cause)
        else:
            self._execution_id_failed(tdd.execution_id, cause)

    async def update_task_execution_state(
        self, state: TaskExecutionState, timeout: float = 10.0
    ) -> None:
        execution = self._by_id.get(state.execution_id)
        if execution is None or execution.state.is_terminal:
            return
        new = state.state
        if new in _REPORTED_FROM:
            if execution.state in _REPORTED_FROM[new]:
                self._transition(execution, new)
        elif new is ExecutionState.FINISHED:
            if execution.state is ExecutionState.CANCELING:
                self._transition(execution, ExecutionState.CANCELED)
            else:
                self._transition(execution, ExecutionState.FINISHED)
                self._maybe_finished()
        elif new is ExecutionState.FAILED:
            self._execution_failed(
                execution, f"{execution.vertex}[{execution.subtask}] failed: {state.error}"
            )
        elif new is ExecutionState.CANCELED:
            self._transition(execution, ExecutionState.CANCELED)
            self._maybe_cancelled()

    def _maybe_finished(self) -> None:
        if self.status is JobStatus.RUNNING and self.state_counts[ExecutionState.FINISHED] == len(
            self.executions
        ):
            self._job_reached_terminal_state(JobStatus.FINISHED)
