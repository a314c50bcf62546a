"""The cluster's domain model: job graphs, states and the records RPCs carry.

Every type here is registered for the wire, so the same calls work in-process and over TCP.
"""

from __future__ import annotations

import enum
import random
import uuid
from dataclasses import dataclass, field

from minicluster.rpc import RpcError, register_error, wire_type

# Flink's upper bound for a vertex's parallelism (and max parallelism): 2^15
MAX_PARALLELISM = 32_768
# slots one TaskExecutor may offer: more would not fit a slot report in a frame
MAX_SLOTS_PER_TASK_EXECUTOR = 1_024


def new_id(rng: random.Random) -> uuid.UUID:
    """A UUID from a seeded source, so that a seeded run names everything the same way."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


@wire_type
class JobStatus(enum.Enum):
    """Flink's JobStatus."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILING = "FAILING"
    RESTARTING = "RESTARTING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"

    @property
    def is_globally_terminal(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)


@wire_type
class ExecutionState(enum.Enum):
    """Flink's ExecutionState. A TaskExecutor reports INITIALIZING, then RUNNING, then a final
    state; CREATED, SCHEDULED (waiting for its region's slots) and DEPLOYING are the JobMaster's."""

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    DEPLOYING = "DEPLOYING"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (ExecutionState.FINISHED, ExecutionState.CANCELED, ExecutionState.FAILED)


@wire_type
class SlotState(enum.Enum):
    FREE = "FREE"
    ALLOCATED = "ALLOCATED"
    ACTIVE = "ACTIVE"


@wire_type
@dataclass
class JobVertex:
    name: str
    parallelism: int
    task_duration: float = 1.0
    # Failure injection: these subtasks fail after `fail_after` seconds, in the first
    # `fail_attempts` attempts of the job.
    fail_subtasks: list[int] = field(default_factory=list)
    fail_after: float = 0.0
    fail_attempts: int = 1


@wire_type
@dataclass
class JobEdge:
    """One record per connected pair of vertices, whatever their parallelism."""

    source: str
    target: str
    pattern: str = "all-to-all"  # or "pointwise"


@wire_type
@dataclass
class RestartStrategy:
    """Fixed-delay restarts, Flink's default when checkpointing is on."""

    attempts: int = 3
    delay: float = 1.0


FAILOVER_STRATEGIES = ("region", "full")


@wire_type
@dataclass
class JobGraph:
    job_id: uuid.UUID
    name: str
    vertices: list[JobVertex]
    edges: list[JobEdge] = field(default_factory=list)
    restart: RestartStrategy = field(default_factory=RestartStrategy)
    # Flink's jobmanager.execution.failover-strategy: "region" restarts the failed task's
    # pipelined region, "full" the whole job
    failover_strategy: str = "region"

    @property
    def max_parallelism(self) -> int:
        """Slots the job needs to run every task at once under Flink's default slot sharing."""
        return max(v.parallelism for v in self.vertices)

    @property
    def task_count(self) -> int:
        return sum(v.parallelism for v in self.vertices)

    def validate(self) -> None:
        if not self.vertices:
            raise ValueError(f"job {self.name!r} has no vertices")
        names = [v.name for v in self.vertices]
        if len(set(names)) != len(names):
            raise ValueError(f"job {self.name!r} has two vertices with the same name")
        for v in self.vertices:
            if v.parallelism < 1:
                raise ValueError(f"vertex {v.name!r} needs a parallelism of at least 1")
            if v.task_duration < 0:
                raise ValueError(f"vertex {v.name!r} has a negative task duration")
        for e in self.edges:
            if e.source not in names or e.target not in names:
                raise ValueError(f"edge {e.source}->{e.target} names an unknown vertex")
            if e.pattern not in ("all-to-all", "pointwise"):
                raise ValueError(f"edge pattern must be all-to-all or pointwise, not {e.pattern!r}")
        if self.failover_strategy not in FAILOVER_STRATEGIES:
            raise ValueError(
                f"failover strategy must be region or full, not {self.failover_strategy!r}"
            )


@wire_type
@dataclass(frozen=True)
class SlotID:
    task_executor: str
    index: int

    def __str__(self) -> str:
        return f"{self.task_executor}/{self.index}"


@wire_type
@dataclass
class SlotStatus:
    slot_id: SlotID
    state: SlotState
    job_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None


@wire_type
@dataclass
class SlotOffer:
    allocation_id: uuid.UUID
    slot_index: int


@wire_type
@dataclass
class TaskDeploymentDescriptor:
    job_id: uuid.UUID
    execution_id: uuid.UUID
    vertex: str
    subtask: int
    attempt: int
    allocation_id: uuid.UUID
    duration: float
    fail_after: float | None = None


@wire_type
@dataclass
class TaskExecutionState:
    job_id: uuid.UUID
    execution_id: uuid.UUID
    state: ExecutionState
    error: str | None = None


@wire_type
@dataclass
class TaskExecutorRegistration:
    resource_id: str
    address: str
    slots: int
    # one per TaskExecutor process (Flink's TaskManager session id): tells a retried
    # registration of the same process from a new process under the same id
    session_id: uuid.UUID | None = None


@wire_type
@dataclass
class RegistrationResponse:
    """Flink's RegistrationResponse: success carries the instance (registration) id; a failure
    carries the reason and is retried after a pause; a *rejection* (`rejected`) ends retrying."""

    success: bool
    instance_id: uuid.UUID | None = None
    reason: str = ""
    rejected: bool = False


@wire_type
@dataclass
class AllocatedSlotInfo:
    slot_index: int
    allocation_id: uuid.UUID


@wire_type
@dataclass
class AllocatedSlotReport:
    """The JobMaster's heartbeat request to a TaskExecutor: the slots of that TaskExecutor in
    the job's slot pool. The TaskExecutor frees the job's active slots missing from it."""

    job_id: uuid.UUID
    slots: list[AllocatedSlotInfo]


@wire_type
@dataclass
class TaskExecutorToJobManagerHeartbeatPayload:
    """A TaskExecutor's heartbeat answer to a JobMaster: the executions it runs for the job
    (Flink's ExecutionDeploymentReport); the JobMaster cancels those it does not know."""

    executions: list[uuid.UUID]


@wire_type
@dataclass
class TaskExecutorHeartbeatPayload:
    """A TaskExecutor's heartbeat answer to the ResourceManager: its slot report."""

    slots: list[SlotStatus]


class ClusterError(RpcError):
    """Base of the runtime's own errors that travel over the wire."""


@register_error
class DuplicateJobSubmissionError(ClusterError):
    pass


@register_error
class JobNotFoundError(ClusterError):
    pass


@register_error
class SlotOccupiedError(ClusterError):
    pass


@register_error
class TaskSubmissionError(ClusterError):
    pass


@register_error
class UnknownTaskExecutorError(ClusterError):
    pass


@register_error
class NoResourceAvailableError(ClusterError):
    """Flink's NoResourceAvailableException: a slot request that cannot be met."""


@register_error
class JobStateError(ClusterError):
    """A request that the job's current status does not allow (cancel a FAILED job)."""
