"""The client side of a connection: one per peer, carrying every call to it, and the invoker
a proxy uses to call through it.

Many calls are in flight at once on a `ClientConnection` and replies come back in any order;
`RemoteInvoker` is a remote proxy's route to one endpoint behind the connection.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable
from typing import Any, NoReturn
from uuid import UUID

import trio

from . import protocol
from .errors import (
    AuthenticationError,
    ForeignPeerError,
    HandshakeError,
    MessageTooLargeError,
    ProtocolError,
    RecipientUnreachableError,
    RpcConnectionError,
    RpcError,
)
from .frame_reader import receive_into
from .frame_writer import FrameWriter
from .large_values import LARGE_STAND_IN, large_bytes_index
from .protocol import FrameDecoder, FrameTooLargeError
from .reply import CallbackReply, Reply
from .serialization import dumps, dumps_around
from .transport_host import TransportHost

PROBE_AFTER = 1.0  # seconds a hello may go unanswered before the peer is asked what it is


class ClientConnection:
    """The one connection from a service to a peer; carries every call to that peer."""

    def __init__(self, service: TransportHost, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.peer = f"tcp://{host}:{port}"
        self.max_frame_size = service.max_frame_size
        self.peer_max_frame_size = service.max_frame_size
        self.stream: trio.abc.Stream | None = None
        self.writer: FrameWriter | None = None
        self.decoder = FrameDecoder(self.max_frame_size)
        self._first = b""  # the peer's first bytes during set-up (see _receive_setup)
        self.pending: dict[int, Reply] = {}
        self.next_id = 0
        self.closed = False
        self.connected = False  # TCP is up; set-up (hello, welcome) may still be under way
        self.close_reason = "connection closed"
        self._cancel = trio.CancelScope()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open, set up, report started, then read replies until the connection ends."""
        with self._cancel:
            try:
                await self._open()
            except BaseException:
                self.closed = True
                if self.stream is not None:
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(self.stream)
                raise
            assert self.stream is not None and self.writer is not None
            task_status.started(self)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.writer.run)
                    await self._read_replies()
                    nursery.cancel_scope.cancel()
            except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
                self.close_reason = f"connection lost: {group.exceptions[0]}"
            finally:
                self._shut(self.close_reason)
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(self.stream)

    async def _open(self) -> None:
        try:
            self.stream = stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise RpcConnectionError(f"cannot connect to {self.peer}: {_why(exc)}") from None
        self.connected = True
        tls = self.service.tls
        context = tls.client_context() if tls is not None else None
        if context is not None:
            tls_stream = trio.SSLStream(stream, context, server_hostname=self.host)
            try:
                await tls_stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                cause = exc.__cause__ or exc
                raise RpcConnectionError(
                    f"TLS handshake with {self.peer} failed ({cause}); does it serve TLS, "
                    "and is its certificate signed by the CA given?"
                ) from None
            self.stream = stream = tls_stream  # type: ignore[assignment]
        self.writer = FrameWriter(stream)
        await stream.send_all(protocol.encode_frame(protocol.hello(self.max_frame_size)))
        message = await self._first_answer(probe=context is None)
        challenge = message.get("challenge")
        if challenge is not None:
            secret = self.service.secret
            if secret is None:
                raise AuthenticationError(f"{self.peer} requires a shared secret and none is set")
            if not isinstance(challenge, bytes):
                raise ProtocolError(f"{self.peer} sent a malformed challenge")
            proof = protocol.auth_proof(secret, challenge)
            await stream.send_all(protocol.encode_frame(protocol.auth(proof)))
            message = await self._receive_setup()
        limit = message.get("max_frame_size")
        if type(limit) is int and limit > 0:
            self.peer_max_frame_size = limit

    async def _first_answer(self, probe: bool) -> dict[str, Any]:
        """The answer to our hello. A peer that leaves it unanswered for PROBE_AFTER seconds
        is asked what it is, on a connection of its own (see protocol.PROBE): an HTTP server,
        say, waits for the end of a request line that our hello never sends."""
        if probe:
            with trio.move_on_after(PROBE_AFTER):
                return await self._receive_setup()
            stranger = await self._probe()
            if stranger is not None:
                raise stranger
        return await self._receive_setup()

    async def _probe(self) -> ForeignPeerError | None:
        """What answers a line-based request at the peer's address, if it is plainly not a
        minicluster service; None otherwise (a slow cluster, or no answer)."""
        with trio.move_on_after(PROBE_AFTER):
            try:
                stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError:
                return None
            async with stream:
                try:
                    await stream.send_all(protocol.PROBE)
                    data = await stream.receive_some(64)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return None
            what = protocol.foreign_peer(data) if data else None
            if what is not None and what != "something else":
                return self._foreign(data, what)
        return None

    async def _receive_setup(self) -> dict[str, Any]:
        assert self.stream is not None
        first = self._first  # the peer's first bytes: enough to tell a stranger from a cluster
        while True:
            payload = self.decoder.next_frame()
            if payload is not None:
                break
            try:
                data = await self.stream.receive_some(self.decoder.receive_size())
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise RpcConnectionError(f"{self.peer} closed the connection: {exc}") from None
            if not data:
                if first:
                    raise self._foreign(first, "something else")
                raise RpcConnectionError(f"{self.peer} closed the connection during set-up")
            if len(first) < 64:
                first += data[: 64 - len(first)]
                self._first = first
                what = protocol.foreign_peer(first)
                if what is not None:
                    raise self._foreign(first, what)
            self.decoder.feed(data)
        try:
            message = protocol.decode_message(payload, budget=protocol.SETUP_DECODE_BUDGET)
        except RpcError:
            raise self._foreign(first, "something else") from None
        kind = message.get("type")
        if kind == "goodbye":
            reason = str(message.get("reason", ""))
            if "authentication" in reason:
                raise AuthenticationError(f"{self.peer} refused us: {reason}")
            raise HandshakeError(f"{self.peer} refused us: {reason}")
        if kind != "welcome":
            raise ProtocolError(f"{self.peer} answered hello with {kind!r}")
        return message

    def _foreign(self, first: bytes, what: str) -> ForeignPeerError:
        where = f"{self.host}:{self.port}"
        if what == "something else":
            return ForeignPeerError(
                f"{where} is not a minicluster cluster: it answered our hello with "
                f"{protocol.shown_bytes(first)}, which is not a minicluster frame"
            )
        return ForeignPeerError(
            f"{where} answered like {what} ({protocol.shown_bytes(first)}), "
            "not a minicluster cluster"
        )

    async def _read_replies(self) -> None:
        assert self.stream is not None
        stream, decoder, pending = self.stream, self.decoder, self.pending
        sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        while True:
            try:
                if not await receive_into(decoder, stream, sock):
                    self.close_reason = f"{self.peer} closed the connection"
                    return
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.close_reason = f"connection to {self.peer} lost: {exc}"
                return
            except FrameTooLargeError as exc:
                self.close_reason = f"{self.peer} sent a frame over our limit: {exc}"
                return
            try:
                for payload in decoder:
                    message = protocol.decode_message(payload)
                    if type(payload) is bytearray:  # a large one, decoded: its buffer is free
                        decoder.give_back(payload)
                    kind = message.get("type")
                    if kind == "reply":
                        reply = pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                        if reply is None:
                            continue
                        if "error" in message:
                            reply.set_error(protocol.error_from_wire(message["error"]))
                        else:
                            reply.set_result(message.get("value"))
                    elif kind == "goodbye":
                        self.close_reason = f"{self.peer} said goodbye: {message.get('reason')}"
                        return
            except FrameTooLargeError as exc:
                self.close_reason = f"{self.peer} sent a frame over our limit: {exc}"
                return
            except ProtocolError as exc:
                request_id = exc.request_id
                reply = pending.pop(request_id, None) if request_id is not None else None
                if reply is not None:
                    reply.set_error(exc)
                    continue
                self.close_reason = f"{self.peer} sent a bad frame: {exc}"
                return

    def _shut(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        self.service.forget_connection(self)
        pending, self.pending = self.pending, {}
        for reply in pending.values():
            reply.set_error(RecipientUnreachableError(reason))

    def close(self) -> None:
        self.close_reason = "connection closed by this side"
        self._cancel.cancel()

    def _encode(self, message: dict[str, Any], large: int = -1) -> bytes | list[bytes]:
        """The frame payload of `message` (the writer adds the header); with `large`, the
        position of a large bytes value among its arguments, pieces around that value
        (`serialization.dumps_around`), which is not copied."""
        if large < 0:
            payload: bytes | list[bytes] = dumps(message)  # protocol.encode_message, inlined
            size = len(payload)
        else:
            args = list(message["args"])
            value, args[large] = args[large], LARGE_STAND_IN
            payload = dumps_around({**message, "args": args}, value)
            size = sum(map(len, payload))
        if size > self.peer_max_frame_size:
            self._too_large(message["type"], message.get("method", ""), size)
        return payload

    def _too_large(self, kind: str, method: str, size: int) -> NoReturn:
        raise MessageTooLargeError(
            f"{kind} {method} of {size} bytes exceeds the frame limit of "
            f"{self.peer_max_frame_size} bytes; not sent"
        )

    async def request(
        self, message: dict[str, Any], timeout: float, what: Callable[[], str]
    ) -> Any:
        if self.closed:
            raise RecipientUnreachableError(f"{what()}: {self.close_reason}")
        self.next_id = request_id = self.next_id + 1
        message["id"] = request_id
        frame = self._encode(message)
        reply = Reply()
        pending = self.pending
        alone = not pending
        pending[request_id] = reply
        assert self.writer is not None
        self.writer.send_payload(frame, alone)
        try:
            return await reply.wait(self.service.timeouts, timeout, what)
        finally:
            self.pending.pop(request_id, None)

    def send_tell(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        frame = self._encode(message)
        assert self.writer is not None
        self.writer.send_payload(frame)


def _why(exc: OSError) -> str:
    """Why a connection attempt failed, as the system said it ("connection refused"); trio
    gathers the attempts of every resolved address under one OSError."""
    errors: list[BaseException] = [exc]
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        errors = list(cause.exceptions) + errors
    elif cause is not None:
        errors.insert(0, cause)
    for error in errors:
        if isinstance(error, OSError) and error.errno:
            text = os.strerror(error.errno)
            return text[:1].lower() + text[1:]
    return str(exc)


class RemoteInvoker:
    """A proxy's route to an endpoint behind a client connection."""

    __slots__ = (
        "_parts",
        "address",
        "caller",
        "conn",
        "default_timeout",
        "endpoint_id",
        "fencing_token",
    )

    def __init__(
        self,
        conn: ClientConnection,
        endpoint_id: str,
        fencing_token: UUID | None,
        default_timeout: float,
        caller: str | None = None,
    ) -> None:
        self.caller = caller
        self.conn = conn
        self.endpoint_id = endpoint_id
        self.address = f"{conn.peer}/{endpoint_id}"
        self.fencing_token = fencing_token
        self.default_timeout = default_timeout
        # each method's call encoded around its id and arguments (protocol.call_parts); an
        # invoker's token and caller never change (a new leader's token is a new gateway)
        self._parts: dict[str, protocol.CallParts] = {}

    def _encode_call(
        self, request_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bytes | list[bytes]:
        """The payload of a call (the writer adds the header); a large bytes argument is not
        copied into it (`ClientConnection._encode`)."""
        large = large_bytes_index(args)
        if large >= 0:
            message = protocol.call(
                request_id, self.endpoint_id, method, args, kwargs, self.fencing_token
            )
            if self.caller is not None:
                message["sender"] = self.caller
            return self.conn._encode(message, large)
        parts = self._parts.get(method)
        if parts is None:
            parts = self._parts[method] = protocol.call_parts(
                self.endpoint_id, method, self.fencing_token, self.caller
            )
        payload = protocol.encode_call(parts, request_id, args, kwargs)
        if len(payload) > self.conn.peer_max_frame_size:
            self.conn._too_large("call", method, len(payload))
        return payload

    def _send_call(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], reply: Reply
    ) -> int:
        """Send a call whose answer goes to `reply`; its request id. (ClientConnection.request,
        inlined: this is the hottest path of a remote ask.)"""
        conn = self.conn
        conn.next_id = request_id = conn.next_id + 1
        frame = self._encode_call(request_id, method, args, kwargs)
        pending = conn.pending
        alone = not pending
        pending[request_id] = reply
        message_filter = conn.service.message_filter
        if message_filter is None or message_filter(self.caller, self.endpoint_id, method):
            conn.writer.send_payload(frame, alone)  # type: ignore[union-attr]
        elif conn.service.tracer is not None:
            conn.service.tracer.dropped(self.caller, self.endpoint_id, method, True)
        return request_id

    async def ask(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        conn = self.conn
        if conn.closed:
            raise RecipientUnreachableError(f"ask {method} to {self.address}: {conn.close_reason}")
        reply = Reply()
        request_id = self._send_call(method, args, kwargs, reply)
        pending = conn.pending
        tracer = conn.service.tracer
        started = trio.current_time() if tracer is not None else 0.0
        try:
            return await reply.wait(
                conn.service.timeouts,
                self.default_timeout if timeout is None else timeout,
                lambda: f"ask {method} to {self.address}",
            )
        finally:
            pending.pop(request_id, None)
            if tracer is not None:
                tracer.latency(method, trio.current_time() - started)

    def ask_with_callback(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_done: Callable[[Any, BaseException | None], None],
    ) -> None:
        """An ask without a waiting task: the outcome goes to `on_done` from the connection's
        reader (or the service's timeouts, or at once if the connection is closed)."""
        conn = self.conn
        if conn.closed:
            on_done(
                None,
                RecipientUnreachableError(f"ask {method} to {self.address}: {conn.close_reason}"),
            )
            return
        pending = conn.pending
        request_id = 0

        def done(value: Any, error: BaseException | None) -> None:
            pending.pop(request_id, None)  # a timed-out ask leaves no entry behind
            on_done(value, error)

        reply = CallbackReply(done, lambda: f"ask {method} to {self.address}")
        request_id = self._send_call(method, args, kwargs, reply)
        limit = self.default_timeout if timeout is None else timeout
        if limit != math.inf:
            conn.service.timeouts.add(reply, limit)

    def tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        message_filter = self.conn.service.message_filter
        if message_filter is not None and not message_filter(self.caller, self.endpoint_id, method):
            return
        message = protocol.tell(self.endpoint_id, method, args, kwargs, self.fencing_token)
        if self.caller is not None:
            message["sender"] = self.caller
        self.conn.send_tell(message)
