"""The server side of a connection: accept (TLS or plain), set up (hello, auth), serve requests.

A `ServerConnection` reads request frames, hands calls and tells to the endpoints they name and
writes the replies through its `FrameWriter`; it stops reading a peer that does not read its
replies, and says goodbye to one that breaks the protocol.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable
from typing import Any

import trio

from . import protocol
from .endpoint import RpcEndpoint
from .errors import MessageTooLargeError, ProtocolError, SerializationError
from .frame_reader import receive_into
from .frame_writer import FrameWriter
from .large_values import LARGE_BYTES, LARGE_STAND_IN
from .protocol import FrameDecoder, FrameTooLargeError
from .reply import Reply
from .serialization import dumps_around
from .transport_host import TransportHost

# the transport's logger, shared by both sides (log configuration and tests name it)
log = logging.getLogger("minicluster.rpc.transport")

RECEIVE_SIZE = 65536
TLS_HANDSHAKE_RECORD = 0x16
WRITE_HIGH_WATER = 16 * 1024 * 1024  # stop reading a peer's requests above this many queued bytes
WRITE_LOW_WATER = 4 * 1024 * 1024
SETUP_TIMEOUT = 10.0


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
        # the idle watchdog's view of the reader: parked in a read since this time
        self.receiving = False
        self.read_since = 0.0
        self.went_idle = False
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._now = trio.lowlevel.current_clock().current_time  # cheaper than trio.current_time

    async def _watch_idle(self, reading: trio.CancelScope) -> None:
        """Close a connection whose peer said nothing for `idle_timeout` (one task per
        connection instead of a cancel scope per read: the reader only notes when it starts
        to wait for bytes). Time spent waiting for our own answers, for mailbox room or for a
        slow peer to read its replies is not idleness: the watch starts again from then."""
        timeout = self.service.idle_timeout
        if timeout == math.inf:
            return
        deadline = trio.current_time() + timeout
        while True:
            await trio.sleep_until(deadline)
            now = trio.current_time()
            if not self.receiving or self.in_progress:
                deadline = now + timeout
                continue
            deadline = self.read_since + timeout
            if deadline <= now:
                self.went_idle = True
                reading.cancel()
                return

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.writer.run)
                try:
                    with trio.CancelScope() as reading:
                        nursery.start_soon(self._watch_idle, reading)
                        await self._serve()
                    if self.went_idle:
                        self._goodbye(f"connection idle for {self.service.idle_timeout:g} s")
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
        with trio.move_on_after(SETUP_TIMEOUT) as setup:
            if not await self._set_up():
                return
        if setup.cancelled_caught:
            self._goodbye("connection set-up timed out")
            return
        decoder = self.decoder
        decoder.max_frame_size = self.max_frame_size
        handled = 0
        writer = self.writer
        while True:
            try:
                payloads = decoder.drain()
                if not payloads:
                    if not await self._receive():
                        return
                    continue
            except FrameTooLargeError as exc:
                self._goodbye(f"{exc}; closing the connection")
                return
            # replies to the requests of one read go out in one write, after them
            self.batching = writer.held = True
            try:
                for payload in payloads:
                    outcome = self._handle(payload)
                    while isinstance(outcome, RpcEndpoint):
                        # backpressure: the endpoint's mailbox is full, so this peer waits (we
                        # read no more of its requests) until there is room, then it goes in
                        await self._released(outcome.wait_for_mailbox_space())
                        outcome = self._handle(payload)
                    if not outcome:
                        return
                    if type(payload) is bytearray:  # a large one, decoded: its buffer is free
                        decoder.give_back(payload)
                    if writer.buffered > WRITE_HIGH_WATER:  # a peer that reads too slowly
                        await self._released(writer.wait_below(WRITE_LOW_WATER))
                    handled += 1
                    if handled % 128 == 0:
                        # one busy peer must not starve the others (each read is a checkpoint)
                        await self._released(trio.lowlevel.checkpoint())
            finally:
                self.batching = writer.held = False
            writer.flush_direct()

    async def _released(self, wait: Awaitable[None]) -> None:
        """Await `wait` in the middle of a batch: the replies held back so far go out first
        (the writer task takes over what the kernel does not), and the rest of the batch
        holds its replies again."""
        self.writer.held = False
        self.writer.flush_direct()
        await wait
        self.writer.held = True

    async def _receive(self) -> bool:
        """One read into the decoder; False at EOF or when the connection broke (the idle
        watchdog cancels a read that waits too long). Waits first while too many replies wait
        to be written (a peer that does not read cannot make us buffer without bound)."""
        if self.writer.buffered > WRITE_HIGH_WATER:
            await self.writer.wait_below(WRITE_LOW_WATER)
        self.read_since = self._now()
        self.receiving = True
        try:
            return await receive_into(self.decoder, self.stream, self._sock)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        finally:
            self.receiving = False

    async def _next(self) -> dict[str, Any] | None:
        """The next set-up message (frames one at a time: the frame limit grows after set-up)."""
        try:
            while (payload := self.decoder.next_frame()) is None:
                if not await self._receive():
                    return None
        except FrameTooLargeError as exc:
            self._goodbye(f"{exc} before set-up; closing the connection")
            return None
        try:
            return protocol.decode_message(payload, protocol.SETUP_DECODE_BUDGET)
        except ProtocolError as exc:
            self._goodbye(str(exc))
            return None

    async def _set_up(self) -> bool:
        message = await self._next()
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
        message = await self._next()
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

    def _handle(self, payload: bytes | bytearray) -> bool | RpcEndpoint:
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
        token = message.get("token")
        if is_tell:
            endpoint.accept_call(method, args, kwargs, token, None, sender)
            return True
        self.in_progress += 1
        endpoint.accept_call(
            method, args, kwargs, token, _RemoteReply(self, request_id, method), sender
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
        payload: bytes | list[bytes]
        try:
            if type(value) is bytes and len(value) >= LARGE_BYTES:  # sent uncopied
                payload = dumps_around(protocol.reply(request_id, LARGE_STAND_IN), value)
                size = sum(map(len, payload))
            else:
                payload = protocol.encode_reply(request_id, value)
                size = len(payload)
        except SerializationError as exc:
            self.send_error(request_id, exc)
            return
        if size > self.reply_limit:
            # the peer's decoder would refuse the frame and drop the connection with every
            # call on it: this one call fails instead
            self.send_error(request_id, self._too_large(method, size))
            return
        self.writer.send_payload(payload, not self.in_progress and not self.batching)

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
        self.writer.send_payload(payload, not self.in_progress and not self.batching)


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
