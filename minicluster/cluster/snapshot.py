"""One typed, immutable view of the cluster, in the spirit of trio's ``statistics()`` objects.

Every endpoint exposes its part through a public, synchronous method that never suspends (the
JobMaster its ``job_snapshot()``, a TaskExecutor its ``task_executor_snapshot()``, the
ResourceManager its ``resource_overview()``, the Dispatcher its ``job_snapshots()``); gateway
handlers return the same objects (``JobMasterGateway.request_job_snapshot``,
``ResourceManagerGateway.request_resource_overview``,
``DispatcherGateway.request_cluster_snapshot``), as Flink's REST handlers get
``ExecutionGraphInfo`` and ``ResourceOverview`` through the gateways. Readers never reach into an
endpoint's fields: they read these objects.

The objects are frozen and slotted; collections are tuples. ``to_wire()`` gives plain CBOR-able
maps (UUIDs stay UUIDs, enums become their values), ``from_wire()`` builds an object back and
checks every field against its annotation, as every input from the wire is checked where it
enters. ``as_dict()`` is the JSON form that ``--json`` output prints (UUIDs as hex, the field
names the console and earlier output used).
"""

from __future__ import annotations

import enum
import math
import types
import typing
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from typing import Any, TypeVar

from minicluster.rpc import wire_type

from .model import ExecutionState, JobStatus

S = TypeVar("S")

# The topology lists at most this many TaskExecutors and this many slots in all; past that a
# TaskExecutor's slots are summed up (`slot_counts`, `slots_total`): a reply stays within a
# frame however large the cluster grows.
MAX_LISTED_TASK_EXECUTORS = 2_000
MAX_LISTED_SLOTS = 16_384
# the tasks a job's snapshot lists at most on the wire (beside their total)
MAX_LISTED_TASKS = 1_000

# The gateway methods that answer observers (views, scenario conditions, clients). They read,
# never change, the cluster: the tracer leaves them out of events, statistics and the trace.
SNAPSHOT_QUERIES = frozenset(
    {"request_job_snapshot", "request_resource_overview", "request_cluster_snapshot"}
)


# --- the wire form, derived from the annotations ---------------------------------------------

_Convert = Callable[[Any], Any]


def _describe(value: Any) -> str:
    return type(value).__name__


def _decoder(annotation: Any) -> _Convert:
    """A function that checks a decoded value against `annotation` and builds the Python value
    (tuples for arrays, enums from their values, snapshots from their maps)."""
    if annotation is Any:
        return lambda v: v
    if annotation is type(None) or annotation is None:

        def none(v: Any) -> Any:
            if v is not None:
                raise ValueError(f"expected nothing, got {_describe(v)}")
            return None

        return none
    if annotation is bool:

        def boolean(v: Any) -> Any:
            if type(v) is not bool:
                raise ValueError(f"expected a boolean, got {_describe(v)}")
            return v

        return boolean
    if annotation is int:

        def integer(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"expected an integer, got {_describe(v)}")
            return v

        return integer
    if annotation is float:

        def number(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"expected a number, got {_describe(v)}")
            if not math.isfinite(v):
                raise ValueError(f"expected a finite number, got {v}")
            return float(v)

        return number
    if annotation is str:

        def text(v: Any) -> Any:
            if not isinstance(v, str):
                raise ValueError(f"expected text, got {_describe(v)}")
            return v

        return text
    if annotation is uuid.UUID:

        def an_id(v: Any) -> Any:
            if not isinstance(v, uuid.UUID):
                raise ValueError(f"expected a UUID, got {_describe(v)}")
            return v

        return an_id
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [_decoder(a) for a in typing.get_args(annotation)]

        def union(v: Any) -> Any:
            problems = []
            for option in options:
                try:
                    return option(v)
                except ValueError as exc:
                    problems.append(str(exc))
            raise ValueError(" or ".join(problems))

        return union
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])

            def sequence(v: Any) -> Any:
                if not isinstance(v, list | tuple):
                    raise ValueError(f"expected an array, got {_describe(v)}")
                return tuple(item(x) for x in v)

            return sequence
        items = [_decoder(a) for a in args]

        def fixed(v: Any) -> Any:
            if not isinstance(v, list | tuple) or len(v) != len(items):
                raise ValueError(f"expected an array of {len(items)}, got {_describe(v)}")
            return tuple(convert(x) for convert, x in zip(items, v, strict=True))

        return fixed
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = {member.value: member for member in annotation}

        def member(v: Any) -> Any:
            if isinstance(v, annotation):
                return v
            try:
                return values[v]
            except (KeyError, TypeError):
                raise ValueError(f"{v!r} is not a {annotation.__name__}") from None

        return member
    if isinstance(annotation, type) and is_dataclass(annotation):
        return lambda v: _from_map(annotation, v)
    raise TypeError(f"no wire form for {annotation!r}")  # pragma: no cover - a coding error


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_encode(x) for x in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    return value


_FIELDS: dict[type, tuple[tuple[str, _Convert, bool], ...]] = {}


def _field_decoders(cls: type) -> tuple[tuple[str, _Convert, bool], ...]:
    known = _FIELDS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _FIELDS[cls] = tuple(
            (
                f.name,
                _decoder(hints[f.name]),
                f.default is MISSING and f.default_factory is MISSING,
            )
            for f in fields(cls)
        )
    return known


def _from_map(cls: type[S], data: Any) -> S:
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a map, got {_describe(data)}")
    values: dict[str, Any] = {}
    for name, convert, required in _field_decoders(cls):
        if name not in data:
            if required:
                raise ValueError(f"{cls.__name__}: field {name} is missing")
            continue
        try:
            values[name] = convert(data[name])
        except ValueError as exc:
            raise ValueError(f"{cls.__name__}.{name}: {exc}") from None
    return cls(**values)


class _Wire:
    """``to_wire``/``from_wire`` for a snapshot dataclass, from its annotations."""

    __slots__ = ()

    def to_wire(self) -> dict[str, Any]:
        encoded: dict[str, Any] = _encode(self)
        return encoded

    @classmethod
    def from_wire(cls: type[S], data: Any) -> S:
        """Build the object from its wire form; a field of the wrong type is a ValueError."""
        return _from_map(cls, data)


def _hex(value: uuid.UUID | None) -> str | None:
    return value.hex if value is not None else None


# --- the parts --------------------------------------------------------------------------------


@wire_type
@dataclass(frozen=True, slots=True)
class SlotSnapshot(_Wire):
    """A slot as its TaskExecutor has it (FREE, ALLOCATED, ACTIVE), or as the ResourceManager
    knows it (FREE, PENDING, ALLOCATED) in its overview."""

    index: int
    state: str
    job_id: uuid.UUID | None = None
    job_name: str | None = None
    allocation_id: uuid.UUID | None = None
    tasks: tuple[uuid.UUID, ...] = ()  # executions that run in it

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state,
            "job_id": _hex(self.job_id),
            "job_name": self.job_name,
        }


@wire_type
@dataclass(frozen=True, slots=True)
class TaskSnapshot(_Wire):
    """A task a TaskExecutor runs: what its deployment descriptor said."""

    execution_id: uuid.UUID
    job_id: uuid.UUID
    allocation_id: uuid.UUID
    vertex: str
    subtask: int
    attempt: int
    duration: float
    state: ExecutionState


@wire_type
@dataclass(frozen=True, slots=True)
class TaskExecutorSnapshot(_Wire):
    """A TaskExecutor: its registration, its slots and its tasks. `state` is registering,
    registered, lost (registered on its side, not at the ResourceManager), stopped, killed or
    failed; `remote` marks one in another process, known only through the ResourceManager."""

    id: str
    address: str | None
    state: str
    heartbeat_age: float | None = None
    slots: tuple[SlotSnapshot, ...] = ()
    remote: bool = False
    slots_total: int | None = None  # set when the slots are summed up, not listed
    slot_counts: tuple[tuple[str, int], ...] = ()
    instance_id: uuid.UUID | None = None
    rm_token: uuid.UUID | None = None
    # (job id, token of the JobMaster leader it follows) per job it serves
    job_leaders: tuple[tuple[uuid.UUID, uuid.UUID | None], ...] = ()
    tasks: tuple[TaskSnapshot, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "address": self.address,
            "state": self.state,
            "heartbeat_age": self.heartbeat_age,
            "slots": [slot.as_dict() for slot in self.slots],
        }
        if self.remote:
            row["remote"] = True
        if self.slots_total is not None:
            row["slots_total"] = self.slots_total
            row["slot_counts"] = dict(self.slot_counts)
        return row


@wire_type
@dataclass(frozen=True, slots=True)
class ExecutionSnapshot(_Wire):
    """The current attempt of one subtask, as its JobMaster tracks it."""

    vertex: str
    subtask: int
    attempt: int
    state: ExecutionState
    task_executor: str | None = None
    region: int = 0
    execution_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "vertex": self.vertex,
            "subtask": self.subtask,
            "attempt": self.attempt,
            "state": self.state.value,
            "task_executor": self.task_executor,
        }


@wire_type
@dataclass(frozen=True, slots=True)
class SlotAssignmentSnapshot(_Wire):
    """A slot of a JobMaster's pool: where it is and which slot sharing group uses it."""

    allocation_id: uuid.UUID
    task_executor: str
    slot_index: int
    group: int | None = None  # None: free in the pool
    free_since: float = 0.0


@wire_type
@dataclass(frozen=True, slots=True)
class PendingRequestSnapshot(_Wire):
    """A region waiting for its slots (Flink's pending slot request bulk). `request` numbers
    the bulks of a JobMaster: the same region waiting again is a new request."""

    region: int
    slots: int
    request: int
    missing: int = 0


@wire_type
@dataclass(frozen=True, slots=True)
class JobSnapshot(_Wire):
    """A job: its status, counts and demand, and what its JobMaster holds and waits for.

    A job whose JobMaster has ended keeps the snapshot taken at its end. `tasks` is empty in a
    summary (list-jobs, the cluster snapshot) and bounded on the wire (`tasks_listed`)."""

    job_id: uuid.UUID
    name: str
    status: JobStatus
    parallelism: int
    start_time: float = 0.0
    duration: float | None = None
    tasks_total: int = 0
    tasks_finished: int = 0
    task_states: tuple[tuple[str, int], ...] = ()
    restarts: int = 0
    restart_attempts: int = 0
    failover_strategy: str = "region"
    regions: int = 0
    slots_required: int = 0
    slots_held: int = 0
    slots_pending: int = 0
    failure_cause: str | None = None
    failovers: int = 0
    tasks: tuple[ExecutionSnapshot, ...] = ()
    tasks_listed: int | None = None
    pending_requests: tuple[PendingRequestSnapshot, ...] = ()
    restarting_regions: tuple[int, ...] = ()
    slot_assignments: tuple[SlotAssignmentSnapshot, ...] = ()
    live_executions: tuple[uuid.UUID, ...] = ()  # execution ids not yet in a final state
    job_master_token: uuid.UUID | None = None
    # the slots (allocation ids) in which a task of the job is deployed or runs: what makes a
    # slot of a TaskExecutor in another process, known only through the ResourceManager
    # (which sees it allocated), show as active
    active_allocations: tuple[uuid.UUID, ...] = ()
    # the job graph's shape: (vertex name, parallelism) in the graph's order, and its edges
    # (source, target, pattern); bounded by the graph's own limits, so lists keep them
    vertices: tuple[tuple[str, int], ...] = ()
    edges: tuple[tuple[str, str, str], ...] = ()

    def summary(self) -> JobSnapshot:
        """The same job without its tasks and JobMaster internals (what lists carry)."""
        return replace(
            self,
            tasks=(),
            tasks_listed=None,
            pending_requests=(),
            slot_assignments=(),
            live_executions=(),
        )

    def bounded(self, limit: int = MAX_LISTED_TASKS) -> JobSnapshot:
        """At most `limit` tasks, with `tasks_listed` saying so: a reply stays within a frame."""
        if len(self.tasks) <= limit:
            return self
        return replace(self, tasks=self.tasks[:limit], tasks_listed=limit, live_executions=())

    def with_record(self, status: JobStatus, failovers: int) -> JobSnapshot:
        """As the Dispatcher knows it: its record's status and JobMaster failovers win."""
        if status is self.status and failovers == self.failovers:
            return self
        return replace(self, status=status, failovers=failovers)

    def summary_dict(self) -> dict[str, Any]:
        """The row of list-jobs and of the views' jobs table."""
        return {
            "job_id": self.job_id.hex,
            "name": self.name,
            "status": self.status.value,
            "parallelism": self.parallelism,
            "start_time": self.start_time,
            "duration": self.duration,
            "tasks_total": self.tasks_total,
            "tasks_finished": self.tasks_finished,
            "restarts": self.restarts,
            "slots_pending": self.slots_pending,
        }

    def as_dict(self) -> dict[str, Any]:
        """The job's details (job-status --json, request_job)."""
        details = self.summary_dict()
        details.update(
            {
                "failover_strategy": self.failover_strategy,
                "regions": self.regions,
                "slots_required": self.slots_required,
                "slots_held": self.slots_held,
                "failure_cause": self.failure_cause,
                "failovers": self.failovers,
                "task_states": dict(self.task_states),
                "tasks": [task.as_dict() for task in self.tasks],
            }
        )
        if self.tasks_listed is not None:
            details["tasks_listed"] = self.tasks_listed
        return details


@wire_type
@dataclass(frozen=True, slots=True)
class ResourceOverview(_Wire):
    """What the ResourceManager knows: registered TaskExecutors with their slots as it sees
    them, free slots, and which jobs declared how many slots (Flink's ResourceOverview)."""

    task_executors: int = 0
    slots_total: int = 0
    slots_free: int = 0
    jobs_with_requirements: int = 0
    registered: tuple[TaskExecutorSnapshot, ...] = ()
    requirements: tuple[tuple[uuid.UUID, int], ...] = ()
    job_masters: tuple[uuid.UUID, ...] = ()  # jobs whose JobMaster is registered

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_executors": self.task_executors,
            "slots_total": self.slots_total,
            "slots_free": self.slots_free,
            "jobs_with_requirements": self.jobs_with_requirements,
        }


@wire_type
@dataclass(frozen=True, slots=True)
class LeaderSnapshot(_Wire):
    """A leader as HA publishes it: its component name, address and fencing token (for a
    JobMaster also the job it leads)."""

    component: str
    address: str | None = None
    token: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    job_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if self.job_id is not None:
            row["job_id"] = self.job_id.hex
            row["name"] = self.job_name
        row["address"] = self.address
        row["token"] = str(self.token) if self.token is not None else None
        return row


@wire_type
@dataclass(frozen=True, slots=True)
class MethodStatistics(_Wire):
    method: str
    calls: int
    p50: float | None = None
    p99: float | None = None


@wire_type
@dataclass(frozen=True, slots=True)
class RpcStatistics(_Wire):
    calls_per_second: float = 0.0
    total_calls: int = 0
    fencing_rejections: int = 0
    by_method: tuple[MethodStatistics, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        by_method: dict[str, Any] = {}
        for entry in self.by_method:
            row: dict[str, Any] = {"calls": entry.calls}
            if entry.p50 is not None:
                row["p50"] = entry.p50
            if entry.p99 is not None:
                row["p99"] = entry.p99
            by_method[entry.method] = row
        return {
            "calls_per_second": self.calls_per_second,
            "total_calls": self.total_calls,
            "fencing_rejections": self.fencing_rejections,
            "by_method": by_method,
        }


@wire_type
@dataclass(frozen=True, slots=True)
class EventSnapshot(_Wire):
    time: float
    kind: str
    sender: str | None = None
    receiver: str | None = None
    method: str | None = None
    outcome: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


@wire_type
@dataclass(frozen=True, slots=True)
class ClusterSnapshot(_Wire):
    """The whole cluster at one instant: leaders with their tokens, TaskExecutors and slots,
    jobs (summaries), what the ResourceManager counts, RPC statistics and recent events (the
    last two only when asked for: a scenario's conditions do not need them)."""

    time: float
    dispatcher: LeaderSnapshot
    resource_manager: LeaderSnapshot
    job_masters: tuple[LeaderSnapshot, ...] = ()
    task_executors: tuple[TaskExecutorSnapshot, ...] = ()
    task_executors_total: int = 0
    jobs: tuple[JobSnapshot, ...] = ()
    overview: ResourceOverview = ResourceOverview()
    rpc: RpcStatistics | None = None
    events: tuple[EventSnapshot, ...] = ()
    fencing_rejections: int = 0
    heartbeat_timeout: float = 50.0
    free_slots: int = 0  # on the TaskExecutors that run, as they see their slots
    # the latest events that tell the run's story (failures, fencing rejections, leader
    # changes, restarts, losses, joins), kept apart from routine traffic; only when asked for
    notable_events: tuple[EventSnapshot, ...] = ()

    def job(self, name: str) -> JobSnapshot | None:
        """The job of that name submitted last (names are the scenario's, not mapped)."""
        found = None
        for job in self.jobs:
            if job.name == name:
                found = job
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "dispatcher": self.dispatcher.as_dict(),
            "resource_manager": self.resource_manager.as_dict(),
            "job_masters": [leader.as_dict() for leader in self.job_masters],
            "task_executors": [te.as_dict() for te in self.task_executors],
            "task_executors_total": self.task_executors_total,
            # with the counts of tasks by state: the views draw deploying, running, finished
            "jobs": [
                {**job.summary_dict(), "task_states": dict(job.task_states)} for job in self.jobs
            ],
            "overview": self.overview.as_dict(),
            "rpc": self.rpc.as_dict() if self.rpc is not None else None,
            "events": [event.as_dict() for event in self.events],
            "notable_events": [event.as_dict() for event in self.notable_events],
            "heartbeat_timeout": self.heartbeat_timeout,
            "free_slots": self.free_slots,
        }


_GONE = frozenset({"stopped", "killed", "failed"})


# --- building the cluster's snapshot ------------------------------------------------------


def _bounded(rows: list[TaskExecutorSnapshot]) -> list[TaskExecutorSnapshot]:
    rows = rows[:MAX_LISTED_TASK_EXECUTORS]
    listed = 0
    for i, row in enumerate(rows):
        if listed + len(row.slots) <= MAX_LISTED_SLOTS:
            listed += len(row.slots)
            continue
        counts: dict[str, int] = {}
        for slot in row.slots:
            counts[slot.state] = counts.get(slot.state, 0) + 1
        rows[i] = replace(
            row, slots=(), slots_total=len(row.slots), slot_counts=tuple(counts.items())
        )
    return rows


def task_executor_rows(
    local: Iterable[TaskExecutorSnapshot],
    overview: ResourceOverview,
    job_names: Mapping[uuid.UUID, str],
    leader_token: uuid.UUID | None = None,
    active_allocations: Collection[uuid.UUID] = (),
) -> tuple[tuple[TaskExecutorSnapshot, ...], int]:
    """The TaskExecutors a view lists, each once, and how many there are: those of this
    process as they see themselves, then those of other processes as the ResourceManager
    knows them. Bounded to fit a frame.

    One registered on its side but not at the ResourceManager is `reconnecting` when it is
    registered with an earlier leader (`leader_token` is the current one's: after a failover
    it registers again once it hears of the new leader), else `lost`. The ResourceManager sees
    a slot of another process only as allocated: it is shown active when a task of a job is
    deployed in it (`active_allocations`, from the JobMasters)."""
    registered = {te.id: te for te in overview.registered}
    rows: list[TaskExecutorSnapshot] = []
    seen: set[str] = set()
    for te in local:
        if te.id in seen:
            continue  # listed once: the directory lists the running ones before the ended
        seen.add(te.id)
        state = te.state
        if state == "registered" and te.id not in registered:
            stale = leader_token is not None and te.rm_token != leader_token
            state = "reconnecting" if stale else "lost"
        known = registered.get(te.id)
        slots = tuple(
            replace(slot, job_name=job_names.get(slot.job_id)) if slot.job_id else slot
            for slot in te.slots
        )
        rows.append(
            replace(
                te,
                state=state,
                slots=slots,
                heartbeat_age=known.heartbeat_age if known is not None else None,
            )
            if te.state not in _GONE
            else te
        )
    active = set(active_allocations)
    for te in overview.registered:
        if te.id in seen:
            continue
        slots = tuple(
            SlotSnapshot(
                slot.index,
                "FREE"
                if slot.state == "FREE"
                else "ACTIVE"
                if slot.allocation_id in active
                else "ALLOCATED",
                slot.job_id,
                job_names.get(slot.job_id) if slot.job_id else None,
                slot.allocation_id,
            )
            for slot in te.slots
        )
        rows.append(replace(te, slots=slots, remote=True))
    return tuple(_bounded(rows)), len(rows)
