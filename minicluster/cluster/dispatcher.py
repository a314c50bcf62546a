"""The Dispatcher: takes job submissions, runs a JobMaster per job (each elected leader of its
job with its own fencing token), answers queries, and keeps finished jobs queryable."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from minicluster.rpc import FencedRpcEndpoint, RpcEndpoint, RpcService

from .context import DISPATCHER, RESOURCE_MANAGER, ClusterContext, job_master_component
from .gateways import ClusterGateway, DispatcherGateway, JobMasterGateway
from .jobmaster import JobMaster
from .model import (
    DuplicateJobSubmissionError,
    JobGraph,
    JobNotFoundError,
    JobStateError,
    JobStatus,
)

# Bounds that keep every reply about jobs within a frame, whatever users submit: at most this
# many jobs run at once (a submission beyond is refused), at most this many ended jobs are kept
# (the oldest are forgotten, as Flink's jobstore.max-capacity does), and a job's details list
# at most this many tasks (with the total beside them).
MAX_ACTIVE_JOBS = 1_000
MAX_ARCHIVED_JOBS = 1_000
MAX_LISTED_TASKS = 1_000


@dataclass
class JobRecord:
    graph: JobGraph
    status: JobStatus = JobStatus.CREATED
    job_master: JobMaster | None = None
    archived: dict[str, Any] | None = None
    submitted_at: float = 0.0
    failovers: int = 0
    done: trio.Event = field(default_factory=trio.Event)


class JobStore:
    """Jobs and their JobMasters, kept outside the Dispatcher so that a new Dispatcher leader
    takes over the running jobs (the role of Flink's JobGraphStore and JobResultStore)."""

    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, JobRecord] = {}
        self.by_name: dict[str, uuid.UUID] = {}


class Dispatcher(FencedRpcEndpoint, DispatcherGateway):
    def __init__(
        self,
        service: RpcService,
        context: ClusterContext,
        token: uuid.UUID,
        store: JobStore,
        on_shutdown: Callable[[], None],
        rm_overview: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(service, token, DISPATCHER)
        self.context = context
        self.store = store
        self._on_shutdown = on_shutdown
        self._rm_overview = rm_overview

    def _record(self, job_id: uuid.UUID) -> JobRecord:
        record = self.store.jobs.get(job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id.hex} in this cluster")
        return record

    async def submit_job(self, job_graph: JobGraph) -> uuid.UUID:
        # everything is checked before anything is stored: a refused job leaves no trace
        job_graph.validate()
        if job_graph.job_id in self.store.jobs:
            raise DuplicateJobSubmissionError(f"job {job_graph.job_id.hex} was already submitted")
        active = sum(1 for r in self.store.jobs.values() if not r.status.is_globally_terminal)
        if active >= MAX_ACTIVE_JOBS:
            raise JobStateError(
                f"the cluster already has {active:,} jobs that have not ended; "
                f"at most {MAX_ACTIVE_JOBS:,} run at once"
            )
        self._forget_old_jobs()
        record = JobRecord(job_graph, submitted_at=self.context.events.now())
        self.store.jobs[job_graph.job_id] = record
        self.store.by_name.setdefault(job_graph.name, job_graph.job_id)
        self.context.emit("job", f"job {job_graph.name} submitted", sender=self.endpoint_id)
        self._start_job_master(record)
        return job_graph.job_id

    def _start_job_master(self, record: JobRecord) -> None:
        """Leader election for the job: a new JobMaster endpoint with a new fencing token."""
        token = self.context.ha.new_token()
        job_master = JobMaster(
            self.rpc_service, self.context, token, record.graph, self._job_status_changed
        )
        record.job_master = job_master
        job_master.start()
        self.context.ha.publish(
            job_master_component(record.graph.job_id), job_master.address, token
        )

    def _job_status_changed(self, job_master: JobMaster, status: JobStatus) -> None:
        record = self.store.jobs.get(job_master.job_id)
        if record is None or record.job_master is not job_master:
            return
        record.status = status
        if status.is_globally_terminal:
            # the JobMaster frees its slots and stops itself; queries use the archive now
            record.archived = job_master.details()
            record.job_master = None
            record.done.set()

    async def failover_job_master(self, job_id: uuid.UUID) -> None:
        """A new JobMaster leader for the job (new token); the job runs again from the start."""
        record = self._record(job_id)
        old = record.job_master
        if old is None:
            raise JobStateError(f"job {job_id.hex} is {record.status.value}: it has no JobMaster")
        record.job_master = None
        await self.off_main(old.close())
        record.failovers += 1
        self.context.emit("failover", f"JobMaster of {record.graph.name} failed over")
        self._start_job_master(record)

    def _forget_old_jobs(self) -> None:
        ended = [j for j, r in self.store.jobs.items() if r.status.is_globally_terminal]
        for job_id in ended[: max(0, len(ended) - MAX_ARCHIVED_JOBS + 1)]:
            record = self.store.jobs.pop(job_id)
            if self.store.by_name.get(record.graph.name) == job_id:
                del self.store.by_name[record.graph.name]

    async def list_jobs(self) -> list[dict[str, Any]]:
        return [self._summary(r) for r in self.store.jobs.values()]

    def _summary(self, record: JobRecord) -> dict[str, Any]:
        details = self._details(record)
        return {
            "job_id": record.graph.job_id.hex,
            "name": record.graph.name,
            "status": record.status.value,
            "parallelism": record.graph.max_parallelism,
            "start_time": record.submitted_at,
            "duration": details.get("duration"),
            "tasks_total": details.get("tasks_total", record.graph.task_count),
            "tasks_finished": details.get("tasks_finished", 0),
            "restarts": details.get("restarts", 0),
            "slots_pending": details.get("slots_pending", 0),
        }

    def _details(self, record: JobRecord) -> dict[str, Any]:
        if record.job_master is not None:
            details = record.job_master.details()
        elif record.archived is not None:
            details = dict(record.archived)
        else:
            details = {"tasks": [], "tasks_total": record.graph.task_count, "tasks_finished": 0}
        details["status"] = record.status.value
        details["job_id"] = record.graph.job_id.hex
        details["name"] = record.graph.name
        return details

    async def request_job_status(self, job_id: uuid.UUID) -> str:
        status: str = self._record(job_id).status.value
        return status

    async def request_job(self, job_id: uuid.UUID) -> dict[str, Any]:
        details = self._details(self._record(job_id))
        tasks = details.get("tasks")
        if isinstance(tasks, list) and len(tasks) > MAX_LISTED_TASKS:
            details["tasks"] = tasks[:MAX_LISTED_TASKS]
            details["tasks_listed"] = MAX_LISTED_TASKS
        return details

    async def cancel_job(self, job_id: uuid.UUID) -> str:
        """Flink's semantics: CANCELED already is fine; another terminal state is an error."""
        record = self._record(job_id)
        if record.status is JobStatus.CANCELED:
            return "CANCELED"
        if record.status.is_globally_terminal:
            raise JobStateError(
                f"job {job_id.hex} is {record.status.value} and cannot be cancelled"
            )
        job_master = record.job_master
        if job_master is not None:
            gateway = self.rpc_service.local_gateway(
                job_master, JobMasterGateway, job_master.fencing_token, caller=self.endpoint_id
            )
            await self.off_main(gateway.cancel())
        status: str = record.status.value
        return status

    async def request_cluster_overview(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for record in self.store.jobs.values():
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        overview = dict(self._rm_overview())
        overview["jobs"] = counts
        return overview

    async def shutdown_cluster(self) -> None:
        self.context.emit("info", "cluster shutdown requested", sender=self.endpoint_id)
        self._on_shutdown()


class ClusterEndpoint(RpcEndpoint, ClusterGateway):
    """The unfenced `cluster` endpoint where clients learn the current leaders."""

    def __init__(
        self, service: RpcService, context: ClusterContext, topology: Callable[[], dict[str, Any]]
    ) -> None:
        super().__init__(service, "cluster")
        self.context = context
        self._topology = topology

    async def leaders(self) -> dict[str, Any]:
        """Where the current leaders are, with their fencing tokens (job masters included, for
        TaskExecutors in other processes)."""
        result: dict[str, Any] = {}
        for key, component in (("dispatcher", DISPATCHER), ("resource_manager", RESOURCE_MANAGER)):
            leader = self.context.ha.leader(component)
            result[key] = (
                {"address": leader[0], "token": leader[1]}
                if leader
                else {"address": None, "token": None}
            )
        result["job_masters"] = {
            component: {"address": address, "token": token}
            for component, (address, token) in self.context.ha.leaders_of("jobmaster-").items()
        }
        return result

    async def topology(self) -> dict[str, Any]:
        return self._topology()
