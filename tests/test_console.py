"""The console views: what a person sees in the live dashboard and in the plain log."""

from __future__ import annotations

import enum
import io
import uuid
from typing import Any

import pytest
from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.style import Style

from minicluster.console.format import (
    format_age,
    format_latency,
    short_token,
    shorten_ids,
)
from minicluster.console.live import LiveConsole, is_interactive, make_console
from minicluster.console.plain import format_event_line, format_summary
from minicluster.console.views import (
    assign_job_keys,
    render_dashboard,
    render_events,
    render_jobs,
    render_rpc_stats,
    render_topology,
)

DISPATCHER_TOKEN = "0f1e2d3c-4b5a-4968-8776-655443322110"
RM_TOKEN = "a1b2c3d4-e5f6-4788-99aa-bbccddeeff00"
JM_TOKEN = "77665544-3322-4111-8000-aaaaaaaaaaaa"
ETL = "3f2a1b2c4d5e6f708192a3b4c5d6e7f8"
WC = "9e8d7c6b5a4938271605f4e3d2c1b0a9"


def slot(index: int, state: str, job: str | None = None, name: str | None = None) -> dict[str, Any]:
    return {"index": index, "state": state, "job_id": job, "job_name": name}


def executor(
    te_id: str, state: str = "registered", age: float | None = 1.2, slots: int = 4
) -> dict[str, Any]:
    return {
        "id": te_id,
        "address": f"local://svc/taskexecutor-{te_id}",
        "state": state,
        "heartbeat_age": age,
        "slots": [slot(i, "FREE") for i in range(slots)],
    }


def make_snapshot(task_executors: int = 3) -> dict[str, Any]:
    executors = [executor(f"te-{i + 1}") for i in range(task_executors)]
    if task_executors:
        executors[0]["slots"] = [
            slot(0, "ACTIVE", ETL, "etl"),
            slot(1, "ALLOCATED", ETL, "etl"),
            slot(2, "ACTIVE", WC, "wordcount"),
            slot(3, "FREE"),
        ]
    if task_executors > 1:
        executors[1]["state"] = "lost"
        executors[1]["heartbeat_age"] = 7.5
    return {
        "time": 12.5,
        "dispatcher": {"address": "local://svc/dispatcher", "token": DISPATCHER_TOKEN},
        "resource_manager": {"address": "local://svc/resourcemanager", "token": RM_TOKEN},
        "job_masters": [
            {
                "job_id": ETL,
                "name": "etl",
                "address": f"local://svc/jobmaster-{ETL}",
                "token": JM_TOKEN,
            }
        ],
        "task_executors": executors,
        "jobs": [
            {
                "job_id": ETL,
                "name": "etl",
                "status": "RUNNING",
                "tasks_total": 8,
                "tasks_finished": 3,
                "restarts": 1,
                "parallelism": 4,
                "start_time": 0.0,
                "duration": 12.5,
            },
            {
                "job_id": WC,
                "name": "wordcount",
                "status": "FINISHED",
                "tasks_total": 4,
                "tasks_finished": 4,
                "restarts": 0,
                "duration": None,
            },
        ],
        "some_future_key": {"ignored": True},
    }


EVENTS: list[dict[str, Any]] = [
    {
        "time": 3.25,
        "kind": "rpc",
        "sender": "taskexecutor-te-1",
        "receiver": "resourcemanager",
        "method": "register_task_executor",
        "outcome": "ok",
    },
    {
        "time": 4.0,
        "kind": "fencing",
        "sender": f"jobmaster-{ETL}",
        "receiver": "resourcemanager",
        "method": "offer_slots",
        "outcome": "error:FencingTokenError",
        "message": "stale token",
    },
    {"time": 5.0, "kind": "failover", "receiver": "resourcemanager", "message": "new leader"},
    {
        "time": 6.5,
        "kind": "heartbeat",
        "sender": "resourcemanager",
        "receiver": "taskexecutor-te-2",
        "outcome": "timeout",
        "message": "no heartbeat for 5.0s",
    },
]

RPC_STATS: dict[str, Any] = {
    "calls_per_second": 523.0,
    "total_calls": 1200,
    "fencing_rejections": 2,
    "by_method": {
        "offer_slots": {"calls": 10, "p50": 0.0002, "p99": 0.001},
        "heartbeat_from_task_executor": {"calls": 600, "p50": 0.00012, "p99": 0.0009},
    },
}

STATUS = {"scenario": "failover-demo", "step": "3/12 kill_task_executor te-1", "clock": "virtual"}


def plain_console(width: int = 100, height: int = 200) -> Console:
    return Console(
        record=True,
        width=width,
        height=height,
        force_terminal=False,
        color_system=None,
        file=io.StringIO(),
    )


def color_console(width: int = 100) -> Console:
    return Console(
        record=True, width=width, force_terminal=True, color_system="truecolor", file=io.StringIO()
    )


def render(renderable: RenderableType, width: int = 100) -> str:
    console = plain_console(width)
    console.print(renderable)
    return console.export_text()


def segments(renderable: RenderableType, width: int = 100) -> list[Segment]:
    console = color_console(width)
    lines = console.render_lines(renderable, console.options.update(width=width), pad=False)
    return [segment for line in lines for segment in line]


def style_of(renderable: RenderableType, text: str) -> Style:
    """The style of the first rendered segment that contains ``text``."""
    for segment in segments(renderable):
        if text in segment.text:
            return segment.style or Style()
    raise AssertionError(f"{text!r} not rendered")


def row_of(output: str, start: str) -> str:
    rows = [line for line in output.splitlines() if line.lstrip("│ ").startswith(start)]
    assert rows, f"no row starting with {start!r} in\n{output}"
    return rows[0]


# -- topology -------------------------------------------------------------------------------


def test_tokens_and_ids_are_shortened_to_eight_characters() -> None:
    output = render(render_topology(make_snapshot()))
    assert "0f1e2d3c" in output and DISPATCHER_TOKEN not in output
    assert "a1b2c3d4" in output and RM_TOKEN not in output
    assert "77665544" in output
    assert row_of(output, "JobMaster etl").count(ETL[:8]) == 1  # in the address
    assert ETL not in output


def test_every_task_executor_has_one_row_with_state_and_heartbeat_age() -> None:
    output = render(render_topology(make_snapshot(5)))
    for number in range(1, 6):
        assert row_of(output, f"te-{number} ")
    assert "registered" in row_of(output, "te-1 ")
    assert "1.2s" in row_of(output, "te-1 ")
    assert "5 TaskExecutors" in output


def test_slots_show_state_and_job_with_a_legend() -> None:
    output = render(render_topology(make_snapshot()))
    # etl is E, wordcount W; upper case active, lower case allocated, · free
    assert "E e W ·" in row_of(output, "te-1 ")
    assert "1/4" in row_of(output, "te-1 ")  # free out of total
    assert "· 9 free" in output and "a 1 allocated" in output and "A 2 active" in output
    assert "E etl" in output and "W wordcount" in output


def test_slot_cells_are_coloured_by_state() -> None:
    snapshot = make_snapshot()
    snapshot["task_executors"][0]["slots"] = [slot(0, "ACTIVE", ETL, "etl")]
    snapshot["task_executors"][1]["slots"] = [slot(0, "ALLOCATED", WC, "wordcount")]
    view = render_topology(snapshot, max_task_executors=2)
    active = [s for s in segments(view) if s.text == "E" and s.style and s.style.bgcolor]
    allocated = [s for s in segments(view) if s.text == "w" and s.style and s.style.bgcolor]
    assert active and allocated
    assert active[0].style is not None and allocated[0].style is not None
    assert active[0].style.bgcolor != allocated[0].style.bgcolor


def test_lost_task_executors_are_marked_in_red() -> None:
    view = render_topology(make_snapshot())
    assert "✖ lost" in row_of(render(view), "te-2 ")
    style = style_of(view, "lost")
    assert style.color is not None and style.color.name == "red"


def test_many_slots_are_truncated_with_a_count() -> None:
    snapshot = make_snapshot(1)
    snapshot["task_executors"][0]["slots"] = [slot(i, "FREE") for i in range(40)]
    row = row_of(render(render_topology(snapshot)), "te-1 ")
    assert "+16" in row
    assert row.count("·") == 24
    assert len(row) <= 100


def test_hundreds_of_task_executors_are_summed_up_within_100_columns() -> None:
    snapshot = make_snapshot(500)
    for te in snapshot["task_executors"][100:112]:
        te["state"] = "lost"
    for te in snapshot["task_executors"][200:203]:
        te["state"] = "killed"
    console = plain_console(width=160)  # a wide terminal: the dashboard still stops at 100
    console.print(render_dashboard(snapshot, EVENTS * 10, RPC_STATS, STATUS))
    output = console.export_text()
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 100
    # the TaskExecutors in trouble come first: the 12 lost are listed, 3 killed of the rest
    assert "… and 488 more (1 lost, 3 killed)" in output
    assert output.count("✖ lost") == 12
    assert "500 TaskExecutors: 484 registered, 13 lost, 3 killed" in output
    assert len(lines) < 70


def test_dashboard_fits_the_terminal_height() -> None:
    snapshot = make_snapshot(500)
    events = EVENTS * 20
    for height in (24, 40, 60):
        output = render(render_dashboard(snapshot, events, RPC_STATS, STATUS, height=height))
        lines = output.splitlines()
        # with plenty of TaskExecutors to show, the dashboard fills the height exactly
        assert len(lines) == height, (height, len(lines))
        assert row_of(output, "te-1 ")
        assert "and" in output and "more" in output
    tall = render(render_dashboard(snapshot, events, RPC_STATS, STATUS, height=60))
    assert row_of(tall, "te-20 ")  # more rows on a taller terminal


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("task_executors", [0, 6, 500])
@pytest.mark.parametrize("event_count", [0, 4, 60])
def test_dashboard_never_exceeds_the_terminal(
    width: int, task_executors: int, event_count: int
) -> None:
    snapshot = make_snapshot(task_executors)
    events = (EVENTS * 15)[:event_count]
    for height in (24, 30, 45):
        view = render_dashboard(snapshot, events, RPC_STATS, STATUS, height=height)
        lines = render(view, width=width).splitlines()
        assert len(lines) <= height
        assert max(len(line) for line in lines) <= width


def test_long_values_are_cut_not_wrapped_on_a_narrow_terminal() -> None:
    snapshot = make_snapshot(3)
    snapshot["task_executors"][0]["id"] = "te-with-a-very-long-identifier-indeed"
    snapshot["dispatcher"]["address"] = "tcp://" + "very-long-host-name." * 8 + "example:6123"
    snapshot["jobs"][0]["name"] = "an extraordinarily long job name that goes on"
    output = render(render_dashboard(snapshot, EVENTS, RPC_STATS, STATUS), width=80)
    assert max(len(line) for line in output.splitlines()) <= 80
    assert sum("very-long-host" in line for line in output.splitlines()) == 1
    assert "…" in output


# -- jobs, RPC statistics, events -------------------------------------------------------


def test_jobs_show_status_progress_and_restarts() -> None:
    output = render(render_jobs(make_snapshot()))
    row = row_of(output, "E etl")
    assert "RUNNING" in row and "3/8" in row and "█" in row and "░" in row
    assert row.split("3/8 done")[1].split()[0] == "1"  # restarts
    assert "4/4" in row_of(output, "W wordcount")
    assert "FINISHED" in output


def test_rpc_statistics_show_rate_and_latency_per_method() -> None:
    output = render(render_rpc_stats(RPC_STATS))
    assert "523 calls/s" in output and "1200 calls" in output and "2 fenced" in output
    busiest, quieter = row_of(output, "heartbeat_from"), row_of(output, "offer_slots")
    assert "600" in busiest and "120µs" in busiest and "900µs" in busiest
    assert "200µs" in quieter and "1.0ms" in quieter
    assert output.index("heartbeat_from") < output.index("offer_slots")  # busiest first


def test_events_in_order_with_sender_receiver_method_outcome() -> None:
    output = render(render_events(EVENTS))
    row = row_of(output, "3.250")
    assert "taskexecutor-te-1 -> resourcemanager: register_task_executor" in row
    assert row.rstrip(" │").endswith("ok")
    assert "FencingToken" in row_of(output, "4.000")
    assert "jobmaster-3f2a1b2c ->" in output
    times = [output.index(t) for t in ("3.250", "4.000", "5.000", "6.500")]
    assert times == sorted(times)


def test_event_log_shows_only_the_latest_events() -> None:
    events = [{"time": float(i), "kind": "info", "message": f"event number {i}"} for i in range(30)]
    output = render(render_events(events, limit=12))
    assert "event number 18" in output and "event number 29" in output
    assert "event number 17" not in output
    assert "no events yet" in render(render_events([]))


def test_fencing_rejections_are_highlighted() -> None:
    view = render_events(EVENTS)
    fenced = style_of(view, "FencingToken")
    assert fenced.bold and fenced.color is not None and fenced.color.name == "red"
    kind = style_of(view, "fencing")
    assert kind.bgcolor is not None and kind.bgcolor.name == "red"
    normal = style_of(view, "register_task_executor")
    assert normal.color is None or normal.color.name != "red"
    # also when the rejection comes in as a plain rpc event
    rpc = [dict(EVENTS[1], kind="rpc")]
    assert style_of(render_events(rpc), "offer_slots").color.name == "red"  # type: ignore[union-attr]


def test_header_shows_scenario_step_and_virtual_time() -> None:
    output = render(render_dashboard(make_snapshot(), EVENTS, RPC_STATS, STATUS))
    header = output.splitlines()[0]
    assert "failover-demo" in header and "step 3/12 kill_task_executor te-1" in header
    assert "12.500s" in header and "virtual" in header


def test_missing_and_unexpected_data_is_shown_gracefully() -> None:
    class State(enum.Enum):
        REGISTERED = "registered"

    output = render(render_dashboard({}, [], None))
    assert "no TaskExecutors" in output and "no jobs" in output and "no events yet" in output
    assert "no leader" in output
    odd = {
        "dispatcher": {"token": uuid.UUID(DISPATCHER_TOKEN)},
        "task_executors": [
            {"id": "te-x", "state": State.REGISTERED, "slots": [{"state": "WEIRD"}]},
            "not a mapping",
        ],
        "jobs": [{"status": None, "tasks_total": "n/a"}],
    }
    output = render(render_dashboard(odd, [{"kind": "rpc"}, "junk"], {"by_method": 3}))  # type: ignore[list-item]
    assert "0f1e2d3c" in output
    assert "registered" in row_of(output, "te-x")
    assert "-" in row_of(output, "te-x")  # no heartbeat age


def test_job_letters_use_free_initials() -> None:
    snapshot = {
        "jobs": [
            {"job_id": "a", "name": "etl"},
            {"job_id": "b", "name": "etl-2"},
            {"job_id": "c", "name": "wordcount"},
        ]
    }
    assert assign_job_keys(snapshot) == {"a": "E", "b": "T", "c": "W"}


def test_formatting_helpers() -> None:
    assert short_token(DISPATCHER_TOKEN) == "0f1e2d3c"
    assert short_token(None) == "-"
    assert format_age(1.23) == "1.2s" and format_age(None) == "-" and format_age(125) == "2m05s"
    assert format_latency(0.0002) == "200µs" and format_latency(0.0015) == "1.5ms"
    assert shorten_ids(f"local://svc/jobmaster-{ETL}") == "local://svc/jobmaster-3f2a1b2c"


# -- plain log ------------------------------------------------------------------------------


def test_plain_event_line() -> None:
    assert (
        format_event_line(EVENTS[0])
        == "[   3.250] rpc taskexecutor-te-1 -> resourcemanager: register_task_executor ok"
    )
    assert format_event_line(EVENTS[2]) == "[   5.000] failover resourcemanager: new leader"
    assert format_event_line(EVENTS[1]).endswith(
        "offer_slots error:FencingTokenError - stale token"
    )
    assert format_event_line({}) == "[        ] event"


def test_plain_lines_contain_no_control_characters() -> None:
    nasty = {
        "time": 1.0,
        "kind": "info",
        "sender": "x\x1b[2Jy",
        "message": "red \x1b[31malert\x1b[0m\nsecond line\r\x07\x9b",
    }
    lines = [format_event_line(event) for event in [*EVENTS, nasty]]
    lines += format_summary(make_snapshot(), RPC_STATS, STATUS)
    for line in lines:
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in line), repr(line)
    assert "alert" in lines[4] and "second line" in lines[4]


def test_plain_summary() -> None:
    lines = format_summary(make_snapshot(), RPC_STATS)
    assert lines[0].startswith("[  12.500] cluster: 3 task executors (2 registered, 1 lost)")
    assert any(f"job etl {ETL}: RUNNING, 3/8 tasks, 1 restart" in line for line in lines)
    assert any("1200 calls" in line and "2 fencing rejections" in line for line in lines)


# -- live console ---------------------------------------------------------------------------


def test_no_live_console_prints_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    for no_live in (True, False):
        out = io.StringIO()
        console, live = make_console(no_live=no_live, file=out)
        assert live is False
        console.print("[bold]not markup[/bold] " + format_event_line(EVENTS[0]))
        text = out.getvalue()
        assert "\x1b" not in text
        assert text.startswith("[bold]not markup[/bold] [   3.250] rpc")


def test_a_forced_terminal_that_is_not_a_tty_is_not_interactive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    assert not is_interactive(Console(file=io.StringIO(), force_terminal=True))
    assert not is_interactive(Console(file=io.StringIO()))


def test_live_console_draws_the_latest_update(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, height=40, color_system=None)
    live = LiveConsole(console, refresh_per_second=20, redirect_stdout=False, redirect_stderr=False)
    with live:
        live.update(make_snapshot(), EVENTS, RPC_STATS, {"step": "1/2 first"})
        live.update(make_snapshot(), EVENTS, RPC_STATS, {"step": "2/2 second"})
    assert not live.is_started
    text = out.getvalue()
    assert "2/2 second" in text
    final = text.split("minicluster")[-1]
    assert "te-1" in final and "FencingToken" in final


def test_plain_event_line_can_shorten_ids() -> None:
    line = format_event_line(EVENTS[1], short_ids=True)
    assert line.startswith("[   4.000] fencing jobmaster-3f2a1b2c -> resourcemanager: offer_slots")
    assert ETL in format_event_line(EVENTS[1])


def test_uuid_and_enum_values_match_between_jobs_and_slots() -> None:
    class SlotState(enum.Enum):
        ACTIVE = "ACTIVE"

    job = uuid.UUID(ETL)
    snapshot = {
        "jobs": [{"job_id": job, "name": "etl", "status": "RUNNING"}],
        "task_executors": [
            {
                "id": "te-1",
                "state": "registered",
                "slots": [{"state": SlotState.ACTIVE, "job_id": job}],
            }
        ],
    }
    output = render(render_topology(snapshot))
    assert "E" in row_of(output, "te-1 ").split("0/1")[1]
    assert "E etl" in output and "1 active" in output


def test_a_job_waiting_for_slots_shows_its_pending_demand() -> None:
    snapshot = make_snapshot()
    snapshot["jobs"][0]["slots_pending"] = 2
    output = render(render_jobs(snapshot))
    below = output.splitlines()[output.splitlines().index(row_of(output, "E etl")) + 1]
    assert "↳ waiting for 2 slots" in below
    plain = format_summary(snapshot)
    assert any("waiting for 2 slots" in line for line in plain)
