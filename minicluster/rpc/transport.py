"""Moving frames over trio streams: the server side and the client side of a connection.

One client connection per peer carries every call to that peer; many calls are in flight at
once and replies come back in any order. A writer task batches queued frames into one send.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

import trio

from . import protocol
from .endpoint import RpcEndpoint
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    HandshakeError,
    MessageTooLargeError,
    ProtocolError,
    RecipientUnreachableError,
    RpcConnectionError,
    SerializationError,
)
from .protocol import FrameDecoder, FrameTooLargeError
from .ratelimit import LogLimiter
from .reply import Reply
from .timeouts import Timeouts
from .tls import TlsConfig
from .tracing import MessageFilter, Tracer

log = logging.getLogger("minicluster.rpc.transport")

RECEIVE_SIZE = 65536
TLS_HANDSHAKE_RECORD = 0x16
WRITE_HIGH_WATER = 16 * 1024 * 1024  # stop reading a peer's requests above this many queued bytes
WRITE_LOW_WATER = 4 * 1024 * 1024
COALESCE_LIMIT = 256 * 1024
SETUP_TIMEOUT = 10.0
_Abort = trio.lowlevel.Abort


class FrameWriter:
    """Queues frames from any task and writes them, batched, from its own task.

    A lone frame (nothing else queued or about to be) on a plain socket is written at once with
    a non-blocking write from the caller's task; only what the kernel does not take goes to the
    writer task. That saves a task switch per message when calls are sequential, while many
    calls in flight still share one write.
    """

    __slots__ = (
        "_below",
        "_busy",
        "_fd",
        "_flushed",
        "_pending",
        "_stream",
        "_waiter",
        "buffered",
        "closed",
    )

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        sock = getattr(stream, "socket", None)
        self._fd: int | None = sock.fileno() if sock is not None else None
        self._pending: list[bytes] = []
        self._waiter: trio.lowlevel.Task | None = None
        self._busy = False
        self.closed = False
        self._flushed = trio.Event()
        self.buffered = 0  # bytes queued, not yet handed to the kernel
        self._below: list[tuple[int, trio.Event]] = []

    async def wait_below(self, level: int) -> None:
        """Wait until fewer than `level` bytes are queued (or the writer ends)."""
        if self.buffered < level or self.closed:
            return
        event = trio.Event()
        self._below.append((level, event))
        await event.wait()

    def send(self, frame: bytes, direct: bool = False) -> None:
        """Queue `frame`; with `direct`, try to write it at once (the caller expects no other
        frame soon, so batching would only add latency)."""
        if self.closed:
            return
        if direct and self._fd is not None and not self._busy and not self._pending:
            try:
                written = os.write(self._fd, frame)
            except BlockingIOError:
                written = 0
            except OSError:
                written = 0  # the writer task meets the same error and ends the connection
            if written == len(frame):
                return
            frame = frame[written:]
        self._pending.append(frame)
        self.buffered += len(frame)
        if self._flushed.is_set():
            self._flushed = trio.Event()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def flush_direct(self) -> None:
        """Write what is queued now from the caller's task, if the writer task is idle; the
        writer task gets only what the kernel does not take."""
        if self._fd is None or self._busy or not self._pending or self.closed:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        try:
            written = os.write(self._fd, data)
        except OSError:
            return  # the writer task meets the same error and ends the connection
        self.buffered -= written
        if written == len(data):
            pending.clear()
        else:
            self._pending = [data[written:]]
        if self._below:
            self._wake_below()

    def _abort(self, raise_cancel: Any) -> _Abort:
        self._waiter = None
        return _Abort.SUCCEEDED

    async def run(self) -> None:
        stream = self._stream
        try:
            while True:
                if not self._pending:
                    self._flushed.set()
                    if self.closed:
                        return
                    self._waiter = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._abort)
                    continue
                batch = self._pending
                self._pending = []
                self._busy = True
                try:
                    for chunk in _coalesce(batch):
                        await stream.send_all(chunk)
                        self.buffered -= len(chunk)
                        if self._below:
                            self._wake_below()
                finally:
                    self._busy = False
        finally:
            self.closed = True
            self._fd = None
            self._flushed.set()
            self.buffered = 0
            self._wake_below()

    def _wake_below(self) -> None:
        keep = []
        for level, event in self._below:
            if self.buffered < level or self.closed:
                event.set()
            else:
                keep.append((level, event))
        self._below = keep

    async def close_after_flush(self, timeout: float = 1.0) -> None:
        """Stop taking frames and wait (a little) until the queued ones are written."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)
        with trio.move_on_after(timeout):
            await self._flushed.wait()
        self._fd = None


def _coalesce(frames: list[bytes]) -> list[bytes]:
    """Join small frames into few writes; large ones go alone, uncopied."""
    if len(frames) == 1:
        return frames
    chunks: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for frame in frames:
        if len(frame) >= COALESCE_LIMIT:
            if group:
                chunks.append(b"".join(group))
                group, size = [], 0
            chunks.append(frame)
            continue
        group.append(frame)
        size += len(frame)
        if size >= COALESCE_LIMIT:
            chunks.append(b"".join(group))
            group, size = [], 0
    if group:
        chunks.append(b"".join(group))
    return chunks


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


# --- server side -------------------------------------------------------------------------


class _RemoteReply(Reply):
    """Answers one call by writing a reply frame to the connection it came on."""

    __slots__ = ("_conn", "_id", "_method")

    def __init__(self, conn: ServerConnection, request_id: int, method: str) -> None:
        super().__init__()
        self._conn = conn
        self._id = request_id
        self._method = method

    def set_result(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        self._conn.in_progress -= 1
        self._conn.send_reply(self._id, value, self._method)

    def set_error(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self._conn.in_progress -= 1
        self._conn.send_error(self._id, error)


class ServerConnection:
    """One accepted connection: set-up (hello, auth), then requests until either side closes."""

    def __init__(self, service: TransportHost, stream: trio.abc.Stream) -> None:
        self.service = service
        self.stream = stream
        self.max_frame_size = service.max_frame_size
        # the largest reply frame the peer takes: its own limit (stated in hello) or ours
        self.reply_limit = self.max_frame_size
        self.caller_limit: int | None = None
        # a stranger gets small frames until set-up succeeds (see _serve)
        self.decoder = FrameDecoder(min(self.max_frame_size, protocol.SETUP_MAX_FRAME_SIZE))
        self.writer = FrameWriter(stream)
        self.in_progress = 0  # calls handed to endpoints and not answered yet
        self.batching = False  # handling the requests of one read: hold replies back

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.writer.run)
                try:
                    await self._serve()
                finally:
                    await self.writer.close_after_flush()
                    nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except* Exception as group:  # a bug: lose this connection, keep the server
            log.error("connection handler failed", exc_info=group)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _serve(self) -> None:
        frames = self._frames()
        with trio.move_on_after(SETUP_TIMEOUT) as setup:
            if not await self._set_up(frames):
                return
        if setup.cancelled_caught:
            self._goodbye("connection set-up timed out")
            return
        self.decoder.max_frame_size = self.max_frame_size
        handled = 0
        writer = self.writer
        async for payload in frames:
            outcome = self._handle(payload)
            while isinstance(outcome, RpcEndpoint):
                # backpressure: the endpoint's mailbox is full, so this peer waits (we read no
                # more of its requests) until there is room, then the request goes in
                await outcome.wait_for_mailbox_space()
                outcome = self._handle(payload)
            if not outcome:
                return
            if writer.buffered > WRITE_HIGH_WATER:
                await writer.wait_below(WRITE_LOW_WATER)  # a peer that reads too slowly
            handled += 1
            if handled % 32 == 0:
                await trio.lowlevel.checkpoint()  # one busy peer must not starve the others

    async def _frames(self) -> Any:
        """Payloads as they arrive; ends on EOF, after an idle timeout, or after saying goodbye
        to an oversized frame. Stops reading while too many replies wait to be written (a
        peer that does not read cannot make us buffer without bound)."""
        decoder = self.decoder
        writer = self.writer
        idle_timeout = self.service.idle_timeout
        while True:
            if writer.buffered > WRITE_HIGH_WATER:
                await writer.wait_below(WRITE_LOW_WATER)
            with trio.move_on_after(idle_timeout) as idle:
                try:
                    data = await self.stream.receive_some(decoder.receive_size())
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if idle.cancelled_caught:
                if self.in_progress:
                    continue  # waiting for our own answers is not idleness
                self._goodbye(f"connection idle for {idle_timeout:g} s")
                return
            if not data:
                return
            try:
                decoder.feed(data)
                del data  # the decoder has a copy: do not hold a second one while decoding
                # replies to a batch of requests go out in one write, after the batch
                self.batching = True
                for payload in decoder:
                    yield payload
            except FrameTooLargeError as exc:
                during = "" if decoder.max_frame_size == self.max_frame_size else " before set-up"
                self._goodbye(f"{exc}{during}; closing the connection")
                return
            finally:
                self.batching = False
            writer.flush_direct()

    async def _next(self, frames: Any) -> dict[str, Any] | None:
        try:
            payload = await frames.__anext__()
        except StopAsyncIteration:
            return None
        try:
            return protocol.decode_message(payload, protocol.SETUP_DECODE_BUDGET)
        except ProtocolError as exc:
            self._goodbye(str(exc))
            return None

    async def _set_up(self, frames: Any) -> bool:
        message = await self._next(frames)
        if message is None:
            return False
        try:
            self.caller_limit = protocol.check_hello(message)
        except ProtocolError as exc:
            self._goodbye(str(exc))
            return False
        if self.caller_limit is not None:
            self.reply_limit = min(self.caller_limit, self.max_frame_size)
        secret = self.service.secret
        if secret is None:
            self.writer.send(self._frame(protocol.welcome(max_frame_size=self.max_frame_size)))
            return True
        challenge = protocol.new_challenge()
        self.writer.send(self._frame(protocol.welcome(challenge, self.max_frame_size)))
        message = await self._next(frames)
        if message is None:
            return False
        if message.get("type") != "auth" or not protocol.verify_proof(
            secret, challenge, message.get("proof")
        ):
            self._goodbye("authentication failed")
            return False
        self.writer.send(self._frame(protocol.welcome(max_frame_size=self.max_frame_size)))
        return True

    def _frame(self, message: dict[str, Any]) -> bytes:
        return protocol.frame_bytes(protocol.encode_message(message))

    def _goodbye(self, reason: str) -> None:
        self.service.log_limiter.log(log, logging.INFO, "goodbye to a client: %s", reason)
        self.writer.send(self._frame(protocol.goodbye(reason)))

    def _handle(self, payload: bytes) -> bool | RpcEndpoint:
        """Serve one request frame; False when the connection must close, an endpoint when
        its mailbox is full (wait for room, then hand the frame in again)."""
        try:
            message = protocol.decode_message(payload)
            if message["type"] in ("call", "tell"):
                fast = self._fast_call(message)
                if fast is not False:
                    return fast
            request = protocol.parse_request(message)
        except ProtocolError as exc:
            if exc.request_id is None:
                self._goodbye(str(exc))
                return False
            self.send_error(exc.request_id, exc)
            return True
        service = self.service
        endpoint = service.lookup_endpoint(request.endpoint)
        if endpoint is not None and request.kind in ("call", "tell"):
            invalid = endpoint.check_remote_arguments(request.method, request.args, request.kwargs)
            if invalid is not None:
                self._refuse(request.id if request.kind == "call" else None, invalid)
                return True
        if request.kind == "call":
            assert request.id is not None
            if endpoint is None:
                self.send_error(request.id, service.not_found(request.endpoint))
            elif endpoint.mailbox_full:
                return endpoint
            else:
                self.in_progress += 1
                endpoint.accept_call(
                    request.method,
                    request.args,
                    request.kwargs,
                    request.token,
                    _RemoteReply(self, request.id, request.method),
                )
        elif request.kind == "tell":
            if endpoint is not None and endpoint.mailbox_full:
                return endpoint
            if endpoint is not None:
                sender = message.get("sender")
                endpoint.accept_call(
                    request.method,
                    request.args,
                    request.kwargs,
                    request.token,
                    None,
                    sender if type(sender) is str else None,
                )
        else:
            assert request.id is not None
            try:
                service.check_handshake(request.endpoint, request.gateway, request.version)
            except Exception as exc:
                self.send_error(request.id, exc)
            else:
                self.send_reply(request.id, {"endpoint": request.endpoint}, "handshake")
        return True

    def _fast_call(self, message: dict[str, Any]) -> bool | RpcEndpoint:
        """Dispatch a well-formed call or tell to a known endpoint; False leaves it to the
        full path (which also says what is wrong with a malformed one)."""
        is_tell = message["type"] == "tell"
        request_id: Any = message.get("id")
        args = message.get("args", [])
        kwargs = message.get("kwargs", {})
        method = message.get("method")
        if not (
            (is_tell or type(request_id) is int)
            and type(method) is str
            and type(args) is list
            and type(kwargs) is dict
            and (not kwargs or all(type(k) is str for k in kwargs))
        ):
            return False
        endpoint_id = message.get("endpoint")
        endpoint = self.service.lookup_endpoint(endpoint_id) if type(endpoint_id) is str else None
        if endpoint is None:
            return False
        sender = message.get("sender")
        if type(sender) is not str:
            sender = None
        invalid = endpoint.check_remote_arguments(method, args, kwargs)
        if invalid is not None:
            self._refuse(None if is_tell else request_id, invalid)
            return True
        handled, result, error = endpoint.call_inline(
            method, args, kwargs, message.get("token"), sender, is_ask=not is_tell
        )
        if handled:  # a tell is never answered (call_inline logged what failed)
            if not is_tell:
                if error is None:
                    self.send_reply(request_id, result, method)
                else:
                    self.send_error(request_id, error)
            return True
        if endpoint.mailbox_full:
            return endpoint
        if is_tell:
            endpoint.accept_call(method, args, kwargs, message.get("token"), None, sender)
            return True
        self.in_progress += 1
        endpoint.accept_call(
            method,
            args,
            kwargs,
            message.get("token"),
            _RemoteReply(self, request_id, method),
            sender,
        )
        return True

    def _refuse(self, request_id: int | None, error: BaseException) -> None:
        """A call whose arguments do not fit: an error reply for an ask, a (rate-limited) log
        line for a tell; nothing runs either way."""
        if request_id is not None:
            self.send_error(request_id, error)
        else:
            self.service.log_limiter.warning(log, "tell refused: %s", error)

    def send_reply(self, request_id: int, value: Any, method: str) -> None:
        try:
            payload = protocol.encode_message(protocol.reply(request_id, value))
        except SerializationError as exc:
            self.send_error(request_id, exc)
            return
        if len(payload) > self.reply_limit:
            # the peer's decoder would refuse the frame and drop the connection with every
            # call on it: this one call fails instead
            self.send_error(request_id, self._too_large(method, len(payload)))
            return
        self.writer.send(protocol.frame_bytes(payload), not self.in_progress and not self.batching)

    def _too_large(self, method: str, size: int) -> MessageTooLargeError:
        caller_limit = self.caller_limit
        whose = (
            "the caller's"
            if caller_limit is not None and caller_limit <= self.max_frame_size
            else "this server's"
        )
        return MessageTooLargeError(
            f"the reply to {method} is {size:,} bytes, over {whose} frame limit of "
            f"{self.reply_limit:,} bytes"
        )

    def send_error(self, request_id: int, error: BaseException) -> None:
        payload = protocol.encode_message(protocol.error_reply(request_id, error, self.reply_limit))
        self.writer.send(protocol.frame_bytes(payload), not self.in_progress and not self.batching)


class _Prefixed(trio.abc.Stream):
    """A stream that first gives back bytes already read from it."""

    def __init__(self, prefix: bytes, stream: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def accept_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext
) -> trio.SSLStream[Any] | None:
    """Wrap an accepted connection in TLS. A client that speaks plain frames to a TLS server
    gets a plain `goodbye` saying so, rather than a bare reset."""
    try:
        with trio.fail_after(SETUP_TIMEOUT):
            first = await stream.receive_some(RECEIVE_SIZE)
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(stream)
        return None
    if not first:
        await trio.aclose_forcefully(stream)
        return None
    if first[0] != TLS_HANDSHAKE_RECORD:
        goodbye = protocol.goodbye("this server requires TLS: connect with TLS (--tls-ca)")
        try:
            await stream.send_all(protocol.encode_frame(goodbye))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.aclose_forcefully(stream)
        return None
    return trio.SSLStream(_Prefixed(bytes(first), stream), context, server_side=True)


# --- client side -------------------------------------------------------------------------


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
        self.pending: dict[int, Reply] = {}
        self.next_id = 0
        self.closed = False
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
            raise RpcConnectionError(
                f"cannot connect to {self.peer}: {exc.strerror or exc}"
            ) from None
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
        message = await self._receive_setup()
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

    async def _receive_setup(self) -> dict[str, Any]:
        assert self.stream is not None
        while True:
            payload = self.decoder.next_frame()
            if payload is not None:
                break
            try:
                data = await self.stream.receive_some(self.decoder.receive_size())
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise RpcConnectionError(f"{self.peer} closed the connection: {exc}") from None
            if not data:
                raise RpcConnectionError(f"{self.peer} closed the connection during set-up")
            self.decoder.feed(data)
        message = protocol.decode_message(payload)
        kind = message.get("type")
        if kind == "goodbye":
            reason = str(message.get("reason", ""))
            if "authentication" in reason:
                raise AuthenticationError(f"{self.peer} refused us: {reason}")
            raise HandshakeError(f"{self.peer} refused us: {reason}")
        if kind != "welcome":
            raise ProtocolError(f"{self.peer} answered hello with {kind!r}")
        return message

    async def _read_replies(self) -> None:
        assert self.stream is not None
        stream, decoder, pending = self.stream, self.decoder, self.pending
        while True:
            try:
                data = await stream.receive_some(decoder.receive_size())
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.close_reason = f"connection to {self.peer} lost: {exc}"
                return
            if not data:
                self.close_reason = f"{self.peer} closed the connection"
                return
            try:
                decoder.feed(data)
                for payload in decoder:
                    message = protocol.decode_message(payload)
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

    def _encode(self, message: dict[str, Any]) -> bytes:
        payload = protocol.encode_message(message)
        if len(payload) > self.peer_max_frame_size:
            raise MessageTooLargeError(
                f"{message['type']} {message.get('method', '')} of {len(payload)} bytes exceeds "
                f"the frame limit of {self.peer_max_frame_size} bytes; not sent"
            )
        return protocol.frame_bytes(payload)

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
        self.writer.send(frame, alone)
        try:
            return await reply.wait(self.service.timeouts, timeout, what)
        finally:
            self.pending.pop(request_id, None)

    def send_tell(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        frame = self._encode(message)
        assert self.writer is not None
        self.writer.send(frame)


class RemoteInvoker:
    """A proxy's route to an endpoint behind a client connection."""

    __slots__ = ("address", "caller", "conn", "default_timeout", "endpoint_id", "fencing_token")

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

    async def ask(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        # ClientConnection.request, inlined: this is the hottest path of a remote ask.
        conn = self.conn
        if conn.closed:
            raise RecipientUnreachableError(f"ask {method} to {self.address}: {conn.close_reason}")
        conn.next_id = request_id = conn.next_id + 1
        message = {
            "type": "call",
            "id": request_id,
            "endpoint": self.endpoint_id,
            "method": method,
            "args": args,
            "kwargs": kwargs,
        }
        if self.fencing_token is not None:
            message["token"] = self.fencing_token
        if self.caller is not None:
            message["sender"] = self.caller
        frame = conn._encode(message)
        reply = Reply()
        pending = conn.pending
        alone = not pending
        pending[request_id] = reply
        message_filter = conn.service.message_filter
        if message_filter is None or message_filter(self.caller, self.endpoint_id, method):
            conn.writer.send(frame, alone)  # type: ignore[union-attr]
        elif conn.service.tracer is not None:
            conn.service.tracer.dropped(self.caller, self.endpoint_id, method, True)
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

    def tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        message_filter = self.conn.service.message_filter
        if message_filter is not None and not message_filter(self.caller, self.endpoint_id, method):
            return
        message = protocol.tell(self.endpoint_id, method, args, kwargs, self.fencing_token)
        if self.caller is not None:
            message["sender"] = self.caller
        self.conn.send_tell(message)
