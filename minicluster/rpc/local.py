"""Calls to an endpoint in the same process: no serialization unless forced."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from . import serialization
from .endpoint import Reply, RpcEndpoint
from .timeouts import Timeouts


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
    """Puts calls straight into a local endpoint's mailbox."""

    __slots__ = ("address", "default_timeout", "endpoint", "fencing_token", "serialize", "timeouts")

    def __init__(
        self,
        endpoint: RpcEndpoint,
        fencing_token: UUID | None,
        serialize: bool,
        default_timeout: float,
        timeouts: Timeouts,
    ) -> None:
        self.endpoint = endpoint
        self.address = endpoint.address
        self.fencing_token = fencing_token
        self.serialize = serialize
        self.default_timeout = default_timeout
        self.timeouts = timeouts

    async def ask(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        if self.serialize:
            args, kwargs = serialization.roundtrip([args, kwargs])
            reply: Reply = _SerializingReply()
        else:
            reply = Reply()
        self.endpoint.accept_call(method, args, kwargs, self.fencing_token, reply)
        return await reply.wait(
            self.timeouts,
            self.default_timeout if timeout is None else timeout,
            lambda: f"ask {method} to {self.address}",
        )

    def tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.serialize:
            args, kwargs = serialization.roundtrip([args, kwargs])
        self.endpoint.accept_call(method, args, kwargs, self.fencing_token, None)
