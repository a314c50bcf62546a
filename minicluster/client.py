"""A client of a running cluster: finds the leaders through the `cluster` endpoint and calls
the Dispatcher with its fencing token, following a leader change once if one happens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from minicluster.cluster.gateways import ClusterGateway, DispatcherGateway
from minicluster.cluster.snapshot import ClusterSnapshot, JobSnapshot
from minicluster.rpc import (
    FencingTokenError,
    RecipientUnreachableError,
    RpcConnectionError,
    RpcError,
    RpcService,
    open_rpc_service,
)
from minicluster.rpc.tls import TlsConfig

DEFAULT_ADDRESS = "tcp://127.0.0.1:6123"
T = TypeVar("T")


class ClusterUnreachableError(Exception):
    """The cluster could not be reached at the address."""


def unreachable(address: str, exc: BaseException) -> str:
    """Why the cluster at `address` cannot be reached, naming it once."""
    text = str(exc)
    if isinstance(exc, RpcConnectionError) and address.removeprefix("tcp://") in text:
        return text  # "cannot connect to tcp://...: connection refused", "... answered like"
    return f"cannot reach the cluster at {address}: {text}"


class ClusterClient:
    def __init__(self, service: RpcService, address: str, timeout: float) -> None:
        self.service = service
        self.address = address.rstrip("/")
        self.timeout = timeout
        self._cluster: ClusterGateway | None = None
        self._dispatcher: DispatcherGateway | None = None

    async def cluster(self) -> ClusterGateway:
        if self._cluster is None:
            try:
                self._cluster = await self.service.connect(
                    f"{self.address}/cluster", ClusterGateway, timeout=self.timeout
                )
            except (RpcError, OSError) as exc:
                raise ClusterUnreachableError(unreachable(self.address, exc)) from None
        return self._cluster

    async def leaders(self) -> dict[str, Any]:
        cluster = await self.cluster()
        result: dict[str, Any] = await self._guard(cluster.leaders())
        return result

    async def dispatcher(self, refresh: bool = False) -> DispatcherGateway:
        if self._dispatcher is None or refresh:
            leader = (await self.leaders())["dispatcher"]
            if not leader.get("address"):
                raise ClusterUnreachableError(f"the cluster at {self.address} has no Dispatcher")
            self._dispatcher = await self._guard(
                self.service.connect(
                    leader["address"], DispatcherGateway, leader["token"], timeout=self.timeout
                )
            )
        return self._dispatcher

    async def call(self, method: Callable[[DispatcherGateway], Awaitable[T]]) -> T:
        """Call the Dispatcher; a stale token (a new leader) means ask again, once."""
        dispatcher = await self.dispatcher()
        try:
            return await self._guard(method(dispatcher))
        except FencingTokenError:
            dispatcher = await self.dispatcher(refresh=True)
            return await self._guard(method(dispatcher))

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except RecipientUnreachableError as exc:
            raise ClusterUnreachableError(f"lost the cluster at {self.address}: {exc}") from None

    async def topology(self) -> dict[str, Any]:
        cluster = await self.cluster()
        result: dict[str, Any] = await self._guard(cluster.topology())
        return result

    async def cluster_snapshot(self) -> ClusterSnapshot:
        """The typed ClusterSnapshot, asked of the Dispatcher leader through its gateway."""
        return await self.call(lambda d: d.request_cluster_snapshot())

    async def job_snapshot(self, job_id: uuid.UUID) -> JobSnapshot:
        """One job with its tasks (bounded), asked of the Dispatcher leader."""
        return await self.call(lambda d: d.request_job_snapshot(job_id))

    async def find_job(self, job_ref: str) -> uuid.UUID:
        """A job id from its hex id (or a unique prefix) or its name."""
        jobs = await self.call(lambda d: d.list_jobs())
        matches = [
            j for j in jobs if j["job_id"] == job_ref or j["job_id"].startswith(job_ref.lower())
        ]
        if not matches:
            matches = [j for j in jobs if j["name"] == job_ref]
        if len(matches) != 1:
            from minicluster.cluster.model import JobNotFoundError

            what = "no job" if not matches else f"{len(matches)} jobs"
            raise JobNotFoundError(f"{what} matching {job_ref!r} in the cluster at {self.address}")
        return uuid.UUID(hex=matches[0]["job_id"])


@asynccontextmanager
async def connect_cluster(
    address: str = DEFAULT_ADDRESS,
    secret: bytes | None = None,
    timeout: float = 10.0,
    tls: TlsConfig | None = None,
) -> AsyncIterator[ClusterClient]:
    async with open_rpc_service(secret=secret, ask_timeout=timeout, tls=tls) as service:
        client = ClusterClient(service, address, timeout)
        with trio.fail_after(timeout * 3):
            await client.cluster()
        yield client
