"""Scenario files and job files: safe YAML loading that keeps line numbers, validated into types.

Every problem with a file is a :class:`ScenarioError` that names the file, the path inside it
(``steps[3].submit.parallelism``) and the line, in one sentence. A key this reader does not know
is an error with a did-you-mean hint, like an unknown step kind: a typo such as ``paralelism``
would otherwise run the default and pass. Sizes (the file, steps, jobs, TaskExecutors, names)
are bounded by :mod:`minicluster.limits`, so a hostile file is refused before it costs time.

Step indexes are 0-based, as in the paths (``steps[0]`` is the first step).
"""

from __future__ import annotations

import bisect
import copy
import difflib
import random
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from minicluster.bounded_read import FileTooLargeError, read_bounded
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
    MAX_DESCRIPTION_LENGTH,
    MAX_EDGES_PER_JOB,
    MAX_JOBS_PER_SCENARIO,
    MAX_NAME_LENGTH,
    MAX_PARALLELISM,
    MAX_SLOTS_PER_TASK_EXECUTOR,
    MAX_STEPS_PER_SCENARIO,
    MAX_TASK_EXECUTORS,
    MAX_TASKS_PER_JOB,
    MAX_VERTICES_PER_JOB,
    TASK_EXECUTOR_ID,
    LimitError,
    check_positive_duration,
)
from minicluster.scenario.durations import describe_value, format_duration, parse_duration

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "MAX_TASK_EXECUTORS",
    "AddTaskExecutorStep",
    "BaseCondition",
    "BaseStep",
    "CancelStep",
    "ClusterSpec",
    "ClusterView",
    "Condition",
    "Count",
    "ExpectStep",
    "FailTaskStep",
    "FailoverStep",
    "FencingRejectionsCondition",
    "FreeSlotsCondition",
    "JobRestartsCondition",
    "JobSpec",
    "JobStatusCondition",
    "KillTaskExecutorStep",
    "PartitionStep",
    "RegisteredTaskExecutorsCondition",
    "Scenario",
    "ScenarioError",
    "ScenarioWarning",
    "SleepStep",
    "Source",
    "Step",
    "StopTaskExecutorStep",
    "SubmitStep",
    "TaskExecutorSpec",
    "WaitStep",
    "load_job_file",
    "load_scenario",
    "parse_job",
    "parse_scenario",
    "to_job_graph",
]

_T = TypeVar("_T")

DEFAULT_WAIT_TIMEOUT = 60.0

RESOURCE_MANAGER = "resource_manager"
DISPATCHER = "dispatcher"
JOB_MASTER_PREFIX = "job_master:"
_RESERVED_IDS = frozenset({RESOURCE_MANAGER, DISPATCHER, "job_master"})

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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
        unless the job names its own."""
        graph = JobGraph(
            job_id=new_id(rng),
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
        return graph


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

_CONDITION_KEYS = ("status", "restarts", "free_slots", "registered_task_executors",
                   "fencing_rejections")  # fmt: skip


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
    return member[len(JOB_MASTER_PREFIX) :] if member.startswith(JOB_MASTER_PREFIX) else None


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


# --------------------------------------------------------------------------------------------
# Reading YAML nodes


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _Lines:
    """Line numbers as editors count them: YAML also breaks lines at U+0085, U+2028 and U+2029,
    which editors, grep and less show inside a line, so marks' own line numbers are not used."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in _LINE_BREAK.finditer(text))]

    def at(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index)

    def of(self, node: Node | None) -> int | None:
        if node is None or node.start_mark is None:
            return None
        return self.at(int(node.start_mark.index))


def _kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a map"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a value"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Map:
    """A YAML mapping with text keys, its nodes kept for line numbers."""

    def __init__(self, reader: _Reader, node: MappingNode, path: str) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.entries: dict[str, tuple[Node, Node]] = {}

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry[1] if entry is not None else None

    def require(self, key: str, hint: str = "") -> Node:
        entry = self.entries.get(key)
        if entry is None:
            raise self.reader.error(self.path, self.node, f"missing required key {key!r}{hint}")
        return entry[1]

    def refuse_unknown(self, known: Collection[str]) -> None:
        """An unknown key is an error: a typo must not quietly run with the default."""
        for key, (key_node, _) in self.entries.items():
            if key not in known:
                hint = _did_you_mean(key, known) or f"; the keys here are {', '.join(known)}"
                raise self.reader.error(self.at(key), key_node, f"unknown key {key!r}{hint}")


class _Reader:
    def __init__(self, file: str, loader: yaml.SafeLoader, lines: _Lines) -> None:
        self.file = file
        self.loader = loader
        self.lines = lines
        self.warnings: list[ScenarioWarning] = []
        self.maps: dict[int, dict[str, tuple[Node, Node]]] = {}  # by id() of a live node

    def line(self, node: Node | None) -> int | None:
        return self.lines.of(node)

    def error(self, path: str, node: Node | None, message: str) -> ScenarioError:
        return ScenarioError(self.file, path, self.line(node), message)

    def warn(self, path: str, node: Node | None, message: str) -> None:
        self.warnings.append(ScenarioWarning(self.file, path, self.line(node), message))

    # -- structure

    def is_null(self, node: Node | None) -> bool:
        return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG)

    def mapping(self, node: Node, path: str, expected: str = "a map") -> _Map:
        if not isinstance(node, MappingNode) or node.tag != _MAP_TAG:
            raise self.error(path, node, f"expected {expected}, got {self.show(node, path)}")
        result = _Map(self, node, path)
        known = self.maps.get(id(node))  # an alias of a map read before: merged already
        if known is not None:
            result.entries = known
            return result
        first_seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.error(path, key_node, f"keys must be text, got {_kind_of(key_node)}")
            key = str(key_node.value)
            if key in first_seen:
                raise self.error(
                    _join(path, key),
                    key_node,
                    f"duplicate key {key!r} (first given on line {self.line(first_seen[key])})",
                )
            first_seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(path, node, f"cannot merge keys: {_one_line(problem)}") from None
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(path, key_node, f"keys must be text, got {_kind_of(key_node)}")
            result.entries[str(key_node.value)] = (key_node, value_node)
        self.maps[id(node)] = result.entries
        return result

    def sequence(self, node: Node, path: str, expected: str = "a list") -> list[Node]:
        if not isinstance(node, SequenceNode) or node.tag != _SEQ_TAG:
            raise self.error(path, node, f"expected {expected}, got {self.show(node, path)}")
        return list(node.value)

    def scalar(self, node: Node, path: str, expected: str) -> object:
        if not isinstance(node, ScalarNode):
            raise self.error(path, node, f"expected {expected}, got {_kind_of(node)}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = _one_line(getattr(exc, "problem", None) or str(exc))
            message = f"cannot read {describe_value(node.value)}: {problem}"
            raise self.error(path, node, message) from None
        except Exception:  # PyYAML's constructors fail in many ways on explicit tags (!!int '')
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            raise self.error(
                path, node, f"cannot read {describe_value(node.value)} as {tag}"
            ) from None

    def show(self, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode):
            return describe_value(self.scalar(node, path, "a value"))
        return _kind_of(node)

    # -- values

    def text(
        self, node: Node, path: str, expected: str = "text", max_length: int = MAX_NAME_LENGTH
    ) -> str:
        value = self.scalar(node, path, expected)
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        value = value.strip()
        if len(value) > max_length:
            raise self.error(
                path, node, f"expected at most {max_length:,} characters, got {len(value):,}"
            )
        return value

    def sequence_at_most(
        self, node: Node, path: str, expected: str, limit: int, what: str
    ) -> list[Node]:
        """A list of at most ``limit`` items; ``what`` names them in the message."""
        nodes = self.sequence(node, path, expected)
        if len(nodes) > limit:
            raise self.error(path, node, f"at most {limit:,} {what}, got {len(nodes):,}")
        return nodes

    def integer(self, node: Node, path: str, minimum: int = 0, maximum: int | None = None) -> int:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer of at least {minimum}"
        )
        value = self.scalar(node, path, expected)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        if maximum is not None and value > maximum:
            raise self.error(
                path, node, f"expected at most {maximum:,}, got {describe_value(value)}"
            )
        return value

    def duration(self, node: Node, path: str, positive: bool = False) -> float:
        value = self.scalar(node, path, "a duration such as 500ms, 3s, 2m or 1h")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(path, node, str(exc)) from None
        if positive:
            try:
                check_positive_duration(seconds, value)
            except LimitError as exc:
                raise self.error(path, node, str(exc)) from None
        return seconds

    def choice(
        self, node: Node, path: str, choices: Sequence[str], what: str, fold_case: bool = False
    ) -> str:
        options = ", ".join(choices)
        value = self.scalar(node, path, f"{what} ({options})")
        if isinstance(value, str):
            candidate = value.strip().upper() if fold_case else value.strip()
            if candidate in choices:
                return candidate
            hint = _did_you_mean(candidate, choices)
        else:
            hint = ""
        raise self.error(
            path, node, f"expected {what} ({options}), got {describe_value(value)}{hint}"
        )

    def count(self, node: Node, path: str) -> Count:
        expected = "a non-negative integer or {min: N, max: M}"
        if isinstance(node, MappingNode):
            m = self.mapping(node, path, expected)
            low = self.integer(n, m.at("min")) if (n := m.get("min")) is not None else None
            high = self.integer(n, m.at("max")) if (n := m.get("max")) is not None else None
            if low is None and high is None:
                raise self.error(path, node, "a range needs min, max or both")
            if low is not None and high is not None and low > high:
                raise self.error(path, node, f"min {low} is larger than max {high}")
            m.refuse_unknown(("min", "max"))
            return Count(low, high)
        value = self.scalar(node, path, expected)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        return Count(value, value)

    def task_executor_id(self, node: Node, path: str) -> str:
        te = self.text(node, path, "a TaskExecutor id (text)")
        if te in _RESERVED_IDS or te.startswith(JOB_MASTER_PREFIX):
            raise self.error(path, node, f"{te!r} names a cluster component, not a TaskExecutor")
        if not TASK_EXECUTOR_ID.fullmatch(te):
            raise self.error(
                path,
                node,
                "a TaskExecutor id holds only letters, digits, '.', '_' and '-', "
                f"got {describe_value(te)}",
            )
        return te


# --------------------------------------------------------------------------------------------
# What earlier steps defined


@dataclass
class _State:
    cluster: ClusterSpec
    live: dict[str, int] = field(default_factory=dict)  # TaskExecutor id -> slots
    gone: dict[str, str] = field(default_factory=dict)  # id -> "killed at steps[2]"
    jobs: dict[str, SubmitStep] = field(default_factory=dict)

    def require_job(self, r: _Reader, node: Node, path: str) -> JobSpec:
        name = r.text(node, path, "a job name (text)")
        submit = self.jobs.get(name)
        if submit is None:
            raise r.error(
                path,
                node,
                f"no earlier submit step defines a job named {name!r}"
                f"{_did_you_mean(name, self.jobs)}",
            )
        return submit.job

    def require_live(self, r: _Reader, node: Node, path: str) -> str:
        te = r.task_executor_id(node, path)
        if te in self.live:
            return te
        if te in self.gone:
            raise r.error(path, node, f"TaskExecutor {te!r} is no longer there: {self.gone[te]}")
        ids = list(self.live)
        listing = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        there = f"the cluster has {listing}" if ids else "the cluster has none"
        hint = _did_you_mean(te, ids) if len(ids) > 5 else ""
        raise r.error(path, node, f"there is no TaskExecutor {te!r} at this step ({there}){hint}")


# --------------------------------------------------------------------------------------------
# Jobs


def _parse_restart(r: _Reader, node: Node, path: str) -> RestartStrategy:
    m = r.mapping(node, path, "a map {attempts, delay}")
    restart = RestartStrategy()
    if (n := m.get("attempts")) is not None:
        restart.attempts = r.integer(n, m.at("attempts"))
    if (n := m.get("delay")) is not None:
        restart.delay = r.duration(n, m.at("delay"))
    m.refuse_unknown(("attempts", "delay"))
    return restart


def _apply_failure(r: _Reader, node: Node, path: str, vertex: JobVertex) -> None:
    m = r.mapping(node, path, "a map {subtasks, after, attempts}")
    subtasks_node = m.require("subtasks", " (the subtask indexes that should fail)")
    subtasks_path = m.at("subtasks")
    items: list[tuple[Node, str]]
    if isinstance(subtasks_node, SequenceNode):
        nodes = r.sequence_at_most(
            subtasks_node,
            subtasks_path,
            "a list of subtask indexes",
            vertex.parallelism,
            "subtask indexes (the vertex's parallelism)",
        )
        if not nodes:
            raise r.error(subtasks_path, subtasks_node, "expected at least one subtask index")
        items = [(n, f"{subtasks_path}[{i}]") for i, n in enumerate(nodes)]
    else:
        items = [(subtasks_node, subtasks_path)]
    subtasks: set[int] = set()
    for item, item_path in items:
        index = r.integer(item, item_path)
        if index >= vertex.parallelism:
            raise r.error(item_path, item, _no_such_subtask(index, vertex))
        subtasks.add(index)
    vertex.fail_subtasks = sorted(subtasks)
    if (n := m.get("after")) is not None:
        vertex.fail_after = r.duration(n, m.at("after"))
    if (n := m.get("attempts")) is not None:
        vertex.fail_attempts = r.integer(n, m.at("attempts"), minimum=1)
    m.refuse_unknown(("subtasks", "after", "attempts"))


def _no_such_subtask(index: int, vertex: JobVertex) -> str:
    return (
        f"subtask {index} does not exist: vertex {vertex.name!r} has parallelism "
        f"{vertex.parallelism} (subtasks 0 to {vertex.parallelism - 1})"
    )


def _parse_vertex(r: _Reader, node: Node, path: str) -> tuple[JobVertex, Node]:
    m = r.mapping(node, path, "a vertex: a map {name, parallelism, task_duration}")
    name_node = m.require("name")
    vertex = JobVertex(name=r.text(name_node, m.at("name"), "a vertex name (text)"), parallelism=1)
    if (n := m.get("parallelism")) is not None:
        vertex.parallelism = r.integer(n, m.at("parallelism"), minimum=1, maximum=MAX_PARALLELISM)
    if (n := m.get("task_duration")) is not None:
        vertex.task_duration = r.duration(n, m.at("task_duration"))
    if (n := m.get("fail")) is not None:
        _apply_failure(r, n, m.at("fail"), vertex)
    m.refuse_unknown(("name", "parallelism", "task_duration", "fail"))
    return vertex, name_node


def _parse_edges(r: _Reader, node: Node, path: str, vertices: Collection[str]) -> list[JobEdge]:
    edges: list[JobEdge] = []
    seen: set[tuple[str, str]] = set()
    items = r.sequence_at_most(
        node, path, "a list of edges {from, to, pattern}", MAX_EDGES_PER_JOB, "edges in a job"
    )
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        m = r.mapping(item, item_path, "an edge: a map {from, to, pattern}")
        ends: list[str] = []
        for key in ("from", "to"):
            end_node = m.require(key)
            name = r.text(end_node, m.at(key), "a vertex name (text)")
            if name not in vertices:
                raise r.error(
                    m.at(key),
                    end_node,
                    f"no vertex named {name!r} in this job{_did_you_mean(name, vertices)}",
                )
            ends.append(name)
        source, target = ends
        if source == target:
            raise r.error(item_path, item, f"an edge cannot connect {source!r} to itself")
        if (source, target) in seen:
            raise r.error(item_path, item, f"the edge {source} -> {target} is given twice")
        seen.add((source, target))
        pattern = "all-to-all"
        if (n := m.get("pattern")) is not None:
            pattern = r.choice(n, m.at("pattern"), ("all-to-all", "pointwise"), "an edge pattern")
        m.refuse_unknown(("from", "to", "pattern"))
        edges.append(JobEdge(source, target, pattern))
    cycle = _find_cycle(vertices, edges)
    if cycle:
        raise r.error(path, node, f"the edges form a cycle: {' -> '.join(cycle)}")
    return edges


def _find_cycle(vertices: Collection[str], edges: list[JobEdge]) -> list[str]:
    successors: dict[str, list[str]] = {v: [] for v in vertices}
    for edge in edges:
        successors[edge.source].append(edge.target)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in successors:
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            vertex, i = stack[-1]
            if i < len(successors[vertex]):
                stack[-1] = (vertex, i + 1)
                nxt = successors[vertex][i]
                if state.get(nxt) == 1:
                    names = [v for v, _ in stack]
                    return [*names[names.index(nxt) :], nxt]
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[vertex] = 2
                stack.pop()
    return []


_JOB_KEYS = (
    "parallelism",
    "task_duration",
    "vertices",
    "edges",
    "restart",
    "failover_strategy",
    "fail",
)


def _parse_job_body(r: _Reader, m: _Map, name: str, name_key: str, source: Source) -> JobSpec:
    simple = [k for k in ("parallelism", "task_duration", "fail") if m.has(k)]
    vertices_node = m.get("vertices")
    if vertices_node is not None:
        if simple:
            raise r.error(
                m.at(simple[0]),
                m.get(simple[0]),
                f"give either vertices or {simple[0]}, not both"
                + ("; put fail: inside the vertex that should fail" if simple[0] == "fail" else ""),
            )
        vertices_path = m.at("vertices")
        nodes = r.sequence_at_most(
            vertices_node,
            vertices_path,
            "a list of vertices",
            MAX_VERTICES_PER_JOB,
            "vertices in a job",
        )
        if not nodes:
            raise r.error(vertices_path, vertices_node, "a job needs at least one vertex")
        vertices: list[JobVertex] = []
        first_line: dict[str, int | None] = {}
        for i, item in enumerate(nodes):
            vertex, name_node = _parse_vertex(r, item, f"{vertices_path}[{i}]")
            if vertex.name in first_line:
                raise r.error(
                    f"{vertices_path}[{i}].name",
                    name_node,
                    f"vertex name {vertex.name!r} is already used on line "
                    f"{first_line[vertex.name]}; vertex names must be unique within a job",
                )
            first_line[vertex.name] = r.line(name_node)
            vertices.append(vertex)
        edges: list[JobEdge] = []
        if (n := m.get("edges")) is not None:
            edges = _parse_edges(r, n, m.at("edges"), list(first_line))
    else:
        if m.has("edges"):
            raise r.error(m.at("edges"), m.get("edges"), "edges need vertices: to connect")
        vertex = JobVertex(name=name, parallelism=1)
        if (n := m.get("parallelism")) is not None:
            vertex.parallelism = r.integer(
                n, m.at("parallelism"), minimum=1, maximum=MAX_PARALLELISM
            )
        if (n := m.get("task_duration")) is not None:
            vertex.task_duration = r.duration(n, m.at("task_duration"))
        if (n := m.get("fail")) is not None:
            _apply_failure(r, n, m.at("fail"), vertex)
        vertices, edges = [vertex], []
    restart = RestartStrategy()
    if (n := m.get("restart")) is not None:
        restart = _parse_restart(r, n, m.at("restart"))
    failover = None
    if (n := m.get("failover_strategy")) is not None:
        failover = r.choice(n, m.at("failover_strategy"), ("region", "full"), "a failover strategy")
    m.refuse_unknown((name_key, *_JOB_KEYS))
    spec = JobSpec(
        name=name,
        vertices=vertices,
        edges=edges,
        restart=restart,
        failover_strategy=failover,
        source=source,
    )
    if spec.task_count > MAX_TASKS_PER_JOB:
        raise r.error(
            m.path,
            m.node,
            f"a job has at most {MAX_TASKS_PER_JOB:,} tasks (the sum of its vertices' "
            f"parallelism), got {spec.task_count:,}",
        )
    spec.to_job_graph(random.Random(0))  # the model's own checks, as a ScenarioError here
    return spec


# --------------------------------------------------------------------------------------------
# Conditions and steps

_StepParser = Callable[[_Reader, Node, str, int, int | None, _State], Step]


_CONDITION = "a condition such as {job: NAME, status: FINISHED} or {free_slots: N}"


def _parse_condition(r: _Reader, m: _Map, st: _State, extra: Collection[str] = ()) -> Condition:
    path, node = m.path, m.node
    found = [k for k in _CONDITION_KEYS if m.has(k)]
    if not found:
        raise r.error(
            path,
            node,
            "expected one condition key: status (with job), restarts (with job), free_slots, "
            "registered_task_executors or fencing_rejections",
        )
    if len(found) > 1:
        raise r.error(
            path,
            node,
            f"one condition per step, got {' and '.join(found)}; write one step for each",
        )
    kind = found[0]
    value_node = m.require(kind)
    job_node = m.get("job")
    condition: Condition
    if kind in ("status", "restarts"):
        if job_node is None:
            raise r.error(path, node, f"missing required key 'job' (the job whose {kind} to check)")
        job = st.require_job(r, job_node, m.at("job")).name
        if kind == "status":
            condition = JobStatusCondition(job, _parse_statuses(r, value_node, m.at("status")))
        else:
            condition = JobRestartsCondition(job, r.count(value_node, m.at("restarts")))
    else:
        if job_node is not None:
            raise r.error(m.at("job"), job_node, f"{kind} is cluster-wide and takes no job")
        count = r.count(value_node, m.at(kind))
        if kind == "free_slots":
            condition = FreeSlotsCondition(count)
        elif kind == "registered_task_executors":
            condition = RegisteredTaskExecutorsCondition(count)
        else:
            condition = FencingRejectionsCondition(count)
    m.refuse_unknown((*_CONDITION_KEYS, "job", *extra))
    return condition


_STATUSES = tuple(s.value for s in JobStatus)


def _parse_statuses(r: _Reader, node: Node, path: str) -> tuple[JobStatus, ...]:
    items: list[tuple[Node, str]]
    if isinstance(node, SequenceNode):
        nodes = r.sequence(node, path, "a job status or a list of them")
        if not nodes:
            raise r.error(path, node, "expected at least one job status")
        items = [(n, f"{path}[{i}]") for i, n in enumerate(nodes)]
    else:
        items = [(node, path)]
    statuses: list[JobStatus] = []
    for item, item_path in items:
        status = JobStatus(r.choice(item, item_path, _STATUSES, "a job status", fold_case=True))
        if status not in statuses:
            statuses.append(status)
    return tuple(statuses)


def _parse_submit(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    m = r.mapping(node, path, "a job: a map with job, parallelism and task_duration, or vertices")
    name_node = m.require("job", " (the job's name)")
    name = r.text(name_node, m.at("job"), "a job name (text)")
    if name in st.jobs:
        raise r.error(
            m.at("job"),
            name_node,
            f"a job named {name!r} is already submitted at {st.jobs[name].path}; "
            "job names must be unique",
        )
    if len(st.jobs) >= MAX_JOBS_PER_SCENARIO:
        raise r.error(path, node, f"a scenario submits at most {MAX_JOBS_PER_SCENARIO:,} jobs")
    spec = _parse_job_body(r, m, name, "job", Source(r.file, path, line))
    step = SubmitStep(index=index, line=line, job=spec)
    st.jobs[name] = step
    return step


def _parse_wait(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    m = r.mapping(node, path, _CONDITION)
    condition = _parse_condition(r, m, st, extra=("timeout",))
    timeout = DEFAULT_WAIT_TIMEOUT
    if (n := m.get("timeout")) is not None:
        timeout = r.duration(n, m.at("timeout"), positive=True)
    return WaitStep(index=index, line=line, condition=condition, timeout=timeout)


def _parse_expect(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    condition = _parse_condition(r, r.mapping(node, path, _CONDITION), st)
    return ExpectStep(index=index, line=line, condition=condition)


def _te_reference(r: _Reader, node: Node, path: str, st: _State) -> str:
    """A live TaskExecutor, written ``te-1`` or ``{id: te-1}``."""
    if isinstance(node, MappingNode):
        m = r.mapping(node, path)
        te = st.require_live(r, m.require("id"), m.at("id"))
        m.refuse_unknown(("id",))
        return te
    return st.require_live(r, node, path)


def _parse_kill(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    te = _te_reference(r, node, path, st)
    del st.live[te]
    st.gone[te] = f"it was killed at steps[{index}]"
    return KillTaskExecutorStep(index=index, line=line, task_executor=te)


def _parse_stop(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    te = _te_reference(r, node, path, st)
    del st.live[te]
    st.gone[te] = f"it was stopped at steps[{index}]"
    return StopTaskExecutorStep(index=index, line=line, task_executor=te)


def _parse_add(r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State) -> Step:
    slots = st.cluster.slots_per_executor
    id_node: Node | None = node
    id_path = path
    if isinstance(node, MappingNode):
        m = r.mapping(node, path)
        id_node, id_path = m.get("id"), m.at("id")
        if (n := m.get("slots")) is not None:
            slots = r.integer(n, m.at("slots"), minimum=1, maximum=MAX_SLOTS_PER_TASK_EXECUTOR)
        m.refuse_unknown(("id", "slots"))
    if r.is_null(id_node):
        number = 1
        while f"te-{number}" in st.live or f"te-{number}" in st.gone:
            number += 1
        te = f"te-{number}"
    else:
        assert id_node is not None
        te = r.task_executor_id(id_node, id_path)
        if te in st.live:
            raise r.error(id_path, id_node, f"a TaskExecutor {te!r} is already in the cluster")
    if len(st.live) >= MAX_TASK_EXECUTORS:
        raise r.error(path, node, f"a cluster holds at most {MAX_TASK_EXECUTORS:,} TaskExecutors")
    st.live[te] = slots
    st.gone.pop(te, None)
    spec = TaskExecutorSpec(te, slots)
    return AddTaskExecutorStep(index=index, line=line, task_executor=spec)


def _parse_fail_task(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    m = r.mapping(node, path, "a map {job, subtask, vertex}")
    job = st.require_job(r, m.require("job"), m.at("job"))
    subtask_node = m.require("subtask")
    subtask = r.integer(subtask_node, m.at("subtask"))
    vertex_node = m.get("vertex")
    if vertex_node is not None:
        name = r.text(vertex_node, m.at("vertex"), "a vertex name (text)")
        found = job.vertex(name)
        if found is None:
            names = [v.name for v in job.vertices]
            raise r.error(
                m.at("vertex"),
                vertex_node,
                f"job {job.name!r} has no vertex named {name!r}{_did_you_mean(name, names)}",
            )
        vertex = found
    elif len(job.vertices) == 1:
        vertex = job.vertices[0]
    else:
        listing = ", ".join(v.name for v in job.vertices)
        raise r.error(path, node, f"job {job.name!r} has several vertices ({listing}); name one")
    if subtask >= vertex.parallelism:
        raise r.error(m.at("subtask"), subtask_node, _no_such_subtask(subtask, vertex))
    m.refuse_unknown(("job", "subtask", "vertex"))
    return FailTaskStep(index=index, line=line, job=job.name, vertex=vertex.name, subtask=subtask)


_MEMBERS = "a TaskExecutor id, resource_manager, dispatcher or {job_master: JOB}"


def _component(r: _Reader, node: Node, path: str, st: _State, allow_te: bool = True) -> str:
    expected = _MEMBERS if allow_te else "resource_manager, dispatcher or {job_master: JOB}"
    if isinstance(node, MappingNode):
        m = r.mapping(node, path, expected)
        if list(m.entries) != ["job_master"]:
            raise r.error(path, node, f"expected {expected}, got a map")
        job = st.require_job(r, m.require("job_master"), m.at("job_master"))
        return JOB_MASTER_PREFIX + job.name
    value = r.text(node, path, expected)
    if value in (RESOURCE_MANAGER, DISPATCHER):
        return value
    if value.startswith(JOB_MASTER_PREFIX):
        name = value[len(JOB_MASTER_PREFIX) :].strip()
        if name not in st.jobs:
            raise r.error(
                path,
                node,
                f"no earlier submit step defines a job named {name!r}"
                f"{_did_you_mean(name, st.jobs)}",
            )
        return JOB_MASTER_PREFIX + name
    if not allow_te:
        hint = (
            "; a TaskExecutor has no leader to fail over, use kill_task_executor"
            if value in st.live
            else _did_you_mean(value, (RESOURCE_MANAGER, DISPATCHER, "job_master"))
        )
        raise r.error(path, node, f"expected {expected}, got {describe_value(value)}{hint}")
    return st.require_live(r, node, path)


def _parse_failover(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    return FailoverStep(
        index=index, line=line, target=_component(r, node, path, st, allow_te=False)
    )


def _parse_partition(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    m = r.mapping(node, path, "a map {between: [A, B], duration}")
    between_node = m.require("between", f" (two members: {_MEMBERS})")
    between_path = m.at("between")
    members = r.sequence(between_node, between_path, f"a list of two members ({_MEMBERS})")
    if len(members) != 2:
        raise r.error(
            between_path,
            between_node,
            f"a partition is between exactly two members, got {len(members)}",
        )
    a, b = (_component(r, n, f"{between_path}[{i}]", st) for i, n in enumerate(members))
    if a == b:
        raise r.error(between_path, between_node, f"cannot partition {a!r} from itself")
    duration = r.duration(m.require("duration"), m.at("duration"), positive=True)
    m.refuse_unknown(("between", "duration"))
    return PartitionStep(index=index, line=line, between=(a, b), duration=duration)


def _parse_sleep(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    return SleepStep(index=index, line=line, duration=r.duration(node, path))


def _parse_cancel(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    if isinstance(node, MappingNode):
        m = r.mapping(node, path)
        job = st.require_job(r, m.require("job"), m.at("job"))
        m.refuse_unknown(("job",))
    else:
        job = st.require_job(r, node, path)
    return CancelStep(index=index, line=line, job=job.name)


_STEP_PARSERS: dict[str, _StepParser] = {
    "submit": _parse_submit,
    "wait": _parse_wait,
    "expect": _parse_expect,
    "kill_task_executor": _parse_kill,
    "stop_task_executor": _parse_stop,
    "add_task_executor": _parse_add,
    "fail_task": _parse_fail_task,
    "failover": _parse_failover,
    "partition": _parse_partition,
    "sleep": _parse_sleep,
    "cancel": _parse_cancel,
}


def _parse_step(r: _Reader, node: Node, index: int, st: _State) -> Step:
    path = f"steps[{index}]"
    m = r.mapping(node, path, "a step: a map with one key naming its kind, such as submit:")
    if len(m.entries) != 1:
        if not m.entries:
            raise r.error(path, node, "a step needs one key naming its kind, got an empty map")
        keys = ", ".join(m.entries)
        raise r.error(path, node, f"a step has exactly one key naming its kind, got {keys}")
    ((kind, (key_node, value_node)),) = m.entries.items()
    parser = _STEP_PARSERS.get(kind)
    if parser is None:
        hint = _did_you_mean(kind, _STEP_PARSERS) or f"; the kinds are {', '.join(_STEP_PARSERS)}"
        raise r.error(path, key_node, f"unknown step kind {kind!r}{hint}")
    return parser(r, value_node, _join(path, kind), index, r.line(key_node), st)


# --------------------------------------------------------------------------------------------
# The cluster section and the file


_DURATION_KEYS = tuple(dict.fromkeys(setting.key[0] for setting in CLUSTER_DURATIONS))


def _parse_durations(r: _Reader, m: _Map, spec: ClusterSpec) -> None:
    """The durations of CLUSTER_DURATIONS, each at its key: ``rpc_timeout`` directly in the
    cluster section, ``heartbeat.interval`` in a sub-map whose other keys are refused."""
    for section in _DURATION_KEYS:
        node = m.get(section)
        if node is None:
            continue
        settings = [s for s in CLUSTER_DURATIONS if s.key[0] == section]
        if len(settings) == 1 and len(settings[0].key) == 1:
            setting = settings[0]
            value = r.duration(node, m.at(section), positive=not setting.allow_zero)
            setattr(spec, setting.attribute, value)
            continue
        keys = [s.key[1] for s in settings]
        sub = r.mapping(node, m.at(section), "a map {" + ", ".join(keys) + "}")
        for setting in settings:
            if (v := sub.get(setting.key[1])) is not None:
                value = r.duration(v, sub.at(setting.key[1]), positive=not setting.allow_zero)
                setattr(spec, setting.attribute, value)
        sub.refuse_unknown(keys)


def _parse_cluster(r: _Reader, node: Node | None, path: str) -> ClusterSpec:
    spec = ClusterSpec()
    if node is None or r.is_null(node):
        return spec
    m = r.mapping(node, path)
    if (n := m.get("slots_per_executor")) is not None:
        spec.slots_per_executor = r.integer(
            n, m.at("slots_per_executor"), minimum=1, maximum=MAX_SLOTS_PER_TASK_EXECUTOR
        )
    te_node = m.get("task_executors")
    if te_node is None:
        spec.task_executors = [TaskExecutorSpec(f"te-{i}", spec.slots_per_executor) for i in (1, 2)]
    else:
        spec.task_executors = _parse_task_executors(r, te_node, m.at("task_executors"), spec)
    if (n := m.get("rpc")) is not None:
        rpc = r.choice(n, m.at("rpc"), ("shared", "dedicated"), "an rpc mode")
        spec.rpc = "dedicated" if rpc == "dedicated" else "shared"
    if (n := m.get("clock")) is not None:
        clock = r.choice(n, m.at("clock"), ("virtual", "real"), "a clock")
        spec.clock = "real" if clock == "real" else "virtual"
    _parse_durations(r, m, spec)
    if (n := m.get("failover_strategy")) is not None:
        spec.failover_strategy = r.choice(
            n, m.at("failover_strategy"), ("region", "full"), "a failover strategy"
        )
    if spec.heartbeat_timeout < spec.heartbeat_interval:
        n = m.get("heartbeat")
        raise r.error(
            m.at("heartbeat"),
            n,
            f"the heartbeat timeout ({format_duration(spec.heartbeat_timeout)}) must not be "
            f"shorter than the interval ({format_duration(spec.heartbeat_interval)})",
        )
    m.refuse_unknown(
        (
            "task_executors",
            "slots_per_executor",
            "rpc",
            "clock",
            "failover_strategy",
            *_DURATION_KEYS,
        )
    )
    return spec


def _parse_task_executors(
    r: _Reader, node: Node, path: str, spec: ClusterSpec
) -> list[TaskExecutorSpec]:
    if not isinstance(node, SequenceNode):
        count = r.integer(node, path, maximum=MAX_TASK_EXECUTORS)
        return [TaskExecutorSpec(f"te-{i}", spec.slots_per_executor) for i in range(1, count + 1)]
    nodes = r.sequence_at_most(
        node, path, "a number or a list of {id, slots}", MAX_TASK_EXECUTORS, "TaskExecutors"
    )
    result: list[TaskExecutorSpec] = []
    first_line: dict[str, int | None] = {}
    for i, item in enumerate(nodes):
        item_path = f"{path}[{i}]"
        slots = spec.slots_per_executor
        if isinstance(item, MappingNode):
            m = r.mapping(item, item_path, "a TaskExecutor {id, slots}")
            id_node = m.get("id")
            id_path = m.at("id")
            te = f"te-{i + 1}" if id_node is None else r.task_executor_id(id_node, id_path)
            if (n := m.get("slots")) is not None:
                slots = r.integer(n, m.at("slots"), minimum=1, maximum=MAX_SLOTS_PER_TASK_EXECUTOR)
            m.refuse_unknown(("id", "slots"))
        else:
            id_node, id_path = item, item_path
            te = r.task_executor_id(item, item_path)
        if te in first_line:
            raise r.error(
                id_path,
                item if id_node is None else id_node,
                f"duplicate TaskExecutor id {te!r} (first given on line {first_line[te]})",
            )
        first_line[te] = r.line(item if id_node is None else id_node)
        result.append(TaskExecutorSpec(te, slots))
    return result


def _compose(text: str, file: str, lines: _Lines) -> tuple[Node | None, yaml.SafeLoader]:
    try:
        loader = yaml.SafeLoader(text)  # checks every character
        return loader.get_single_node(), loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = lines.at(int(mark.index)) if mark is not None else None
        problem = _one_line(exc.problem or exc.context or "cannot be parsed")
        if exc.context and exc.problem:
            context = _one_line(exc.context)
            context_line = lines.at(int(exc.context_mark.index)) if exc.context_mark else None
            if context_line is not None and context_line != line:
                context += f" that starts on line {context_line}"
            problem += f" ({context})"
        raise ScenarioError(file, "", line, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = lines.at(max(int(exc.position), 0))
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        raise ScenarioError(
            file, "", line, f"invalid YAML: the character {shown} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, "", None, f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ScenarioError(file, "", None, "invalid YAML: nested too deeply") from None


def _load(text: str, file: str, what: str, parse: Callable[[_Reader, MappingNode], _T]) -> _T:
    lines = _Lines(text)
    root, loader = _compose(text, file, lines)
    try:
        reader = _Reader(file, loader, lines)
        if root is None or reader.is_null(root):
            raise ScenarioError(file, "", None, f"the file is empty; expected {what}")
        if not isinstance(root, MappingNode) or root.tag != _MAP_TAG:
            raise reader.error(
                "", root, f"the top level must be {what}, got {reader.show(root, '')}"
            )
        return parse(reader, root)
    except RecursionError:
        raise ScenarioError(file, "", None, "the file is nested too deeply") from None
    finally:
        loader.dispose()


def _parse_scenario_root(r: _Reader, root: MappingNode) -> Scenario:
    m = r.mapping(root, "")
    name = r.text(m.require("name", " (every scenario has a name)"), "name", "a name (text)")
    description = ""
    if (n := m.get("description")) is not None and not r.is_null(n):
        description = r.text(n, "description", "text", max_length=MAX_DESCRIPTION_LENGTH)
    seed: int | None = None
    if (n := m.get("seed")) is not None and not r.is_null(n):
        value = r.scalar(n, "seed", "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            raise r.error("seed", n, f"expected an integer, got {describe_value(value)}")
        seed = value
    cluster = _parse_cluster(r, m.get("cluster"), "cluster")
    steps_node = m.require("steps", " (the list of what the scenario does)")
    step_nodes = r.sequence_at_most(
        steps_node, "steps", "a list of steps", MAX_STEPS_PER_SCENARIO, "steps in a scenario"
    )
    if not step_nodes:
        raise r.error("steps", steps_node, "a scenario needs at least one step")
    st = _State(cluster, live={te.id: te.slots for te in cluster.task_executors})
    steps = [_parse_step(r, node, i, st) for i, node in enumerate(step_nodes)]
    m.refuse_unknown(("name", "description", "seed", "cluster", "steps"))
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        cluster=cluster,
        steps=steps,
        file=r.file,
        warnings=r.warnings,
    )


def _parse_job_root(r: _Reader, root: MappingNode) -> JobSpec:
    m = r.mapping(root, "")
    name = r.text(m.require("name", " (the job's name)"), "name", "a job name (text)")
    return _parse_job_body(r, m, name, "name", Source(r.file, "", r.line(root)))


def parse_scenario(text: str, file: str = "<string>") -> Scenario:
    """A Scenario from YAML text; ``file`` is only for messages. Raises ScenarioError."""
    return _load(text, file, "a map with name, cluster and steps", _parse_scenario_root)


def load_scenario(path: str | Path) -> Scenario:
    """A Scenario from a file. Raises ScenarioError, also when the file cannot be read."""
    return parse_scenario(_read(path, "scenario file"), str(path))


def parse_job(text: str, file: str = "<string>") -> JobSpec:
    """A job file's JobSpec from YAML text (``name:``, then the same keys as a submit step)."""
    return _load(text, file, "a map with name and parallelism or vertices", _parse_job_root)


def load_job_file(path: str | Path) -> JobSpec:
    """The JobSpec of ``minicluster submit-job JOB.yaml``. Raises ScenarioError."""
    return parse_job(_read(path, "job file"), str(path))


def _read(path: str | Path, kind: str) -> str:
    """The text of a file of ``kind`` (a key of limits.FILE_SIZE_LIMITS), read at most to its
    limit: /dev/zero or an endless pipe is refused, not read until memory runs out."""
    try:
        return read_bounded(path, kind).decode("utf-8")
    except FileTooLargeError as exc:
        raise ScenarioError(str(path), "", None, str(exc)) from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", None, "the file is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ScenarioError(str(path), "", None, f"cannot read the file: {reason}") from None


def parse_cluster_config(text: str, file: str = "<string>") -> ClusterSpec:
    """The `cluster:` section of a file in the scenario format (for `start --config`)."""

    def parse(r: _Reader, root: MappingNode) -> ClusterSpec:
        m = r.mapping(root, "")
        return _parse_cluster(r, m.get("cluster"), "cluster")

    return _load(text, file, "a map with a cluster section", parse)


def load_cluster_config(path: str | Path) -> ClusterSpec:
    return parse_cluster_config(_read(path, "config file"), str(path))
