"""Per-message problems are logged a few times, then counted: a flood of bad tells cannot
flood the log."""

from __future__ import annotations

import logging

import pytest
import trio

from minicluster.rpc import open_rpc_service
from minicluster.rpc.ratelimit import LogLimiter
from tests.rpc_fixtures import Calc, CalcGateway

log = logging.getLogger("minicluster.test.limit")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_a_burst_passes_then_the_rest_is_counted_and_reported_after_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = LogLimiter(burst=3, window=10.0, clock=clock)
    caplog.set_level(logging.INFO, logger=log.name)
    for i in range(20_000):
        limiter.warning(log, "bad tell %d", i)
    assert lines(caplog) == ["bad tell 0", "bad tell 1", "bad tell 2"]
    clock.now = 9.9
    limiter.warning(log, "bad tell %d", 20_000)
    assert len(lines(caplog)) == 3
    clock.now = 12.0
    limiter.warning(log, "bad tell %d", 20_001)
    assert lines(caplog)[3:] == [
        "... 19,998 more like this in 12 s, the last: bad tell 20000",
        "bad tell 20001",
    ]


def test_kinds_are_limited_apart_and_flush_reports_what_is_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = LogLimiter(burst=1, window=10.0, clock=clock)
    caplog.set_level(logging.INFO, logger=log.name)
    for i in range(5):
        limiter.warning(log, "tell failed: %s", i)
        limiter.log(log, logging.INFO, "goodbye: %s", i)
    assert lines(caplog) == ["tell failed: 0", "goodbye: 0"]
    clock.now = 3.0
    limiter.flush()
    assert lines(caplog)[2:] == [
        "... 4 more like this in 3 s, the last: tell failed: 4",
        "... 4 more like this in 3 s, the last: goodbye: 4",
    ]
    assert caplog.records[-1].levelno == logging.INFO
    limiter.flush()
    assert len(lines(caplog)) == 4


def test_a_disabled_level_costs_nothing_and_counts_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = LogLimiter(burst=1, clock=Clock())
    caplog.set_level(logging.WARNING, logger=log.name)
    for _ in range(10):
        limiter.log(log, logging.DEBUG, "detail %s", 1)
    limiter.flush()
    assert lines(caplog) == []


class WiderGateway(CalcGateway):
    """Calc's gateway plus a method Calc does not have."""

    def missing(self, value: int) -> None: ...


async def test_20000_tells_to_an_unknown_method_log_a_few_lines_and_a_count(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="minicluster.rpc")
    async with open_rpc_service() as service:
        calc = Calc(service)
        calc.start()
        wider = service.local_gateway(calc, WiderGateway, None)
        for i in range(20_000):
            wider.missing(i)
            if i % 1000 == 0:
                await trio.sleep(0)
        await calc.get_self_gateway(CalcGateway).add(1, 1)  # the tells have been handled
        during = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
        await trio.sleep(60)
        for i in range(10):
            wider.missing(20_000 + i)
        await calc.get_self_gateway(CalcGateway).add(1, 1)
    # closing the service reports what the last window held back
    messages = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(during) == 5
    assert messages[5].startswith("... 19,995 more like this in 60 s, the last: tell ")
    assert "calc.missing failed" in messages[5]
    assert messages[11].startswith("... 5 more like this in 0 s, the last: tell ")
    assert len(messages) == 12 and sum(len(m) for m in messages) < 3000
