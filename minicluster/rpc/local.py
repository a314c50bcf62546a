"""Calls to an endpoint in the same process: no serialization unless forced."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

import trio

from . import serialization
from .endpoint import EndpointState, RpcEndpoint
from .reply import CallbackReply, Reply
from .timeouts import Timeouts
from .tracing import MessageFilter, Tracer


class LocalHost(Protocol):
    """What a local invoker needs of its RPC service (`RpcService`), named by shape so that this
    module does not import the service module, which imports it."""

    ask_timeout: float
    force_serialization: bool
    timeouts: Timeouts
    tracer: Tracer | None
    message_filter: MessageFilter | None

    def lookup_endpoint(self, endpoint_id: str) -> RpcEndpoint | None: ...


class _SerializingReply(Reply):
    """Sends the result through the codec before the caller sees it (force_serialization)."""

    __slots__ = ()

    def set_result(self, value: Any) -> None:
        try:
            value = serialization.roundtrip(value)
        except Exception as exc:
            self.set_error(exc)
            return
        super().set_result(value)


class LocalInvoker:
    """Puts calls straight into a local endpoint's mailbox.

    Like an actor path, it names whatever endpoint lives at the address: once the endpoint it
    knew has terminated, calls go to a new endpoint of the same id (a new leader, say), whose
    fencing check then refuses a stale token.
    """

    __slots__ = (
        "address",
        "caller",
        "default_timeout",
        "endpoint",
        "fencing_token",
        "serialize",
        "service",
        "timeouts",
    )

    def __init__(
        self,
        service: LocalHost,
        endpoint: RpcEndpoint,
        fencing_token: UUID | None,
        caller: str | None = None,
    ) -> None:
        self.service = service
        self.endpoint = endpoint
        self.address = endpoint.address
        self.fencing_token = fencing_token
        self.caller = caller
        self.serialize = service.force_serialization
        self.default_timeout = service.ask_timeout
        self.timeouts = service.timeouts

    def _target(self) -> RpcEndpoint:
        endpoint = self.endpoint
        if endpoint.state is EndpointState.TERMINATED:
            successor = self.service.lookup_endpoint(endpoint.endpoint_id)
            if successor is not None:
                self.endpoint = endpoint = successor
        return endpoint

    async def ask(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        if self.serialize:
            args, kwargs = serialization.roundtrip([args, kwargs])
            reply: Reply = _SerializingReply()
        else:
            reply = Reply()
        endpoint = self._target()
        service = self.service
        passes, handled, result, error = self._try_inline(endpoint, method, args, kwargs)
        if handled:
            await trio.lowlevel.checkpoint()
            if error is not None:
                raise error
            return result
        if endpoint.mailbox_full:
            await endpoint.wait_for_mailbox_space()
        self._deliver(endpoint, passes, method, args, kwargs, reply)
        tracer = service.tracer
        if tracer is None:
            return await reply.wait(
                self.timeouts,
                self.default_timeout if timeout is None else timeout,
                lambda: f"ask {method} to {self.address}",
            )
        started = trio.current_time()
        try:
            return await reply.wait(
                self.timeouts,
                self.default_timeout if timeout is None else timeout,
                lambda: f"ask {method} to {self.address}",
            )
        finally:
            tracer.latency(method, trio.current_time() - started)

    def _try_inline(
        self, endpoint: RpcEndpoint, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, bool, Any, BaseException | None]:
        """(passes, handled, result, error): whether the message filter lets the ask through
        and, if it does, whether the endpoint answered it right here (`call_inline`).

        A message filter (partitions, a killed peer) is a hook: a message it lets through may
        still be answered inline, so a cluster keeps the fast path."""
        message_filter = self.service.message_filter
        passes = message_filter is None or message_filter(self.caller, endpoint.endpoint_id, method)
        if not passes or self.serialize:
            return passes, False, None, None
        handled, result, error = endpoint.call_inline(
            method, args, kwargs, self.fencing_token, self.caller
        )
        return True, handled, result, error

    def _deliver(
        self,
        endpoint: RpcEndpoint,
        passes: bool,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        reply: Reply,
    ) -> None:
        """Hand an ask that was not answered inline to the endpoint, or, when the message
        filter stopped it, let the tracer see it dropped."""
        if passes:
            endpoint.accept_call(method, args, kwargs, self.fencing_token, reply, self.caller)
        elif self.service.tracer is not None:
            self.service.tracer.dropped(self.caller, endpoint.endpoint_id, method, True)

    def ask_with_callback(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_done: Callable[[Any, BaseException | None], None],
    ) -> None:
        """An ask without a waiting task: the outcome goes to `on_done` (see CallbackReply).
        An idle endpoint whose handler never suspends answers right here, before this
        returns; otherwise the call is queued and the timeout is a deadline of the service's
        timeouts (no cancel scope, no task)."""
        if self.serialize:
            args, kwargs = serialization.roundtrip([args, kwargs])
            done = on_done

            def on_done(value: Any, error: BaseException | None) -> None:
                if error is None:
                    try:
                        value = serialization.roundtrip(value)
                    except Exception as exc:
                        value, error = None, exc
                done(value, error)

        endpoint = self._target()
        passes, handled, result, error = self._try_inline(endpoint, method, args, kwargs)
        if handled:
            on_done(result, error)
            return
        reply = CallbackReply(on_done, lambda: f"ask {method} to {self.address}")
        self._deliver(endpoint, passes, method, args, kwargs, reply)
        if not reply._done:
            limit = self.default_timeout if timeout is None else timeout
            if limit != math.inf:
                self.timeouts.add(reply, limit)

    def tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.serialize:
            args, kwargs = serialization.roundtrip([args, kwargs])
        endpoint = self._target()
        service = self.service
        if service.message_filter is None or service.message_filter(
            self.caller, endpoint.endpoint_id, method
        ):
            handled = False
            if not self.serialize:
                handled = endpoint.call_inline(
                    method, args, kwargs, self.fencing_token, self.caller, is_ask=False
                )[0]
            if not handled:
                endpoint.accept_call(method, args, kwargs, self.fencing_token, None, self.caller)
        elif service.tracer is not None:
            service.tracer.dropped(self.caller, endpoint.endpoint_id, method, False)
