"""Flink 2.3's REST JSON, built from the cluster's typed snapshot: pure functions, no I/O.

Field names and shapes are Flink's (see docs/rest.md). Times: the snapshot counts seconds from
the cluster's start; Flink prints epoch milliseconds, so every builder takes a `RestClock` that
knows the epoch time of the cluster's start. Values that mean nothing here (memory sizes, JMX
and data ports, hardware, record metrics) are neutral: 0, -1 or empty.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from minicluster import __version__
from minicluster.cluster import ClusterConfig
from minicluster.cluster.components import job_master_endpoint
from minicluster.cluster.snapshot import (
    ClusterSnapshot,
    EventSnapshot,
    ExecutionSnapshot,
    JobSnapshot,
    TaskExecutorSnapshot,
)

from .ids import vertex_id

FLINK_VERSION = f"minicluster-{__version__}"

# Flink's ExecutionState, in its order (RECONCILING never happens here)
EXECUTION_STATES = (
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
)
# Flink's JobStatus, in its order (INITIALIZING, SUSPENDED, RECONCILING never happen here)
JOB_STATES = (
    "INITIALIZING",
    "CREATED",
    "RUNNING",
    "FAILING",
    "FAILED",
    "CANCELLING",
    "CANCELED",
    "FINISHED",
    "RESTARTING",
    "SUSPENDED",
    "RECONCILING",
)
_TERMINAL_JOB = frozenset({"FINISHED", "FAILED", "CANCELED"})


@dataclass(frozen=True, slots=True)
class RestClock:
    """Cluster seconds to epoch milliseconds: `origin` is the epoch time (s) of cluster time 0."""

    origin: float

    def ms(self, cluster_time: float) -> int:
        return round((self.origin + cluster_time) * 1000)


# --- cluster -----------------------------------------------------------------------------


def overview(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """GET /overview: Flink's ClusterOverviewWithVersion."""
    counts = _job_counts(snapshot.jobs)
    return {
        "taskmanagers": snapshot.overview.task_executors,
        "slots-total": snapshot.overview.slots_total,
        "slots-available": snapshot.overview.slots_free,
        "jobs-running": sum(n for state, n in counts.items() if state not in _TERMINAL_JOB),
        "jobs-finished": counts.get("FINISHED", 0),
        "jobs-cancelled": counts.get("CANCELED", 0),
        "jobs-failed": counts.get("FAILED", 0),
        "flink-version": FLINK_VERSION,
        "flink-commit": "",
    }


def _job_counts(jobs: Iterable[JobSnapshot]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    return counts


def dashboard_config(refresh_interval_ms: int = 1000) -> dict[str, Any]:
    """GET /config: Flink's DashboardConfiguration (UTC: the cluster keeps no time zone)."""
    return {
        "refresh-interval": refresh_interval_ms,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": FLINK_VERSION,
        "flink-revision": "",
        "features": {
            "web-submit": False,
            "web-cancel": True,
            "web-rescale": False,
            "web-history": False,
        },
    }


def jobmanager_config(
    config: ClusterConfig, rpc_address: str, rest_host: str, rest_port: int, slots: int
) -> list[dict[str, str]]:
    """GET /jobmanager/config: the cluster's settings under Flink's keys, as Flink prints them
    (durations in milliseconds, as strings)."""
    host, _, port = rpc_address.removeprefix("tcp://").rpartition(":")

    def ms(seconds: float) -> str:
        return str(round(seconds * 1000))

    pairs = [
        ("jobmanager.rpc.address", host),
        ("jobmanager.rpc.port", port),
        ("rest.address", rest_host),
        ("rest.bind-address", rest_host),
        ("rest.port", str(rest_port)),
        ("taskmanager.numberOfTaskSlots", str(slots)),
        ("heartbeat.interval", ms(config.heartbeat_interval)),
        ("heartbeat.timeout", ms(config.heartbeat_timeout)),
        ("heartbeat.rpc-failure-threshold", str(config.heartbeat_rpc_failure_threshold)),
        ("pekko.ask.timeout", ms(config.rpc_timeout)),
        ("slot.request.timeout", ms(config.slot_request_timeout)),
        ("slot.idle.timeout", ms(config.slot_idle_timeout)),
        ("taskmanager.slot.timeout", ms(config.slot_timeout)),
        ("taskmanager.registration.timeout", ms(config.registration_timeout)),
        ("cluster.registration.initial-timeout", ms(config.registration_initial_timeout)),
        ("cluster.registration.max-timeout", ms(config.registration_max_timeout)),
        ("cluster.registration.error-delay", ms(config.registration_error_delay)),
        ("cluster.registration.refused-registration-delay", ms(config.registration_refused_delay)),
        ("web.refresh-interval", "1000"),
    ]
    return [{"key": key, "value": value} for key, value in pairs]


# --- jobs --------------------------------------------------------------------------------


def jobs(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """GET /jobs: Flink's JobIdsWithStatusOverview."""
    return {"jobs": [{"id": job.job_id.hex, "status": job.status.value} for job in snapshot.jobs]}


def _times(job: JobSnapshot, clock: RestClock, now: float) -> dict[str, int]:
    start = clock.ms(job.start_time)
    ended = job.status.value in _TERMINAL_JOB
    duration = job.duration if job.duration is not None else max(0.0, now - job.start_time)
    end = clock.ms(job.start_time + duration) if ended else -1
    return {
        "start-time": start,
        "end-time": end,
        "duration": round(duration * 1000),
        "last-modification": end if ended else start,
    }


def _task_counts(counts: dict[str, int], total: int) -> dict[str, int]:
    row = {"total": total}
    row.update({state.lower(): counts.get(state, 0) for state in EXECUTION_STATES})
    return row


def job_overview(job: JobSnapshot, clock: RestClock, now: float) -> dict[str, Any]:
    """One row of GET /jobs/overview: Flink's JobDetails."""
    times = _times(job, clock, now)
    return {
        "jid": job.job_id.hex,
        "name": job.name,
        "jobType": "STREAMING",
        "schedulerType": "Default",
        "start-time": times["start-time"],
        "end-time": times["end-time"],
        "duration": times["duration"],
        "state": job.status.value,
        "last-modification": times["last-modification"],
        "tasks": _task_counts(dict(job.task_states), job.tasks_total),
        "pending-operators": 0,
    }


def jobs_overview(snapshot: ClusterSnapshot, clock: RestClock) -> dict[str, Any]:
    """GET /jobs/overview: Flink's MultipleJobsDetails, newest job first (as Flink)."""
    rows = [job_overview(job, clock, snapshot.time) for job in snapshot.jobs]
    rows.reverse()
    return {"jobs": rows}


def default_max_parallelism(parallelism: int) -> int:
    """Flink's KeyGroupRangeAssignment.computeDefaultMaxParallelism."""
    wanted = parallelism + parallelism // 2
    power = 1 << max(0, (wanted - 1).bit_length())
    return min(max(power, 128), 32768)


def _aggregate_state(counts: dict[str, int], parallelism: int) -> str:
    """A vertex's state from its subtasks' (Flink's ExecutionJobVertex.getAggregateState)."""
    for state in ("FAILED", "CANCELING", "CANCELED", "INITIALIZING", "RUNNING"):
        if counts.get(state):
            return state
    if counts.get("FINISHED"):
        return "FINISHED" if counts["FINISHED"] == parallelism else "RUNNING"
    for state in ("DEPLOYING", "SCHEDULED"):
        if counts.get(state):
            return state
    return "CREATED"


def _vertex_tasks(job: JobSnapshot) -> dict[str, list[ExecutionSnapshot]]:
    by_vertex: dict[str, list[ExecutionSnapshot]] = {name: [] for name, _ in job.vertices}
    for task in job.tasks:
        by_vertex.setdefault(task.vertex, []).append(task)
    return by_vertex


def _vertex_shapes(job: JobSnapshot) -> list[tuple[str, int]]:
    if job.vertices:
        return list(job.vertices)
    seen: dict[str, int] = {}
    for task in job.tasks:
        seen[task.vertex] = max(seen.get(task.vertex, 0), task.subtask + 1)
    return list(seen.items())


_ZERO_METRICS: dict[str, Any] = {
    "read-bytes": 0,
    "read-bytes-complete": True,
    "write-bytes": 0,
    "write-bytes-complete": True,
    "read-records": 0,
    "read-records-complete": True,
    "write-records": 0,
    "write-records-complete": True,
    "accumulated-backpressured-time": 0,
    "accumulated-idle-time": 0,
    "accumulated-busy-time": 0,
}


def _slot_sharing_group_id(job_id: uuid.UUID) -> str:
    return hashlib.blake2b(job_id.bytes + b"\0default", digest_size=16).hexdigest()


def job_details(job: JobSnapshot, clock: RestClock, now: float) -> dict[str, Any]:
    """GET /jobs/:jobid: Flink's JobDetailsInfo, from a job snapshot with its tasks."""
    times = _times(job, clock, now)
    job_hex = job.job_id.hex
    status_times = dict.fromkeys(JOB_STATES, 0)
    status_times["INITIALIZING"] = status_times["CREATED"] = times["start-time"]
    if times["end-time"] >= 0:
        status_times[job.status.value] = times["end-time"]
    by_vertex = _vertex_tasks(job)
    vertices = []
    vertex_counts = dict.fromkeys(EXECUTION_STATES, 0)
    group = _slot_sharing_group_id(job.job_id)
    for name, parallelism in _vertex_shapes(job):
        counts = dict.fromkeys(EXECUTION_STATES, 0)
        for task in by_vertex.get(name, ()):
            counts[task.state.value] += 1
        state = _aggregate_state(counts, parallelism)
        vertex_counts[state] += 1
        vertices.append(
            {
                "id": vertex_id(job.job_id, name),
                "slotSharingGroupId": group,
                "name": name,
                "maxParallelism": default_max_parallelism(parallelism),
                "parallelism": parallelism,
                "status": state,
                "start-time": -1,
                "end-time": -1,
                "duration": -1,
                "tasks": counts,
                "metrics": dict(_ZERO_METRICS),
            }
        )
    return {
        "jid": job_hex,
        "application-id": job_hex,
        "name": job.name,
        "isStoppable": False,
        "state": job.status.value,
        "job-type": "STREAMING",
        "schedulerType": "Default",
        "start-time": times["start-time"],
        "end-time": times["end-time"],
        "duration": times["duration"],
        "maxParallelism": -1,
        "now": clock.ms(now),
        "timestamps": status_times,
        "vertices": vertices,
        "status-counts": vertex_counts,
        "plan": _plan(job),
        "pending-operators": 0,
    }


def _plan(job: JobSnapshot) -> dict[str, Any]:
    """Flink's JSON plan: one node per vertex, its inputs from the graph's edges."""
    inputs: dict[str, list[dict[str, Any]]] = {}
    for source, target, pattern in job.edges:
        node_inputs = inputs.setdefault(target, [])
        node_inputs.append(
            {
                "id": vertex_id(job.job_id, source),
                "num": len(node_inputs),
                "exchange": "pipelined_bounded",
                "ship_strategy": "REBALANCE" if pattern == "all-to-all" else "FORWARD",
            }
        )
    nodes = []
    for name, parallelism in _vertex_shapes(job):
        node: dict[str, Any] = {
            "id": vertex_id(job.job_id, name),
            "operator": "",
            "parallelism": parallelism,
            "operator_strategy": "",
            "description": f"{name}<br/>",
            "optimizer_properties": {},
        }
        if name in inputs:
            node["inputs"] = inputs[name]
        nodes.append(node)
    return {"jid": job.job_id.hex, "name": job.name, "type": "STREAMING", "nodes": nodes}


def find_vertex(job: JobSnapshot, wanted: str) -> str | None:
    """The name of the job's vertex with that 32-hex id."""
    for name, _ in _vertex_shapes(job):
        if vertex_id(job.job_id, name) == wanted:
            return name
    return None


def subtask_times(job: JobSnapshot, vertex: str, clock: RestClock, now: float) -> dict[str, Any]:
    """GET /jobs/:jobid/vertices/:vertexid/subtasktimes: Flink's SubtasksTimesInfo. Execution
    state changes carry no timestamps here: they are 0, the durations -1."""
    subtasks = sorted(
        (task for task in job.tasks if task.vertex == vertex), key=lambda t: t.subtask
    )
    return {
        "id": vertex_id(job.job_id, vertex),
        "name": vertex,
        "now": clock.ms(now),
        "subtasks": [
            {
                "subtask": task.subtask,
                "endpoint": task.task_executor or "(unassigned)",
                "duration": -1,
                "timestamps": dict.fromkeys(EXECUTION_STATES, 0),
            }
            for task in subtasks
        ],
    }


_EXCEPTION_NAME = re.compile(r"^([A-Za-z_][\w.]*(?:Exception|Error)):")


def job_exceptions(
    job: JobSnapshot, events: Iterable[EventSnapshot], clock: RestClock, truncated: bool
) -> dict[str, Any]:
    """GET /jobs/:jobid/exceptions: Flink's JobExceptionsInfoWithHistory, newest first, from
    the failures its JobMaster reported among the recent events (and the job's final cause)."""
    sender = job_master_endpoint(job.job_id)
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in events:
        if event.kind == "failure" and event.sender == sender:
            entries.append(_exception(event.message, clock.ms(event.time)))
            seen.add(event.message)
    if job.failure_cause is not None and job.failure_cause not in seen:
        end = job.start_time + (job.duration or 0.0)
        entries.append(_exception(job.failure_cause, clock.ms(end)))
    entries.reverse()
    return {"exceptionHistory": {"entries": entries, "truncated": truncated}}


def _exception(message: str, timestamp: int) -> dict[str, Any]:
    match = _EXCEPTION_NAME.match(message)
    return {
        "exceptionName": match.group(1) if match else "JobFailure",
        "stacktrace": message,
        "timestamp": timestamp,
        "failureLabels": {},
        "taskName": None,
        "endpoint": None,
        "taskManagerId": None,
        "concurrentExceptions": [],
    }


# --- TaskManagers ------------------------------------------------------------------------

_NO_RESOURCE: dict[str, Any] = {
    "cpuCores": 0.0,
    "taskHeapMemory": 0,
    "taskOffHeapMemory": 0,
    "managedMemory": 0,
    "networkMemory": 0,
    "extendedResources": {},
}
_NO_HARDWARE = {"cpuCores": 0, "physicalMemory": -1, "freeMemory": -1, "managedMemory": -1}
_MEMORY_CONFIGURATION_KEYS = (
    "frameworkHeap",
    "taskHeap",
    "frameworkOffHeap",
    "taskOffHeap",
    "networkMemory",
    "managedMemory",
    "jvmMetaspace",
    "jvmOverhead",
    "totalFlinkMemory",
    "totalProcessMemory",
)


def registered_task_executors(snapshot: ClusterSnapshot) -> list[TaskExecutorSnapshot]:
    """The TaskExecutors registered at the ResourceManager (those Flink lists)."""
    return [te for te in snapshot.task_executors if te.state == "registered"]


def task_manager(te: TaskExecutorSnapshot, clock: RestClock, now: float) -> dict[str, Any]:
    """One row of GET /taskmanagers: Flink's TaskManagerInfo. `timeSinceLastHeartbeat` is, as in
    Flink, the epoch time of the last heartbeat (-1 when unknown)."""
    slots = te.slots_total if te.slots_total is not None else len(te.slots)
    free = (
        dict(te.slot_counts).get("FREE", 0)
        if te.slots_total is not None
        else sum(1 for slot in te.slots if slot.state == "FREE")
    )
    last = clock.ms(now - te.heartbeat_age) if te.heartbeat_age is not None else -1
    return {
        "id": te.id,
        "path": te.address or "",
        "dataPort": -1,
        "jmxPort": -1,
        "timeSinceLastHeartbeat": last,
        "slotsNumber": slots,
        "freeSlots": free,
        "assignedTasks": sum(1 for task in te.tasks if not task.state.is_terminal),
        "totalResource": dict(_NO_RESOURCE),
        "freeResource": dict(_NO_RESOURCE),
        "hardware": dict(_NO_HARDWARE),
        "memoryConfiguration": dict.fromkeys(_MEMORY_CONFIGURATION_KEYS, 0),
    }


def task_managers(snapshot: ClusterSnapshot, clock: RestClock) -> dict[str, Any]:
    """GET /taskmanagers: Flink's TaskManagersInfo."""
    return {
        "taskmanagers": [
            task_manager(te, clock, snapshot.time) for te in registered_task_executors(snapshot)
        ]
    }


def task_manager_details(
    snapshot: ClusterSnapshot, te_id: str, clock: RestClock
) -> dict[str, Any] | None:
    """GET /taskmanagers/:taskmanagerid: Flink's TaskManagerDetailsInfo (None: not registered)."""
    for te in registered_task_executors(snapshot):
        if te.id == te_id:
            details = task_manager(te, clock, snapshot.time)
            details["allocatedSlots"] = [
                {"jobId": slot.job_id.hex, "resource": dict(_NO_RESOURCE)}
                for slot in te.slots
                if slot.job_id is not None
            ]
            details["metrics"] = _NO_METRICS
            return details
    return None


_NO_METRICS: dict[str, Any] = {
    "heapUsed": 0,
    "heapCommitted": 0,
    "heapMax": 0,
    "nonHeapUsed": 0,
    "nonHeapCommitted": 0,
    "nonHeapMax": 0,
    "directCount": 0,
    "directUsed": 0,
    "directMax": 0,
    "mappedCount": 0,
    "mappedUsed": 0,
    "mappedMax": 0,
    "memorySegmentsAvailable": 0,
    "memorySegmentsTotal": 0,
    "nettyShuffleMemorySegmentsAvailable": 0,
    "nettyShuffleMemorySegmentsUsed": 0,
    "nettyShuffleMemorySegmentsTotal": 0,
    "nettyShuffleMemoryAvailable": 0,
    "nettyShuffleMemoryUsed": 0,
    "nettyShuffleMemoryTotal": 0,
    "garbageCollectors": [],
}


# --- the dashboard's own view ------------------------------------------------------------

# messages between components (the sequence diagram); fencing rejections and dropped messages
# are also "what happened"
MESSAGE_KINDS = frozenset({"rpc", "tell", "fencing", "dropped"})
_ROUTINE = frozenset({"rpc", "tell"})


def dashboard_snapshot(
    snapshot: ClusterSnapshot, clock: RestClock, version: int, messages: int = 40
) -> dict[str, Any]:
    """GET /minicluster/snapshot: what the dashboard draws, in one document: the cluster
    snapshot's JSON form, plus each job's demand, the last `messages` messages between
    components, and the server's epoch time (so the page can tell how fresh it is)."""
    data = snapshot.as_dict()
    data["version"] = version
    data["now_ms"] = clock.ms(snapshot.time)
    data["jobs"] = [
        {
            **job.summary_dict(),
            "task_states": dict(job.task_states),
            "slots_required": job.slots_required,
            "slots_held": job.slots_held,
            "start_ms": clock.ms(job.start_time),
        }
        for job in snapshot.jobs
    ]
    data["messages"] = [
        event.as_dict()
        for event in snapshot.events
        if event.kind in MESSAGE_KINDS and event.sender and event.receiver
    ][-messages:]
    data["events"] = [event.as_dict() for event in snapshot.events if event.kind not in _ROUTINE]
    return data
