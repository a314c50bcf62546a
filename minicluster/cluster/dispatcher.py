"""The Dispatcher: takes job submissions, runs a JobMaster per job (each elected leader of its
job with its own fencing token), answers queries, and keeps finished jobs queryable."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import trio

from minicluster.rpc import FencedRpcEndpoint, RpcEndpoint, RpcService

from .components import (
    DISPATCHER,
    JOB_MASTER_PREFIX,
    RESOURCE_MANAGER,
    job_master_endpoint,
    job_of,
)
from .context import ClusterContext
from .gateways import (
    ClusterGateway,
    DispatcherGateway,
    JobMasterGateway,
    ResourceManagerGateway,
)
from .jobmaster import JobMaster
from .model import (
    DuplicateJobSubmissionError,
    JobGraph,
    JobNotFoundError,
    JobStateError,
    JobStatus,
)
from .snapshot import (
    MAX_LISTED_TASKS,
    ClusterSnapshot,
    JobSnapshot,
    LeaderSnapshot,
    ResourceOverview,
    TaskExecutorSnapshot,
    task_executor_rows,
)
from .stats import notable_events, recent_events, rpc_statistics

# Bounds that keep every reply about jobs within a frame, whatever users submit: at most this
# many jobs run at once (a submission beyond is refused), at most this many ended jobs are kept
# (the oldest are forgotten, as Flink's jobstore.max-capacity does), and a job's details list
# at most this many tasks (MAX_LISTED_TASKS, with the total beside them).
MAX_ACTIVE_JOBS = 1_000
MAX_ARCHIVED_JOBS = 1_000


@dataclass
class JobRecord:
    graph: JobGraph
    status: JobStatus = JobStatus.CREATED
    job_master: JobMaster | None = None
    archived: JobSnapshot | None = None
    submitted_at: float = 0.0
    failovers: int = 0
    done: trio.Event = field(default_factory=trio.Event)
    # an ended job's summary, made once: a scenario's conditions read every job's summary at
    # each look, and a long scenario keeps hundreds of ended jobs
    _ended_summary: JobSnapshot | None = field(default=None, repr=False, compare=False)

    def ended_summary(self) -> JobSnapshot | None:
        """The summary of a job that has ended (its JobMaster gone, its snapshot archived),
        made once; None for a job that has not ended."""
        if self.archived is None or self.job_master is not None:
            return None
        if self._ended_summary is None:
            self._ended_summary = self.snapshot().summary()
        return self._ended_summary

    def snapshot(self) -> JobSnapshot:
        """The job as the Dispatcher knows it once no JobMaster runs it (or before one has
        started): the JobMaster's last snapshot, or what its graph says."""
        if self.archived is not None:
            return self.archived.with_record(self.status, self.failovers)
        graph = self.graph
        return JobSnapshot(
            job_id=graph.job_id,
            name=graph.name,
            status=self.status,
            parallelism=graph.max_parallelism,
            start_time=self.submitted_at,
            tasks_total=graph.task_count,
            restart_attempts=graph.restart.attempts,
            failover_strategy=graph.failover_strategy,
            failovers=self.failovers,
            vertices=tuple((v.name, v.parallelism) for v in graph.vertices),
            edges=tuple((e.source, e.target, e.pattern) for e in graph.edges),
        )


class JobStore:
    """Jobs and their JobMasters, kept outside the Dispatcher so that a new Dispatcher leader
    takes over the running jobs (the role of Flink's JobGraphStore and JobResultStore)."""

    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, JobRecord] = {}
        self.by_name: dict[str, uuid.UUID] = {}


class TaskExecutorDirectory(Protocol):
    """The TaskExecutors of this process (the MiniCluster that runs them): read in-process,
    through their public snapshot methods, never suspending. TaskExecutors in other processes
    are known through the ResourceManager's overview."""

    def task_executor_snapshots(self) -> tuple[TaskExecutorSnapshot, ...]: ...

    def free_slots(self) -> int: ...


class Dispatcher(FencedRpcEndpoint, DispatcherGateway):
    def __init__(
        self,
        service: RpcService,
        context: ClusterContext,
        token: uuid.UUID,
        store: JobStore,
        on_shutdown: Callable[[], None],
        task_executors: TaskExecutorDirectory,
        rm_counts: Callable[[], ResourceOverview],
    ) -> None:
        super().__init__(service, token, DISPATCHER)
        self.context = context
        self.store = store
        self._on_shutdown = on_shutdown
        self._task_executors = task_executors
        self._rm_counts = rm_counts
        self._rm: tuple[uuid.UUID, ResourceManagerGateway] | None = None

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
        self.context.ha.publish(job_master_endpoint(record.graph.job_id), job_master.address, token)

    def _job_status_changed(self, job_master: JobMaster, status: JobStatus) -> None:
        record = self.store.jobs.get(job_master.job_id)
        if record is None or record.job_master is not job_master:
            return
        record.status = status
        if status.is_globally_terminal:
            # the JobMaster frees its slots and stops itself; queries use the archive now
            record.archived = job_master.job_snapshot().bounded(MAX_LISTED_TASKS)
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

    # --- queries: what observers read -------------------------------------------------------

    def job_snapshot(self, record: JobRecord, *, executions: bool = True) -> JobSnapshot:
        """One job, never suspending: from its running JobMaster's public snapshot method
        (in-process), else from the record."""
        job_master = record.job_master
        if job_master is None:
            return record.snapshot()
        return job_master.job_snapshot(executions=executions).with_record(
            record.status, record.failovers
        )

    def job_snapshots(self) -> tuple[JobSnapshot, ...]:
        """Every job's summary, never suspending (for synchronous readers in this process)."""
        return tuple(
            r.ended_summary() or self.job_snapshot(r, executions=False).summary()
            for r in self.store.jobs.values()
        )

    async def _ask_job_snapshot(self, record: JobRecord, executions: bool = True) -> JobSnapshot:
        """One job through its JobMaster's gateway; a JobMaster that stopped meanwhile is
        answered from the record."""
        job_master = record.job_master
        if job_master is None:
            return record.snapshot()
        gateway = self.rpc_service.local_gateway(
            job_master, JobMasterGateway, job_master.fencing_token, caller=self.endpoint_id
        )
        try:
            snapshot: JobSnapshot = await self.off_main(gateway.request_job_snapshot(executions))
        except Exception:
            return record.snapshot()
        return snapshot.with_record(record.status, record.failovers)

    async def _ask_resource_overview(self, detail: bool = True) -> ResourceOverview:
        """The ResourceManager leader's overview through its gateway (empty while there is
        no leader or it does not answer)."""
        leader = self.context.ha.leader(RESOURCE_MANAGER)
        if leader is None:
            return ResourceOverview()
        address, token = leader
        try:
            if self._rm is None or self._rm[0] != token:
                gateway = await self.off_main(
                    self.rpc_service.connect(
                        address, ResourceManagerGateway, token, caller=self.endpoint_id
                    )
                )
                self._rm = (token, gateway)
            overview: ResourceOverview = await self.off_main(
                self._rm[1].request_resource_overview(detail)
            )
        except Exception:
            return ResourceOverview()
        return overview

    async def list_jobs(self) -> list[dict[str, Any]]:
        return [job.summary_dict() for job in self.job_snapshots()]

    async def request_job_status(self, job_id: uuid.UUID) -> str:
        status: str = self._record(job_id).status.value
        return status

    async def request_job_snapshot(self, job_id: uuid.UUID) -> JobSnapshot:
        """One job with its tasks (at most MAX_LISTED_TASKS of them), asked of its JobMaster."""
        snapshot = await self._ask_job_snapshot(self._record(job_id))
        return snapshot.bounded(MAX_LISTED_TASKS)

    async def request_job(self, job_id: uuid.UUID) -> dict[str, Any]:
        return (await self.request_job_snapshot(job_id)).as_dict()

    async def request_cluster_snapshot(self, detail: bool = True) -> ClusterSnapshot:
        """The whole cluster: jobs asked of their JobMasters, the ResourceManager's overview
        asked of it, through their gateways; this process's TaskExecutors read in-process.
        Without `detail`, only what a scenario's conditions read (they look often): jobs
        without their tasks, counts of slots and TaskExecutors, fencing rejections; no
        TaskExecutor rows, RPC statistics or recent events."""
        jobs = []
        for record in list(self.store.jobs.values()):
            ended = record.ended_summary()
            if ended is None:
                ended = (await self._ask_job_snapshot(record, executions=False)).summary()
            jobs.append(ended)
        overview = await self._ask_resource_overview(detail)
        return build_cluster_snapshot(
            self.context,
            self._task_executors,
            overview,
            tuple(jobs),
            {r.graph.job_id: r.graph.name for r in self.store.jobs.values()},
            detail,
        )

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
        # read in-process, as before snapshots existed: a cheap count that clients poll
        overview = self._rm_counts().as_dict()
        overview["jobs"] = counts
        return overview

    async def shutdown_cluster(self) -> None:
        self.context.emit("info", "cluster shutdown requested", sender=self.endpoint_id)
        self._on_shutdown()


def build_cluster_snapshot(
    context: ClusterContext,
    task_executors: TaskExecutorDirectory,
    overview: ResourceOverview,
    jobs: tuple[JobSnapshot, ...],
    job_names: dict[uuid.UUID, str],
    detail: bool,
    event_limit: int = 30,
) -> ClusterSnapshot:
    """The ClusterSnapshot from its parts, however they were gathered (asked through the
    gateways by the Dispatcher, or read in-process by a synchronous view)."""
    ha = context.ha

    def leader(component: str) -> LeaderSnapshot:
        found = ha.leader(component)
        return LeaderSnapshot(component, *found) if found else LeaderSnapshot(component)

    masters = []
    # the JobMaster leaders are few (jobs that run); the jobs may be hundreds (ended ones)
    for component, (address, token) in ha.leaders_of(JOB_MASTER_PREFIX).items():
        job_hex = job_of(component)
        job_id = uuid.UUID(hex=job_hex) if job_hex is not None else None
        name = job_names.get(job_id) if job_id is not None else None
        if job_id is not None and name is not None:
            masters.append(LeaderSnapshot(component, address, token, job_id, name))
    rows: tuple[TaskExecutorSnapshot, ...] = ()
    total = 0
    if detail:
        rm_leader = ha.leader(RESOURCE_MANAGER)
        rows, total = task_executor_rows(
            task_executors.task_executor_snapshots(),
            overview,
            job_names,
            rm_leader[1] if rm_leader is not None else None,
            {allocation for job in jobs for allocation in job.active_allocations},
        )
    events = context.events
    return ClusterSnapshot(
        time=events.now(),
        dispatcher=leader(DISPATCHER),
        resource_manager=leader(RESOURCE_MANAGER),
        job_masters=tuple(masters),
        task_executors=rows,
        task_executors_total=total,
        jobs=jobs,
        overview=replace(overview, registered=()),
        rpc=rpc_statistics(context) if detail else None,
        events=recent_events(context, event_limit) if detail else (),
        notable_events=notable_events(context) if detail else (),
        fencing_rejections=events.fencing_rejections,
        heartbeat_timeout=context.config.heartbeat_timeout,
        free_slots=task_executors.free_slots(),
    )


class ClusterEndpoint(RpcEndpoint, ClusterGateway):
    """The unfenced `cluster` endpoint where clients learn the current leaders."""

    def __init__(
        self, service: RpcService, context: ClusterContext, topology: Callable[[], ClusterSnapshot]
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
            for component, (address, token) in self.context.ha.leaders_of(JOB_MASTER_PREFIX).items()
        }
        return result

    async def topology(self) -> dict[str, Any]:
        """The cluster snapshot's JSON form (the `request_cluster_snapshot` of the Dispatcher
        gives the typed one)."""
        return self._topology().as_dict()
