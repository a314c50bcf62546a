"""The JobMaster's state records: its slot pool's slots, the executions it tracks, the bulks of
waiting regions, pending restarts and registered TaskExecutors, plus the constants its messages
use. Kept apart so that the JobMaster and its mixins (slot_pool, failover) share them without
importing each other."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from .gateways import TaskExecutorGateway
from .model import ExecutionState
from .topology import PipelinedRegion

# states in which an execution occupies its slot
_HOLDS_SLOT = frozenset(
    {
        ExecutionState.DEPLOYING,
        ExecutionState.INITIALIZING,
        ExecutionState.RUNNING,
        ExecutionState.CANCELING,
    }
)
# the states a TaskExecutor may report, and from which state each is a step forward
_REPORTED_FROM = {
    ExecutionState.INITIALIZING: frozenset({ExecutionState.DEPLOYING}),
    ExecutionState.RUNNING: frozenset({ExecutionState.DEPLOYING, ExecutionState.INITIALIZING}),
}

# the tasks a reply of request_job_details lists at most (beside their total)
MAX_LISTED_TASKS = 1_000
NOT_ENOUGH_RESOURCES = "Could not acquire the minimum required resources."
BULK_TIMEOUT = (
    "Slot request bulk is not fulfillable! Could not allocate the required slots within the "
    "slot request timeout of {timeout:g} s"
)


@dataclass
class _PoolSlot:
    allocation_id: uuid.UUID
    task_executor: str
    slot_index: int
    group: int | None = None  # the slot sharing group (subtask index) using it; None: free
    free_since: float = 0.0


@dataclass
class Execution:
    vertex: str
    subtask: int
    attempt: int
    region: int
    execution_id: uuid.UUID | None = None
    state: ExecutionState = ExecutionState.CREATED
    task_executor: str | None = None
    allocation_id: uuid.UUID | None = None


# numbers the bulks of every JobMaster (only compared for equality, never traced)
_BULK_REQUESTS: itertools.count[int] = itertools.count(1)


@dataclass
class _Bulk:
    """A region waiting for its slots (Flink's PhysicalSlotRequestBulk)."""

    region: PipelinedRegion
    unfulfillable_since: float | None
    # groups before this index have their slot: a bulk of 10,000 groups fed by thousands of
    # offers is not scanned from the start each time (reset when a held slot is lost)
    cursor: int = 0
    # numbers the bulks: a snapshot tells a region waiting again from one still waiting
    request: int = field(default_factory=lambda: next(_BULK_REQUESTS))


@dataclass
class _PendingRestart:
    regions: set[int]
    due: bool = False


@dataclass
class _TaskManager:
    resource_id: str
    address: str
    session_id: uuid.UUID
    gateway: TaskExecutorGateway
    executions: set[uuid.UUID] = field(default_factory=set)
