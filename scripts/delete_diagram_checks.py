"""Delete each check of minicluster.diagram, the diagram command and the trace's ids once and
run the test that guards it: every test must fail (exit 1 when one passes). Each file is
restored afterwards. Run from the repository root, outside the test suite:
python scripts/delete_diagram_checks.py"""

import sys

from deletions import run_deletions

D = "minicluster/diagram/"
M = [
    (
        "escaping",
        D + "mermaid.py",
        'return "".join(_ENTITIES.get(c, c) for c in text)',
        "return text",
        "test_text_mermaid_would_read_as_syntax_is_escaped or hostile_outcome"
        " or mermaids_parser_accepts",
    ),
    (
        "escaping of ;",
        D + "mermaid.py",
        '    ";": "#59;",  # ends a statement\n',
        "",
        "hostile_outcome or mermaids_parser_accepts",
    ),
    (
        "one line per text",
        D + "mermaid.py",
        '    text = " ".join(text.split())\n',
        "",
        "test_text_mermaid_would_read_as_syntax_is_escaped or mermaids_parser_accepts",
    ),
    (
        "heartbeat folding",
        D + "sequence.py",
        "if record.is_heartbeat and isinstance(last, HeartbeatRun):",
        "if False:",
        "test_repeated_heartbeat_rounds_fold_into_one_note_with_count_and_span",
    ),
    (
        "folded drops are counted",
        D + "sequence.py",
        "        run.failed += not record.ok\n",
        "",
        "test_a_heartbeat_run_with_drops_is_highlighted_and_counts_them",
    ),
    (
        "the bound",
        D + "sequence.py",
        "        elif len(items) >= max_messages:\n            break\n",
        "",
        "test_the_output_is_bounded_with_a_note_of_how_many_were_left_out",
    ),
    (
        "the note of what was left out",
        D + "mermaid.py",
        "    if sequence.left_out:",
        "    if False:",
        "test_the_output_is_bounded_with_a_note_of_how_many_were_left_out",
    ),
    (
        "the window",
        D + "sequence.py",
        "        if window.contains(r.time)\n",
        "        if True\n",
        "test_the_window_keeps_the_messages_from_its_start_to_its_end",
    ),
    (
        "a window ending before it starts",
        D + "sequence.py",
        "        if self.start is not None and self.end is not None and self.start > self.end:",
        "        if False:",
        "test_a_window_that_ends_before_it_starts_is_refused or bad_window",
    ),
    (
        "--only",
        D + "sequence.py",
        "        and (only is None or ((r.sender or UNKNOWN_SENDER) in only"
        " and r.receiver in only))",
        "",
        "test_only_keeps_the_messages_whose_both_ends_are_selected",
    ),
    (
        "an unknown --only name",
        D + "participants.py",
        "        if not found:",
        "        if False:",
        "test_only_names_components_by_id_role_label_or_job or bad_window",
    ),
    (
        "fencing rejection highlighted",
        D + "mermaid.py",
        "    if record.fencing_rejected:",
        "    if False:",
        "test_a_fencing_rejection_is_a_crossed_arrow_highlighted_with_its_reason",
    ),
    (
        "dropped message crossed",
        D + "mermaid.py",
        "    if record.dropped:",
        "    if False:",
        "test_a_dropped_message_is_a_crossed_arrow_marked_dropped",
    ),
    (
        "failed ask's reply",
        D + "mermaid.py",
        '        f"    {receiver}--x{sender}: {outcome}",',
        '        f"    {receiver}-->>{sender}: ",',
        "test_a_failed_ask_has_a_crossed_reply_with_its_outcome_in_a_tinted_block",
    ),
    (
        "time notes",
        D + "mermaid.py",
        "        if record.time != last_time:",
        "        if False:",
        "test_a_note_gives_the_cluster_time_whenever_it_moves_on",
    ),
    (
        "record kind",
        D + "records.py",
        '    if kind not in ("ask", "tell"):',
        "    if False:",
        "test_a_line_that_is_not_a_trace_record_is_refused_with_its_number",
    ),
    (
        "record time not negative",
        D + "records.py",
        "    if time < 0:",
        "    if False:",
        "test_a_line_that_is_not_a_trace_record_is_refused_with_its_number",
    ),
    (
        "record detail types",
        D + "records.py",
        "        if isinstance(value, bool) or not isinstance(value, kind_of):",
        "        if False:",
        "test_a_line_that_is_not_a_trace_record_is_refused_with_its_number",
    ),
    (
        "a final state ends a task run",
        D + "timeline.py",
        "            if run_or_none is not None and state in FINAL_STATES:",
        "            if False:",
        "test_the_timeline_shows_each_task_in_its_slot_until_its_final_state",
    ),
    (
        "idle slots get a lane",
        D + "timeline.py",
        '                slots.update(f"{resource_id}/{i}" for i in range(min(count, MAX_LANES)))',
        "                pass",
        "test_the_timeline_shows_each_task_in_its_slot_until_its_final_state",
    ),
    (
        "a silent TaskExecutor's task is lost",
        D + "timeline.py",
        "        if resource_id in silent and",
        "        if False and",
        "test_a_task_whose_task_executor_went_silent_ends_when_it_was_last_heard",
    ),
    (
        "free_slot ends a task run",
        D + "timeline.py",
        '    elif record.method == "free_slot" and isinstance(allocation, str):',
        "    elif False and isinstance(allocation, str):",
        "test_a_freed_slot_ends_its_task_and_a_running_one_reaches_the_end",
    ),
    (
        "slot sharing tracks",
        D + "timeline.py",
        "            if busy_until <= run.start:",
        "            if True:",
        "test_tasks_sharing_a_slot_at_once_get_a_track_each",
    ),
    (
        "timeline window",
        D + "timeline.py",
        "        and r.start <= end\n",
        "",
        "test_the_timeline_keeps_the_window_and_the_selected_task_executors",
    ),
    (
        "SVG text escaped",
        D + "timeline.py",
        "{xml_escape(text)}</text>",
        "{text}</text>",
        "test_the_timeline_svg_is_well_formed_and_escapes_names",
    ),
    (
        "script end escaped in the page",
        D + "page.py",
        '    return _SCRIPT_END.sub(r"<\\\\/\\1", source)',
        "    return source",
        "test_the_page_carries_diagram_timeline_and_script_inline_and_loads_nothing",
    ),
    (
        "submit_task carries its ids",
        "minicluster/cluster/trace_detail.py",
        '    "submit_task": _submit_task,\n',
        "",
        "test_trace_lines_carry_the_ids_a_slot_timeline_needs",
    ),
    (
        "trace lines get the ids",
        "minicluster/scenario/runner.py",
        "            line.setdefault(key, value)",
        "            pass",
        "test_trace_lines_carry_the_ids_a_slot_timeline_needs",
    ),
    (
        "a bad trace line exits 2 naming it",
        "cli/diagram_cmd.py",
        '        fail(f"{path}: line {number} is not a trace record: {exc.reason}", EXIT_USAGE)',
        "        raise",
        "test_a_line_that_is_not_a_trace_record_exits_2_naming_the_line",
    ),
    (
        "a missing trace exits 2",
        "cli/diagram_cmd.py",
        '        fail(f"cannot read the trace file {path}: {exc.strerror or exc}", EXIT_USAGE)',
        "        raise",
        "test_a_missing_trace_file_exits_2_naming_it",
    ),
    (
        "--diagram suffix checked before the run",
        "cli/main.py",
        "        if diagram_file and diagram_format is None:",
        "        if False:",
        "test_run_scenario_refuses_a_diagram_file_of_unknown_kind_before_running",
    ),
]
sys.exit(
    run_deletions(
        M, ["tests/test_diagram.py", "tests/test_diagram_cli.py", "tests/test_diagram_browser.py"]
    )
)
