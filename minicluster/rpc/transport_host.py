"""What a connection needs of the RPC service that owns it, named by shape.

The server and client connections take their limits, secret, TLS settings, tracer and endpoint
lookup from a `TransportHost`; `RpcService` is one. A protocol keeps the connection modules from
importing the service module, which imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .endpoint import RpcEndpoint
from .errors import EndpointNotFoundError
from .ratelimit import LogLimiter
from .timeouts import Timeouts
from .tls import TlsConfig
from .tracing import MessageFilter, Tracer

if TYPE_CHECKING:
    from .client_connection import ClientConnection


class TransportHost(Protocol):
    """What the connections need of their RPC service (`RpcService`), named by shape so that this
    module does not import the service module, which imports it."""

    max_frame_size: int
    idle_timeout: float
    secret: bytes | None
    tls: TlsConfig | None
    log_limiter: LogLimiter
    timeouts: Timeouts
    tracer: Tracer | None
    message_filter: MessageFilter | None

    def lookup_endpoint(self, endpoint_id: str) -> RpcEndpoint | None: ...

    def not_found(self, endpoint_id: str) -> EndpointNotFoundError: ...

    def check_handshake(self, endpoint_id: str, gateway_name: str, version: int) -> RpcEndpoint: ...

    def forget_connection(self, conn: ClientConnection) -> None: ...
