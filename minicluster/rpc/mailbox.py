"""The messages of an endpoint's mailbox, and the two yields that let `RpcEndpoint._drive`
run a handler coroutine itself.

An endpoint's main thread takes these from its mailbox in order: a call (ask or tell), a run
(`run_async`, `call_async`, a due scheduled run), the start, a handler's continuation after an
`off_main` wait (`Continue`), or the hand-back of the main thread to a handler that waited in
place (`Resume`). Kept apart from the endpoint so that each file has one job.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import trio

from .reply import Reply

T = TypeVar("T")


class Call:
    __slots__ = ("args", "kwargs", "method", "reply", "sender", "token")

    def __init__(
        self,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        token: UUID | None,
        reply: Reply | None,
        sender: str | None,
    ) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.token = token
        self.reply = reply
        self.sender = sender


class Run:
    """`run_async` (reply None) or `call_async` (reply set)."""

    __slots__ = ("fn", "reply")

    def __init__(self, fn: Callable[[], Any], reply: Reply | None) -> None:
        self.fn = fn
        self.reply = reply


class Resume:
    """Gives the main thread back to a handler whose `off_main` wait is over."""

    __slots__ = ("cancelled", "parked", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.cancelled = False
        self.parked = False


class Start:
    __slots__ = ()


class OffMain:
    """What `off_main` yields to the driver of its handler: wait for `awaitable` elsewhere."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class Parked:
    """A handler coroutine waiting, without the main thread, for its `off_main` awaitable;
    `message` is what started it (a Call, Run or Start), for its answer."""

    __slots__ = ("coro", "message")

    def __init__(self, coro: Any, message: Any) -> None:
        self.coro = coro
        self.message = message


class Continue:
    """Resumes a parked handler on the main thread with the outcome of its wait (Flink: the
    continuation of a future, scheduled on the main thread executor)."""

    __slots__ = ("error", "parked", "value")

    def __init__(self, parked: Parked, value: Any, error: BaseException | None) -> None:
        self.parked = parked
        self.value = value
        self.error = error


async def await_(awaitable: Awaitable[T]) -> T:
    return await awaitable


@types.coroutine
def off_main_request(awaitable: Awaitable[Any]) -> Any:
    """Yields to the handler's driver (`RpcEndpoint._drive`), not to trio: the driver parks
    the handler and sends back the awaitable's result (or throws its error) later."""
    return (yield OffMain(awaitable))


@types.coroutine
def forward_trap(trap: Any) -> Any:
    """Passes a trap the handler yielded on to trio, and trio's answer back."""
    return (yield trap)


IDLE_HELPERS = 64  # per endpoint: enough for bursts, few enough to cost nothing idle


class Helper:
    """A task of the endpoint's that awaits what handlers wait for off the main thread."""

    __slots__ = ("awaitable", "parked", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.parked: Parked | None = None
        self.awaitable: Awaitable[Any] | None = None
