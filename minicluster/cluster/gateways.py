"""The remote interfaces of Flink's four components, with Flink's method names in Python style."""

from __future__ import annotations

import uuid
from typing import Any

from minicluster.rpc import FencedRpcGateway, RpcGateway, RpcTimeout

from .model import (
    AllocatedSlotReport,
    JobGraph,
    JobStatus,
    RegistrationResponse,
    SlotID,
    SlotOffer,
    SlotStatus,
    TaskDeploymentDescriptor,
    TaskExecutionState,
    TaskExecutorHeartbeatPayload,
    TaskExecutorRegistration,
    TaskExecutorToJobManagerHeartbeatPayload,
)
from .snapshot import ClusterSnapshot, JobSnapshot, ResourceOverview

# Heartbeats are Flink's: the monitoring side *requests* a heartbeat (an ask, whose failure
# counts towards heartbeat.rpc-failure-threshold) and the monitored side *answers* with a
# separate call carrying its payload, which is what resets the heartbeat timeout.


class TaskExecutorGateway(RpcGateway):
    async def request_slot(
        self,
        slot_id: SlotID,
        job_id: uuid.UUID,
        allocation_id: uuid.UUID,
        target_address: str,
        rm_token: uuid.UUID,
    ) -> None: ...

    async def submit_task(self, tdd: TaskDeploymentDescriptor, jm_token: uuid.UUID) -> None: ...

    async def cancel_task(self, execution_id: uuid.UUID) -> None: ...

    def free_slot(self, allocation_id: uuid.UUID, cause: str) -> None:
        """A tell: Flink's freeSlot is an ask whose answer the JobMaster only logs."""

    def free_inactive_slots(self, job_id: uuid.UUID) -> None: ...

    async def heartbeat_from_resource_manager(self, rm_token: uuid.UUID) -> None: ...

    async def heartbeat_from_job_manager(
        self, job_id: uuid.UUID, report: AllocatedSlotReport
    ) -> None: ...

    def disconnect_resource_manager(self, cause: str) -> None: ...

    def disconnect_job_manager(self, job_id: uuid.UUID, cause: str) -> None: ...

    async def cluster_stopping(self, cause: str) -> None:
        """The cluster is shutting down for good (not a failover): a TaskExecutor in a process
        of its own stops too instead of looking for a leader that will not come. An ask, so the
        cluster knows the notice arrived before it closes its connections."""


class ResourceManagerGateway(FencedRpcGateway):
    async def register_task_executor(
        self, registration: TaskExecutorRegistration, timeout: RpcTimeout = 10.0
    ) -> RegistrationResponse: ...

    async def send_slot_report(
        self, resource_id: str, instance_id: uuid.UUID, slots: list[SlotStatus]
    ) -> None: ...

    async def register_job_master(
        self, jm_token: uuid.UUID, job_id: uuid.UUID, jm_address: str
    ) -> RegistrationResponse: ...

    async def declare_required_resources(
        self, jm_token: uuid.UUID, job_id: uuid.UUID, slots: int
    ) -> None: ...

    def notify_slot_available(
        self, resource_id: str, instance_id: uuid.UUID, slot_id: SlotID, allocation_id: uuid.UUID
    ) -> None: ...

    def disconnect_task_manager(self, resource_id: str, cause: str) -> None: ...

    def disconnect_job_manager(self, job_id: uuid.UUID, job_status: JobStatus, cause: str) -> None:
        """A terminal `job_status` clears the job's requirements (Flink's CLEAR); any other keeps
        them for the job's next JobMaster (RETAIN)."""

    def heartbeat_from_task_manager(
        self, resource_id: str, payload: TaskExecutorHeartbeatPayload
    ) -> None: ...

    def heartbeat_from_job_manager(self, job_id: uuid.UUID) -> None: ...

    async def request_overview(self) -> dict[str, Any]: ...

    async def request_resource_overview(self, detail: bool = True) -> ResourceOverview:
        """Without `detail`, only the counts. An observer's query (views, clients): never
        traced, never dropped by a fault."""


class JobMasterGateway(FencedRpcGateway):
    async def register_task_manager(
        self, job_id: uuid.UUID, resource_id: str, address: str, session_id: uuid.UUID
    ) -> RegistrationResponse: ...

    async def offer_slots(
        self, resource_id: str, offers: list[SlotOffer], timeout: RpcTimeout = 10.0
    ) -> list[SlotOffer]: ...

    async def update_task_execution_state(
        self, state: TaskExecutionState, timeout: RpcTimeout = 10.0
    ) -> None: ...

    def notify_not_enough_resources(self, available: int, required: int) -> None: ...

    def disconnect_task_manager(self, resource_id: str, cause: str) -> None: ...

    def disconnect_resource_manager(self, cause: str) -> None: ...

    async def heartbeat_from_resource_manager(self) -> None: ...

    def heartbeat_from_task_manager(
        self, resource_id: str, payload: TaskExecutorToJobManagerHeartbeatPayload
    ) -> None: ...

    async def request_job_details(self) -> dict[str, Any]: ...

    async def request_job_snapshot(self, executions: bool = True) -> JobSnapshot:
        """Without `executions`, only the job's counts and pending requests. An observer's
        query (views, clients): never traced, never dropped by a fault."""

    async def cancel(self) -> None: ...

    async def fail_task(self, vertex: str | None, subtask: int) -> None: ...


class DispatcherGateway(FencedRpcGateway):
    async def submit_job(self, job_graph: JobGraph) -> uuid.UUID: ...

    async def list_jobs(self) -> list[dict[str, Any]]: ...

    async def request_job_status(self, job_id: uuid.UUID) -> str: ...

    async def request_job(self, job_id: uuid.UUID) -> dict[str, Any]: ...

    async def request_job_snapshot(self, job_id: uuid.UUID) -> JobSnapshot:
        """One job with its tasks (bounded), asked of its JobMaster."""

    async def request_cluster_snapshot(self, detail: bool = True) -> ClusterSnapshot:
        """The whole cluster, gathered through the JobMasters' and the ResourceManager's
        gateways. Without `detail` only what conditions read: jobs, counts of slots
        and TaskExecutors, fencing rejections (no TaskExecutor rows, statistics, events)."""

    async def cancel_job(self, job_id: uuid.UUID) -> str: ...

    async def request_cluster_overview(self) -> dict[str, Any]: ...

    async def shutdown_cluster(self) -> None: ...


class ClusterGateway(RpcGateway):
    async def leaders(self) -> dict[str, Any]: ...

    async def topology(self) -> dict[str, Any]: ...
