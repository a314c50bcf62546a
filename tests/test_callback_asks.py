"""Asks nobody waits on (`ask_with_callback`, Flink's future + whenComplete) and the service's
one heap of scheduled runs."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from minicluster.rpc import (
    RecipientUnreachableError,
    RpcTimeoutError,
    ask_with_callback,
    open_rpc_service,
)
from tests.rpc_fixtures import Calc, CalcGateway

Outcome = tuple[Any, BaseException | None]


def _recorder() -> tuple[list[Outcome], trio.Event, Any]:
    """Where a callback ask's outcomes go, and an event set by the first."""
    outcomes: list[Outcome] = []
    done = trio.Event()

    def on_done(result: Any, error: BaseException | None) -> None:
        outcomes.append((result, error))
        done.set()

    return outcomes, done, on_done


async def test_an_idle_endpoint_answers_an_ask_with_callback_before_it_returns() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        gateway = service.local_gateway(calc, CalcGateway, None)
        await calc.call_async(lambda: None)  # idle now
        outcomes: list[Outcome] = []
        ask_with_callback(gateway, "add", 2, 3, on_done=lambda r, e: outcomes.append((r, e)))
        assert outcomes == [(5, None)]


async def test_an_ask_with_callback_to_a_busy_endpoint_is_answered_when_it_gets_there(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        gateway = service.local_gateway(calc, CalcGateway, None)

        async def hog() -> None:
            await trio.sleep(2)  # holds the main thread

        async with trio.open_nursery() as nursery:
            nursery.start_soon(calc.call_async, hog)
            await trio.testing.wait_all_tasks_blocked()
            outcomes: list[Outcome] = []
            ask_with_callback(gateway, "add", 1, 1, on_done=lambda r, e: outcomes.append((r, e)))
            assert outcomes == []
            await trio.sleep(3)
            assert outcomes == [(2, None)]


async def test_an_ask_with_callback_that_gets_no_answer_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        gateway = service.local_gateway(calc, CalcGateway, None)

        async def hog() -> None:
            await trio.sleep(10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(calc.call_async, hog, 20)
            await trio.testing.wait_all_tasks_blocked()
            outcomes: list[Outcome] = []
            ask_with_callback(
                gateway, "add", 1, 1, timeout=1.5, on_done=lambda r, e: outcomes.append((r, e))
            )
            await trio.sleep(1.4)
            assert outcomes == []
            await trio.sleep(0.2)
            [(result, error)] = outcomes
            assert result is None and isinstance(error, RpcTimeoutError)
            assert "ask add" in str(error)
            await trio.sleep(10)
            assert len(outcomes) == 1  # the late answer is dropped


async def test_an_ask_with_callback_goes_over_tcp_and_leaves_nothing_pending() -> None:
    async with (
        open_rpc_service("127.0.0.1") as server,
        open_rpc_service() as client,
    ):
        Calc(server).start()
        gateway = await client.connect(f"{server.address}/calc", CalcGateway)
        outcomes, done, on_done = _recorder()

        ask_with_callback(gateway, "add", 20, 22, on_done=on_done)
        with trio.fail_after(5):
            await done.wait()
        assert outcomes == [(42, None)]
        connection = gateway._invoker.conn  # type: ignore[attr-defined]
        assert connection.pending == {}


async def test_a_timed_out_remote_ask_with_callback_leaves_no_pending_entry() -> None:
    async with (
        open_rpc_service("127.0.0.1") as server,
        open_rpc_service() as client,
    ):
        Calc(server).start()
        gateway = await client.connect(f"{server.address}/calc", CalcGateway)
        outcomes, done, on_done = _recorder()

        # the handler sleeps 1 s off its main thread; the ask gives up after 0.05 s
        ask_with_callback(gateway, "sleep", 1.0, timeout=0.05, on_done=on_done)
        with trio.fail_after(5):
            await done.wait()
        assert isinstance(outcomes[0][1], RpcTimeoutError)
        connection = gateway._invoker.conn  # type: ignore[attr-defined]
        assert connection.pending == {}


async def test_an_ask_with_callback_to_a_closed_endpoint_reports_it_unreachable() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        gateway = service.local_gateway(calc, CalcGateway, None)
        await calc.close()
        outcomes: list[Outcome] = []
        ask_with_callback(gateway, "add", 1, 1, on_done=lambda r, e: outcomes.append((r, e)))
        await trio.sleep(0)
        assert len(outcomes) == 1 and isinstance(outcomes[0][1], RecipientUnreachableError)


async def test_ask_with_callback_refuses_a_tell_or_an_unknown_method() -> None:
    async with open_rpc_service() as service:
        calc = Calc(service)
        gateway = service.local_gateway(calc, CalcGateway, None)
        with pytest.raises(TypeError, match="no ask 'note'"):
            ask_with_callback(gateway, "note", 1, on_done=lambda r, e: None)
        with pytest.raises(TypeError, match="no ask 'nope'"):
            ask_with_callback(gateway, "nope", on_done=lambda r, e: None)


# --- scheduled runs -------------------------------------------------------------------


async def test_due_runs_of_every_endpoint_run_in_scheduling_order_on_their_main_threads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rpc_service() as service:
        a, b = Calc(service, "a"), Calc(service, "b")
        a.start()
        b.start()
        ran: list[str] = []

        def run(endpoint: Calc, name: str) -> None:
            endpoint.validate_runs_in_main_thread()
            ran.append(name)

        b.schedule_run_async(lambda: run(b, "b1"), 1.0)
        a.schedule_run_async(lambda: run(a, "a1"), 1.0)
        b.schedule_run_async(lambda: run(b, "b0"), 0.5)
        a.schedule_run_async(lambda: run(a, "a2"), 1.0)
        await trio.sleep(2)
        assert ran == ["b0", "b1", "a1", "a2"]


async def test_resetting_a_timeout_does_not_wake_the_scheduler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a heartbeat timeout is reset (cancel, schedule anew) on every heartbeat: the cancelled
    # deadline must not wake anything, else a long idle run costs a wake-up per reset
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        await calc.call_async(lambda: None)
        runs = service.scheduled_runs
        fired: list[float] = []
        handle = calc.schedule_run_async(lambda: fired.append(trio.current_time()), 5.0)
        for _ in range(20):
            await trio.sleep(1.0)
            handle.cancel()
            handle = calc.schedule_run_async(lambda: fired.append(trio.current_time()), 5.0)
        assert runs.pending == 1
        assert runs._scope is not None and runs._scope.deadline == trio.current_time() + 5.0
        await trio.sleep(6)
        assert len(fired) == 1
