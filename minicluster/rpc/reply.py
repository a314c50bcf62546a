"""The outcome of one ask: where a handler's result or error goes, and how a caller waits for it.

Its own module so that everything that answers calls (endpoints, the local invoker, server
connections) and everything that waits for answers (client connections, timeouts) can share it
without importing each other.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable
from typing import Any

import trio

from .errors import RpcError, RpcTimeoutError
from .protocol import show
from .timeouts import Timeouts

log = logging.getLogger("minicluster.rpc")

_Abort = trio.lowlevel.Abort
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled


class Reply:
    """Where the outcome of one ask goes: wakes the waiting caller task (local calls).

    Remote calls use a subclass that writes a reply frame instead. The value or error is kept
    as is (no outcome object): this is on the path of every ask.
    """

    __slots__ = ("_done", "_error", "_task", "_value")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the reply is settled (a result or an error), for observers of asks."""
        return self._done

    def set_result(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        self._value = value
        task = self._task
        if task is not None:
            self._task = None
            _reschedule(task)

    def set_error(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        task = self._task
        if task is not None:
            self._task = None
            _reschedule(task)

    def expire(self) -> None:
        """Called by the service's timeouts when the deadline passed without an answer."""
        self.set_error(_TIMED_OUT)

    async def wait(
        self, timeouts: Timeouts, timeout: float | None, describe: Callable[[], str]
    ) -> Any:
        """The outcome, or RpcTimeoutError (naming the call) after `timeout` seconds."""
        if not self._done:
            self._task = _current_task()
            if timeout is not None and timeout != math.inf:
                timeouts.add(self, timeout)
            await _wait_rescheduled(self._abort)
        else:
            await trio.lowlevel.checkpoint()
        error = self._error
        if error is None:
            return self._value
        self._error = None  # no reference cycle through the traceback
        if error is _TIMED_OUT:
            raise _timeout_error(f"{describe()} timed out after {timeout:g} s")
        raise error

    def _abort(self, raise_cancel: Any) -> _Abort:
        self._task = None
        self._done = True  # cancelled by the caller: a late answer is dropped
        return _Abort.SUCCEEDED


_TIMED_OUT = RpcTimeoutError("timed out")  # a marker, never raised itself


class CallbackReply(Reply):
    """An ask nobody waits on: its outcome goes to a callback, as a Flink gateway's
    CompletableFuture goes to `whenComplete` (see `ask_with_callback`).

    The callback gets (result, None) or (None, error) exactly once, on whichever task delivers
    the outcome: the caller's own (an answer given inline), the answering endpoint's, a
    connection's reader, or the service's timeouts.
    """

    __slots__ = ("_callback", "_describe")

    def __init__(
        self,
        callback: Callable[[Any, BaseException | None], None],
        describe: Callable[[], str],
    ) -> None:
        super().__init__()
        self._callback: Callable[[Any, BaseException | None], None] | None = callback
        self._describe = describe

    def set_result(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(value, None)

    def set_error(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        callback, self._callback = self._callback, None
        if error is _TIMED_OUT:
            error = RpcTimeoutError(f"{self._describe()} timed out")
        if callback is not None:
            callback(None, error)


def answer(reply: Reply, result: Any, error: BaseException | None) -> None:
    """Deliver a result or an error; whatever goes wrong delivering it (a result that cannot be
    encoded, an error that cannot even be printed) becomes an error for the caller, never a
    failure of the endpoint."""
    try:
        if error is None:
            reply.set_result(result)
        else:
            reply.set_error(error)
    except Exception as problem:
        log.warning("could not deliver a reply: %s", show(problem))
        reply._done = False
        reply.set_error(RpcError(f"the reply could not be delivered: {type(problem).__name__}"))


def _timeout_error(message: str) -> RpcTimeoutError:
    """An RpcTimeoutError that shows where the caller asked, as Flink's TimeoutCallStackTest."""
    error = RpcTimeoutError(message)
    stack = traceback.format_stack()[:-2]
    error.caller_stack = "".join(stack)  # type: ignore[attr-defined]
    error.add_note("Caller stack (most recent call last):\n" + error.caller_stack.rstrip())  # type: ignore[attr-defined]
    return error
