"""What an endpoint needs of the RPC service it lives in, named by shape (a Protocol).

`RpcService` is the one implementation; naming it by shape keeps the endpoint module from
importing the service module, which imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from .gateway import G
from .ratelimit import LogLimiter
from .scheduled import ScheduledRuns
from .timeouts import Timeouts
from .tracing import Tracer

if TYPE_CHECKING:
    from .endpoint import RpcEndpoint


class EndpointHost(Protocol):
    """What an endpoint needs of its RPC service (see the module's docstring). `connect` and
    `local_gateway` are here because endpoints reach their peers through `rpc_service`."""

    address: str
    ask_timeout: float
    mailbox_limit: int
    timeouts: Timeouts
    scheduled_runs: ScheduledRuns
    log_limiter: LogLimiter
    tracer: Tracer | None

    def new_endpoint_id(self, prefix: str) -> str: ...

    def register_endpoint(self, endpoint: RpcEndpoint) -> None: ...

    def unregister_endpoint(self, endpoint: RpcEndpoint) -> None: ...

    def record_fencing_rejection(self, endpoint: RpcEndpoint, token: UUID | None) -> None: ...

    def spawn_system_task(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    def local_gateway(
        self,
        endpoint: RpcEndpoint,
        gateway: type[G],
        token: UUID | None,
        caller: str | None = None,
    ) -> G: ...

    async def connect(
        self,
        address: str,
        gateway: type[G],
        fencing_token: UUID | None = None,
        *,
        timeout: float | None = None,
        caller: str | None = None,
    ) -> G: ...
