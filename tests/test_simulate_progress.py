"""The progress of a long simulate sweep: plain lines on a stream that is not a terminal, none
in --json mode, figures a person can check."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

import cli.simulate_progress as progress_module
from cli.simulate_cmd import simulate as simulate_command
from cli.simulate_progress import PLAIN_EVERY, SweepProgress
from minicluster.simulate import RunResult, Violation


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_gives_rates_cluster_hours_violations_and_eta() -> None:
    clock = _Clock()
    progress = SweepProgress(10, stream=io.StringIO(), clock=clock)
    clock.now += 2.0
    for seed in range(4):
        result = RunResult(seed, events=500, virtual_time=1800.0)
        if seed == 3:
            result.violations.append(Violation(seed, "fencing", "planted"))
        progress.run_done(result)
    assert progress.line() == (
        "4/10 runs, 2.0 runs/s, 1,000 events/s, 2.0 cluster h, 1 violation(s), ETA 3 s"
    )


def test_a_time_limit_bounds_the_eta() -> None:
    clock = _Clock()
    progress = SweepProgress(1000, time_limit=5.0, stream=io.StringIO(), clock=clock)
    clock.now += 1.0
    progress.run_done(RunResult(1))
    assert progress.line().endswith("ETA 4 s")


def test_not_on_a_terminal_a_plain_line_comes_every_few_seconds() -> None:
    assert PLAIN_EVERY <= 10.0
    clock, stream = _Clock(), io.StringIO()
    progress = SweepProgress(100, stream=stream, clock=clock)
    with progress:
        progress.run_done(RunResult(1))
        assert stream.getvalue() == ""
        clock.now += 10.0
        progress.run_done(RunResult(2))
        clock.now += 1.0
        progress.run_done(RunResult(3))
    # 2 runs in 10 s: 98 left at 0.2 runs/s
    assert stream.getvalue().splitlines() == [
        "2/100 runs, 0.2 runs/s, 0 events/s, 0.0 cluster h, 0 violation(s), ETA 8 min 10 s"
    ]


def test_the_command_shows_progress_on_stderr_but_not_in_json_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "PLAIN_EVERY", 0.0)
    args = ["--runs", "2", "--seed", "1", "--duration", "1m"]
    shown = CliRunner().invoke(simulate_command, args)
    assert shown.exit_code == 0, shown.output
    assert "2/2 runs, " in shown.stderr
    assert "runs/s" not in shown.stdout
    quiet = CliRunner().invoke(simulate_command, [*args, "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_updated_in_place_and_cleared_at_the_end() -> None:
    clock, stream = _Clock(), _Terminal()
    with SweepProgress(2, stream=stream, clock=clock) as progress:
        assert progress.interactive
        clock.now += 1.0
        progress.run_done(RunResult(1))
        clock.now += 1.0
        progress.run_done(RunResult(2))
    written = stream.getvalue()
    assert "1/2 runs, 1.0 runs/s" in written and "2/2 runs, 1.0 runs/s" in written
    assert "\x1b[" in written  # the cursor moves back over the line: rich's live display
