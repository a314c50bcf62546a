"""The cluster's domain model: job graphs, states and the records RPCs carry.

Every type here is registered for the wire, so the same calls work in-process and over TCP.
"""

from __future__ import annotations

import enum
import math
import random
import uuid
from dataclasses import dataclass, field

# the limits are written once, in minicluster.limits, for files, flags and the wire alike
from minicluster.limits import (
    MAX_ADDRESS_LENGTH,
    MAX_EDGES_PER_JOB,
    MAX_ERROR_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARALLELISM,
    MAX_RESTART_ATTEMPTS,
    MAX_SLOTS_PER_TASK_EXECUTOR,
    MAX_TASKS_PER_JOB,
    MAX_VERTICES_PER_JOB,
)
from minicluster.rpc import RpcError, register_error, wire_type


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise ValueError(f"{what} must have 1 to {MAX_NAME_LENGTH} characters, not {len(value):,}")
    return value


def _check_count(what: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low:,} to {high:,}, not {value:,}")
    return value


def _check_seconds(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds, at least 0, not {value}")
    return float(value)


def new_id(rng: random.Random) -> uuid.UUID:
    """A UUID from a seeded source, so that a seeded run names everything the same way."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# by value: a set lookup of a str is cheaper than comparing enum members (read per event)
_GLOBALLY_TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELED"})
_TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})


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
        return self._value_ in _GLOBALLY_TERMINAL


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
        return self._value_ in _TERMINAL


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

    def validate(self) -> None:
        _check_name("a vertex name", self.name)
        _check_count(
            f"the parallelism of vertex {self.name!r}", self.parallelism, 1, MAX_PARALLELISM
        )
        _check_seconds(f"the task duration of vertex {self.name!r}", self.task_duration)
        _check_seconds(f"fail_after of vertex {self.name!r}", self.fail_after)
        _check_count(
            f"fail attempts of vertex {self.name!r}", self.fail_attempts, 0, MAX_RESTART_ATTEMPTS
        )
        if not isinstance(self.fail_subtasks, list) or len(self.fail_subtasks) > self.parallelism:
            raise ValueError(f"vertex {self.name!r} lists more failing subtasks than it has")
        for subtask in self.fail_subtasks:
            _check_count(
                f"a failing subtask of vertex {self.name!r}", subtask, 0, self.parallelism - 1
            )


@wire_type
@dataclass
class JobEdge:
    """One record per connected pair of vertices, whatever their parallelism."""

    source: str
    target: str
    pattern: str = "all-to-all"  # or "pointwise"

    def validate(self) -> None:
        _check_name("an edge's source", self.source)
        _check_name("an edge's target", self.target)
        if self.pattern not in ("all-to-all", "pointwise"):
            raise ValueError(f"edge pattern must be all-to-all or pointwise, not {self.pattern!r}")


@wire_type
@dataclass
class RestartStrategy:
    """Fixed-delay restarts, Flink's default when checkpointing is on."""

    attempts: int = 3
    delay: float = 1.0

    def validate(self) -> None:
        _check_count("restart attempts", self.attempts, 0, MAX_RESTART_ATTEMPTS)
        _check_seconds("the restart delay", self.delay)


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
        """Everything a job must be before anything is created for it: types, ranges, finite
        durations, lengths and Flink's bound on parallelism. Run where a graph enters (decoded
        from the wire, read from a file, submitted), so a refused job leaves no trace."""
        if not isinstance(self.job_id, uuid.UUID):
            raise ValueError(f"a job id must be a UUID, not {type(self.job_id).__name__}")
        _check_name("a job name", self.name)
        if not isinstance(self.vertices, list) or not self.vertices:
            raise ValueError(f"job {self.name!r} has no vertices")
        if len(self.vertices) > MAX_VERTICES_PER_JOB:
            raise ValueError(f"a job has at most {MAX_VERTICES_PER_JOB:,} vertices")
        if not isinstance(self.edges, list) or len(self.edges) > MAX_EDGES_PER_JOB:
            raise ValueError(f"a job has at most {MAX_EDGES_PER_JOB:,} edges")
        for v in self.vertices:
            if not isinstance(v, JobVertex):
                raise ValueError(f"a vertex must be a JobVertex, not {type(v).__name__}")
            v.validate()
        names = [v.name for v in self.vertices]
        if len(set(names)) != len(names):
            raise ValueError(f"job {self.name!r} has two vertices with the same name")
        if self.task_count > MAX_TASKS_PER_JOB:
            raise ValueError(
                f"job {self.name!r} has {self.task_count:,} tasks; a job has at most "
                f"{MAX_TASKS_PER_JOB:,}"
            )
        known = set(names)
        for e in self.edges:
            if not isinstance(e, JobEdge):
                raise ValueError(f"an edge must be a JobEdge, not {type(e).__name__}")
            e.validate()
            if e.source not in known or e.target not in known:
                raise ValueError(f"edge {e.source}->{e.target} names an unknown vertex")
        if not isinstance(self.restart, RestartStrategy):
            raise ValueError("restart must be a RestartStrategy")
        self.restart.validate()
        if self.failover_strategy not in FAILOVER_STRATEGIES:
            raise ValueError(
                f"failover strategy must be region or full, not {self.failover_strategy!r}"
            )


@wire_type
@dataclass(frozen=True)
class SlotID:
    task_executor: str
    index: int

    def validate(self) -> None:
        _check_name("a TaskExecutor id", self.task_executor)
        _check_count("a slot index", self.index, 0, MAX_SLOTS_PER_TASK_EXECUTOR - 1)

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

    def validate(self) -> None:
        _check_name("a vertex name", self.vertex)
        _check_count("a subtask index", self.subtask, 0, MAX_PARALLELISM - 1)
        _check_count("an attempt number", self.attempt, 0, MAX_RESTART_ATTEMPTS)
        _check_seconds("a task duration", self.duration)
        if self.fail_after is not None:
            _check_seconds("fail_after", self.fail_after)


@wire_type
@dataclass
class TaskExecutionState:
    job_id: uuid.UUID
    execution_id: uuid.UUID
    state: ExecutionState
    error: str | None = None

    def validate(self) -> None:
        if self.error is not None and len(self.error) > MAX_ERROR_LENGTH:
            raise ValueError(f"a task's error has at most {MAX_ERROR_LENGTH:,} characters")


@wire_type
@dataclass
class TaskExecutorRegistration:
    resource_id: str
    address: str
    slots: int
    # one per TaskExecutor process (Flink's TaskManager session id): tells a retried
    # registration of the same process from a new process under the same id
    session_id: uuid.UUID | None = None

    def validate(self) -> None:
        # the slot count's range is the ResourceManager's to reject, with a reason
        _check_name("a TaskExecutor id", self.resource_id)
        if len(self.address) > MAX_ADDRESS_LENGTH:
            raise ValueError(f"an address has at most {MAX_ADDRESS_LENGTH:,} characters")


@wire_type
@dataclass
class RegistrationResponse:
    """Flink's RegistrationResponse: success carries the instance (registration) id; a failure
    carries the reason and is retried after a pause; a *rejection* (`rejected`) ends retrying."""

    success: bool
    instance_id: uuid.UUID | None = None
    reason: str = ""
    rejected: bool = False

    @classmethod
    def rejection(cls, reason: str) -> RegistrationResponse:
        """A refusal that retrying cannot change (Flink's RegistrationResponse.Rejection)."""
        return cls(False, reason=reason, rejected=True)


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

    def validate(self) -> None:
        if len(self.slots) > MAX_SLOTS_PER_TASK_EXECUTOR:
            raise ValueError(f"a slot report has at most {MAX_SLOTS_PER_TASK_EXECUTOR:,} slots")


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

    def validate(self) -> None:
        if len(self.slots) > MAX_SLOTS_PER_TASK_EXECUTOR:
            raise ValueError(f"a slot report has at most {MAX_SLOTS_PER_TASK_EXECUTOR:,} slots")


@register_error
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
