"""What a scenario, job or cluster file means once it is read: the dataclasses the runner, the
CLI and the simulator use (ClusterSpec, JobSpec, the steps and conditions, Scenario) and the
ScenarioError that every problem with a file becomes.

Nothing here knows YAML; the parsers build these from what the reader checked.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeAlias

from minicluster.cluster.components import (
    DISPATCHER_NAME,
    JOB_MASTER_NAME_PREFIX,
    RESOURCE_MANAGER_NAME,
    job_name_of,
)
from minicluster.cluster.model import (
    JobEdge,
    JobGraph,
    JobStatus,
    JobVertex,
    RestartStrategy,
    new_id,
)
from minicluster.limits import (
    CLUSTER_DURATIONS,
)
from minicluster.scenario.durations import format_duration

DEFAULT_WAIT_TIMEOUT = 60.0

# components as scenario files name them (minicluster/cluster/components.py maps them to
# endpoint ids)
RESOURCE_MANAGER = RESOURCE_MANAGER_NAME
DISPATCHER = DISPATCHER_NAME
JOB_MASTER_PREFIX = JOB_MASTER_NAME_PREFIX
_RESERVED_IDS = frozenset({RESOURCE_MANAGER, DISPATCHER, "job_master"})


# --------------------------------------------------------------------------------------------
# Errors and warnings


def _where(file: str, path: str, line: int | None) -> str:
    text = file
    if path:
        text += f": {path}"
    if line is not None:
        text += f" (line {line})"
    return text


class ScenarioError(Exception):
    """An invalid scenario or job file. ``str()`` is one sentence, such as
    ``x.yaml: steps[3].submit.parallelism (line 12): expected a positive integer, got 'four'``.
    ``path`` is ``""`` for the file as a whole; ``line`` is 1-based, or None when unknown."""

    def __init__(self, file: str, path: str, line: int | None, message: str) -> None:
        super().__init__(file, path, line, message)
        self.file = file
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{_where(self.file, self.path, self.line)}: {self.message}"


@dataclass(frozen=True)
class ScenarioWarning:
    """Something ignored on the way (an unknown key), worth telling the user on stderr."""

    file: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{_where(self.file, self.path, self.line)}: {self.message}"


@dataclass(frozen=True)
class Source:
    """Where something was written: file, path inside it, line."""

    file: str = "<string>"
    path: str = ""
    line: int | None = None

    def error(self, message: str) -> ScenarioError:
        return ScenarioError(self.file, self.path, self.line, message)


# --------------------------------------------------------------------------------------------
# The cluster


@dataclass(frozen=True)
class TaskExecutorSpec:
    id: str
    slots: int


def _default_task_executors() -> list[TaskExecutorSpec]:
    return [TaskExecutorSpec("te-1", 2), TaskExecutorSpec("te-2", 2)]


@dataclass(kw_only=True)
class ClusterSpec:
    """The ``cluster:`` section. Durations are in seconds."""

    task_executors: list[TaskExecutorSpec] = field(default_factory=_default_task_executors)
    slots_per_executor: int = 2
    rpc: Literal["shared", "dedicated"] = "shared"
    clock: Literal["virtual", "real"] = "virtual"
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 50.0
    rpc_timeout: float = 10.0
    # how long news of a new leader takes to reach the other components (ZooKeeper-like lag)
    leader_notification_delay: float = 0.0
    # Flink's slot.request.timeout (also the ResourceManager's start-up period)
    slot_request_timeout: float = 300.0
    # Flink's taskmanager.registration.timeout
    registration_timeout: float = 300.0
    # the jobs' failover strategy unless a job names its own (Flink's
    # jobmanager.execution.failover-strategy)
    failover_strategy: str = "region"

    @property
    def total_slots(self) -> int:
        return sum(te.slots for te in self.task_executors)

    def config_values(self) -> dict[str, Any]:
        """The durations of limits.CLUSTER_DURATIONS, as ClusterConfig's keyword arguments."""
        return {s.attribute: float(getattr(self, s.attribute)) for s in CLUSTER_DURATIONS}


# --------------------------------------------------------------------------------------------
# Jobs


@dataclass(kw_only=True)
class JobSpec:
    """A job as a file describes it: a JobGraph without its id."""

    name: str
    vertices: list[JobVertex]
    edges: list[JobEdge] = field(default_factory=list)
    restart: RestartStrategy = field(default_factory=RestartStrategy)
    failover_strategy: str | None = None  # None: the cluster's
    source: Source = field(default_factory=Source, compare=False)
    # the JobGraph this spec converts to, built and validated once (see to_job_graph)
    _graph: JobGraph | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def single(cls, name: str, parallelism: int = 1, task_duration: float = 1.0) -> JobSpec:
        """The one-vertex job of ``submit-job --name N --parallelism P --task-duration D``."""
        return cls(name=name, vertices=[JobVertex(name, parallelism, task_duration)])

    @property
    def parallelism(self) -> int:
        """Slots the job needs under slot sharing: its largest vertex parallelism."""
        return max((v.parallelism for v in self.vertices), default=0)

    @property
    def task_count(self) -> int:
        return sum(v.parallelism for v in self.vertices)

    def vertex(self, name: str) -> JobVertex | None:
        return next((v for v in self.vertices if v.name == name), None)

    def to_job_graph(self, rng: random.Random, failover_strategy: str = "region") -> JobGraph:
        """A validated JobGraph with a fresh id drawn from ``rng``; `failover_strategy` applies
        unless the job names its own.

        The spec is converted and validated once (the loader does it, to report a bad job at
        its file and line); every submission then takes that graph with its own id. Nothing
        changes a JobGraph after it is built, so submissions share its vertices and edges."""
        graph = self._graph
        if graph is None:
            graph = JobGraph(
                job_id=uuid.UUID(int=0),
                name=self.name,
                vertices=copy.deepcopy(self.vertices),
                edges=copy.deepcopy(self.edges),
                restart=copy.deepcopy(self.restart),
                failover_strategy=self.failover_strategy or failover_strategy,
            )
            try:
                graph.validate()
            except ValueError as exc:
                raise self.source.error(str(exc)) from None
            self._graph = graph
        return dataclasses.replace(
            graph,
            job_id=new_id(rng),
            failover_strategy=self.failover_strategy or failover_strategy,
        )


# --------------------------------------------------------------------------------------------
# Conditions


class ClusterView(Protocol):
    """What a condition reads from a running cluster (implemented by the scenario runner)."""

    def job_status(self, job: str) -> JobStatus | None: ...

    def job_restarts(self, job: str) -> int: ...

    def free_slots(self) -> int: ...

    def registered_task_executors(self) -> int: ...

    def fencing_rejections(self) -> int: ...


@dataclass(frozen=True)
class Count:
    """An exact number (``min == max``) or a range; either bound may be open."""

    min: int | None = None
    max: int | None = None

    def matches(self, value: int) -> bool:
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max

    def describe(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"== {self.min}"
        if self.max is None:
            return f">= {self.min}"
        if self.min is None:
            return f"<= {self.max}"
        return f"in {self.min}..{self.max}"


class BaseCondition:
    """A condition that ``expect`` checks once and ``wait`` polls until it holds."""

    kind: ClassVar[str]

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, view: ClusterView) -> tuple[bool, str]:
        """Whether the condition holds, and what was seen, as a phrase for a message."""
        raise NotImplementedError


@dataclass(frozen=True)
class JobStatusCondition(BaseCondition):
    kind: ClassVar[str] = "status"
    job: str
    statuses: tuple[JobStatus, ...]

    @property
    def status(self) -> JobStatus:
        return self.statuses[0]

    def describe(self) -> str:
        return f"job {self.job!r} is {' or '.join(s.value for s in self.statuses)}"

    def check(self, view: ClusterView) -> tuple[bool, str]:
        status = view.job_status(self.job)
        if status is None:
            return False, f"job {self.job!r} is not known to the cluster"
        return status in self.statuses, f"job {self.job!r} is {status.value}"


@dataclass(frozen=True)
class JobRestartsCondition(BaseCondition):
    kind: ClassVar[str] = "restarts"
    job: str
    count: Count

    def describe(self) -> str:
        return f"restarts of job {self.job!r} {self.count.describe()}"

    def check(self, view: ClusterView) -> tuple[bool, str]:
        n = view.job_restarts(self.job)
        return self.count.matches(n), f"job {self.job!r} restarted {n} time(s)"


@dataclass(frozen=True)
class _ClusterCountCondition(BaseCondition):
    """A cluster-wide number against a Count; `kind` is also the ClusterView method to read."""

    label: ClassVar[str]  # what describe() calls the number
    unit: ClassVar[str]  # what a message calls what it saw
    count: Count

    def describe(self) -> str:
        return f"{self.label} {self.count.describe()}"

    def check(self, view: ClusterView) -> tuple[bool, str]:
        n: int = getattr(view, self.kind)()
        return self.count.matches(n), f"{n} {self.unit}"


@dataclass(frozen=True)
class FreeSlotsCondition(_ClusterCountCondition):
    kind: ClassVar[str] = "free_slots"
    label: ClassVar[str] = "free slots"
    unit: ClassVar[str] = "free slot(s)"


@dataclass(frozen=True)
class RegisteredTaskExecutorsCondition(_ClusterCountCondition):
    kind: ClassVar[str] = "registered_task_executors"
    label: ClassVar[str] = "registered TaskExecutors"
    unit: ClassVar[str] = "registered TaskExecutor(s)"


@dataclass(frozen=True)
class FencingRejectionsCondition(_ClusterCountCondition):
    kind: ClassVar[str] = "fencing_rejections"
    label: ClassVar[str] = "fencing rejections"
    unit: ClassVar[str] = "fencing rejection(s)"


Condition: TypeAlias = (
    JobStatusCondition
    | JobRestartsCondition
    | FreeSlotsCondition
    | RegisteredTaskExecutorsCondition
    | FencingRejectionsCondition
)


# --------------------------------------------------------------------------------------------
# Steps


@dataclass(kw_only=True)
class BaseStep:
    """One entry of ``steps:``. ``index`` is 0-based, ``line`` 1-based."""

    kind: ClassVar[str]
    index: int
    line: int | None = None

    @property
    def path(self) -> str:
        return f"steps[{self.index}]"

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(kw_only=True)
class SubmitStep(BaseStep):
    kind: ClassVar[str] = "submit"
    job: JobSpec

    def describe(self) -> str:
        return (
            f"submit job {self.job.name!r} ({self.job.task_count} task(s), "
            f"parallelism {self.job.parallelism})"
        )


@dataclass(kw_only=True)
class WaitStep(BaseStep):
    kind: ClassVar[str] = "wait"
    condition: Condition
    timeout: float = DEFAULT_WAIT_TIMEOUT

    def describe(self) -> str:
        return f"wait until {self.condition.describe()} (at most {format_duration(self.timeout)})"


@dataclass(kw_only=True)
class ExpectStep(BaseStep):
    kind: ClassVar[str] = "expect"
    condition: Condition

    def describe(self) -> str:
        return f"expect {self.condition.describe()}"


@dataclass(kw_only=True)
class KillTaskExecutorStep(BaseStep):
    """A crash: the TaskExecutor stops answering and says no goodbye."""

    kind: ClassVar[str] = "kill_task_executor"
    task_executor: str

    def describe(self) -> str:
        return f"kill TaskExecutor {self.task_executor}"


@dataclass(kw_only=True)
class StopTaskExecutorStep(BaseStep):
    """A graceful stop: the TaskExecutor deregisters."""

    kind: ClassVar[str] = "stop_task_executor"
    task_executor: str

    def describe(self) -> str:
        return f"stop TaskExecutor {self.task_executor}"


@dataclass(kw_only=True)
class AddTaskExecutorStep(BaseStep):
    kind: ClassVar[str] = "add_task_executor"
    task_executor: TaskExecutorSpec

    def describe(self) -> str:
        return f"add TaskExecutor {self.task_executor.id} with {self.task_executor.slots} slot(s)"


@dataclass(kw_only=True)
class FailTaskStep(BaseStep):
    """Fail one running subtask. ``vertex`` is always resolved (a one-vertex job's only vertex)."""

    kind: ClassVar[str] = "fail_task"
    job: str
    vertex: str
    subtask: int

    def describe(self) -> str:
        return f"fail subtask {self.subtask} of {self.vertex!r} in job {self.job!r}"


@dataclass(kw_only=True)
class FailoverStep(BaseStep):
    """A new leader with a new fencing token. ``target`` is ``resource_manager``,
    ``dispatcher`` or ``job_master:JOB``."""

    kind: ClassVar[str] = "failover"
    target: str

    @property
    def job(self) -> str | None:
        return _component_job(self.target)

    def describe(self) -> str:
        return f"fail over the {_describe_component(self.target)}"


@dataclass(kw_only=True)
class PartitionStep(BaseStep):
    """No message passes between the two members for ``duration`` seconds. A member is a
    TaskExecutor id, ``resource_manager``, ``dispatcher`` or ``job_master:JOB``."""

    kind: ClassVar[str] = "partition"
    between: tuple[str, str]
    duration: float

    def describe(self) -> str:
        a, b = (_describe_component(m) for m in self.between)
        return f"partition {a} from {b} for {format_duration(self.duration)}"


@dataclass(kw_only=True)
class SleepStep(BaseStep):
    kind: ClassVar[str] = "sleep"
    duration: float

    def describe(self) -> str:
        return f"sleep {format_duration(self.duration)}"


@dataclass(kw_only=True)
class CancelStep(BaseStep):
    kind: ClassVar[str] = "cancel"
    job: str

    def describe(self) -> str:
        return f"cancel job {self.job!r}"


Step: TypeAlias = (
    SubmitStep
    | WaitStep
    | ExpectStep
    | KillTaskExecutorStep
    | StopTaskExecutorStep
    | AddTaskExecutorStep
    | FailTaskStep
    | FailoverStep
    | PartitionStep
    | SleepStep
    | CancelStep
)


def _component_job(member: str) -> str | None:
    return job_name_of(member)


def _describe_component(member: str) -> str:
    if member == RESOURCE_MANAGER:
        return "ResourceManager"
    if member == DISPATCHER:
        return "Dispatcher"
    job = _component_job(member)
    if job is not None:
        return f"JobMaster of {job!r}"
    return f"TaskExecutor {member}"


@dataclass(kw_only=True)
class Scenario:
    name: str
    description: str = ""
    seed: int | None = None
    # "invariants": run-scenario runs it with the checks of `minicluster simulate` (a scenario
    # that simulate --shrink wrote says so, to fail the way its run did)
    checks: str = "none"
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    steps: list[Step] = field(default_factory=list)
    file: str = "<string>"
    warnings: list[ScenarioWarning] = field(default_factory=list)

    @property
    def jobs(self) -> dict[str, JobSpec]:
        """The jobs the submit steps define, by name, in submission order."""
        return {s.job.name: s.job for s in self.steps if isinstance(s, SubmitStep)}


def to_job_graph(
    submit: SubmitStep | JobSpec, rng: random.Random, failover_strategy: str = "region"
) -> JobGraph:
    """The JobGraph a submit step (or a job file) submits, its id drawn from ``rng``; a graph
    that does not validate is a ScenarioError at that step."""
    spec = submit.job if isinstance(submit, SubmitStep) else submit
    return spec.to_job_graph(rng, failover_strategy)
