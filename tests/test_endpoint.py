"""Endpoint lifecycle and main-thread semantics (Flink's RpcEndpointTest, PekkoRpcActorTest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from minicluster.rpc import (
    EndpointNotStartedError,
    EndpointState,
    NotInMainThreadError,
    RecipientUnreachableError,
    RpcEndpoint,
    RpcService,
    RpcTimeoutError,
    open_rpc_service,
)
from tests.rpc_fixtures import Calc, CalcGateway

E = TypeVar("E", bound=RpcEndpoint)


@asynccontextmanager
async def serving(
    endpoint_class: Callable[[RpcService], E],
) -> AsyncIterator[tuple[E, CalcGateway]]:
    """A service with a started endpoint of `endpoint_class`, and its gateway to itself."""
    async with open_rpc_service() as service:
        endpoint = endpoint_class(service)
        endpoint.start()
        yield endpoint, endpoint.get_self_gateway(CalcGateway)


async def test_call_before_start_fails_then_works_after_start() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        gateway = calc.get_self_gateway(CalcGateway)
        with pytest.raises(EndpointNotStartedError):
            await gateway.add(1, 2)
        calc.start()
        assert await gateway.add(1, 2) == 3


class FailingStart(RpcEndpoint, CalcGateway):
    async def on_start(self) -> None:
        raise RuntimeError("cannot start")


async def test_on_start_failure_fails_the_termination_result() -> None:
    async with open_rpc_service() as service:
        endpoint = FailingStart(service, "failing")
        endpoint.start()
        with pytest.raises(RuntimeError, match="cannot start"):
            await endpoint.wait_terminated()
        assert endpoint.state is EndpointState.TERMINATED


class SlowStop(Calc):
    def __init__(self, service, endpoint_id="slow-stop"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.stops = 0
        self.stop_finished = False

    async def on_stop(self) -> None:
        self.stops += 1
        await trio.sleep(5)
        self.stop_finished = True


async def test_close_waits_for_async_on_stop_and_runs_it_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        endpoint = SlowStop(service)
        endpoint.start()
        await endpoint.get_self_gateway(CalcGateway).add(1, 1)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoint.close)
            nursery.start_soon(endpoint.close)
        assert endpoint.stop_finished
        assert trio.current_time() - started == pytest.approx(5)
        await endpoint.close()
        assert endpoint.stops == 1


async def test_endpoint_id_is_reusable_after_termination() -> None:
    async with open_rpc_service() as service:
        first = Calc(service, "same-id")
        first.start()
        with pytest.raises(ValueError, match="in use"):
            Calc(service, "same-id")
        await first.close()
        second = Calc(service, "same-id")
        second.start()
        assert await second.get_self_gateway(CalcGateway).add(2, 2) == 4


async def test_exceptions_from_endpoint_methods_reach_the_local_caller() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        with pytest.raises(ValueError, match="boom"):
            await calc.get_self_gateway(CalcGateway).fail("boom")


class Counter(RpcEndpoint, CalcGateway):
    """Detects any overlap of two pieces of code on its main thread."""

    def __init__(self, service, endpoint_id="counter"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.inside = False
        self.overlaps = 0
        self.count = 0

    def _enter_exit(self) -> None:
        self.validate_runs_in_main_thread()
        if self.inside:
            self.overlaps += 1
        self.inside = True
        self.count += 1

    async def add(self, a: int, b: int) -> int:
        self._enter_exit()
        await trio.lowlevel.checkpoint()  # a chance for anything else to run
        self.inside = False
        return a + b

    def bump(self) -> None:
        self._enter_exit()
        self.inside = False

    async def bump_async(self) -> int:
        self._enter_exit()
        await trio.lowlevel.checkpoint()
        self.inside = False
        return self.count

    async def echo(self, value: Any) -> Any:
        # waits off the main thread, then holds it across an await of its own (the rest may
        # run on the loop task or on the helper that awaited)
        self._enter_exit()
        self.inside = False
        await self.off_main(trio.lowlevel.checkpoint())
        self._enter_exit()
        await trio.lowlevel.checkpoint()
        self.inside = False
        return value

    async def sleep(self, seconds: float, timeout: float = 10.0) -> str:
        # every await is off_main: an idle endpoint starts it on the caller's task
        self._enter_exit()
        self.inside = False
        await self.off_main(trio.sleep(seconds))
        self._enter_exit()
        self.inside = False
        return "slept"


@pytest.mark.parametrize("fenced", [False, True])
async def test_ten_thousand_mixed_messages_never_overlap_on_the_main_thread(fenced: bool) -> None:
    # calls that hold the main thread across an await, runs, call_asyncs, handlers that wait
    # off the main thread (started queued or on the caller's task) and their continuations
    import uuid

    from minicluster.rpc import FencedRpcEndpoint

    async with open_rpc_service() as service:
        if fenced:

            class FencedCounter(FencedRpcEndpoint, Counter):  # type: ignore[misc]
                pass

            endpoint: Counter = FencedCounter(service, uuid.uuid4(), "counter")  # type: ignore[call-arg]
        else:
            endpoint = Counter(service)
        endpoint.start()
        gateway = endpoint.get_self_gateway(CalcGateway)

        async def caller(kind: int) -> None:
            for i in range(1000):
                if kind == 0:
                    await gateway.add(i, 1)
                elif kind == 1:
                    endpoint.run_async(endpoint.bump)
                    await trio.lowlevel.checkpoint()
                elif kind == 2:
                    await endpoint.call_async(endpoint.bump_async)
                elif kind == 3:
                    assert await gateway.echo(i) == i
                else:
                    assert await gateway.sleep(0) == "slept"

        async with trio.open_nursery() as nursery:
            for kind in (0, 1, 2, 3, 4, 0, 1, 2, 3, 4):
                nursery.start_soon(caller, kind)
        await endpoint.call_async(lambda: None)
        assert endpoint.count == 2 * 1000 * (1 + 1 + 1 + 2 + 2)
        assert endpoint.overlaps == 0


async def test_validate_runs_in_main_thread_refuses_other_tasks() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        with pytest.raises(NotInMainThreadError):
            calc.validate_runs_in_main_thread()
        await calc.call_async(calc.validate_runs_in_main_thread)


async def test_schedule_run_async_runs_no_earlier_than_its_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        ran_at: list[float] = []
        scheduled_at = trio.current_time()
        calc.schedule_run_async(lambda: ran_at.append(trio.current_time()), 0.010)
        await trio.sleep(0.005)
        assert ran_at == []
        await trio.sleep(0.010)
        assert ran_at and ran_at[0] - scheduled_at >= 0.010


async def test_cancelling_a_run_scheduled_before_the_endpoint_task_begins_drops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        ran: list[tuple[str, float]] = []
        scheduled_at = trio.current_time()
        # no checkpoint since start(): the endpoint's task has not begun, it has no nursery yet
        assert calc._background is None
        cancelled = calc.schedule_run_async(lambda: ran.append(("cancelled", 0.0)), 1.0)
        kept = calc.schedule_run_async(lambda: ran.append(("kept", trio.current_time())), 1.0)
        cancelled.cancel()
        await trio.sleep(5)
        assert [what for what, _ in ran] == ["kept"]
        assert ran[0][1] - scheduled_at >= 1.0
        assert not kept.cancel_called


class SlowStart(RpcEndpoint, CalcGateway):
    async def on_start(self) -> None:
        await trio.sleep(2)


async def test_a_run_scheduled_right_after_start_counts_its_delay_from_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        endpoint = SlowStart(service, "slow-start")
        endpoint.start()
        ran_at: list[float] = []
        scheduled_at = trio.current_time()
        endpoint.schedule_run_async(lambda: ran_at.append(trio.current_time()), 3.0)
        await trio.sleep(10)
        assert ran_at == [scheduled_at + 3.0]  # not 3 s after on_start's 2 s


async def test_cancelling_a_scheduled_run_of_a_running_endpoint_drops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        await calc.call_async(lambda: None)  # running, with its nursery
        ran: list[str] = []
        calc.schedule_run_async(lambda: ran.append("cancelled"), 1.0).cancel()
        calc.schedule_run_async(lambda: ran.append("kept"), 1.0)
        await trio.sleep(5)
        assert ran == ["kept"]


async def test_scheduled_work_never_runs_after_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        ran: list[str] = []
        calc.schedule_run_async(lambda: ran.append("late"), 1.0)
        await calc.close()
        await trio.sleep(5)
        assert ran == []


async def test_call_async_past_its_timeout_raises_rpc_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()

        async def hog() -> None:
            await trio.sleep(10)  # holds the main thread

        calc.run_async(hog)
        with pytest.raises(RpcTimeoutError, match="call_async on endpoint calc"):
            await calc.call_async(lambda: 1, timeout=1.0)


async def test_ask_timeout_names_the_call_and_carries_the_callers_stack(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service(ask_timeout=2.0) as service:
        calc = Calc(service)
        calc.start()
        gateway = calc.get_self_gateway(CalcGateway)

        async def the_callers_function() -> None:
            await gateway.sleep(100, timeout=1.5)

        with pytest.raises(RpcTimeoutError) as info:
            await the_callers_function()
        message = str(info.value)
        assert "sleep" in message and "calc" in message and "1.5 s" in message
        assert "the_callers_function" in info.value.caller_stack  # type: ignore[attr-defined]


async def test_default_ask_timeout_applies_without_a_timeout_parameter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service(ask_timeout=3.0) as service:
        calc = Calc(service)
        calc.start()
        calc.run_async(lambda: trio.sleep(60))
        started = trio.current_time()
        with pytest.raises(RpcTimeoutError, match="3 s"):
            await calc.get_self_gateway(CalcGateway).add(1, 1)
        assert trio.current_time() - started == pytest.approx(3.0)


async def test_trio_cancel_scope_around_a_call_cancels_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(Calc) as (_calc, gateway):
        with trio.move_on_after(0.5) as scope:
            await gateway.sleep(5)
        assert scope.cancelled_caught
        assert await gateway.add(1, 1) == 2


async def test_closing_an_endpoint_fails_calls_in_flight_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(Calc) as (calc, gateway):
        failures: list[BaseException] = []

        async def call() -> None:
            try:
                await gateway.sleep(1000)
            except RecipientUnreachableError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
            await trio.sleep(1)
            started = trio.current_time()
            await calc.close()
        assert len(failures) == 3
        assert trio.current_time() - started < 0.1
        with pytest.raises(RecipientUnreachableError):
            await gateway.add(1, 2)


class PingPong(RpcEndpoint, CalcGateway):
    """add(n) on one endpoint calls add(n - 1) on its peer and answers with the peer's result."""

    peer: CalcGateway

    async def add(self, a: int, b: int) -> int:
        if a == 0:
            return b
        return await self.off_main(self.peer.add(a - 1, b + 1))


async def test_two_endpoints_calling_each_other_in_a_loop_do_not_deadlock() -> None:
    async with open_rpc_service() as service:
        ping, pong = PingPong(service, "ping"), PingPong(service, "pong")
        ping.peer = pong.get_self_gateway(CalcGateway)
        pong.peer = ping.get_self_gateway(CalcGateway)
        ping.start()
        pong.start()
        with trio.fail_after(5):
            assert await ping.peer.add(50, 0) == 50


async def test_service_close_terminates_every_endpoint_and_task() -> None:
    async with open_rpc_service() as service:
        endpoints = [Calc(service, f"calc-{i}") for i in range(5)]
        for endpoint in endpoints:
            endpoint.start()
        endpoints[0].schedule_run_async(lambda: None, 3600)
    for endpoint in endpoints:
        assert endpoint.state is EndpointState.TERMINATED
    # nothing left running: the test would hang in the nursery otherwise
    assert all(e.termination_error is None for e in endpoints)


class CancelsItsOwnWait(RpcEndpoint, CalcGateway):
    """A handler with its own deadline around an off-main wait."""

    def __init__(self, service, endpoint_id="own-deadline"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.on_main_after_cancel: bool | None = None

    async def add(self, a: int, b: int) -> int:
        with trio.move_on_after(1):
            await self.off_main(trio.sleep(10))
        try:
            self.validate_runs_in_main_thread()
            self.on_main_after_cancel = True
        except NotInMainThreadError:
            self.on_main_after_cancel = False
        return a + b


async def test_a_handler_cancelled_by_its_own_scope_resumes_on_the_main_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        endpoint = CancelsItsOwnWait(service)
        endpoint.start()

        async def hog() -> None:
            # holds the main thread across the moment the handler's deadline passes
            await trio.sleep(0.5)
            await trio.sleep(1.0)

        gateway = endpoint.get_self_gateway(CalcGateway)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.add, 1, 2)
            await trio.sleep(0.9)
            endpoint.run_async(hog)
        assert endpoint.on_main_after_cancel is True


async def test_closing_releases_a_handler_waiting_to_resume(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(CancelsItsOwnWait) as (endpoint, gateway):
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await gateway.add(1, 2)
            except RecipientUnreachableError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.9)
            endpoint.run_async(lambda: trio.sleep(100))  # the main thread stays busy
            await trio.sleep(0.5)  # the handler's deadline passed; it waits for the main thread
            with trio.fail_after(1):
                await endpoint.close()
        assert len(errors) == 1


class Recorder(RpcEndpoint, CalcGateway):
    """Sync-looking handlers: they may run on the caller's task when the endpoint is idle."""

    def __init__(self, service, endpoint_id="recorder"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.order: list[str] = []

    async def add(self, a: int, b: int) -> int:
        self.validate_runs_in_main_thread()
        self.order.append(f"add {a}")
        self.run_async(lambda: self.order.append(f"after add {a}"))
        return a + b


async def test_an_idle_endpoint_answers_on_the_callers_task_without_breaking_order() -> None:
    async with serving(Recorder) as (endpoint, gateway):
        await endpoint.call_async(lambda: None)  # started and idle
        assert await gateway.add(1, 1) == 2  # inline: validate_runs_in_main_thread held
        assert await gateway.add(2, 1) == 3
        await endpoint.call_async(lambda: None)
        assert endpoint.order == ["add 1", "after add 1", "add 2", "after add 2"]
        assert endpoint.main_thread_idle()


def test_only_handlers_without_await_are_taken_for_inline_calls() -> None:
    from minicluster.rpc.endpoint import never_suspends

    async def plain(x: int) -> int:
        return x

    async def waits() -> None:
        await trio.sleep(0)

    async def iterates(xs: object) -> None:
        async for _ in xs:  # type: ignore[attr-defined]
            pass

    assert never_suspends(plain)
    assert not never_suspends(waits)
    assert not never_suspends(iterates)


async def test_the_service_schedules_work_after_a_delay_and_drops_it_when_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[tuple[str, float]] = []
    async with open_rpc_service() as service:
        started = trio.current_time()
        service.schedule(lambda: ran.append(("sync", trio.current_time() - started)), 2.0)

        async def later() -> None:
            ran.append(("async", trio.current_time() - started))

        service.schedule(later, 3.0)
        dropped = service.schedule(lambda: ran.append(("dropped", 0.0)), 1.0)
        dropped.cancel()
        await trio.sleep(5)
    assert ran == [("sync", 2.0), ("async", 3.0)]


class WaitsOffMain(RpcEndpoint, CalcGateway):
    """Handlers that wait off the main thread, and say on which task they ran each part."""

    def __init__(self, service, endpoint_id="waits"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.tasks: set[object] = set()
        self.cleaned_up = 0
        self.gate = trio.Event()

    async def add(self, a: int, b: int) -> int:
        self.validate_runs_in_main_thread()
        self.tasks.add(trio.lowlevel.current_task())
        await self.off_main(trio.sleep(0))
        # the rest runs on the main thread again: on the loop task, or on the task that
        # awaited the wait when the endpoint was idle by then
        self.validate_runs_in_main_thread()
        return a + b

    async def sleep(self, seconds: float, timeout: float = 10.0) -> str:
        try:
            await self.off_main(self.gate.wait())
            return "woke"
        finally:
            self.cleaned_up += 1


class PassCounter(trio.abc.Instrument):
    """Counts the scheduler's passes (each pass looks for I/O once)."""

    def __init__(self) -> None:
        self.passes = 0

    def before_io_wait(self, timeout: float) -> None:
        self.passes += 1


async def test_calls_waiting_off_main_are_served_in_a_few_scheduler_passes_not_one_each() -> None:
    # A handler parked in off_main frees the main thread at once: the next call starts in
    # the same scheduler pass, so 64 such calls are not 64 passes end to end.
    async with serving(WaitsOffMain) as (_endpoint, gateway):
        assert await gateway.add(0, 0) == 0
        results: list[int] = []

        async def call(i: int) -> None:
            results.append(await gateway.add(i, 1))

        counter = PassCounter()
        trio.lowlevel.add_instrument(counter)
        try:
            async with trio.open_nursery() as nursery:
                for i in range(64):
                    nursery.start_soon(call, i)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert sorted(results) == list(range(1, 65))
        assert counter.passes < 16


async def test_an_idle_endpoint_starts_a_handler_that_waits_off_main_on_the_callers_task() -> None:
    async with serving(WaitsOffMain) as (endpoint, gateway):
        await trio.testing.wait_all_tasks_blocked()
        assert await gateway.add(2, 3) == 5
        # the first half ran right in the call (no mailbox round trip), the rest on the main
        # thread after the wait (the handler checks that)
        assert endpoint.tasks == {trio.lowlevel.current_task()}


async def test_closing_an_endpoint_ends_handlers_parked_off_main_and_runs_their_finally() -> None:
    async with serving(WaitsOffMain) as (endpoint, gateway):
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await gateway.sleep(1)
            except RecipientUnreachableError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(1):
                await endpoint.close()
        assert len(errors) == 3
        assert endpoint.cleaned_up == 3


class ResumesAndHolds(RpcEndpoint, CalcGateway):
    """add waits off the main thread, then holds it across a wait of its own."""

    def __init__(self, service, endpoint_id="holds"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.order: list[tuple[str, float]] = []

    async def add(self, a: int, b: int) -> int:
        if a == 0:
            self.order.append(("quick call", trio.current_time()))
            return b
        await self.off_main(trio.sleep(1))
        self.order.append(("resumed", trio.current_time()))
        await trio.sleep(1)  # holding the main thread
        self.validate_runs_in_main_thread()
        self.order.append(("done", trio.current_time()))
        return a + b


async def test_a_call_arriving_while_a_resumed_handler_holds_the_main_thread_waits_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(ResumesAndHolds) as (endpoint, gateway):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.add, 1, 1)
            await trio.sleep(1.5)
            assert await gateway.add(0, 7) == 7
        assert [(what, at - start) for what, at in endpoint.order] == [
            ("resumed", 1.0),
            ("done", 2.0),
            ("quick call", 2.0),
        ]
        # and the endpoint goes on serving
        assert await gateway.add(0, 1) == 1


class Shapes:
    """Handler shapes for the check that lets a call start on the caller's task."""

    peer: CalcGateway

    async def off_main(self, awaitable: object) -> object:
        return await awaitable  # type: ignore[misc]

    async def only_off_main(self, a: int) -> int:
        b = await self.off_main(self.peer.add(a, len(str(a))))
        for i in range(2):
            await self.off_main(trio.sleep(i))
        return b  # type: ignore[return-value]

    async def plain_await(self, a: int) -> None:
        await trio.sleep(a)

    async def off_main_in_a_scope(self, a: int) -> None:
        with trio.move_on_after(1):
            await self.off_main(trio.sleep(a))

    async def branch_in_the_argument(self, a: int) -> None:
        await self.off_main(trio.sleep(a) if a else trio.sleep(0))

    async def another_objects_off_main(self, a: int) -> None:
        await self.peer.off_main(trio.sleep(a))  # type: ignore[attr-defined]

    async def await_inside_the_argument(self, a: int) -> None:
        await self.off_main(await self.peer.add(a, 1))  # type: ignore[arg-type]

    async def off_main_and_a_plain_await(self, a: int) -> None:
        await self.off_main(trio.sleep(a))
        await trio.sleep(a)

    async def no_await(self, a: int) -> int:
        return a


def test_only_handlers_whose_every_await_is_off_main_may_start_on_the_callers_task() -> None:
    from minicluster.rpc.suspends import suspends_only_in_off_main

    taken = {
        name
        for name in vars(Shapes)
        if not name.startswith("_")
        and name != "off_main"
        and callable(getattr(Shapes, name))
        and suspends_only_in_off_main(getattr(Shapes, name))
    }
    assert taken == {"only_off_main"}


class WaitsTwiceSecondInItsOwnScope(RpcEndpoint, CalcGateway):
    """Its continuation (run by the helper that awaited, the endpoint being idle) waits again
    inside a cancel scope of its own, which keeps the wait on that task."""

    async def add(self, a: int, b: int) -> int:
        await self.off_main(trio.sleep(0.1))
        with trio.move_on_after(5):
            await self.off_main(trio.sleep(0.1))
        self.validate_runs_in_main_thread()
        return a + b


async def test_a_continuation_that_waits_in_its_own_scope_hands_the_main_thread_on_and_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(WaitsTwiceSecondInItsOwnScope) as (endpoint, gateway):
        assert await gateway.add(1, 2) == 3
        # the endpoint goes on serving, one call at a time, and closes cleanly
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(gateway.add, i, 1)
        assert await gateway.add(2, 3) == 5
        with trio.fail_after(1):
            await endpoint.close()
        assert endpoint.termination_error is None


async def test_helpers_that_awaited_off_main_are_reused_and_at_most_a_few_stay_idle() -> None:
    from minicluster.rpc.mailbox import IDLE_HELPERS

    spawned = 0

    class Spawns(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            nonlocal spawned
            if task.name.endswith("_wait_off_main"):
                spawned += 1

    async with serving(WaitsOffMain) as (endpoint, gateway):
        trio.lowlevel.add_instrument(Spawns())

        async def burst(size: int) -> None:
            async with trio.open_nursery() as nursery:
                for i in range(size):
                    nursery.start_soon(gateway.add, i, 1)

        await burst(IDLE_HELPERS * 2)
        first = spawned
        assert first >= IDLE_HELPERS  # the waits overlapped: a helper each
        for _ in range(5):
            await burst(IDLE_HELPERS)  # as many as stay idle: no new task
        assert spawned == first
        await trio.testing.wait_all_tasks_blocked()
        assert len(endpoint._idle_helpers) == IDLE_HELPERS


class SaysIfProtected(RpcEndpoint, CalcGateway):
    """Records, in each handler, whether KeyboardInterrupt could land in it right there."""

    def __init__(self, service, endpoint_id="protected"):  # type: ignore[no-untyped-def]
        super().__init__(service, endpoint_id)
        self.protected: list[bool] = []

    async def add(self, a: int, b: int) -> int:  # never awaits: runs inline
        self.protected.append(trio.lowlevel.currently_ki_protected())
        return a + b

    async def sleep(self, seconds: float, timeout: float = 10.0) -> str:  # waits off_main only
        self.protected.append(trio.lowlevel.currently_ki_protected())
        await self.off_main(trio.sleep(seconds))
        return "slept"


async def test_a_handler_run_on_the_callers_task_is_protected_from_ctrl_c() -> None:
    # Ctrl-C must come at the caller's next checkpoint, not inside a handler that the caller's
    # task runs for the endpoint (it could land between making the handler's coroutine and
    # running it); the endpoint's own tasks are protected the same way
    async with serving(SaysIfProtected) as (endpoint, gateway):
        assert not trio.lowlevel.currently_ki_protected()  # the test's task is not
        await trio.testing.wait_all_tasks_blocked()
        assert await gateway.add(1, 2) == 3
        await trio.testing.wait_all_tasks_blocked()
        assert await gateway.sleep(0) == "slept"
    assert endpoint.protected == [True, True]
