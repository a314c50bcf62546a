"""The main thread of an endpoint: who holds it, who waits for it, and the driver of handlers.

The *main thread* is a role held by one trio task at a time. That task takes messages from the
endpoint's mailbox (RPC calls, `run_async`, `call_async`, scheduled runs) and runs each to its
end before the next, so endpoint state needs no locks. A handler coroutine is driven here
(`_drive`): its own awaits go on to trio and keep the main thread, so calls stay one at a time;
`await self.off_main(aw)` parks it instead, a helper task awaits `aw`, the main thread serves
the next message at once, and the handler goes on as a message of its own once `aw` is done
(Flink's `thenApplyAsync(..., mainThreadExecutor)`). So A calling B calling A never deadlocks.

`RpcEndpoint` (endpoint.py) builds on this: identity, lifecycle, handlers, messages to self and
the entries for invokers. This module holds the one state machine they all rely on.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from .mailbox import (
    IDLE_HELPERS,
    Call,
    Continue,
    Helper,
    OffMain,
    Parked,
    Resume,
    Run,
    Start,
    await_,
    forward_trap,
    off_main_request,
)

T = TypeVar("T")
log = logging.getLogger("minicluster.rpc")

_Abort = trio.lowlevel.Abort
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled


ENDED = object()  # what `_step` returns once the handler coroutine has ended


class EndpointState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    TERMINATED = "terminated"


class NotInMainThreadError(AssertionError):
    """Endpoint state was touched from outside the endpoint's main thread."""


class MainThread:
    """The main-thread state machine of an endpoint (the base of `RpcEndpoint`).

    The endpoint provides what a message means (`_handle_call`, `on_start`), how a handler's
    end is answered (`_finish`) and the error for a stopped endpoint (`_unreachable`); it
    sets `_work` (the nursery of the loop and helper tasks) while it runs.
    """

    def __init__(self, endpoint_id: str, mailbox_limit: int) -> None:
        self._endpoint_id = endpoint_id
        self._state = EndpointState.NEW
        self._queue: deque[Any] = deque()
        self._mailbox_limit = mailbox_limit
        self._space_waiters: list[trio.lowlevel.Task] = []
        self._loop_waiter: trio.lowlevel.Task | None = None
        self._holder: trio.lowlevel.Task | None = None
        self._work: trio.Nursery | None = None
        # handlers parked in off_main (an insertion-ordered set), and whether a handler
        # coroutine is being sent a value by _drive right now (off_main asks the driver)
        self._parked: dict[Parked, None] = {}
        self._driving = False
        # tasks that awaited an off_main awaitable and wait for the next one: starting a
        # trio task costs more than a whole inline call, reusing a parked one a reschedule
        self._idle_helpers: list[Helper] = []
        # the loop task, parked, while a helper holds the main thread to run a continuation
        self._lent_loop: trio.lowlevel.Task | None = None

    # --- what the endpoint provides --------------------------------------------------------

    async def on_start(self) -> None:
        """Runs on the main thread before any other message. Raising fails the endpoint."""

    async def _handle_call(self, call: Call) -> None:
        raise NotImplementedError

    def _finish(self, message: Any, result: Any, error: BaseException | None) -> None:
        raise NotImplementedError

    def _unreachable(self) -> Exception:
        raise NotImplementedError

    # --- the main thread -------------------------------------------------------------------

    def _release_parked(self) -> None:
        """Handlers that wait for the main thread and cannot be cancelled now get an error."""
        for message in self._queue:
            if isinstance(message, Resume) and message.parked and not message.cancelled:
                message.cancelled = True
                _reschedule(message.task, outcome.Error(self._unreachable()))

    def _put(self, message: Any) -> None:
        self._queue.append(message)
        waiter = self._loop_waiter
        if waiter is not None:
            self._loop_waiter = None
            _reschedule(waiter)

    def _abort_wait(self, raise_cancel: Any) -> _Abort:
        self._loop_waiter = self._lent_loop = None
        return _Abort.SUCCEEDED

    def _borrow_main_thread(self) -> bool:
        """Take the main thread from the parked loop task when nothing is queued (as
        `call_inline` does, but for code that may suspend: the loop stays parked, and
        messages that arrive meanwhile wait for `_give_back_main_thread`)."""
        waiter = self._loop_waiter
        if not self.main_thread_idle() or self._state is not EndpointState.RUNNING:
            return False
        self._loop_waiter = None
        self._lent_loop = waiter
        self._holder = _current_task()
        return True

    def _give_back_main_thread(self) -> None:
        loop = self._lent_loop
        self._lent_loop = None
        self._holder = loop
        if loop is None:
            return  # the loop was cancelled meanwhile: the endpoint is closing
        if self._queue:
            _reschedule(loop)
        else:
            self._loop_waiter = loop

    async def _main_loop(self) -> None:
        """Serve the mailbox as the main thread until the role passes to another task."""
        me = _current_task()
        self._holder = me
        queue = self._queue
        served = 0
        while True:
            if not queue:
                self._loop_waiter = me
                await _wait_rescheduled(self._abort_wait)
                served = 0
                continue
            message = queue.popleft()
            if self._space_waiters and len(queue) < self._mailbox_limit:
                self._wake_space_waiters(self._mailbox_limit - len(queue))
            kind = type(message)
            if kind is Call:
                await self._handle_call(message)
            elif kind is Continue:
                parked = message.parked
                if parked in self._parked:
                    del self._parked[parked]
                    await self._drive(parked.coro, parked.message, message.value, message.error)
            elif kind is Run:
                await self._run_on_main(message.fn, message)
            elif kind is Resume:
                if not message.cancelled:
                    self._holder = message.task
                    _reschedule(message.task)
                    return
            elif kind is Start:
                await self._run_on_main(self.on_start, message)
            if self._holder is not me:
                return  # a handler went off the main thread in place; another task holds it now
            served += 1
            if served >= 32:
                served = 0
                await trio.lowlevel.checkpoint()

    async def _run_on_main(self, fn: Callable[[], Any], message: Start | Run) -> None:
        """`on_start`, or a run (`run_async`, `call_async`, a due scheduled run)."""
        try:
            result = fn()
        except Exception as exc:
            self._finish(message, None, exc)
            return
        if inspect.iscoroutine(result):
            await self._drive(result, message)
        elif inspect.isawaitable(result):
            await self._drive(await_(result), message)
        else:
            self._finish(message, result, None)

    async def _drive(
        self, coro: Any, message: Any, value: Any = None, error: BaseException | None = None
    ) -> None:
        """Run a handler coroutine on the main thread until it ends or parks in `off_main`.

        The handler's own awaits go on to trio: it waits holding the main thread, so calls
        run one after another. An `off_main` wait comes here instead (`OffMain`): the
        coroutine is parked, a helper task awaits the awaitable, and the loop goes on with the
        next message in the same scheduler pass; the outcome comes back through the mailbox
        (`Continue`). So a handler never blocks the main thread, as in Flink, where what
        follows a future runs on the main thread executor.
        """
        task = _current_task()
        base = getattr(task, "_cancel_status", None)
        while True:
            yielded = self._step(coro, message, value, error)
            if yielded is ENDED:
                return
            value = error = None
            if type(yielded) is OffMain:
                if getattr(task, "_cancel_status", None) is base and self._work is not None:
                    self._park(coro, message, yielded.awaitable)
                    return
                # The handler opened a cancel scope or nursery around the wait: both belong
                # to this task, so the wait stays here and the main thread moves instead.
                try:
                    value = await self._off_main_in_place(yielded.awaitable)
                except BaseException as exc:
                    error = exc
                continue
            try:
                value = await forward_trap(yielded)
            except BaseException as exc:  # pragma: no cover - trio resumes with send
                error = exc

    def _step(self, coro: Any, message: Any, value: Any, error: BaseException | None) -> Any:
        """Send a handler coroutine its next value (or throw it its error): what it yields
        next, or `ENDED` once it has ended and `message` is answered. Whoever drives a
        handler steps it through here (`_drive`, and `RpcEndpoint._start_parkable` on a
        caller's task)."""
        self._driving = True
        try:
            return coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            self._finish(message, stop.value, None)
        except trio.Cancelled:
            self._abandon(message)
            raise
        except Exception as exc:
            self._finish(message, None, exc)
        finally:
            self._driving = False
        return ENDED

    def _park(self, coro: Any, message: Any, awaitable: Awaitable[Any]) -> None:
        """Park a handler at its off_main wait; a helper task awaits `awaitable`."""
        parked = Parked(coro, message)
        self._parked[parked] = None
        helpers = self._idle_helpers
        if helpers:
            helper = helpers.pop()
            helper.parked, helper.awaitable = parked, awaitable
            _reschedule(helper.task)
        else:
            assert self._work is not None
            self._work.start_soon(self._wait_off_main, parked, awaitable)

    async def _wait_off_main(self, parked: Parked, awaitable: Awaitable[Any]) -> None:
        """Await off_main awaitables one after another; between them, wait among the idle
        helpers (at most IDLE_HELPERS), and each done wait sends its continuation."""
        helper = Helper(_current_task())
        idle = self._idle_helpers

        def abort(raise_cancel: Any) -> _Abort:
            if helper in idle:
                idle.remove(helper)
            return _Abort.SUCCEEDED

        while True:
            try:
                value, error = await awaitable, None
            except trio.Cancelled:
                raise  # the endpoint is closing: _close_parked answers the call
            except BaseException as exc:  # the handler gets whatever its wait raised
                value, error = None, exc
            if self._state is not EndpointState.RUNNING:
                return
            if not self._borrow_main_thread():
                self._put(Continue(parked, value, error))
            elif parked in self._parked:
                # the endpoint is idle: go on with the handler right here, on the main thread
                # (a mailbox round trip saved)
                del self._parked[parked]
                try:
                    await self._drive(parked.coro, parked.message, value, error)
                finally:
                    if self._lent_loop is not None:
                        self._give_back_main_thread()
                if self._holder is helper.task:
                    # the handler waited in place (see _off_main_in_place) and got the main
                    # thread back from the loop, which ended: this task is the loop now
                    await self._main_loop()
                    return
            else:
                self._give_back_main_thread()
            del parked, awaitable, value, error  # nothing of a finished wait is kept idle
            if len(idle) >= IDLE_HELPERS:
                return
            idle.append(helper)
            await _wait_rescheduled(abort)
            parked, awaitable = helper.parked, helper.awaitable  # type: ignore[assignment]
            helper.parked = helper.awaitable = None

    def _close_parked(self) -> None:
        """Handlers parked in `off_main` when the endpoint stops: their coroutines are closed
        (finally blocks run) and their calls fail with unreachable."""
        parked_jobs = list(self._parked)
        self._parked.clear()
        for parked in parked_jobs:
            try:
                parked.coro.close()
            except Exception as exc:  # a handler that awaited again in its finally block
                log.debug("closing a parked handler of %s: %r", self._endpoint_id, exc)
            self._abandon(parked.message)

    def _abandon(self, message: Any) -> None:
        """A handler that will not end (the endpoint stops): its caller hears unreachable."""
        reply = getattr(message, "reply", None)
        if reply is not None:
            reply.set_error(self._unreachable())

    def in_main_thread(self) -> bool:
        """Whether the calling task holds this endpoint's main thread right now."""
        return _current_task() is self._holder

    def validate_runs_in_main_thread(self) -> None:
        """Raise NotInMainThreadError unless the caller holds this endpoint's main thread."""
        if _current_task() is not self._holder:
            raise NotInMainThreadError(
                f"code of endpoint {self._endpoint_id} ran outside its main thread"
            )

    async def off_main(self, awaitable: Awaitable[T]) -> T:
        """Wait for `awaitable` without holding the main thread; resume on the main thread.

        Other messages are served meanwhile, so re-check any state the handler read before.
        The handler resumes as a message of its own, behind those queued before the wait
        ended, as a continuation scheduled on Flink's main thread executor does.
        """
        if _current_task() is not self._holder:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            self.validate_runs_in_main_thread()
        if self._driving:
            result: T = await off_main_request(awaitable)
            return result
        # not under _drive: on_stop, where nothing else will run anyway
        return await awaitable

    async def _off_main_in_place(self, awaitable: Awaitable[T]) -> T:
        """`off_main` for a handler that opened a cancel scope or nursery around the wait:
        the handler keeps this task, waits here, and a fresh task serves the mailbox as the
        main thread meanwhile; the handler gets the main thread back through a Resume."""
        work = self._work
        if work is None:  # on_stop: nothing else will run anyway
            return await awaitable
        me = _current_task()
        if self._lent_loop is not None:
            self._give_back_main_thread()  # a helper's: the parked loop serves meanwhile
        else:
            self._holder = None
            work.start_soon(self._main_loop)
        result = await outcome.acapture(await_, awaitable)
        if self._state is not EndpointState.RUNNING:
            # Closing: the work scope is cancelled now or in a moment; never run on without
            # the main thread.
            await trio.sleep_forever()
        resume = Resume(me)
        self._put(resume)

        def abort(raise_cancel: Any) -> _Abort:
            if self._state is not EndpointState.RUNNING:
                resume.cancelled = True
                return _Abort.SUCCEEDED
            # A cancel scope of the handler's own: keep waiting for the main thread, so the
            # handler never runs outside it; the cancellation comes at its next checkpoint.
            resume.parked = True
            return _Abort.FAILED

        await _wait_rescheduled(abort)
        return result.unwrap()

    def main_thread_idle(self) -> bool:
        """The main thread is parked with nothing queued (what an inline call needs)."""
        waiter = self._loop_waiter
        return waiter is not None and self._holder is waiter and not self._queue

    # --- backpressure ------------------------------------------------------------------

    @property
    def mailbox_full(self) -> bool:
        return len(self._queue) >= self._mailbox_limit

    @property
    def mailbox_size(self) -> int:
        return len(self._queue)

    async def wait_for_mailbox_space(self) -> None:
        """Backpressure: wait until the mailbox is below its limit (or the endpoint stops).

        Callers that must not block (tells, the endpoint's own messages) are not bounded.
        """
        task = _current_task()

        def abort(raise_cancel: Any) -> _Abort:
            if task in self._space_waiters:
                self._space_waiters.remove(task)
            return _Abort.SUCCEEDED

        while self.mailbox_full and self._state is EndpointState.RUNNING:
            self._space_waiters.append(task)
            await _wait_rescheduled(abort)

    def _wake_space_waiters(self, room: int | None = None) -> None:
        """Wake as many waiting callers as there is room for (all of them when stopping),
        first come first served."""
        waiters = self._space_waiters
        if room is None or room >= len(waiters):
            self._space_waiters = []
        else:
            self._space_waiters = waiters[room:]
            waiters = waiters[:room]
        for task in waiters:
            _reschedule(task)
