"""minicluster.diagram on hand-made traces: what a reader of a sequence diagram or a slot
timeline relies on, without files or a browser (test_diagram_browser.py parses with Mermaid)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from minicluster.diagram import (
    SelectionError,
    TraceRecord,
    TraceRecordError,
    Window,
    WindowError,
    build_sequence,
    build_timeline,
    endpoints_of,
    escape,
    job_names,
    parse_lines,
    parse_record,
    render_mermaid,
    render_page,
    render_svg,
    select_components,
)
from minicluster.scenario import load_scenario
from minicluster.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
JM = "jobmaster-00112233445566778899aabbccddeeff"
JOB = JM.removeprefix("jobmaster-")
TE1, TE2 = "taskexecutor-te-1", "taskexecutor-te-2"
RM = "resourcemanager"


def rec(
    time: float,
    sender: str | None,
    receiver: str,
    method: str,
    kind: str = "ask",
    outcome: str = "ok",
    **detail: Any,
) -> TraceRecord:
    return parse_record(
        {
            "time": time,
            "sender": sender,
            "receiver": receiver,
            "method": method,
            "kind": kind,
            "outcome": outcome,
            **detail,
        }
    )


def mermaid(records: list[TraceRecord], **kwargs: Any) -> str:
    return render_mermaid(build_sequence(records, **kwargs))


def body(text: str) -> list[str]:
    """The diagram's statements after the participants."""
    return [
        line.strip()
        for line in text.splitlines()[1:]
        if not line.strip().startswith(("participant ", "actor "))
    ]


# --- messages ------------------------------------------------------------------------------


def test_an_ask_is_a_request_arrow_and_a_dashed_reply() -> None:
    text = mermaid([rec(0.0, TE1, RM, "register_task_executor", slots=2)])
    assert "TE_te_1->>RM: register_task_executor" in body(text)
    assert "RM-->>TE_te_1:" in body(text)


def test_a_tell_is_an_open_arrow_without_a_reply() -> None:
    lines = body(mermaid([rec(1.0, JM, TE1, "free_slot", kind="tell")]))
    assert "JM_00112233-)TE_te_1: free_slot" in lines
    assert not any("-->>" in line for line in lines)


def test_a_failed_ask_has_a_crossed_reply_with_its_outcome_in_a_tinted_block() -> None:
    lines = body(mermaid([rec(1.0, JM, TE1, "submit_task", outcome="error: TaskSubmissionError")]))
    start = lines.index("rect rgb(255, 228, 225)")
    assert lines[start + 1 : start + 4] == [
        "JM_00112233->>TE_te_1: submit_task",
        "TE_te_1--xJM_00112233: error: TaskSubmissionError",
        "end",
    ]


def test_a_fencing_rejection_is_a_crossed_arrow_highlighted_with_its_reason() -> None:
    records = [
        rec(5.0, JM, RM, "declare_required_resources", outcome="rejected: stale fencing token")
    ]
    lines = body(mermaid(records))
    start = lines.index("rect rgb(255, 240, 205)")
    assert lines[start + 1 : start + 4] == [
        "JM_00112233-xRM: declare_required_resources",
        "Note right of RM: rejected: stale fencing token",
        "end",
    ]


def test_a_dropped_message_is_a_crossed_arrow_marked_dropped() -> None:
    lines = body(mermaid([rec(2.0, RM, TE1, "disconnect_resource_manager", outcome="dropped")]))
    assert "RM-xTE_te_1: disconnect_resource_manager (dropped)" in lines
    assert "rect rgb(255, 228, 225)" in lines


def test_task_messages_say_which_task_state_and_slot() -> None:
    lines = body(
        mermaid(
            [
                rec(0.0, "client", "dispatcher", "submit_job", job=JOB, job_name="etl"),
                rec(0.1, RM, TE1, "request_slot", slot="te-1/0", job=JOB, allocation="a1"),
                rec(
                    0.2, JM, TE1, "submit_task", vertex="map", subtask=3, attempt=1, allocation="a1"
                ),
                rec(0.3, TE1, JM, "update_task_execution_state", state="RUNNING"),
            ]
        )
    )
    assert "Client->>Dispatcher: submit_job etl" in lines
    assert "RM->>TE_te_1: request_slot te-1/0" in lines
    assert "JM_00112233->>TE_te_1: submit_task map[3] #35;1" in lines
    assert "TE_te_1->>JM_00112233: update_task_execution_state RUNNING" in lines


def test_a_note_gives_the_cluster_time_whenever_it_moves_on() -> None:
    lines = body(
        mermaid(
            [
                rec(0.0, TE1, RM, "send_slot_report"),
                rec(0.0, TE2, RM, "send_slot_report"),
                rec(3.05, JM, TE1, "free_slot", kind="tell"),
            ]
        )
    )
    notes = [line for line in lines if line.startswith("Note over")]
    assert notes == ["Note over RM,TE_te_2: 0.0 s", "Note over RM,TE_te_2: 3.05 s"]


def test_participants_run_from_the_client_to_the_task_executors_with_readable_names() -> None:
    records = [
        rec(0.0, "taskexecutor-te-10", RM, "register_task_executor"),
        rec(0.0, TE2, RM, "register_task_executor"),
        rec(0.1, "client", "dispatcher", "submit_job", job=JOB, job_name="wordcount"),
        rec(0.2, JM, RM, "register_job_master"),
    ]
    declared = [line.strip() for line in mermaid(records).splitlines()[1:6]]
    assert declared == [
        "actor Client as Client",
        "participant Dispatcher as Dispatcher",
        "participant RM as ResourceManager",
        "participant JM_00112233 as JobMaster wordcount",
        "participant TE_te_2 as TaskExecutor te-2",
    ]
    assert "participant TE_te_10 as TaskExecutor te-10" in mermaid(records)


# --- folding, window, selection, bound -----------------------------------------------------


def heartbeat_rounds(first: int, last: int) -> list[TraceRecord]:
    records = []
    for second in range(first, last + 1, 10):
        records.append(rec(float(second), RM, TE1, "heartbeat_from_resource_manager"))
        records.append(rec(float(second), TE1, RM, "heartbeat_from_task_manager", kind="tell"))
    return records


def test_repeated_heartbeat_rounds_fold_into_one_note_with_count_and_span() -> None:
    records = [
        rec(0.0, TE1, RM, "register_task_executor"),
        *heartbeat_rounds(10, 60),
        rec(65.0, TE1, RM, "disconnect_task_manager", kind="tell"),
    ]
    lines = body(mermaid(records))
    assert "Note over RM,TE_te_1: heartbeats x 12, 10.0 s - 60.0 s" in lines
    assert not any("heartbeat_from" in line for line in lines)
    assert lines[-1] == "TE_te_1-)RM: disconnect_task_manager"


def test_a_heartbeat_run_with_drops_is_highlighted_and_counts_them() -> None:
    records = [
        *heartbeat_rounds(10, 20),
        rec(30.0, RM, TE1, "heartbeat_from_resource_manager", outcome="dropped"),
    ]
    lines = body(mermaid(records))
    note = "Note over RM,TE_te_1: heartbeats x 5, 10.0 s - 30.0 s, 1 dropped or failed"
    assert lines == ["rect rgb(255, 228, 225)", note, "end"]


def test_the_window_keeps_the_messages_from_its_start_to_its_end() -> None:
    records = [rec(float(t), TE1, RM, f"m{t}", kind="tell") for t in range(10)]
    lines = body(mermaid(records, window=Window(3.0, 5.0)))
    assert [line.split(": ")[1] for line in lines if "-)" in line] == ["m3", "m4", "m5"]


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(WindowError, match="starts at 5 s, after its end at 2 s"):
        Window(5.0, 2.0)
    with pytest.raises(WindowError, match="from 0 on"):
        Window(-1.0, None)


def test_only_keeps_the_messages_whose_both_ends_are_selected() -> None:
    records = [
        rec(0.0, TE1, RM, "register_task_executor"),
        rec(0.0, TE2, RM, "register_task_executor"),
        rec(0.1, JM, TE1, "submit_task"),
    ]
    only = select_components(["rm", "te-1"], endpoints_of(records), job_names(records))
    assert only == {RM, TE1}
    text = mermaid(records, only=only)
    assert "TE_te_1->>RM: register_task_executor" in text
    assert "TE_te_2" not in text and "JM_" not in text


def test_only_names_components_by_id_role_label_or_job() -> None:
    records = [
        rec(0.0, "client", "dispatcher", "submit_job", job=JOB, job_name="etl"),
        rec(0.1, JM, TE1, "submit_task"),
        rec(0.1, JM, TE2, "submit_task"),
    ]
    endpoints, names = endpoints_of(records), job_names(records)
    assert select_components(["etl"], endpoints, names) == {JM}
    assert select_components(["JobMaster etl"], endpoints, names) == {JM}
    assert select_components(["0011223344"], endpoints, names) == {JM}
    assert select_components(["taskexecutors"], endpoints, names) == {TE1, TE2}
    assert select_components([TE2, "Client"], endpoints, names) == {TE2, "client"}
    with pytest.raises(SelectionError, match="no component of the trace is called 'nimbus'"):
        select_components(["te-1", "nimbus"], endpoints, names)


def test_the_output_is_bounded_with_a_note_of_how_many_were_left_out() -> None:
    records = [rec(float(t), TE1, RM, f"m{t}", kind="tell") for t in range(50)]
    lines = body(mermaid(records, max_messages=20))
    assert sum("-)" in line for line in lines) == 20
    assert lines[-1] == (
        "Note over RM,TE_te_1: 30 more message(s) left out (at most 20 drawn: narrow the "
        "time window or the components)"
    )


def test_a_folded_heartbeat_run_counts_once_towards_the_bound() -> None:
    records = [*heartbeat_rounds(10, 500), rec(600.0, TE1, RM, "last", kind="tell")]
    sequence = build_sequence(records, max_messages=2)
    assert sequence.left_out == 0 and len(sequence.items) == 2


# --- escaping -------------------------------------------------------------------------------


def test_text_mermaid_would_read_as_syntax_is_escaped() -> None:
    assert escape("a;b") == "a#59;b"
    assert escape("#59;") == "#35;59#59;"
    assert (
        escape("<b>x</b> & %%{init}%%")
        == "#lt;b#gt;x#lt;/b#gt; #amp; #37;#37;#123;init#125;#37;#37;"
    )
    assert escape('say "hi"\nend') == "say #quot;hi#quot; end"
    assert len(escape("x" * 500)) == 120


def test_a_hostile_outcome_stays_on_its_line_and_inside_its_message() -> None:
    outcome = "error: Bad;\nsequenceDiagram\n%%{init: {}}%%<script>"
    text = mermaid([rec(1.0, TE1, RM, "m", outcome=outcome)])
    reply = next(line for line in text.splitlines() if "--x" in line)
    assert reply.strip() == (
        "RM--xTE_te_1: error: Bad#59; sequenceDiagram #37;#37;#123;init: #123;#125;#125;#37;#37;"
        "#lt;script#gt;"
    )
    assert text.count("sequenceDiagram") == 2  # the header, and the escaped text in the reply


# --- trace records -------------------------------------------------------------------------


def test_a_line_that_is_not_a_trace_record_is_refused_with_its_number() -> None:
    good = json.dumps(
        {"time": 0, "sender": None, "receiver": RM, "method": "m", "kind": "tell", "outcome": "ok"}
    )
    assert parse_lines([good, "", good])[0].sender is None
    for bad, reason in [
        ("[1]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
        (good.replace('"tell"', '"shout"'), "'kind' must be ask or tell"),
        (good.replace('"time": 0', '"time": -1'), "'time' must not be negative"),
        (good.replace('"method": "m"', '"method": 7'), "'method' must be a non-empty string"),
        (good.replace('"time": 0', '"time": 0, "subtask": "x"'), "'subtask' must be a number"),
    ]:
        with pytest.raises(TraceRecordError) as caught:
            parse_lines([good, bad])
        assert caught.value.line == 2
        assert str(caught.value) == f"line 2 is not a trace record: {reason}"


# --- the slot timeline ---------------------------------------------------------------------


def deployment(job: str = JOB) -> list[TraceRecord]:
    jm = f"jobmaster-{job}"
    return [
        rec(0.0, "client", "dispatcher", "submit_job", job=job, job_name="etl"),
        rec(0.0, TE1, RM, "register_task_executor", slots=2),
        rec(0.1, RM, TE1, "request_slot", slot="te-1/1", job=job, allocation="a1"),
        rec(
            0.2,
            jm,
            TE1,
            "submit_task",
            job=job,
            execution="e1",
            vertex="map",
            subtask=0,
            attempt=0,
            allocation="a1",
        ),
        rec(0.2, TE1, jm, "update_task_execution_state", execution="e1", state="RUNNING"),
    ]


def test_the_timeline_shows_each_task_in_its_slot_until_its_final_state() -> None:
    records = [
        *deployment(),
        rec(3.2, TE1, JM, "update_task_execution_state", execution="e1", state="FAILED"),
        rec(
            4.0,
            JM,
            TE1,
            "submit_task",
            job=JOB,
            execution="e2",
            vertex="map",
            subtask=0,
            attempt=1,
            allocation="a1",
        ),
        rec(9.0, TE1, JM, "update_task_execution_state", execution="e2", state="FINISHED"),
    ]
    timeline = build_timeline(records)
    assert timeline.lanes == ["te-1/0", "te-1/1"]  # the idle slot too
    assert [(r.slot, r.label, r.start, r.end, r.ended_as) for r in timeline.runs] == [
        ("te-1/1", "map[0]", 0.2, 3.2, "FAILED"),
        ("te-1/1", "map[0] #1", 4.0, 9.0, "FINISHED"),
    ]
    assert timeline.jobs == {JOB: "etl"}


def test_a_task_whose_task_executor_went_silent_ends_when_it_was_last_heard() -> None:
    records = [
        *deployment(),
        rec(1.0, TE1, RM, "heartbeat_from_task_manager", kind="tell"),
        rec(2.0, RM, TE1, "heartbeat_from_resource_manager", outcome="dropped"),
        rec(9.0, RM, TE2, "heartbeat_from_resource_manager"),
    ]
    (run,) = build_timeline(records).runs
    assert (run.end, run.ended_as) == (1.0, "lost")


def test_a_freed_slot_ends_its_task_and_a_running_one_reaches_the_end() -> None:
    freed = [*deployment(), rec(5.0, JM, TE1, "free_slot", kind="tell", allocation="a1")]
    assert [(r.end, r.ended_as) for r in build_timeline(freed).runs] == [(5.0, "freed")]
    running = [*deployment(), rec(7.0, TE1, RM, "heartbeat_from_task_manager", kind="tell")]
    timeline = build_timeline(running)
    assert [(r.end, r.ended_as) for r in timeline.runs] == [(None, "running")]
    assert timeline.end == 7.0


def test_tasks_sharing_a_slot_at_once_get_a_track_each() -> None:
    records = [
        *deployment(),
        rec(
            0.2,
            JM,
            TE1,
            "submit_task",
            job=JOB,
            execution="e2",
            vertex="sink",
            subtask=0,
            attempt=0,
            allocation="a1",
        ),
    ]
    timeline = build_timeline(records)
    assert [r.track for r in timeline.runs] == [0, 1]
    assert timeline.tracks == {"te-1/1": 2}


def test_the_timeline_keeps_the_window_and_the_selected_task_executors() -> None:
    records = [
        *deployment(),
        rec(0.0, TE2, RM, "register_task_executor", slots=1),
        rec(3.0, TE1, JM, "update_task_execution_state", execution="e1", state="FINISHED"),
    ]
    assert build_timeline(records, Window(4.0, 8.0)).runs == []
    assert build_timeline(records, Window(0.0, 0.1)).runs == []
    assert len(build_timeline(records, Window(1.0, 8.0)).runs) == 1
    assert build_timeline(records, only={TE2, RM}).lanes == ["te-2/0"]
    assert build_timeline(records, only={RM}).lanes == ["te-1/0", "te-1/1", "te-2/0"]


def test_the_timeline_svg_is_well_formed_and_escapes_names() -> None:
    records = [
        *deployment(),
        rec(0.0, "client", "dispatcher", "submit_job", job="ff" * 16, job_name="<a&b>"),
        rec(
            0.3,
            "jobmaster-" + "ff" * 16,
            TE1,
            "submit_task",
            job="ff" * 16,
            execution="e9",
            vertex="x",
            subtask=0,
            attempt=0,
            allocation="a1",
        ),
    ]
    svg = render_svg(build_timeline(records), title="t < u")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = ["".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "t < u" in texts and "slot te-1/1" in texts and "<a&b> (ffffffff)" in texts


# --- the page ------------------------------------------------------------------------------


def test_the_page_carries_diagram_timeline_and_script_inline_and_loads_nothing() -> None:
    script = "window.mermaid = {}; var s = '</script><img src=x>';"
    page = render_page("run <1>", "sequenceDiagram\n    A->>B: x\n", "<svg></svg>", script)
    assert "<title>run &lt;1&gt;</title>" in page
    assert "A-&gt;&gt;B: x" in page and "<svg></svg>" in page
    assert "<\\/script><img src=x>" in page and page.count("</script>") == 2
    assert "src=" not in page.replace("src=x", "") and "href=" not in page
    assert "http://" not in page and "https://" not in page


# --- the trace's ids -----------------------------------------------------------------------


def test_trace_lines_carry_the_ids_a_slot_timeline_needs() -> None:
    trace = io.StringIO()
    result = run_scenario(load_scenario(ROOT / "scenarios" / "waves.yaml"), trace=trace)
    assert result.passed
    records = parse_lines(trace.getvalue().splitlines())
    submits = [r for r in records if r.method == "submit_task"]
    assert submits and all(
        {"job", "execution", "vertex", "subtask", "attempt", "allocation"} <= r.detail.keys()
        for r in submits
    )
    requests = [r for r in records if r.method == "request_slot"]
    assert all(r.detail["slot"].startswith("te-") for r in requests)
    updates = [r for r in records if r.method == "update_task_execution_state"]
    assert {r.detail["state"] for r in updates} >= {"RUNNING", "FINISHED"}
    timeline = build_timeline(records)
    per_slot = {lane: [r for r in timeline.runs if r.slot == lane] for lane in timeline.lanes}
    assert all(len(runs) == 2 for runs in per_slot.values())  # two waves on every slot
    assert all(r.ended_as == "FINISHED" for r in timeline.runs)


# --- the docs ------------------------------------------------------------------------------


def test_the_quickstart_diagram_in_the_docs_is_what_the_command_draws() -> None:
    from cli.diagram_cmd import render

    trace = io.StringIO()
    run_scenario(load_scenario(ROOT / "scenarios" / "quickstart.yaml"), trace=trace)
    records = parse_lines(trace.getvalue().splitlines())
    doc = (ROOT / "docs" / "diagrams.md").read_text(encoding="utf-8")
    block = doc.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == render(records, "mermaid", title="quickstart.jsonl")
    svg = (ROOT / "docs" / "quickstart-slots.svg").read_text(encoding="utf-8")
    assert svg == render(records, "svg", title="quickstart.jsonl")


def test_without_a_mermaid_build_the_page_shows_the_source_and_how_to_get_one() -> None:
    from minicluster.diagram.page import NO_RENDERER

    page = render_page("run", "sequenceDiagram\n    A->>B: x\n", "<svg></svg>", None)
    assert "<script" not in page and 'class="mermaid"' not in page
    assert "A-&gt;&gt;B: x" in page and "<svg></svg>" in page
    assert "python -m minicluster.diagram.fetch" in NO_RENDERER


def test_a_mermaid_build_that_is_not_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minicluster.diagram.assets import ENVIRONMENT, MermaidBuildError, mermaid_js

    other = tmp_path / "mermaid.min.js"
    other.write_text("window.mermaid = {};", encoding="utf-8")
    monkeypatch.setenv(ENVIRONMENT, str(other))
    with pytest.raises(MermaidBuildError, match=r"not Mermaid 11\.17\.2 as pinned"):
        mermaid_js()
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "missing.js"))
    assert mermaid_js() is None
