"""What the JobMaster's mixins (slot_pool.SlotPoolMixin, failover.FailoverMixin) may use of the
JobMaster: its state, set in JobMaster.__init__, and the methods each part offers the others.

Declared once, here, so that each mixin type-checks on its own; nothing here runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from minicluster.rpc import FencedRpcEndpoint

from .jobmaster_state import Execution, _Bulk, _PendingRestart, _PoolSlot, _TaskManager
from .model import ExecutionState, JobGraph, JobStatus
from .topology import ExecutionVertexId, PipelinedRegion, SchedulingTopology

if TYPE_CHECKING:
    from .context import ClusterConfig, ClusterContext


class JobMasterParts(FencedRpcEndpoint):
    """The JobMaster as its mixins see it; only the mixins derive from it."""

    context: ClusterContext
    config: ClusterConfig
    job: JobGraph
    job_id: uuid.UUID
    topology: SchedulingTopology
    status: JobStatus
    restarts: int
    failure_cause: str | None
    pool: dict[uuid.UUID, _PoolSlot]
    _pool_by_place: dict[tuple[str, int], _PoolSlot]
    _free: dict[uuid.UUID, _PoolSlot]
    _group_slot: dict[int, _PoolSlot]
    _group_users: dict[int, int]
    _pending: dict[int, _Bulk]
    _restarts_pending: list[_PendingRestart]
    _idle_check_scheduled: bool
    executions: dict[ExecutionVertexId, Execution]
    state_counts: dict[ExecutionState, int]
    _by_id: dict[uuid.UUID, Execution]
    task_managers: dict[str, _TaskManager]

    if TYPE_CHECKING:
        # the JobMaster's own
        @property
        def required(self) -> int: ...

        @property
        def _live(self) -> bool: ...

        def _emit(self, kind: str, message: str) -> None: ...

        def _set_status(self, status: JobStatus) -> None: ...

        def _transition(self, execution: Execution, state: ExecutionState) -> None: ...

        def _declare(self) -> None: ...

        def _job_reached_terminal_state(self, status: JobStatus) -> None: ...

        # the slot pool's (slot_pool.py)
        def _schedule_regions(self, regions: Iterable[PipelinedRegion]) -> None: ...

        def _remove_bulk(self, bulk: _Bulk) -> None: ...

        # failover's (failover.py)
        def _execution_id_failed(self, execution_id: uuid.UUID | None, message: str) -> None: ...

        def _execution_failed(self, execution: Execution, cause: str) -> None: ...

        def _maybe_cancelled(self) -> None: ...
