"""Parsing scenario files, job files and cluster configs: the cluster section, every step kind
and condition (checked against what earlier steps defined), and the public `parse_*` and
`load_*` entry points.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import MappingNode, Node, SequenceNode

from minicluster.cluster.model import (
    JobStatus,
)
from minicluster.limits import (
    CLUSTER_DURATIONS,
    MAX_DESCRIPTION_LENGTH,
    MAX_JOBS_PER_SCENARIO,
    MAX_SLOTS_PER_TASK_EXECUTOR,
    MAX_STEPS_PER_SCENARIO,
    MAX_TASK_EXECUTORS,
)
from minicluster.scenario.durations import describe_value, format_duration
from minicluster.scenario.loader.jobs import _no_such_subtask, _parse_job_body
from minicluster.scenario.loader.keys import (
    CANCEL_KEYS,
    CLUSTER_DURATION_KEYS,
    CLUSTER_KEYS,
    CONDITION_KEYS,
    EXPECT_KEYS,
    FAIL_TASK_KEYS,
    JOB_FILE_KEYS,
    MEMBER_KEYS,
    PARTITION_KEYS,
    SCENARIO_KEYS,
    SUBMIT_KEYS,
    TASK_EXECUTOR_KEYS,
    TASK_EXECUTOR_REFERENCE_KEYS,
    WAIT_KEYS,
)
from minicluster.scenario.loader.model import (
    DEFAULT_WAIT_TIMEOUT,
    DISPATCHER,
    JOB_MASTER_PREFIX,
    RESOURCE_MANAGER,
    AddTaskExecutorStep,
    CancelStep,
    ClusterSpec,
    Condition,
    ExpectStep,
    FailoverStep,
    FailTaskStep,
    FencingRejectionsCondition,
    FreeSlotsCondition,
    JobRestartsCondition,
    JobSpec,
    JobStatusCondition,
    KillTaskExecutorStep,
    PartitionStep,
    RegisteredTaskExecutorsCondition,
    Scenario,
    SleepStep,
    Source,
    Step,
    StopTaskExecutorStep,
    SubmitStep,
    TaskExecutorSpec,
    WaitStep,
)
from minicluster.scenario.loader.reader import _did_you_mean, _join, _load, _Map, _read, _Reader

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
# Conditions and steps

_StepParser = Callable[[_Reader, Node, str, int, int | None, _State], Step]


_CONDITION = "a condition such as {job: NAME, status: FINISHED} or {free_slots: N}"


def _parse_condition(r: _Reader, m: _Map, st: _State, known: Collection[str]) -> Condition:
    path, node = m.path, m.node
    found = [k for k in CONDITION_KEYS if m.has(k)]
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
    m.refuse_unknown(known)
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
    spec = _parse_job_body(r, m, name, SUBMIT_KEYS, Source(r.file, path, line))
    step = SubmitStep(index=index, line=line, job=spec)
    st.jobs[name] = step
    return step


def _parse_wait(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    m = r.mapping(node, path, _CONDITION)
    condition = _parse_condition(r, m, st, WAIT_KEYS)
    timeout = DEFAULT_WAIT_TIMEOUT
    if (n := m.get("timeout")) is not None:
        timeout = r.duration(n, m.at("timeout"), positive=True)
    return WaitStep(index=index, line=line, condition=condition, timeout=timeout)


def _parse_expect(
    r: _Reader, node: Node, path: str, index: int, line: int | None, st: _State
) -> Step:
    condition = _parse_condition(r, r.mapping(node, path, _CONDITION), st, EXPECT_KEYS)
    return ExpectStep(index=index, line=line, condition=condition)


def _te_reference(r: _Reader, node: Node, path: str, st: _State) -> str:
    """A live TaskExecutor, written ``te-1`` or ``{id: te-1}``."""
    if isinstance(node, MappingNode):
        m = r.mapping(node, path)
        te = st.require_live(r, m.require("id"), m.at("id"))
        m.refuse_unknown(TASK_EXECUTOR_REFERENCE_KEYS)
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
        m.refuse_unknown(TASK_EXECUTOR_KEYS)
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
    m.refuse_unknown(FAIL_TASK_KEYS)
    return FailTaskStep(index=index, line=line, job=job.name, vertex=vertex.name, subtask=subtask)


_MEMBERS = "a TaskExecutor id, resource_manager, dispatcher or {job_master: JOB}"


def _component(r: _Reader, node: Node, path: str, st: _State, allow_te: bool = True) -> str:
    expected = _MEMBERS if allow_te else "resource_manager, dispatcher or {job_master: JOB}"
    if isinstance(node, MappingNode):
        m = r.mapping(node, path, expected)
        if list(m.entries) != list(MEMBER_KEYS):
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
    m.refuse_unknown(PARTITION_KEYS)
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
        m.refuse_unknown(CANCEL_KEYS)
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


def _parse_durations(r: _Reader, m: _Map, spec: ClusterSpec) -> None:
    """The durations of CLUSTER_DURATIONS, each at its key: ``rpc_timeout`` directly in the
    cluster section, ``heartbeat.interval`` in a sub-map whose other keys are refused."""
    for section in CLUSTER_DURATION_KEYS:
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
    if spec.heartbeat_timeout <= spec.heartbeat_interval:  # as start and task-executor check
        n = m.get("heartbeat")
        raise r.error(
            m.at("heartbeat"),
            n,
            f"the heartbeat timeout ({format_duration(spec.heartbeat_timeout)}) must be longer "
            f"than the interval ({format_duration(spec.heartbeat_interval)})",
        )
    m.refuse_unknown(CLUSTER_KEYS)
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
            m.refuse_unknown(TASK_EXECUTOR_KEYS)
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
    checks = "none"
    if (n := m.get("checks")) is not None and not r.is_null(n):
        checks = r.text(n, "checks", "'invariants' or 'none'")
        if checks not in ("invariants", "none"):
            raise r.error("checks", n, f"expected 'invariants' or 'none', got {checks!r}")
    cluster = _parse_cluster(r, m.get("cluster"), "cluster")
    steps_node = m.require("steps", " (the list of what the scenario does)")
    step_nodes = r.sequence_at_most(
        steps_node, "steps", "a list of steps", MAX_STEPS_PER_SCENARIO, "steps in a scenario"
    )
    if not step_nodes:
        raise r.error("steps", steps_node, "a scenario needs at least one step")
    st = _State(cluster, live={te.id: te.slots for te in cluster.task_executors})
    steps = [_parse_step(r, node, i, st) for i, node in enumerate(step_nodes)]
    m.refuse_unknown(SCENARIO_KEYS)
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        checks=checks,
        cluster=cluster,
        steps=steps,
        file=r.file,
        warnings=r.warnings,
    )


def _parse_job_root(r: _Reader, root: MappingNode) -> JobSpec:
    m = r.mapping(root, "")
    name = r.text(m.require("name", " (the job's name)"), "name", "a job name (text)")
    return _parse_job_body(r, m, name, JOB_FILE_KEYS, Source(r.file, "", r.line(root)))


def parse_scenario(text: str, file: str = "<string>", *, generated: bool = False) -> Scenario:
    """A Scenario from YAML text; ``file`` is only for messages. Raises ScenarioError.
    ``generated``: the program wrote the text itself (the simulator), so libyaml's faster
    parser may read it; the checks of the scenario are the same."""
    return _load(
        text, file, "a map with name, cluster and steps", _parse_scenario_root, trusted=generated
    )


def load_scenario(path: str | Path) -> Scenario:
    """A Scenario from a file. Raises ScenarioError, also when the file cannot be read."""
    return parse_scenario(_read(path, "scenario file"), str(path))


def parse_job(text: str, file: str = "<string>") -> JobSpec:
    """A job file's JobSpec from YAML text (``name:``, then the same keys as a submit step)."""
    return _load(text, file, "a map with name and parallelism or vertices", _parse_job_root)


def load_job_file(path: str | Path) -> JobSpec:
    """The JobSpec of ``minicluster submit-job JOB.yaml``. Raises ScenarioError."""
    return parse_job(_read(path, "job file"), str(path))


def parse_cluster_config(text: str, file: str = "<string>") -> ClusterSpec:
    """The `cluster:` section of a file in the scenario format (for `start --config`). A
    scenario file serves as one: its other top-level keys are allowed and not read; any other
    key is refused, and a cluster key at the top level is told to move under cluster:."""

    def parse(r: _Reader, root: MappingNode) -> ClusterSpec:
        m = r.mapping(root, "")
        for key, (key_node, _) in m.entries.items():
            if key in CLUSTER_KEYS and key not in SCENARIO_KEYS:
                raise r.error(key, key_node, f"{key!r} belongs in the cluster: section")
        m.refuse_unknown(SCENARIO_KEYS)
        return _parse_cluster(r, m.get("cluster"), "cluster")

    return _load(text, file, "a map with a cluster section", parse)


def load_cluster_config(path: str | Path) -> ClusterSpec:
    return parse_cluster_config(_read(path, "config file"), str(path))
