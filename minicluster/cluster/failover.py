"""The JobMaster's failures and restarts, as a mixin of JobMaster: a failed task goes to the
fixed-delay restart strategy, which restarts its region (or the whole job) once the region's
tasks are cancelled, or fails the job (Flink's DefaultScheduler, RestartPipelinedRegionFailover-
Strategy and FixedDelayRestartBackoffTimeStrategy)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .jobmaster_base import JobMasterParts
from .jobmaster_state import (
    _HOLDS_SLOT,
    Execution,
    _PendingRestart,
)
from .model import (
    ExecutionState,
    JobStatus,
)

if TYPE_CHECKING:
    from .gateways import TaskExecutorGateway


class FailoverMixin(JobMasterParts):
    """Failures, restarts and cancellation of JobMaster's tasks; only JobMaster mixes it in."""

    # --- failures and restarts -----------------------------------------------------------

    def _execution_id_failed(self, execution_id: uuid.UUID | None, message: str) -> None:
        execution = self._by_id.get(execution_id) if execution_id else None
        if execution is not None:
            self._execution_failed(execution, message)

    def _execution_failed(self, execution: Execution, cause: str) -> None:
        """One task failed. A task already being cancelled (its region restarts anyway) just
        ends; otherwise the failure goes to the restart strategy: restart the failed region (or
        the whole job with the full strategy) after the delay, or fail the job."""
        if execution.state.is_terminal:
            return
        if execution.state is ExecutionState.CANCELING or not self._live:
            self._transition(
                execution,
                ExecutionState.CANCELED
                if execution.state is ExecutionState.CANCELING
                else ExecutionState.FAILED,
            )
            self._maybe_cancelled()
            return
        if self.executions.get((execution.vertex, execution.subtask)) is not execution:
            return  # an earlier attempt (always terminal by the time it is replaced)
        self._transition(execution, ExecutionState.FAILED)
        self._emit("failure", cause)
        self.failure_cause = cause
        if self.restarts >= self.job.restart.attempts:
            self._emit(
                "failure",
                f"recovery is suppressed by the fixed-delay restart strategy "
                f"({self.job.restart.attempts} attempts, {self.job.restart.delay:g} s)",
            )
            self._set_status(JobStatus.FAILING)
            self._job_reached_terminal_state(JobStatus.FAILED)
            return
        self.restarts += 1
        if self.job.failover_strategy == "full":
            regions = {r.index for r in self.topology.regions}
        else:
            regions = {execution.region}
        self._restart_regions(regions)

    def _restart_regions(self, regions: set[int]) -> None:
        """Cancel the regions' tasks; once they are all down and the delay has passed, schedule
        the regions again with new execution attempts."""
        for index in sorted(regions):
            bulk = self._pending.get(index)
            if bulk is not None:
                self._remove_bulk(bulk)
        self._cancel_executions(
            self.executions[v] for index in regions for v in self.topology.regions[index].vertices
        )
        # as Flink 2.3: the job is RESTARTING while a restart waits, whatever it restarts
        self._set_status(JobStatus.RESTARTING)
        restart = _PendingRestart(regions)
        self._restarts_pending.append(restart)
        self.schedule_run_async(
            functools.partial(self._restart_due, restart), self.job.restart.delay
        )

    def _restart_due(self, restart: _PendingRestart) -> None:
        restart.due = True
        self._maybe_restart()

    def _maybe_restart(self) -> None:
        for restart in list(self._restarts_pending):
            if not restart.due:
                continue
            if self.status not in (JobStatus.RUNNING, JobStatus.RESTARTING):
                self._restarts_pending.remove(restart)
                continue
            vertices = [v for i in restart.regions for v in self.topology.regions[i].vertices]
            if not all(self.executions[v].state.is_terminal for v in vertices):
                continue  # Flink restarts once the cancellation is complete
            self._restarts_pending.remove(restart)
            for vertex_id in vertices:
                old = self.executions[vertex_id]
                fresh = Execution(old.vertex, old.subtask, old.attempt + 1, old.region)
                self.state_counts[old.state] -= 1
                self.state_counts[ExecutionState.CREATED] += 1
                self.executions[vertex_id] = fresh
            if not self._restarts_pending:
                self._set_status(JobStatus.RUNNING)
            self._schedule_regions(self.topology.regions[i] for i in sorted(restart.regions))

    def _cancel_executions(self, executions: Iterable[Execution]) -> None:
        cancels: list[tuple[TaskExecutorGateway, uuid.UUID]] = []
        for execution in executions:
            if execution.state.is_terminal or execution.state is ExecutionState.CANCELING:
                continue
            if execution.state not in _HOLDS_SLOT:
                self._transition(execution, ExecutionState.CANCELED)
                continue
            self._transition(execution, ExecutionState.CANCELING)
            manager = self.task_managers.get(execution.task_executor or "")
            if manager is not None and execution.execution_id is not None:
                cancels.append((manager.gateway, execution.execution_id))
            elif execution.execution_id is not None:
                self._transition(execution, ExecutionState.CANCELED)
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
            e.state.is_terminal for e in self.executions.values()
        ):
            self._job_reached_terminal_state(JobStatus.CANCELED)
