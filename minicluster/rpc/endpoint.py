"""Endpoints: actor-style objects whose calls run one at a time on their own main thread.

`RpcEndpoint` is what a user subclasses: identity, lifecycle (`start`, `close`, `on_start`,
`on_stop`), the table of handlers, messages to self (`run_async`, `call_async`, scheduled
runs, background tasks) and the entries for invokers (`call_inline`, `accept_call`,
backpressure). The main thread itself, and the driver of handler coroutines
(`off_main` included), are its base class in main_thread.py."""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import trio

from .endpoint_host import EndpointHost
from .errors import (
    EndpointNotStartedError,
    FencingTokenError,
    InvalidArgumentError,
    NoSuchMethodError,
    RecipientUnreachableError,
)
from .gateway import (
    G,
    GatewayImplementation,
    RpcGateway,
    gateway_methods,
    implemented_gateways,
)
from .mailbox import Call, Continue, OffMain, Resume, Run, Start
from .main_thread import ENDED, EndpointState, MainThread, NotInMainThreadError
from .protocol import show
from .reply import Reply, answer
from .scheduled import ScheduledRun
from .suspends import never_suspends, suspends_only_in_off_main

log = logging.getLogger("minicluster.rpc")

_current_task = trio.lowlevel.current_task


class RpcEndpoint(MainThread, GatewayImplementation):
    """Base of every endpoint. Subclass it together with the gateways it implements.

    The endpoint registers at `rpc_service` on construction; `start()` makes it take messages
    (calls before that fail with EndpointNotStartedError) and runs `on_start` first on the main
    thread; `close()` stops it, runs `on_stop`, and completes the termination result.
    """

    def __init__(self, rpc_service: EndpointHost, endpoint_id: str | None = None) -> None:
        super().__init__(
            endpoint_id or rpc_service.new_endpoint_id(type(self).__name__),
            rpc_service.mailbox_limit,
        )
        self._rpc_service = rpc_service
        self._started_ok = False
        self._close_requested = trio.Event()
        self._terminated = trio.Event()
        self._termination_error: BaseException | None = None
        self._background: trio.Nursery | None = None
        self._ordered: dict[
            object, deque[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]]
        ] = {}
        self._handlers: dict[str, tuple[Callable[..., Any], bool]] = {}
        # handlers that never suspend (sync, or async without an await) may run on the
        # caller's task when the endpoint is idle: see call_inline
        self._inline: dict[str, tuple[Callable[..., Any], bool]] = {}
        # handlers that suspend only in off_main: they may start on the caller's task too
        # (see _start_parkable)
        self._parkable: dict[str, Callable[..., Any]] = {}
        self._argument_checks = {
            name: spec.arguments
            for name, spec in gateway_methods(type(self)).items()
            if spec.arguments is not None
        }
        for name in gateway_methods(type(self)):
            fn = getattr(self, name)
            is_async = inspect.iscoroutinefunction(fn)
            self._handlers[name] = (fn, is_async)
            if not is_async or never_suspends(fn):
                self._inline[name] = (fn, is_async)
            elif suspends_only_in_off_main(fn):
                self._parkable[name] = fn
        # unfenced endpoints accept any token: no call per message to find that out
        self._checks_tokens = type(self)._check_token is not RpcEndpoint._check_token
        self.supported_gateways = implemented_gateways(type(self))
        rpc_service.register_endpoint(self)

    # --- identity ---------------------------------------------------------------------

    @property
    def endpoint_id(self) -> str:
        return self._endpoint_id

    @property
    def address(self) -> str:
        return f"{self._rpc_service.address}/{self._endpoint_id}"

    @property
    def rpc_service(self) -> EndpointHost:
        return self._rpc_service

    @property
    def state(self) -> EndpointState:
        return self._state

    @property
    def fencing_token(self) -> UUID | None:
        return None

    @property
    def is_running(self) -> bool:
        return self._state is EndpointState.RUNNING

    def get_self_gateway(self, gateway: type[G]) -> G:
        """A local proxy to this endpoint (with its own fencing token when fenced)."""
        if gateway.gateway_name not in self.supported_gateways:
            raise TypeError(f"{type(self).__name__} does not implement {gateway.__name__}")
        return self._rpc_service.local_gateway(
            self, gateway, self.fencing_token, caller=self._endpoint_id
        )

    # --- lifecycle --------------------------------------------------------------------

    async def on_stop(self) -> None:
        """Runs on the main thread when the endpoint closes, after the last handler."""

    def start(self) -> None:
        """Start taking messages. Messages sent from now on are queued behind `on_start`."""
        if self._state is not EndpointState.NEW:
            return
        self._state = EndpointState.RUNNING
        self._queue.append(Start())
        self._rpc_service.spawn_system_task(self._run)

    def close_async(self) -> None:
        """Ask the endpoint to stop; queued and suspended calls fail with unreachable."""
        if self._state is EndpointState.NEW:
            self._state = EndpointState.TERMINATED
            self._rpc_service.unregister_endpoint(self)
            self._terminated.set()
        elif self._state is EndpointState.RUNNING:
            self._state = EndpointState.STOPPING
            self._close_requested.set()

    async def close(self) -> None:
        """Stop the endpoint and wait for its termination result (raises its failure)."""
        self.close_async()
        await self.wait_terminated()

    async def wait_terminated(self) -> None:
        """Wait until the endpoint has terminated; raise what made it fail, if anything did."""
        await self._terminated.wait()
        if self._termination_error is not None:
            raise self._termination_error

    @property
    def termination_error(self) -> BaseException | None:
        return self._termination_error

    async def _run(self) -> None:
        try:
            async with trio.open_nursery() as background:
                self._background = background
                async with trio.open_nursery() as work:
                    self._work = work
                    work.start_soon(self._main_loop)
                    await self._close_requested.wait()
                    work.cancel_scope.cancel()
                    self._release_parked()
                self._work = None
                self._state = EndpointState.STOPPING
                self._fail_queued()
                self._close_parked()
                if self._started_ok:
                    self._holder = _current_task()
                    try:
                        result = self.on_stop()
                        if inspect.isawaitable(result):
                            await result
                    except Exception as exc:
                        self._fail(exc)
                    finally:
                        self._holder = None
                background.cancel_scope.cancel()
        except Exception as exc:  # a bug in a handler wrapper or a background task
            log.exception("endpoint %s failed", self._endpoint_id)
            self._fail(exc)
        finally:
            self._state = EndpointState.TERMINATED
            self._background = None
            self._fail_queued()
            self._close_parked()
            self._wake_space_waiters()
            self._rpc_service.unregister_endpoint(self)
            self._terminated.set()

    def _fail(self, exc: BaseException) -> None:
        if self._termination_error is None:
            self._termination_error = exc

    def _fail_queued(self) -> None:
        queue = self._queue
        while queue:
            message = queue.popleft()
            reply = getattr(message, "reply", None)
            if reply is not None:
                reply.set_error(self._unreachable())
            elif isinstance(message, Resume):
                message.cancelled = True
            elif isinstance(message, Continue):
                self._parked[message.parked] = None  # closed by _close_parked

    def _unreachable(self) -> RecipientUnreachableError:
        return RecipientUnreachableError(f"endpoint {self.address} terminated")

    # --- what the main thread runs --------------------------------------------------------

    async def _handle_call(self, call: Call) -> None:
        try:
            if self._checks_tokens:
                self._check_token(call.token)
            handler = self._handlers.get(call.method)
            if handler is None:
                raise NoSuchMethodError(
                    f"endpoint {self._endpoint_id} has no RPC method {call.method!r}"
                )
            fn, is_async = handler
            result = fn(*call.args, **call.kwargs)
        except Exception as exc:
            self._finish(call, None, exc)
            return
        if is_async:
            await self._drive(result, call)
        else:
            self._finish(call, result, None)

    def _finish(self, message: Any, result: Any, error: BaseException | None) -> None:
        """A handler, run or on_start has ended: answer it."""
        kind = type(message)
        if kind is Call:
            reply = message.reply
            tracer = self._rpc_service.tracer
            if tracer is not None:
                tracer.message(
                    message.sender,
                    self._endpoint_id,
                    message.method,
                    reply is not None,
                    error,
                    message.args,
                )
            if reply is not None:
                answer(reply, result, error)
            elif error is not None and not isinstance(error, FencingTokenError):
                self._rpc_service.log_limiter.warning(
                    log, "tell %s.%s failed: %s", self._endpoint_id, message.method, show(error)
                )
        elif kind is Run:
            reply = message.reply
            if reply is not None:
                if error is None:
                    reply.set_result(result)
                else:
                    reply.set_error(error)
            elif error is not None:
                log.warning("run_async on %s failed: %r", self._endpoint_id, error)
        elif error is None:
            self._started_ok = True
        else:
            log.debug("on_start of %s failed: %r", self._endpoint_id, error)
            self._fail(error)
            self.close_async()
            self._fail_queued()

    def _check_token(self, token: UUID | None) -> None:
        """Fenced endpoints override this; unfenced ones accept any token."""

    # --- messages to self ------------------------------------------------------------

    def run_async(self, fn: Callable[[], Any]) -> None:
        """Run `fn` (sync or async) on the main thread later; dropped if not running."""
        if self._state is EndpointState.RUNNING:
            self._put(Run(fn, None))

    async def call_async(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run `fn` on the main thread and return its result; RpcTimeoutError after `timeout`."""
        if self._state is not EndpointState.RUNNING:
            raise self._not_running()
        reply = Reply()
        self._put(Run(fn, reply))
        if timeout is None:
            timeout = self._rpc_service.ask_timeout
        return await reply.wait(
            self._rpc_service.timeouts,
            timeout,
            lambda: f"call_async on endpoint {self._endpoint_id}",
        )

    def schedule_run_async(self, fn: Callable[[], Any], delay: float) -> ScheduledRun:
        """Run `fn` on the main thread `delay` seconds from now (never earlier, never after
        close; dropped if the endpoint is not running).

        Returns a handle: its `cancel()` drops the run, whenever that happens, even before the
        endpoint's task has begun (right after `start()`).
        """
        run = ScheduledRun(fn)
        self._schedule(run, trio.current_time() + delay)
        return run

    def _schedule(self, run: ScheduledRun, deadline: float) -> None:
        if self._state is EndpointState.RUNNING:
            self._rpc_service.scheduled_runs.add(deadline, self, run)

    def fire_scheduled(self, fn: Callable[[], Any]) -> None:
        """A scheduled run is due (called by the service's scheduled runs): run it right here
        when the endpoint is idle, as `call_inline` does for a call, else queue it.

        Dropped when the endpoint is not running any more."""
        if self._state is not EndpointState.RUNNING:
            return
        if not self.main_thread_idle():
            self._put(Run(fn, None))
            return
        waiter = self._holder
        self._holder = _current_task()
        try:
            result = fn()
        except Exception as exc:
            log.warning("scheduled run on %s failed: %r", self._endpoint_id, exc)
            return
        finally:
            self._holder = waiter
        if inspect.isawaitable(result):
            # it must suspend: the rest runs on the main thread, in mailbox order
            self._put(Run(lambda: result, None))

    def start_background(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run an async function off the main thread for as long as the endpoint lives.

        It must touch endpoint state only through `run_async` / `call_async`.
        """
        if self._background is None:
            raise self._not_running()
        self._background.start_soon(fn, *args)

    def start_background_in_order(
        self, key: object, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        """Like `start_background`, but runs with the same `key` run one after another, in
        the order they were started, on one task for the whole burst.

        For streams of calls to one peer (task updates, deployments): order is kept and a
        burst costs one task instead of one per call.
        """
        if self._background is None:
            raise self._not_running()
        queue = self._ordered.get(key)
        if queue is not None:
            queue.append((fn, args))
            return
        self._ordered[key] = deque([(fn, args)])
        self._background.start_soon(self._drain_in_order, key)

    async def _drain_in_order(self, key: object) -> None:
        queue = self._ordered[key]
        try:
            while queue:
                fn, args = queue.popleft()
                await fn(*args)
        finally:
            del self._ordered[key]

    def _not_running(self) -> Exception:
        if self._state is EndpointState.NEW:
            return EndpointNotStartedError(f"endpoint {self._endpoint_id} has not been started")
        return self._unreachable()

    # --- entry for invokers -------------------------------------------------------------

    def check_remote_arguments(
        self, method: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
    ) -> InvalidArgumentError | None:
        """For a call that came over the wire: an error if an argument does not fit the type
        its gateway method declares (checked before anything runs; local calls are typed code
        and are not checked)."""
        checker = self._argument_checks.get(method)
        if checker is None:
            return None
        problem = checker.problem(args, kwargs)
        if problem is None:
            return None
        return InvalidArgumentError(f"{self._endpoint_id}.{method}: {problem}")

    # The two entries below run a handler on the caller's task, holding the main thread: they
    # are protected from KeyboardInterrupt as the endpoint's own tasks are (trio's system
    # tasks), so that Ctrl-C comes at the caller's next checkpoint, not between a handler's
    # coroutine being made and being run (which left it never awaited, with a warning).

    @trio.lowlevel.enable_ki_protection
    def call_inline(
        self,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        token: UUID | None,
        sender: str | None,
        is_ask: bool = True,
    ) -> tuple[bool, Any, BaseException | None]:
        """Run a call right here, on the caller's task, if nothing can tell the difference:
        the endpoint is idle (its main thread parked, its mailbox empty) and the handler never
        suspends. The caller's task holds the main thread for that moment, so one-at-a-time
        and mailbox order both hold; it saves two task switches per ask.

        Returns (handled, result, error); not handled means: queue it as usual.
        """
        if not self.main_thread_idle() or self._state is not EndpointState.RUNNING:
            return False, None, None
        waiter = self._holder
        entry = self._inline.get(method)
        if entry is None:
            return False, None, None
        fn, is_async = entry
        self._holder = _current_task()
        try:
            if self._checks_tokens:
                self._check_token(token)
            result = fn(*args, **kwargs)
            if is_async:
                try:
                    result.send(None)
                except StopIteration as done:
                    result = done.value
                else:  # pragma: no cover - never_suspends said it could not
                    result.close()
                    raise RuntimeError(f"{method} suspended although it has no await")
            error = None
        except Exception as exc:
            result, error = None, exc
        finally:
            # back to the loop task, parked or (if the handler queued a message) just woken
            self._holder = waiter
        tracer = self._rpc_service.tracer
        if tracer is not None:
            tracer.message(sender, self._endpoint_id, method, is_ask, error, args)
        if not is_ask and error is not None and not isinstance(error, FencingTokenError):
            self._rpc_service.log_limiter.warning(
                log, "tell %s.%s failed: %s", self._endpoint_id, method, show(error)
            )
        return True, result, error

    @trio.lowlevel.enable_ki_protection
    def _start_parkable(self, call: Call) -> bool:
        """Start a call on the caller's task, as `call_inline` does, when the endpoint is idle
        and the handler's only waits are off_main (see `suspends_only_in_off_main`): it runs
        here up to its first wait, is parked there, and goes on on the main thread; the
        call's reply hears the outcome, now or later. False (nothing done): queue it."""
        fn = self._parkable.get(call.method)
        if fn is None or self._work is None or not self.main_thread_idle():
            return False
        waiter = self._holder
        self._holder = _current_task()
        try:
            try:
                if self._checks_tokens:
                    self._check_token(call.token)
                coro = fn(*call.args, **call.kwargs)
            except Exception as exc:
                self._finish(call, None, exc)
                return True
            value: Any = None
            error: BaseException | None = None
            while True:
                yielded = self._step(coro, call, value, error)
                if yielded is ENDED:
                    return True
                if type(yielded) is OffMain:
                    self._park(coro, call, yielded.awaitable)
                    return True
                # the bytecode check says this cannot happen; the handler hears of it rather
                # than the caller's task waiting in its place
                value, error = None, RuntimeError(f"{call.method} suspended outside off_main")
        finally:
            self._holder = waiter

    def accept_call(
        self,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        token: UUID | None,
        reply: Reply | None,
        sender: str | None = None,
    ) -> None:
        """Take a call (reply None for a tell): started right here when the endpoint is idle
        and the handler waits only in off_main (`_start_parkable`), else queued; the reply
        fails at once if the endpoint is not running."""
        if self._state is EndpointState.RUNNING:
            call = Call(method, args, kwargs, token, reply, sender)
            if not self._start_parkable(call):
                self._put(call)
        elif reply is not None:
            reply.set_error(self._not_running())


__all__ = [
    "EndpointState",
    "NotInMainThreadError",
    "Reply",
    "RpcEndpoint",
    "RpcGateway",
]
