"""Scenario and job files: durations, loading, validation errors (file, path, line) and fuzzing."""

from __future__ import annotations

import math
import random
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minicluster.cluster.model import JobEdge, JobStatus, JobVertex, RestartStrategy
from minicluster.scenario import (
    AddTaskExecutorStep,
    CancelStep,
    ClusterSpec,
    Count,
    ExpectStep,
    FailoverStep,
    FailTaskStep,
    FencingRejectionsCondition,
    FreeSlotsCondition,
    JobRestartsCondition,
    JobSpec,
    JobStatusCondition,
    KillTaskExecutorStep,
    PartitionStep,
    RegisteredTaskExecutorsCondition,
    Scenario,
    ScenarioError,
    SleepStep,
    Source,
    StopTaskExecutorStep,
    SubmitStep,
    TaskExecutorSpec,
    WaitStep,
    format_duration,
    load_job_file,
    load_scenario,
    parse_duration,
    parse_job,
    parse_scenario,
    to_job_graph,
)

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))

# The documented example of a scenario file, verbatim.
DOCUMENTED_EXAMPLE = """\
name: failover-demo                # required
description: one or two sentences  # optional
seed: 7                            # optional; same seed, same virtual-clock run, same trace
cluster:
  task_executors: 3                # or a list: [{id: te-a, slots: 4}, ...]; default ids te-1..te-N
  slots_per_executor: 2
  rpc: shared                      # default; shared: one in-process service
  clock: virtual                   # default; virtual (trio's mock clock) or real
  heartbeat: {interval: 1s, timeout: 5s}
  rpc_timeout: 10s
steps:
  - submit: {job: etl, parallelism: 4, task_duration: 3s}     # or vertices: [...]
  - wait: {job: etl, status: RUNNING, timeout: 30s}
  - kill_task_executor: te-1          # crash: it stops answering, says no goodbye
  - stop_task_executor: te-2          # graceful: it deregisters
  - add_task_executor: {id: te-9, slots: 4}
  - fail_task: {job: etl, subtask: 0}
  - failover: resource_manager        # or dispatcher, or {job_master: etl}
  - partition: {between: [te-3, resource_manager], duration: 10s}
  - sleep: 2s
  - cancel: etl
  - expect: {job: etl, status: CANCELED}
  - expect: {free_slots: 6}               # te-3 and te-9
  - expect: {registered_task_executors: 1}  # te-3 cannot reach the new leader yet
  - expect: {fencing_rejections: {max: 1}}  # a range: {min: N}, {max: M} or both
"""


def scenario(steps: str, cluster: str = "") -> str:
    """A scenario text: ``name: t`` on line 1, then the cluster lines, then ``steps:``."""
    text = "name: t\n"
    if cluster:
        text += "cluster:\n" + textwrap.indent(textwrap.dedent(cluster).strip("\n"), "  ") + "\n"
    return text + "steps:\n" + textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ") + "\n"


def error_of(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    return info.value


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("3s", 3.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (" 3 s ", 3.0),
        ("10 seconds", 10.0),
        ("3", 3.0),
        (3, 3.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts_units_and_plain_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-3s", "a duration cannot be negative, got '-3s'"),
        (-1, "a duration cannot be negative, got -1"),
        ("", "expected a duration such as 500ms, 3s, 2m or 1h, got an empty string"),
        ("3 parsecs", "unknown duration unit 'parsecs' in '3 parsecs'; use ms, s, m or h"),
        (True, "expected a duration such as 500ms, 3s, 2m or 1h, got true"),
        (None, "expected a duration such as 500ms, 3s, 2m or 1h, got nothing (null)"),
        ("soon", "expected a duration such as 500ms, 3s, 2m or 1h, got 'soon'"),
        ([1], "expected a duration such as 500ms, 3s, 2m or 1h, got a list"),
        (math.inf, "a duration must be finite, got inf"),
        (math.nan, "expected a duration such as 500ms, 3s, 2m or 1h, got nan"),
    ],
)
def test_parse_duration_rejects_with_one_sentence(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_format_duration_writes_what_a_file_would() -> None:
    assert [format_duration(s) for s in (0.5, 3, 1.5, 120, 3600, 0)] == [
        "500ms",
        "3s",
        "1.5s",
        "2m",
        "1h",
        "0s",
    ]


# --------------------------------------------------------------------------------------------
# Valid files


def test_the_documented_example_loads_into_typed_steps() -> None:
    s = parse_scenario(DOCUMENTED_EXAMPLE, "demo.yaml")
    assert (s.name, s.description, s.seed, s.file) == (
        "failover-demo",
        "one or two sentences",
        7,
        "demo.yaml",
    )
    assert s.cluster == ClusterSpec(
        task_executors=[TaskExecutorSpec(f"te-{i}", 2) for i in (1, 2, 3)],
        slots_per_executor=2,
        rpc="shared",
        clock="virtual",
        heartbeat_interval=1.0,
        heartbeat_timeout=5.0,
        rpc_timeout=10.0,
    )
    assert [type(step) for step in s.steps] == [
        SubmitStep,
        WaitStep,
        KillTaskExecutorStep,
        StopTaskExecutorStep,
        AddTaskExecutorStep,
        FailTaskStep,
        FailoverStep,
        PartitionStep,
        SleepStep,
        CancelStep,
        ExpectStep,
        ExpectStep,
        ExpectStep,
        ExpectStep,
    ]
    assert [step.index for step in s.steps] == list(range(14))
    assert [step.line for step in s.steps] == list(range(12, 26))
    assert [step.kind for step in s.steps][:3] == ["submit", "wait", "kill_task_executor"]
    assert s.warnings == []


def test_minimal_scenario_gets_the_documented_defaults() -> None:
    s = parse_scenario("name: m\nsteps:\n  - sleep: 1s\n")
    assert s.description == ""
    assert s.seed is None
    assert s.cluster == ClusterSpec()
    assert s.cluster.task_executors == [TaskExecutorSpec("te-1", 2), TaskExecutorSpec("te-2", 2)]
    assert (s.cluster.rpc, s.cluster.clock) == ("shared", "virtual")
    assert (s.cluster.heartbeat_interval, s.cluster.heartbeat_timeout) == (10.0, 50.0)
    assert s.cluster.rpc_timeout == 10.0


def test_task_executor_count_expands_to_ids_with_slots_per_executor() -> None:
    s = parse_scenario(scenario("- sleep: 1s", "task_executors: 3\nslots_per_executor: 4"))
    assert s.cluster.task_executors == [TaskExecutorSpec(f"te-{i}", 4) for i in (1, 2, 3)]
    assert s.cluster.total_slots == 12


def test_task_executor_list_gives_explicit_ids_and_slots() -> None:
    cluster = "task_executors: [{id: big, slots: 8}, {id: small}, tiny]\nslots_per_executor: 1"
    s = parse_scenario(scenario("- kill_task_executor: big", cluster))
    assert s.cluster.task_executors == [
        TaskExecutorSpec("big", 8),
        TaskExecutorSpec("small", 1),
        TaskExecutorSpec("tiny", 1),
    ]


def test_cluster_modes_and_timeouts() -> None:
    cluster = "rpc: dedicated\nclock: real\nheartbeat: {interval: 500ms}\nrpc_timeout: 2s"
    s = parse_scenario(scenario("- sleep: 1s", cluster))
    assert (s.cluster.rpc, s.cluster.clock) == ("dedicated", "real")
    assert (s.cluster.heartbeat_interval, s.cluster.heartbeat_timeout) == (0.5, 50.0)
    assert s.cluster.rpc_timeout == 2.0


def test_simple_submit_is_one_vertex_named_after_the_job() -> None:
    (step,) = parse_scenario(
        scenario("- submit: {job: etl, parallelism: 4, task_duration: 3s}")
    ).steps
    assert isinstance(step, SubmitStep)
    assert step.job.name == "etl"
    assert step.job.vertices == [JobVertex("etl", 4, 3.0)]
    assert step.job.edges == []
    assert (step.job.parallelism, step.job.task_count) == (4, 4)
    assert step.describe() == "submit job 'etl' (4 task(s), parallelism 4)"


def test_submit_without_parallelism_runs_one_task_of_one_second() -> None:
    (step,) = parse_scenario(scenario("- submit: {job: tiny}")).steps
    assert isinstance(step, SubmitStep)
    assert step.job.vertices == [JobVertex("tiny", 1, 1.0)]


def test_submit_with_vertices_edges_and_restart() -> None:
    text = scenario(
        """
        - submit:
            job: pipe
            vertices:
              - {name: src, parallelism: 2, task_duration: 500ms}
              - {name: sink, parallelism: 3}
            edges:
              - {from: src, to: sink, pattern: pointwise}
            restart: {attempts: 5, delay: 2s}
        """
    )
    (step,) = parse_scenario(text).steps
    assert isinstance(step, SubmitStep)
    assert step.job.vertices == [JobVertex("src", 2, 0.5), JobVertex("sink", 3, 1.0)]
    assert step.job.edges == [JobEdge("src", "sink", "pointwise")]
    assert step.job.restart == RestartStrategy(attempts=5, delay=2.0)
    assert (step.job.parallelism, step.job.task_count) == (3, 5)


def test_edge_pattern_defaults_to_all_to_all() -> None:
    text = scenario(
        "- submit: {job: j, vertices: [{name: a}, {name: b}], edges: [{from: a, to: b}]}"
    )
    (step,) = parse_scenario(text).steps
    assert isinstance(step, SubmitStep)
    assert step.job.edges == [JobEdge("a", "b", "all-to-all")]


def test_restart_defaults_to_three_attempts_one_second_apart() -> None:
    (step,) = parse_scenario(scenario("- submit: {job: j, parallelism: 1}")).steps
    assert isinstance(step, SubmitStep)
    assert step.job.restart == RestartStrategy(attempts=3, delay=1.0)


def test_failure_injection_on_a_simple_job_and_on_a_vertex() -> None:
    text = scenario(
        """
        - submit: {job: a, parallelism: 4, fail: {subtasks: [3, 1, 1], after: 2s, attempts: 2}}
        - submit:
            job: b
            vertices: [{name: v, parallelism: 2, fail: {subtasks: 0}}]
        """
    )
    a, b = parse_scenario(text).steps
    assert isinstance(a, SubmitStep) and isinstance(b, SubmitStep)
    va, vb = a.job.vertices[0], b.job.vertices[0]
    assert (va.fail_subtasks, va.fail_after, va.fail_attempts) == ([1, 3], 2.0, 2)
    assert (vb.fail_subtasks, vb.fail_after, vb.fail_attempts) == ([0], 0.0, 1)


def test_to_job_graph_draws_the_id_from_the_seeded_rng() -> None:
    (step,) = parse_scenario(scenario("- submit: {job: etl, parallelism: 2}")).steps
    assert isinstance(step, SubmitStep)
    g1 = to_job_graph(step, random.Random(42))
    g2 = to_job_graph(step, random.Random(42))
    assert g1 == g2
    assert g1.job_id != to_job_graph(step, random.Random(43)).job_id
    assert (g1.name, g1.max_parallelism, g1.restart) == ("etl", 2, RestartStrategy())
    g1.vertices[0].parallelism = 99  # a copy: the step is not changed
    assert step.job.vertices[0].parallelism == 2


def test_to_job_graph_turns_an_invalid_graph_into_a_scenario_error_at_the_step() -> None:
    spec = JobSpec(
        name="bad",
        vertices=[JobVertex("v", 0)],
        source=Source("x.yaml", "steps[2].submit", 9),
    )
    with pytest.raises(ScenarioError) as info:
        to_job_graph(spec, random.Random(0))
    assert str(info.value) == (
        "x.yaml: steps[2].submit (line 9): the parallelism of vertex 'v' must be from 1 to "
        "32,768, not 0"
    )


def test_job_spec_single_builds_the_cli_job() -> None:
    spec = JobSpec.single("cli", parallelism=3, task_duration=2.0)
    assert spec.vertices == [JobVertex("cli", 3, 2.0)]
    assert to_job_graph(spec, random.Random(1)).task_count == 3


def test_wait_timeout_defaults_to_sixty_seconds() -> None:
    text = scenario("- wait: {free_slots: 4}\n- wait: {free_slots: 4, timeout: 2m}")
    first, second = parse_scenario(text).steps
    assert isinstance(first, WaitStep) and isinstance(second, WaitStep)
    assert (first.timeout, second.timeout) == (60.0, 120.0)


def test_conditions_of_every_kind_with_exact_numbers_and_ranges() -> None:
    text = scenario(
        """
        - submit: {job: j}
        - expect: {job: j, status: FINISHED}
        - expect: {job: j, restarts: {min: 1, max: 3}}
        - expect: {free_slots: 4}
        - expect: {registered_task_executors: {max: 2}}
        - wait: {fencing_rejections: {min: 1}}
        """
    )
    conditions = [s.condition for s in parse_scenario(text).steps[1:]]  # type: ignore[union-attr]
    assert conditions == [
        JobStatusCondition("j", (JobStatus.FINISHED,)),
        JobRestartsCondition("j", Count(1, 3)),
        FreeSlotsCondition(Count(4, 4)),
        RegisteredTaskExecutorsCondition(Count(None, 2)),
        FencingRejectionsCondition(Count(1, None)),
    ]
    assert [c.describe() for c in conditions] == [
        "job 'j' is FINISHED",
        "restarts of job 'j' in 1..3",
        "free slots == 4",
        "registered TaskExecutors <= 2",
        "fencing rejections >= 1",
    ]


def test_status_may_be_lowercase_or_a_list_of_statuses() -> None:
    text = scenario("- submit: {job: j}\n- expect: {job: j, status: [created, RUNNING]}")
    step = parse_scenario(text).steps[1]
    assert isinstance(step, ExpectStep)
    assert step.condition == JobStatusCondition("j", (JobStatus.CREATED, JobStatus.RUNNING))
    assert step.describe() == "expect job 'j' is CREATED or RUNNING"


class FakeView:
    def job_status(self, job: str) -> JobStatus | None:
        return JobStatus.RUNNING if job == "j" else None

    def job_restarts(self, job: str) -> int:
        return 2

    def free_slots(self) -> int:
        return 0

    def registered_task_executors(self) -> int:
        return 3

    def fencing_rejections(self) -> int:
        return 1


def test_conditions_check_a_cluster_view_and_say_what_they_saw() -> None:
    view = FakeView()
    running = (JobStatus.CREATED, JobStatus.RUNNING)
    assert JobStatusCondition("j", running).check(view) == (True, "job 'j' is RUNNING")
    assert JobStatusCondition("j", (JobStatus.FINISHED,)).check(view) == (
        False,
        "job 'j' is RUNNING",
    )
    assert JobStatusCondition("k", running).check(view) == (
        False,
        "job 'k' is not known to the cluster",
    )
    assert JobRestartsCondition("j", Count(0, 0)).check(view) == (
        False,
        "job 'j' restarted 2 time(s)",
    )
    assert FreeSlotsCondition(Count(0, 0)).check(view) == (True, "0 free slot(s)")
    assert RegisteredTaskExecutorsCondition(Count(None, 2)).check(view)[0] is False
    assert FencingRejectionsCondition(Count(1, None)).check(view)[0] is True


def test_failover_targets() -> None:
    text = scenario(
        """
        - submit: {job: etl}
        - failover: resource_manager
        - failover: dispatcher
        - failover: {job_master: etl}
        - failover: job_master:etl
        """
    )
    steps = parse_scenario(text).steps[1:]
    assert [s.target for s in steps] == [  # type: ignore[union-attr]
        "resource_manager",
        "dispatcher",
        "job_master:etl",
        "job_master:etl",
    ]
    assert isinstance(steps[2], FailoverStep)
    assert steps[2].job == "etl"
    assert steps[2].describe() == "fail over the JobMaster of 'etl'"


def test_partition_members_are_normalised_to_strings() -> None:
    text = scenario(
        """
        - submit: {job: etl}
        - partition: {between: [te-1, {job_master: etl}], duration: 3s}
        - partition: {between: [dispatcher, resource_manager], duration: 500ms}
        """
    )
    first, second = parse_scenario(text).steps[1:]
    assert isinstance(first, PartitionStep) and isinstance(second, PartitionStep)
    assert (first.between, first.duration) == (("te-1", "job_master:etl"), 3.0)
    assert second.between == ("dispatcher", "resource_manager")
    assert first.describe() == "partition TaskExecutor te-1 from JobMaster of 'etl' for 3s"


def test_fail_task_resolves_the_vertex_of_a_one_vertex_job() -> None:
    text = scenario(
        """
        - submit: {job: etl, parallelism: 2}
        - submit: {job: two, vertices: [{name: a}, {name: b, parallelism: 3}]}
        - fail_task: {job: etl, subtask: 1}
        - fail_task: {job: two, vertex: b, subtask: 2}
        """
    )
    first, second = parse_scenario(text).steps[2:]
    assert first == FailTaskStep(index=2, line=5, job="etl", vertex="etl", subtask=1)
    assert second == FailTaskStep(index=3, line=6, job="two", vertex="b", subtask=2)


def test_add_task_executor_defaults_id_and_slots() -> None:
    text = scenario(
        """
        - kill_task_executor: te-2
        - add_task_executor: {}
        - add_task_executor: {slots: 5}
        - add_task_executor: extra
        """,
        "slots_per_executor: 3",
    )
    added = [s.task_executor for s in parse_scenario(text).steps[1:]]  # type: ignore[union-attr]
    assert added == [
        TaskExecutorSpec("te-3", 3),
        TaskExecutorSpec("te-4", 5),
        TaskExecutorSpec("extra", 3),
    ]


def test_killed_task_executor_may_be_added_again() -> None:
    text = scenario(
        "- kill_task_executor: te-1\n- add_task_executor: te-1\n- stop_task_executor: {id: te-1}"
    )
    assert [s.kind for s in parse_scenario(text).steps] == [
        "kill_task_executor",
        "add_task_executor",
        "stop_task_executor",
    ]


def test_cancel_takes_a_name_or_a_map() -> None:
    text = scenario("- submit: {job: a}\n- cancel: a\n- cancel: {job: a}")
    assert [s.job for s in parse_scenario(text).steps[1:]] == ["a", "a"]  # type: ignore[union-attr]


UNKNOWN_KEYS = {
    "top_level": (
        "name: t\nowner: team-a\nsteps:\n  - sleep: 1s\n",
        "owner (line 2): unknown key 'owner'; the keys here are name, description, seed, "
        "checks, cluster, steps, or any key starting with 'x-' for your own use",
    ),
    "cluster": (
        "name: t\ncluster:\n  task_executors: 1\n  colour: blue\nsteps:\n  - sleep: 1s\n",
        "cluster.colour (line 4): unknown key 'colour'; the keys here are task_executors, "
        "slots_per_executor, rpc, clock, failover_strategy, heartbeat, rpc_timeout, "
        "slot_request_timeout, registration_timeout, ha, or any key starting with 'x-' for "
        "your own use",
    ),
    "heartbeat": (
        "name: t\ncluster:\n  heartbeat: {intervall: 1s}\nsteps:\n  - sleep: 1s\n",
        "cluster.heartbeat.intervall (line 3): unknown key 'intervall'; did you mean 'interval'?",
    ),
    "submit": (
        "name: t\nsteps:\n  - submit: {job: a, paralelism: 4}\n",
        "steps[0].submit.paralelism (line 3): unknown key 'paralelism'; "
        "did you mean 'parallelism'?",
    ),
    "vertex": (
        "name: t\nsteps:\n  - submit: {job: a, vertices: [{name: v, parralelism: 4}]}\n",
        "steps[0].submit.vertices[0].parralelism (line 3): unknown key 'parralelism'; "
        "did you mean 'parallelism'?",
    ),
    "wait": (
        "name: t\nsteps:\n  - submit: {job: a}\n  - wait: {job: a, status: FINISHED, timout: 5s}\n",
        "steps[1].wait.timout (line 4): unknown key 'timout'; did you mean 'timeout'?",
    ),
}


@pytest.mark.parametrize("case", list(UNKNOWN_KEYS))
def test_an_unknown_key_is_an_error_with_a_did_you_mean_hint(case: str) -> None:
    text, message = UNKNOWN_KEYS[case]
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    assert str(info.value) == f"x.yaml: {message}"


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = scenario(
        """
        - submit: &job {job: a, parallelism: 2, task_duration: 1s}
        - submit: {<<: *job, job: b}
        """
    )
    a, b = parse_scenario(text).steps
    assert isinstance(a, SubmitStep) and isinstance(b, SubmitStep)
    assert (b.job.name, b.job.parallelism, b.job.vertices[0].task_duration) == ("b", 2, 1.0)


def test_an_alias_of_a_merged_map_can_be_used_twice() -> None:
    text = scenario(
        """
        - submit: {job: a, parallelism: 2}
        - wait: &done {<<: {job: a, status: RUNNING}, status: FINISHED}
        - expect: *done
        """
    )
    wait, expect = parse_scenario(text).steps[1:]
    assert isinstance(wait, WaitStep) and isinstance(expect, ExpectStep)
    assert wait.condition == expect.condition == JobStatusCondition("a", (JobStatus.FINISHED,))


def test_scenario_jobs_lists_submitted_jobs_in_order() -> None:
    s = parse_scenario(scenario("- submit: {job: b}\n- submit: {job: a}"))
    assert list(s.jobs) == ["b", "a"]


def test_step_describe_is_readable() -> None:
    s = parse_scenario(DOCUMENTED_EXAMPLE)
    assert [step.describe() for step in s.steps[1:5]] == [
        "wait until job 'etl' is RUNNING (at most 30s)",
        "kill TaskExecutor te-1",
        "stop TaskExecutor te-2",
        "add TaskExecutor te-9 with 4 slot(s)",
    ]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_bundled_scenario_loads_without_warnings(path: Path) -> None:
    s = load_scenario(path)
    assert isinstance(s, Scenario)
    assert s.warnings == []
    assert s.file == str(path)
    rng = random.Random(s.seed)
    for step in s.steps:
        if isinstance(step, SubmitStep):
            to_job_graph(step, rng).validate()


def test_the_bundled_scenarios_are_all_there() -> None:
    assert {p.stem for p in SCENARIOS} >= {
        "quickstart",
        "slot-allocation",
        "taskexecutor-crash",
        "resourcemanager-failover",
        "jobmaster-failover",
        "network-partition",
        "not-enough-slots",
        "scale",
    }


# --------------------------------------------------------------------------------------------
# Job files


def test_job_file_uses_name_key(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: nightly\nparallelism: 3\ntask_duration: 2s\nrestart: {attempts: 0}\n")
    spec = load_job_file(path)
    assert spec.name == "nightly"
    assert spec.vertices == [JobVertex("nightly", 3, 2.0)]
    assert spec.restart == RestartStrategy(attempts=0, delay=1.0)
    assert to_job_graph(spec, random.Random(0)).name == "nightly"


def test_job_file_errors_name_file_path_and_line() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_job("name: j\nvertices:\n  - {name: a, parallelism: 0}\n", "job.yaml")
    assert str(info.value) == (
        "job.yaml: vertices[0].parallelism (line 3): expected a positive integer, got 0"
    )


def test_job_file_needs_a_name() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_job("job: j\nparallelism: 2\n", "job.yaml")
    assert str(info.value) == "job.yaml (line 1): missing required key 'name' (the job's name)"


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(missing)
    assert str(info.value) == f"{missing}: cannot read the file: No such file or directory"


def test_file_that_is_not_utf8_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: the file is not UTF-8 text"


# --------------------------------------------------------------------------------------------
# Errors: each kind, with the exact sentence (file, path, line)


def test_lines_are_counted_as_editors_count_them() -> None:
    # YAML also breaks lines at U+2028 (and NEL, U+2029); editors and grep do not.
    text = "name: 'one\u2028two'\r\nsteps:\r\n  - sleep: soon\r\n"
    error = error_of(text)
    assert (error.path, error.line) == ("steps[0].sleep", 3)


def test_scenario_error_str_formats_with_and_without_path_and_line() -> None:
    assert str(ScenarioError("f.yaml", "steps[3].submit", 12, "bad")) == (
        "f.yaml: steps[3].submit (line 12): bad"
    )
    assert str(ScenarioError("f.yaml", "", 3, "bad")) == "f.yaml (line 3): bad"
    assert str(ScenarioError("f.yaml", "seed", None, "bad")) == "f.yaml: seed: bad"
    assert str(ScenarioError("f.yaml", "", None, "bad")) == "f.yaml: bad"
    error = ScenarioError("f.yaml", "seed", 2, "bad")
    assert (error.file, error.path, error.line, error.message) == ("f.yaml", "seed", 2, "bad")


ERRORS = [
    (
        "yaml_syntax",
        "name: t\nsteps:\n  - submit: {job: a\n  - sleep: 1s\n",
        "",
        4,
        "invalid YAML: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping that starts on line 3)",
    ),
    (
        "yaml_tab",
        "name: t\nsteps:\n\t- sleep: 1s\n",
        "",
        3,
        "invalid YAML: found character '\\t' that cannot start any token "
        "(while scanning for the next token)",
    ),
    (
        "top_level_not_a_map",
        "- sleep: 1s\n",
        "",
        1,
        "the top level must be a map with name, cluster and steps, got a list",
    ),
    (
        "control_character",
        "name: t\nsteps: [{sleep: 1s}]\nseed: \x07\n",
        "",
        3,
        "invalid YAML: the character #x0007 is not allowed",
    ),
    (
        "empty_file",
        "# nothing\n",
        "",
        None,
        "the file is empty; expected a map with name, cluster and steps",
    ),
    (
        "missing_name",
        "steps:\n  - sleep: 1s\n",
        "",
        1,
        "missing required key 'name' (every scenario has a name)",
    ),
    (
        "name_not_text",
        "name: [a]\nsteps: [{sleep: 1s}]\n",
        "name",
        1,
        "expected a name (text), got a list",
    ),
    (
        "missing_steps",
        "name: t\n",
        "",
        1,
        "missing required key 'steps' (the list of what the scenario does)",
    ),
    ("empty_steps", "name: t\nsteps: []\n", "steps", 2, "a scenario needs at least one step"),
    (
        "seed_not_integer",
        "name: t\nseed: abc\nsteps: [{sleep: 1s}]\n",
        "seed",
        2,
        "expected an integer, got 'abc'",
    ),
    (
        "step_not_a_map",
        scenario("- sleep: 1s\n- submit"),
        "steps[1]",
        4,
        "expected a step: a map with one key naming its kind, such as submit:, got 'submit'",
    ),
    (
        "step_with_two_keys",
        scenario("- sleep: 1s\n  cancel: a"),
        "steps[0]",
        3,
        "a step has exactly one key naming its kind, got sleep, cancel",
    ),
    (
        "unknown_step_kind_close",
        scenario("- sleep: 1s\n- submt: {job: a}"),
        "steps[1]",
        4,
        "unknown step kind 'submt'; did you mean 'submit'?",
    ),
    (
        "unknown_step_kind_far",
        scenario("- teleport: te-1"),
        "steps[0]",
        3,
        "unknown step kind 'teleport'; the kinds are submit, wait, expect, kill_task_executor, "
        "stop_task_executor, add_task_executor, fail_task, failover, partition, sleep, cancel",
    ),
    (
        "parallelism_not_a_number",
        scenario(
            "- sleep: 1s\n- sleep: 2s\n- sleep: 3s\n- submit:\n    job: a\n    parallelism: four"
        ),
        "steps[3].submit.parallelism",
        8,
        "expected a positive integer, got 'four'",
    ),
    (
        "parallelism_zero",
        scenario("- submit: {job: a, parallelism: 0}"),
        "steps[0].submit.parallelism",
        3,
        "expected a positive integer, got 0",
    ),
    (
        "parallelism_boolean",
        scenario("- submit: {job: a, parallelism: yes}"),
        "steps[0].submit.parallelism",
        3,
        "expected a positive integer, got true",
    ),
    (
        "parallelism_float",
        scenario("- submit: {job: a, parallelism: 2.5}"),
        "steps[0].submit.parallelism",
        3,
        "expected a positive integer, got 2.5",
    ),
    (
        "bad_duration",
        scenario("- submit: {job: a, task_duration: soon}"),
        "steps[0].submit.task_duration",
        3,
        "expected a duration such as 500ms, 3s, 2m or 1h, got 'soon'",
    ),
    (
        "negative_duration",
        scenario("- sleep: -2s"),
        "steps[0].sleep",
        3,
        "a duration cannot be negative, got '-2s'",
    ),
    (
        "unknown_duration_unit",
        scenario("- sleep: 2 fortnights"),
        "steps[0].sleep",
        3,
        "unknown duration unit 'fortnights' in '2 fortnights'; use ms, s, m or h",
    ),
    (
        "zero_wait_timeout",
        scenario("- wait: {free_slots: 1, timeout: 0s}"),
        "steps[0].wait.timeout",
        3,
        "expected a duration of at least 1ms, got '0s'",
    ),
    (
        "bad_rpc_mode",
        scenario("- sleep: 1s", "rpc: share"),
        "cluster.rpc",
        3,
        "expected an rpc mode (shared, dedicated), got 'share'; did you mean 'shared'?",
    ),
    (
        "bad_clock",
        scenario("- sleep: 1s", "clock: 42"),
        "cluster.clock",
        3,
        "expected a clock (virtual, real), got 42",
    ),
    (
        "bad_status",
        scenario("- submit: {job: a}\n- expect: {job: a, status: CANCELLED}"),
        "steps[1].expect.status",
        4,
        "expected a job status (CREATED, RUNNING, FAILING, RESTARTING, FINISHED, FAILED, "
        "CANCELLING, CANCELED), got 'CANCELLED'; did you mean 'CANCELED'?",
    ),
    (
        "bad_edge_pattern",
        scenario(
            "- submit: {job: a, vertices: [{name: x}, {name: y}], "
            "edges: [{from: x, to: y, pattern: broadcast}]}"
        ),
        "steps[0].submit.edges[0].pattern",
        3,
        "expected an edge pattern (all-to-all, pointwise), got 'broadcast'",
    ),
    (
        "wait_for_unknown_job",
        scenario("- submit: {job: etl}\n- wait: {job: elt, status: RUNNING}"),
        "steps[1].wait.job",
        4,
        "no earlier submit step defines a job named 'elt'; did you mean 'etl'?",
    ),
    (
        "job_used_before_its_submit",
        scenario("- cancel: etl\n- submit: {job: etl}"),
        "steps[0].cancel",
        3,
        "no earlier submit step defines a job named 'etl'",
    ),
    (
        "fail_task_unknown_job",
        scenario("- fail_task: {job: x, subtask: 0}"),
        "steps[0].fail_task.job",
        3,
        "no earlier submit step defines a job named 'x'",
    ),
    (
        "failover_unknown_job_master",
        scenario("- failover: {job_master: x}"),
        "steps[0].failover.job_master",
        3,
        "no earlier submit step defines a job named 'x'",
    ),
    (
        "partition_unknown_job_master",
        scenario("- partition: {between: [te-1, 'job_master:x'], duration: 1s}"),
        "steps[0].partition.between[1]",
        3,
        "no earlier submit step defines a job named 'x'",
    ),
    (
        "kill_unknown_task_executor",
        scenario("- kill_task_executor: te-3"),
        "steps[0].kill_task_executor",
        3,
        "there is no TaskExecutor 'te-3' at this step (the cluster has te-1, te-2)",
    ),
    (
        "stop_killed_task_executor",
        scenario("- kill_task_executor: te-1\n- stop_task_executor: te-1"),
        "steps[1].stop_task_executor",
        4,
        "TaskExecutor 'te-1' is no longer there: it was killed at steps[0]",
    ),
    (
        "partition_stopped_task_executor",
        scenario(
            "- stop_task_executor: te-2\n"
            "- partition: {between: [te-2, resource_manager], duration: 1s}"
        ),
        "steps[1].partition.between[0]",
        4,
        "TaskExecutor 'te-2' is no longer there: it was stopped at steps[0]",
    ),
    (
        "task_executor_only_added_later",
        scenario("- kill_task_executor: te-9\n- add_task_executor: te-9"),
        "steps[0].kill_task_executor",
        3,
        "there is no TaskExecutor 'te-9' at this step (the cluster has te-1, te-2)",
    ),
    (
        "duplicate_task_executor_ids",
        scenario("- sleep: 1s", "task_executors:\n  - {id: a}\n  - {id: b}\n  - {id: a}"),
        "cluster.task_executors[2].id",
        6,
        "duplicate TaskExecutor id 'a' (first given on line 4)",
    ),
    (
        "add_existing_task_executor",
        scenario("- add_task_executor: {id: te-2, slots: 4}"),
        "steps[0].add_task_executor.id",
        3,
        "a TaskExecutor 'te-2' is already in the cluster",
    ),
    (
        "reserved_task_executor_id",
        scenario("- add_task_executor: resource_manager"),
        "steps[0].add_task_executor",
        3,
        "'resource_manager' names a cluster component, not a TaskExecutor",
    ),
    (
        "task_executor_id_with_spaces",
        scenario("- sleep: 1s", "task_executors: ['te 1']"),
        "cluster.task_executors[0]",
        3,
        "a TaskExecutor id holds only letters, digits, '.', '_' and '-', got 'te 1'",
    ),
    (
        "too_many_task_executors",
        scenario("- sleep: 1s", "task_executors: 1000000"),
        "cluster.task_executors",
        3,
        "expected at most 1,000, got 1000000",
    ),
    (
        "duplicate_job_names",
        scenario("- submit: {job: etl}\n- sleep: 1s\n- submit: {job: etl}"),
        "steps[2].submit.job",
        5,
        "a job named 'etl' is already submitted at steps[0]; job names must be unique",
    ),
    (
        "partition_with_three_members",
        scenario("- partition: {between: [te-1, te-2, dispatcher], duration: 1s}"),
        "steps[0].partition.between",
        3,
        "a partition is between exactly two members, got 3",
    ),
    (
        "partition_with_itself",
        scenario("- partition: {between: [te-1, te-1], duration: 1s}"),
        "steps[0].partition.between",
        3,
        "cannot partition 'te-1' from itself",
    ),
    (
        "partition_without_duration",
        scenario("- partition: {between: [te-1, dispatcher]}"),
        "steps[0].partition",
        3,
        "missing required key 'duration'",
    ),
    (
        "failover_a_task_executor",
        scenario("- failover: te-1"),
        "steps[0].failover",
        3,
        "expected resource_manager, dispatcher or {job_master: JOB}, got 'te-1'; "
        "a TaskExecutor has no leader to fail over, use kill_task_executor",
    ),
    (
        "failover_typo",
        scenario("- failover: resourcemanager"),
        "steps[0].failover",
        3,
        "expected resource_manager, dispatcher or {job_master: JOB}, got 'resourcemanager'; "
        "did you mean 'resource_manager'?",
    ),
    (
        "duplicate_key",
        "name: t\nseed: 1\nsteps: [{sleep: 1s}]\nseed: 2\n",
        "seed",
        4,
        "duplicate key 'seed' (first given on line 2)",
    ),
    (
        "key_not_text",
        "name: t\n[a, b]: 1\nsteps: [{sleep: 1s}]\n",
        "",
        2,
        "keys must be text, got a list",
    ),
    (
        "fail_task_subtask_out_of_range",
        scenario("- submit: {job: a, parallelism: 2}\n- fail_task: {job: a, subtask: 2}"),
        "steps[1].fail_task.subtask",
        4,
        "subtask 2 does not exist: vertex 'a' has parallelism 2 (subtasks 0 to 1)",
    ),
    (
        "fail_task_needs_vertex_for_multi_vertex_job",
        scenario(
            "- submit: {job: a, vertices: [{name: x}, {name: y}]}\n"
            "- fail_task: {job: a, subtask: 0}"
        ),
        "steps[1].fail_task",
        4,
        "job 'a' has several vertices (x, y); name one",
    ),
    (
        "fail_injection_subtask_out_of_range",
        scenario("- submit: {job: a, parallelism: 2, fail: {subtasks: [0, 5]}}"),
        "steps[0].submit.fail.subtasks[1]",
        3,
        "subtask 5 does not exist: vertex 'a' has parallelism 2 (subtasks 0 to 1)",
    ),
    (
        "edge_to_unknown_vertex",
        scenario("- submit: {job: a, vertices: [{name: x}], edges: [{from: x, to: z}]}"),
        "steps[0].submit.edges[0].to",
        3,
        "no vertex named 'z' in this job",
    ),
    (
        "edges_form_a_cycle",
        scenario(
            "- submit:\n    job: a\n    vertices: [{name: x}, {name: y}]\n"
            "    edges: [{from: x, to: y}, {from: y, to: x}]"
        ),
        "steps[0].submit.edges",
        6,
        "the edges form a cycle: x -> y -> x",
    ),
    (
        "duplicate_vertex_names",
        scenario("- submit:\n    job: a\n    vertices:\n      - {name: x}\n      - {name: x}"),
        "steps[0].submit.vertices[1].name",
        7,
        "vertex name 'x' is already used on line 6; vertex names must be unique within a job",
    ),
    (
        "vertices_and_parallelism",
        scenario("- submit: {job: a, parallelism: 2, vertices: [{name: x}]}"),
        "steps[0].submit.parallelism",
        3,
        "give either vertices or parallelism, not both",
    ),
    (
        "condition_with_two_kinds",
        scenario("- expect: {free_slots: 1, registered_task_executors: 2}"),
        "steps[0].expect",
        3,
        "one condition per step, got free_slots and registered_task_executors; "
        "write one step for each",
    ),
    (
        "condition_missing",
        scenario("- expect: {timeout: 3s}"),
        "steps[0].expect",
        3,
        "expected one condition key: status (with job), restarts (with job), free_slots, "
        "registered_task_executors or fencing_rejections",
    ),
    (
        "status_without_job",
        scenario("- wait: {status: RUNNING}"),
        "steps[0].wait",
        3,
        "missing required key 'job' (the job whose status to check)",
    ),
    (
        "cluster_condition_with_job",
        scenario("- submit: {job: a}\n- expect: {job: a, free_slots: 2}"),
        "steps[1].expect.job",
        4,
        "free_slots is cluster-wide and takes no job",
    ),
    (
        "range_min_above_max",
        scenario("- expect: {fencing_rejections: {min: 3, max: 1}}"),
        "steps[0].expect.fencing_rejections",
        3,
        "min 3 is larger than max 1",
    ),
    (
        "count_not_a_number",
        scenario("- expect: {free_slots: many}"),
        "steps[0].expect.free_slots",
        3,
        "expected a non-negative integer or {min: N, max: M}, got 'many'",
    ),
    (
        "heartbeat_timeout_below_interval",
        scenario("- sleep: 1s", "heartbeat: {interval: 10s, timeout: 5s}"),
        "cluster.heartbeat",
        3,
        "the heartbeat timeout (5s) must be longer than the interval (10s)",
    ),
    (
        "heartbeat_timeout_equal_to_interval",
        scenario("- sleep: 1s", "heartbeat: {interval: 10s, timeout: 10s}"),
        "cluster.heartbeat",
        3,
        "the heartbeat timeout (10s) must be longer than the interval (10s)",
    ),
    (
        "unknown_yaml_tag",
        scenario("- sleep: !seconds 3"),
        "steps[0].sleep",
        3,
        "cannot read '3': could not determine a constructor for the tag '!seconds'",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_invalid_scenario_names_file_path_and_line(
    text: str, path: str, line: int | None, message: str
) -> None:
    error = error_of(text)
    assert (error.file, error.path, error.line, error.message) == ("x.yaml", path, line, message)
    where = "x.yaml" + (f": {path}" if path else "") + (f" (line {line})" if line else "")
    assert str(error) == f"{where}: {message}"


# --------------------------------------------------------------------------------------------
# Fuzzing: random edits of valid files give a Scenario or a ScenarioError, nothing else

BASES = [DOCUMENTED_EXAMPLE, *(p.read_text(encoding="utf-8") for p in SCENARIOS)]
ODD_TOKENS = [
    "-1", "0", "null", "~", "yes", "[", "]", "{", "}", "*a", "&a", "<<", "!!int", "!x", "1e999",
    "te-1", "te-9", "resource_manager", "job_master:etl", "''", "2020-13-45", "2020-01-01",
    "9" * 30, "-", "?", "|", ">", "---", "...", "%YAML", ":", "#", "\t", "\x00", "\u2028",
    "FINISHED", "submit", "{min: 3, max: 1}", "[1, 2, 3]",
]  # fmt: skip
_TOKEN = re.compile(r"(\s+|[:,\[\]{}])")


@st.composite
def edited_file(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(BASES)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "replace", "indent", "dedent"]))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "replace":
            tokens = _TOKEN.split(lines[i])
            words = [j for j, t in enumerate(tokens) if t.strip()]
            if words:
                j = draw(st.sampled_from(words))
                tokens[j] = draw(st.sampled_from(ODD_TOKENS) | st.text(max_size=6))
                lines[i] = "".join(tokens)
        elif edit == "indent":
            lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
        else:
            lines[i] = lines[i][draw(st.integers(1, 4)) :]
    return "\n".join(lines) + "\n"


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(edited_file())
def test_random_edits_give_a_scenario_or_a_scenario_error(text: str) -> None:
    try:
        s = parse_scenario(text, "fuzz.yaml")
    except ScenarioError as error:
        assert error.file == "fuzz.yaml"
        assert "\n" not in str(error)
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
        return
    rng = random.Random(s.seed)
    for step in s.steps:
        if isinstance(step, SubmitStep):
            to_job_graph(step, rng)


def test_a_cluster_config_file_reads_the_cluster_section_with_line_numbers() -> None:
    from minicluster.scenario import parse_cluster_config

    spec = parse_cluster_config(
        "cluster:\n  task_executors: 3\n  slots_per_executor: 1\n", "c.yaml"
    )
    assert [te.slots for te in spec.task_executors] == [1, 1, 1]
    with pytest.raises(ScenarioError) as info:
        parse_cluster_config("cluster:\n  task_executors: many\n", "c.yaml")
    assert str(info.value).startswith("c.yaml: cluster.task_executors (line 2):")


def test_the_cluster_section_sets_the_slot_request_timeout_and_the_failover_strategy() -> None:
    from minicluster.scenario.loader import parse_scenario as parse
    from minicluster.scenario.loader import to_job_graph as graph_of

    scenario = parse(
        """
name: t
cluster: {slot_request_timeout: 15s, failover_strategy: full}
steps:
  - submit: {job: a, parallelism: 2}
  - submit: {job: b, parallelism: 2, failover_strategy: region}
""",
        "t.yaml",
    )
    assert scenario.cluster.slot_request_timeout == 15.0
    submits = [s for s in scenario.steps if type(s).__name__ == "SubmitStep"]
    import random as _random

    strategies = [
        graph_of(s, _random.Random(0), scenario.cluster.failover_strategy).failover_strategy  # type: ignore[arg-type]
        for s in submits
    ]
    assert strategies == ["full", "region"]


def test_a_job_spec_is_converted_to_a_job_graph_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from minicluster.cluster.model import JobGraph
    from minicluster.scenario.loader.model import JobSpec

    validated: list[str] = []
    real = JobGraph.validate

    def counting(self: JobGraph) -> None:
        validated.append(self.name)
        real(self)

    monkeypatch.setattr(JobGraph, "validate", counting)
    spec = JobSpec.single("etl", parallelism=3, task_duration=2.0)
    first = spec.to_job_graph(random.Random(1))
    second = spec.to_job_graph(random.Random(2), failover_strategy="full")
    assert validated == ["etl"]  # built and checked once, then reused
    assert first.job_id != second.job_id
    assert first.vertices is second.vertices
    assert (first.failover_strategy, second.failover_strategy) == ("region", "full")
