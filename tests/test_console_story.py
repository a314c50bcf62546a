"""What a person watching the live console must see, drawn from real runs of the shipped
scenarios (in-process, on the virtual clock) at 80x24, 100x35 and 140x45."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from minicluster.cluster import MiniCluster
from minicluster.cluster.snapshot import (
    ClusterSnapshot,
    ResourceOverview,
    SlotSnapshot,
    TaskExecutorSnapshot,
    task_executor_rows,
)
from minicluster.console.live import LiveConsole
from minicluster.console.views import render_dashboard
from minicluster.scenario import Step, load_scenario
from minicluster.scenario.runner import Observer, run_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SIZES = [(80, 24), (100, 35), (140, 45)]

Frame = tuple[ClusterSnapshot, dict[str, str]]


class _Recorder(Observer):
    """A view's observer that keeps every frame it would draw (one per cluster event)."""

    shows_view = True
    refresh_interval = 0.0

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.status = {"scenario": "", "step": "starting", "clock": "virtual", "speed": "x4"}

    def step_started(self, index: int, total: int, step: Step, cluster: MiniCluster) -> None:
        self.status = {**self.status, "step": f"{index + 1}/{total} {step.describe()}"}
        self.tick(cluster)

    def tick(self, cluster: MiniCluster) -> None:
        self.frames.append((cluster.snapshot(event_limit=60), dict(self.status)))


_RUNS: dict[str, list[Frame]] = {}


def frames(name: str) -> list[Frame]:
    if name not in _RUNS:
        recorder = _Recorder()
        run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), observer=recorder)
        _RUNS[name] = recorder.frames
    return _RUNS[name]


def at(name: str, time: float) -> Frame:
    """The last frame drawn at or before that cluster time."""
    return [frame for frame in frames(name) if frame[0].time <= time][-1]


def draw(frame: Frame, width: int, height: int, *, final: bool = False) -> str:
    """The frame as the live view draws it on a terminal of that size (one line is left for
    the cursor), as plain text."""
    snapshot, status = frame
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    view = render_dashboard(
        snapshot, snapshot.events, snapshot.rpc, status, width=width, height=height - 1, final=final
    )
    console.print(view)
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) <= height - 1, text
    assert max(len(line) for line in lines) <= width, text
    return text


def flat(text: str) -> str:
    """The words on screen in reading order, borders and wrapping undone (a wrapped reason
    reads as one sentence); on a wide terminal the left column, then the right one."""
    lines = text.splitlines()
    width = max(len(line) for line in lines)
    if width >= 120:
        half = width // 2
        lines = [line[:half] for line in lines] + [line[half:] for line in lines]
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", "\n".join(lines)))


def rows_of(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip("│ ").startswith(start)]


# The cause, as the JobMaster words it: "lost TaskExecutor te-1: heartbeat ..." from its
# heartbeat monitor, or "TaskExecutor te-1 was lost: heartbeat ..." from the failed tasks; both
# come at the same instant and which is drawn last depends on their order within it.
CRASH_CAUSE = "heartbeat of te-1 timed out after 5 s"


def test_the_crash_cause_stays_on_screen_at_80x24() -> None:
    crash_seen = False
    for frame in frames("taskexecutor-crash"):
        if frame[0].time < 7.0 or not frame[0].jobs or frame[0].jobs[0].restarts < 2:
            continue
        crash_seen = True
        assert CRASH_CAUSE in flat(draw(frame, 80, 24)), frame[0].time
    assert crash_seen
    # and in the final frame, drawn short enough for the summary below it
    assert CRASH_CAUSE in flat(draw(frames("taskexecutor-crash")[-1], 80, 24 - 5, final=True))


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_killed_task_executor_is_listed_once_with_its_state(width: int, height: int) -> None:
    for time in (2.5, 7.5, 30.0):
        text = draw(at("taskexecutor-crash", time), width, height)
        rows = rows_of(text.split("Jobs")[0], "te-1 ")
        assert len(rows) == 1 and "✖ killed" in rows[0], text
        assert "… and" not in text.split("Jobs")[0]  # every TaskExecutor is listed


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_fencing_rejections_keep_their_full_reasons(width: int, height: int) -> None:
    snapshot, status = at("resourcemanager-failover", 4.5)
    new = str(snapshot.resource_manager.token)[:8]
    old = str(frames("resourcemanager-failover")[0][0].resource_manager.token)[:8]
    reason = (
        f"rejected: stale fencing token (endpoint resourcemanager is fenced with token {new} "
        f"but the message carried {old})"
    )
    for frame in ((snapshot, status), frames("resourcemanager-failover")[-1]):
        text = flat(draw(frame, width, height))
        assert f"notify_slot_available {reason} (2 times)" in text
        assert "3 fencing rejections" in text
        if height > 24:
            assert f"disconnect_job_manager {reason}" in text


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_leader_change_is_on_screen(width: int, height: int) -> None:
    snapshot, status = at("resourcemanager-failover", 4.5)
    token = str(snapshot.resource_manager.token)[:8]
    for frame in ((snapshot, status), frames("resourcemanager-failover")[-1]):
        assert f"failover resource_manager failed over: new fencing token {token}" in flat(
            draw(frame, width, height)
        )


def test_task_executors_of_the_old_leader_reconnect_rather_than_look_lost() -> None:
    before_news = draw(at("resourcemanager-failover", 4.5), 100, 35)
    for name in ("te-1 ", "te-2 "):
        assert "◌ reconnecting" in rows_of(before_news, name)[0], before_news
    assert "lost" not in before_news
    registered_again = draw(at("resourcemanager-failover", 5.5), 100, 35)
    for name in ("te-1 ", "te-2 "):
        assert "● registered" in rows_of(registered_again, name)[0], registered_again
    assert "TaskExecutor te-1 registered" in flat(registered_again)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_a_job_waiting_for_slots_says_how_many_it_waits_for(width: int, height: int) -> None:
    waiting = [f for f in frames("not-enough-slots") if any(j.slots_pending for j in f[0].jobs)]
    snapshot, status = waiting[-1]
    pending = snapshot.jobs[0].slots_pending
    text = flat(draw((snapshot, status), width, height))
    assert snapshot.free_slots == 0
    assert f"↳ waiting for {pending} slots (none free)" in text


def test_the_task_bar_counts_running_tasks_not_only_finished_ones() -> None:
    text = draw(at("quickstart", 1.0), 80, 24)
    assert "0/4 done 4 running" in rows_of(text, "W wordcount")[0]
    assert "4/4 done" in rows_of(draw(frames("quickstart")[-1], 80, 24), "W wordcount")[0]


def test_a_wide_terminal_shows_the_story_beside_the_cluster() -> None:
    text = draw(at("resourcemanager-failover", 4.5), 140, 45)
    first = text.splitlines()[1]
    assert "Topology" in first and "What happened" in first
    assert "Events" in text and "RPC" in text  # room for the routine traffic too


def test_the_final_frame_and_the_summary_stay_on_screen() -> None:
    snapshot, status = frames("taskexecutor-crash")[-1]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system=None)
    live = LiveConsole(console, refresh_per_second=20, redirect_stdout=False, redirect_stderr=False)
    live.start()
    live.update(snapshot, snapshot.events, snapshot.rpc, status)
    live.stop(leave_lines=5)
    last = out.getvalue().split("minicluster  ")[-1]
    drawn = [line for line in last.splitlines() if "│" in line or "╰" in line or "╭" in line]
    assert len(drawn) + 1 <= 24 - 1 - 5  # header, frame, then five lines for the summary
    assert "Jobs" not in last  # the summary lists the jobs
    assert CRASH_CAUSE in flat(last)


def test_slots_of_a_joined_task_executor_running_tasks_are_shown_active() -> None:
    job, running, idle = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    remote = TaskExecutorSnapshot(
        "te-remote",
        "tcp://127.0.0.1:7000/taskexecutor-te-remote",
        "registered",
        slots=(
            SlotSnapshot(0, "ALLOCATED", job, allocation_id=running),
            SlotSnapshot(1, "ALLOCATED", job, allocation_id=idle),
            SlotSnapshot(2, "FREE"),
        ),
    )
    rows, _ = task_executor_rows(
        (), ResourceOverview(registered=(remote,)), {job: "etl"}, None, {running}
    )
    assert [slot.state for slot in rows[0].slots] == ["ACTIVE", "ALLOCATED", "FREE"]
    assert rows[0].remote


def test_a_task_executor_is_listed_once_even_when_an_ended_one_had_its_id() -> None:
    live = TaskExecutorSnapshot("te-1", "local://svc/taskexecutor-te-1", "registered")
    ended = TaskExecutorSnapshot("te-1", None, "killed")
    registered = ResourceOverview(registered=(live,))
    rows, total = task_executor_rows((live, ended), registered, {})
    assert [(row.id, row.state) for row in rows] == [("te-1", "registered")] and total == 1
