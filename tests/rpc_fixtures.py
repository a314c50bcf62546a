"""Gateways and endpoints shared by the RPC tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import trio

from minicluster.rpc import (
    FencedRpcEndpoint,
    FencedRpcGateway,
    RpcEndpoint,
    RpcGateway,
    RpcService,
    RpcTimeout,
    wire_type,
)


@wire_type
@dataclass
class Point:
    x: int
    y: int


class CustomProblem(Exception):
    """An exception type that is not registered for the wire."""


class NotWireSafe:
    """A class nobody registered for the wire."""


class CalcGateway(RpcGateway):
    async def add(self, a: int, b: int) -> int: ...

    async def echo(self, value: Any) -> Any: ...

    async def fail(self, message: str) -> None: ...

    async def fail_custom(self, message: str) -> None: ...

    async def sleep(self, seconds: float, timeout: RpcTimeout = 10.0) -> str: ...

    async def make_unserializable(self) -> Any: ...

    async def big_reply(self, size: int) -> bytes: ...

    def note(self, value: Any) -> None: ...

    async def notes(self) -> list[Any]: ...


class Calc(RpcEndpoint, CalcGateway):
    def __init__(self, service: RpcService, endpoint_id: str | None = "calc") -> None:
        super().__init__(service, endpoint_id)
        self.received: list[Any] = []

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def echo(self, value: Any) -> Any:
        return value

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    async def fail_custom(self, message: str) -> None:
        raise CustomProblem(message)

    async def sleep(self, seconds: float, timeout: float = 10.0) -> str:
        await self.off_main(trio.sleep(seconds))
        return "slept"

    async def make_unserializable(self) -> Any:
        return NotWireSafe()

    async def big_reply(self, size: int) -> bytes:
        return b"x" * size

    def note(self, value: Any) -> None:
        self.received.append(value)

    async def notes(self) -> list[Any]:
        return list(self.received)


class OtherGateway(RpcGateway):
    async def something(self) -> None: ...


class LeaderGateway(FencedRpcGateway):
    async def whoami(self) -> str: ...

    def poke(self, value: int) -> None: ...

    async def poke_self(self, value: int) -> int: ...


class Leader(FencedRpcEndpoint, LeaderGateway):
    def __init__(self, service: RpcService, token: UUID, endpoint_id: str = "leader") -> None:
        super().__init__(service, token, endpoint_id)
        self.pokes: list[int] = []

    async def whoami(self) -> str:
        return f"leader {self.fencing_token}"

    def poke(self, value: int) -> None:
        self.pokes.append(value)

    async def poke_self(self, value: int) -> int:
        self.get_self_gateway(LeaderGateway).poke(value)
        return value
