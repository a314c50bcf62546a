"""The RPC service: hosts endpoints, serves them over TCP, connects to remote ones."""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from uuid import UUID

import trio

from . import protocol
from .endpoint import RpcEndpoint
from .errors import EndpointNotFoundError, HandshakeError, RpcConnectionError
from .gateway import G, make_proxy
from .local import LocalInvoker
from .ratelimit import LogLimiter
from .scheduled import ScheduledRuns
from .timeouts import Timeouts
from .tls import TlsConfig
from .tracing import MessageFilter, Tracer
from .transport import ClientConnection, RemoteInvoker, ServerConnection, accept_tls

log = logging.getLogger("minicluster.rpc")

DEFAULT_ASK_TIMEOUT = 10.0
DEFAULT_MAILBOX_LIMIT = 10_000  # messages queued at one endpoint before callers wait
DEFAULT_IDLE_TIMEOUT = 300.0  # a server connection silent this long is closed
_ADDRESS = re.compile(r"^(tcp|local)://([^/]+?)(?::(\d+))?(?:/(.*))?$")
_service_names = itertools.count(1)
_LOCAL_SERVICES: dict[str, RpcService] = {}


class RpcStats:
    """Counters that the cluster and its views read; cheap enough to keep always."""

    __slots__ = ("fencing_rejections",)

    def __init__(self) -> None:
        self.fencing_rejections = 0


def parse_address(address: str) -> tuple[str, str, int | None, str]:
    """`tcp://host:port/endpoint` or `local://service/endpoint` as its parts."""
    match = _ADDRESS.match(address)
    if match is None or not match.group(4):
        raise ValueError(
            f"malformed address {address!r}: expected tcp://HOST:PORT/ENDPOINT "
            "or local://SERVICE/ENDPOINT"
        )
    scheme, host, port, endpoint = match.groups()
    if scheme == "tcp" and port is None:
        raise ValueError(f"malformed address {address!r}: a tcp address needs a port")
    return scheme, host, int(port) if port else None, endpoint


class RpcService:
    """Runs endpoints in its nursery; serves them on TCP when it has a host.

    Create it with `open_rpc_service`; everything it started is gone when that block exits.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        ask_timeout: float = DEFAULT_ASK_TIMEOUT,
        max_frame_size: int = protocol.DEFAULT_MAX_FRAME_SIZE,
        secret: bytes | None = None,
        force_serialization: bool = False,
        name: str | None = None,
        mailbox_limit: int = DEFAULT_MAILBOX_LIMIT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        tls: TlsConfig | None = None,
    ) -> None:
        self._nursery = nursery
        self.mailbox_limit = mailbox_limit
        self.idle_timeout = idle_timeout
        self.tls = tls
        self.ask_timeout = ask_timeout
        self.max_frame_size = max_frame_size
        self.secret = secret
        self.force_serialization = force_serialization
        self.name = name or f"service-{next(_service_names)}"
        self.host: str | None = None
        self.port: int | None = None
        self.address = f"local://{self.name}"
        self.stats = RpcStats()
        self.log_limiter = LogLimiter()  # per-message problems: a few lines, then a count
        self.timeouts = Timeouts()
        nursery.start_soon(self.timeouts.run)
        self.scheduled_runs = ScheduledRuns()
        nursery.start_soon(self.scheduled_runs.run)
        self._endpoints: dict[str, RpcEndpoint] = {}
        self._connections: dict[tuple[str, int], ClientConnection] = {}
        self._connecting: dict[tuple[str, int], trio.Lock] = {}
        self._ids = itertools.count(1)
        self._closed = False
        # Hooks for a simulator; None costs one check per message.
        self.tracer: Tracer | None = None
        self.message_filter: MessageFilter | None = None
        _LOCAL_SERVICES[self.name] = self

    # --- endpoints --------------------------------------------------------------------

    def new_endpoint_id(self, prefix: str) -> str:
        return f"{prefix.lower()}-{next(self._ids)}"

    def register_endpoint(self, endpoint: RpcEndpoint) -> None:
        if self._closed:
            raise RuntimeError(f"RPC service {self.name} is closed")
        known = self._endpoints.get(endpoint.endpoint_id)
        if known is not None and known is not endpoint:
            raise ValueError(f"endpoint id {endpoint.endpoint_id!r} is in use at {self.address}")
        self._endpoints[endpoint.endpoint_id] = endpoint

    def unregister_endpoint(self, endpoint: RpcEndpoint) -> None:
        if self._endpoints.get(endpoint.endpoint_id) is endpoint:
            del self._endpoints[endpoint.endpoint_id]

    def lookup_endpoint(self, endpoint_id: str) -> RpcEndpoint | None:
        return self._endpoints.get(endpoint_id)

    @property
    def endpoints(self) -> list[RpcEndpoint]:
        return list(self._endpoints.values())

    def not_found(self, endpoint_id: str) -> EndpointNotFoundError:
        return EndpointNotFoundError(f"no endpoint {endpoint_id!r} at {self.address}")

    def check_handshake(self, endpoint_id: str, gateway_name: str, version: int) -> RpcEndpoint:
        """The endpoint, if it exists and serves the gateway in our protocol version."""
        if version != protocol.PROTOCOL_VERSION:
            raise HandshakeError(
                f"protocol version {version} is not supported "
                f"(this service speaks {protocol.PROTOCOL_VERSION})"
            )
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise self.not_found(endpoint_id)
        if gateway_name not in endpoint.supported_gateways:
            raise HandshakeError(
                f"endpoint {endpoint_id!r} does not implement gateway {gateway_name!r} "
                f"(it implements {', '.join(sorted(endpoint.supported_gateways))})"
            )
        return endpoint

    def record_fencing_rejection(self, endpoint: RpcEndpoint, token: UUID | None) -> None:
        self.stats.fencing_rejections += 1

    def local_gateway(
        self,
        endpoint: RpcEndpoint,
        gateway: type[G],
        token: UUID | None,
        caller: str | None = None,
    ) -> G:
        return make_proxy(gateway, LocalInvoker(self, endpoint, token, caller))

    # --- tasks ------------------------------------------------------------------------

    def spawn_system_task(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn` in the service's nursery (it ends, at the latest, when the service closes)."""
        self._nursery.start_soon(fn, *args)

    def schedule(self, fn: Callable[[], Any], delay: float) -> trio.CancelScope:
        """Call `fn` (sync or async) after `delay` seconds unless the returned scope is
        cancelled or the service closes first."""
        scope = trio.CancelScope()

        async def later() -> None:
            with scope:
                await trio.sleep(delay)
                result = fn()
                if hasattr(result, "__await__"):
                    await result

        self._nursery.start_soon(later)
        return scope

    # --- connecting -------------------------------------------------------------------

    async def connect(
        self,
        address: str,
        gateway: type[G],
        fencing_token: UUID | None = None,
        *,
        timeout: float | None = None,
        caller: str | None = None,
    ) -> G:
        """A proxy to the endpoint at `address`, after a handshake that checks it serves
        `gateway` in our protocol version. Raises HandshakeError, EndpointNotFoundError,
        RpcConnectionError. `caller` names the calling endpoint in traces and filters."""
        scheme, host, port, endpoint_id = parse_address(address)
        timeout = self.ask_timeout if timeout is None else timeout
        gateway_name = gateway.gateway_name
        if scheme == "local" or (host == self.host and port == self.port):
            service = _LOCAL_SERVICES.get(host) if scheme == "local" else self
            if service is None or service._closed:
                raise RpcConnectionError(f"no RPC service {host!r} in this process")
            endpoint = service.check_handshake(endpoint_id, gateway_name, protocol.PROTOCOL_VERSION)
            await trio.lowlevel.checkpoint()
            return service.local_gateway(endpoint, gateway, fencing_token, caller)
        assert port is not None
        conn = await self._connection(host, port, timeout)
        await conn.request(
            protocol.handshake(0, endpoint_id, gateway_name),
            timeout,
            lambda: f"handshake with {address}",
        )
        invoker = RemoteInvoker(conn, endpoint_id, fencing_token, self.ask_timeout, caller)
        return make_proxy(gateway, invoker)

    async def _connection(self, host: str, port: int, timeout: float) -> ClientConnection:
        key = (host, port)
        conn = self._connections.get(key)
        if conn is not None and not conn.closed:
            return conn
        lock = self._connecting.setdefault(key, trio.Lock())
        async with lock:
            conn = self._connections.get(key)
            if conn is not None and not conn.closed:
                return conn
            conn = ClientConnection(self, host, port)
            with trio.move_on_after(timeout) as scope:
                await self._nursery.start(conn.run)
            if scope.cancelled_caught:
                if conn.connected:  # something accepted, and never said welcome
                    raise RpcConnectionError(
                        f"{host}:{port} accepted the connection but did not answer our hello "
                        f"within {timeout:g} s; is a minicluster cluster serving there?"
                    )
                raise RpcConnectionError(
                    f"cannot connect to tcp://{host}:{port} within {timeout:g} s"
                )
            self._connections[key] = conn
            return conn

    def forget_connection(self, conn: ClientConnection) -> None:
        key = (conn.host, conn.port)
        if self._connections.get(key) is conn:
            del self._connections[key]

    def disconnect(self, host: str, port: int) -> None:
        """Close the connection to a peer; calls in flight on it fail as unreachable."""
        conn = self._connections.get((host, port))
        if conn is not None:
            conn.close()

    # --- serving ----------------------------------------------------------------------

    async def _listen(self, host: str, port: int) -> None:
        listeners = await self._nursery.start(
            partial(trio.serve_tcp, self._serve_connection, port, host=host)
        )
        sockname = listeners[0].socket.getsockname()
        self.host, self.port = host, sockname[1]
        self.address = f"tcp://{host}:{self.port}"

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        context = self.tls.server_context() if self.tls is not None else None
        if context is None:
            await ServerConnection(self, stream).serve()
            return
        tls_stream = await accept_tls(stream, context)
        if tls_stream is not None:
            await ServerConnection(self, tls_stream).serve()

    # --- closing ----------------------------------------------------------------------

    async def close(self) -> None:
        """Terminate every endpoint (running `on_stop`), then stop serving and connections."""
        if self._closed:
            return
        self._closed = True
        endpoints = list(self._endpoints.values())
        for endpoint in endpoints:
            endpoint.close_async()
        for endpoint in endpoints:
            try:
                await endpoint.wait_terminated()
            except Exception as exc:
                log.debug("endpoint %s terminated with %r", endpoint.endpoint_id, exc)
        _LOCAL_SERVICES.pop(self.name, None)
        self.log_limiter.flush()
        self._nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_rpc_service(
    host: str | None = None,
    port: int = 0,
    *,
    ask_timeout: float = DEFAULT_ASK_TIMEOUT,
    max_frame_size: int = protocol.DEFAULT_MAX_FRAME_SIZE,
    secret: bytes | None = None,
    force_serialization: bool = False,
    name: str | None = None,
    mailbox_limit: int = DEFAULT_MAILBOX_LIMIT,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    tls: TlsConfig | None = None,
) -> AsyncIterator[RpcService]:
    """An RPC service for the duration of the block; with `host`, it serves on TCP there.

    `port=0` picks a free port (read it from `service.port`). On exit every endpoint is
    terminated and every task the service started is gone. `mailbox_limit` bounds each
    endpoint's queue (callers wait when it is full); `idle_timeout` closes silent server
    connections; `tls` serves and connects with TLS.
    """
    if ask_timeout <= 0 or math.isnan(ask_timeout):
        raise ValueError("ask_timeout must be positive")
    if type(max_frame_size) is not int or max_frame_size < protocol.MIN_FRAME_SIZE:
        raise ValueError(
            f"max_frame_size must be an integer of at least {protocol.MIN_FRAME_SIZE} bytes"
        )
    try:
        async with trio.open_nursery() as nursery:
            service = RpcService(
                nursery,
                ask_timeout=ask_timeout,
                max_frame_size=max_frame_size,
                secret=secret,
                force_serialization=force_serialization,
                name=name,
                mailbox_limit=mailbox_limit,
                idle_timeout=idle_timeout,
                tls=tls,
            )
            try:
                if host is not None:
                    await service._listen(host, port)
                yield service
            finally:
                with trio.CancelScope(shield=True):
                    await service.close()
    except BaseExceptionGroup as group:
        # The caller's own exception should not come out wrapped by our nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
