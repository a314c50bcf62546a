"""How `run-scenario` shows a run: the live dashboard in a terminal, plain lines elsewhere,
then a summary; plus the report and trace files."""

from __future__ import annotations

import json
import signal
from typing import IO, Any, cast

import click

from minicluster.cluster import MiniCluster
from minicluster.cluster.context import Event
from minicluster.console import LiveConsole, format_event_line, make_console
from minicluster.scenario import Scenario, Step
from minicluster.scenario.runner import Observer, ScenarioResult, StepResult, run_scenario

from .diagram_cmd import TraceCopy
from .errors import EXIT_USAGE, fail, stdout_to_devnull

LIVE_SPEED = 4.0  # virtual seconds per real second when a person watches and no --speed


class _PlainObserver(Observer):
    """Timestamped lines, no control codes: steps, failovers, faults and failures."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.attached = False
        self.reader_gone = False

    def _say(self, line: str) -> None:
        """A line to stdout; when its reader has gone (`| head -3`), stop the run as Ctrl-C
        would (the cluster shuts down first) and write nothing more."""
        if self.reader_gone:
            return
        try:
            click.echo(line)
        except BrokenPipeError:
            self.reader_gone = True
            stdout_to_devnull()
            signal.raise_signal(signal.SIGINT)  # run_scenario's stop signal

    def _attach(self, cluster: MiniCluster) -> None:
        if not self.attached:
            self.attached = True
            cluster.events.subscribers.append(self._event)

    def _event(self, event: Event) -> None:
        if event.kind in ("rpc", "tell") and event.outcome == "ok":
            return  # the flow of a healthy cluster; the trace file has every message
        if event.kind == "step":
            return  # printed by step_started
        self._say(format_event_line(event.as_dict()))

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        self._attach(cluster)
        self._say(f"[{cluster.events.now():>8.3f}] step {index + 1}/{total}: {step.describe()}")

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        mark = "ok" if result.ok else "FAILED"
        self._say(f"[{result.at:>8.3f}]   {mark}: {result.message}")


class _LiveObserver(Observer):
    shows_view = True

    def __init__(self, scenario: Scenario, live: LiveConsole, clock: str, speed: str) -> None:
        self.scenario = scenario
        self.live = live
        self.status: dict[str, Any] = {
            "scenario": scenario.name,
            "step": "starting",
            "clock": clock,
            "speed": speed,
        }

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        self.status = {**self.status, "step": f"{index + 1}/{total} {step.describe()}"}
        self.tick(cluster)

    def step_finished(self, result: StepResult, cluster: MiniCluster) -> None:
        self.tick(cluster)

    def tick(self, cluster: MiniCluster) -> None:
        # a synchronous refresh: the endpoints' public snapshot methods, read in-process
        snapshot = cluster.snapshot(event_limit=60)
        self.live.update(snapshot, snapshot.events, snapshot.rpc, self.status)


def run_with_view(
    scenario: Scenario,
    *,
    seed: int | None,
    clock: str | None,
    report_file: str | None,
    trace_file: str | None,
    no_live: bool,
    speed: float | None,
    speed_given: bool,
    trace_copy: TraceCopy | None = None,
) -> ScenarioResult:
    console, live_enabled = make_console(no_live)
    clock_kind = clock or scenario.cluster.clock
    trace: IO[str] | None = None
    if trace_file:
        try:
            trace = open(trace_file, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            fail(f"cannot write the trace file {trace_file}: {exc.strerror}", EXIT_USAGE)
    sink = trace
    if trace_copy is not None:  # --diagram: the lines are kept, and written on to --trace
        trace_copy.also = trace
        sink = cast(IO[str], trace_copy)
    live: LiveConsole | None = None
    plain: _PlainObserver | None = None
    summary: list[str] | None = None
    try:
        if live_enabled:
            pace = speed if speed_given else (LIVE_SPEED if clock_kind == "virtual" else None)
            live = LiveConsole(console)
            observer: Observer = _LiveObserver(
                scenario, live, clock_kind, "max" if pace is None else f"x{pace:g}"
            )
            live.start()
        else:
            pace = None  # nobody watches: full speed
            observer = plain = _PlainObserver(scenario)
            click.echo(f"scenario {scenario.name}: {scenario.description}".rstrip(": "))
        result = run_scenario(
            scenario,
            seed=seed,
            clock=clock,
            observer=observer,
            trace=sink,
            speed=pace,
            stop_signals=(signal.SIGINT,),  # Ctrl-C stops the cluster, then exit 130
        )
        summary = _summary_lines(result)
    except KeyboardInterrupt:
        if plain is not None and plain.reader_gone:
            raise BrokenPipeError from None  # not Ctrl-C: the reader of stdout went away
        raise
    finally:
        if live is not None:
            # the final frame and the summary below it both stay on screen: the frame is
            # drawn as many lines shorter as the summary (and the shell's prompt) take
            width = max(1, console.size.width)
            taken = sum(max(1, -(-len(line) // width)) for line in summary or ())
            live.stop(leave_lines=taken + 1 if summary is not None else None)
        if trace is not None:
            trace.close()
    if report_file:
        try:
            with open(report_file, "w", encoding="utf-8") as out:
                json.dump(result.report(), out, indent=2)
        except OSError as exc:
            fail(f"cannot write the report file {report_file}: {exc.strerror}", EXIT_USAGE)
    _summary(result)
    return result


def _summary_lines(result: ScenarioResult) -> list[str]:
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"scenario {result.scenario} {verdict} (seed {result.seed}): "
        f"{sum(s.ok for s in result.steps)}/{len(result.steps)} steps ok, "
        f"{result.virtual_time:.1f} s of cluster time in {result.wall_time:.2f} s"
    ]
    for name, job in result.jobs.items():
        lines.append(
            f"  job {name}: {job['status']}, {job.get('tasks_finished')}/{job.get('tasks_total')}"
            f" tasks finished, {job['restarts']} restarts"
        )
    lines.append(
        f"  rpc: {result.rpc['calls']} messages, "
        f"{result.rpc['fencing_rejections']} fencing rejections"
    )
    return lines


def _summary(result: ScenarioResult) -> None:
    for line in _summary_lines(result):
        click.echo(line)
