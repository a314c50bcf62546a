"""`minicluster simulate`: bounded seeded runs find no violation; every invariant checker fires
on a violation planted in a live cluster; a dumped run reruns with run-scenario, same trace."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner

from cli.simulate_cmd import simulate as simulate_command
from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.components import RESOURCE_MANAGER
from minicluster.cluster.gateways import ResourceManagerGateway
from minicluster.cluster.jobmaster import BULK_TIMEOUT, JobMaster, _PoolSlot
from minicluster.cluster.model import (
    ExecutionState,
    JobEdge,
    RestartStrategy,
    TaskDeploymentDescriptor,
    TaskExecutionState,
)
from minicluster.rpc.endpoint import Reply
from minicluster.scenario import (
    AddTaskExecutorStep,
    KillTaskExecutorStep,
    PartitionStep,
    SleepStep,
    StopTaskExecutorStep,
    parse_scenario,
)
from minicluster.scenario.runner import run_scenario
from minicluster.simulate import (
    CAPACITY_SPARE,
    FAULT_KINDS,
    TOP_UP_MS,
    InvariantChecker,
    RunResult,
    Violation,
    check_scenario,
    generate_scenario,
    parse_faults,
    run_one,
    simulate,
)

# --- bounded seeded runs (the soak is `minicluster simulate`, not a test) -----------------

CI_SEEDS = range(1, 41)


@pytest.mark.parametrize("first", list(CI_SEEDS)[::10])
def test_bounded_seeded_runs_hold_every_invariant(first: int) -> None:
    summary = simulate(runs=10, seed=first, duration=120.0)
    assert summary.runs == 10
    assert summary.events > 1000
    assert summary.ok, "\n".join(v.line() + "\n" + v.detail for v in summary.violations)


def test_generation_is_a_function_of_seed_kinds_and_duration() -> None:
    text = generate_scenario(5, FAULT_KINDS, 120.0)
    assert text == generate_scenario(5, FAULT_KINDS, 120.0)
    assert text != generate_scenario(6, FAULT_KINDS, 120.0)
    scenario = parse_scenario(text)
    assert scenario.seed == 5 and not scenario.warnings
    kinds = {step.kind for step in parse_scenario(generate_scenario(7, (), 300.0)).steps}
    assert kinds <= {"submit", "cancel", "sleep", "add_task_executor", "expect", "wait"}


def test_every_fault_kind_is_generated() -> None:
    kinds: set[str] = set()
    failing_vertices = 0
    for seed in range(20):
        scenario = parse_scenario(generate_scenario(seed, FAULT_KINDS, 600.0))
        kinds |= {step.kind for step in scenario.steps}
        failing_vertices += sum(
            1 for job in scenario.jobs.values() for v in job.vertices if v.fail_subtasks
        )
    assert {
        "kill_task_executor",
        "stop_task_executor",
        "add_task_executor",
        "partition",
        "failover",
        "cancel",
    } <= kinds
    assert failing_vertices > 0


def test_fault_kinds_are_parsed_and_checked() -> None:
    assert parse_faults("join, kill") == ("kill", "join")
    assert parse_faults("none") == ()
    with pytest.raises(ValueError, match="unknown fault kind 'flood'"):
        parse_faults("kill,flood")


def test_generated_runs_keep_every_jobs_slots_once_the_start_up_period_can_end() -> None:
    """Past the ResourceManager's start-up period an unmet requirement fails the job by design,
    so from TOP_UP_MS on the slots it can count on (TaskExecutors not stopped, killed or cut
    off from it) cover every job at once plus the spare, whatever the faults."""
    for seed in range(12):
        scenario = parse_scenario(generate_scenario(seed, FAULT_KINDS, 600.0))
        demand = CAPACITY_SPARE + sum(
            max(v.parallelism for v in job.vertices) for job in scenario.jobs.values()
        )
        live = {te.id: te.slots for te in scenario.cluster.task_executors}
        away: dict[str, float] = {}
        now = 0.0
        for step in scenario.steps:
            if isinstance(step, SleepStep):  # the steps of one instant are done: check it
                counted = sum(n for te, n in live.items() if away.get(te, 0.0) <= now)
                if now >= TOP_UP_MS / 1000:
                    assert counted >= demand, f"seed {seed} at {now:.3f} s: {counted} < {demand}"
                now += step.duration
            elif isinstance(step, AddTaskExecutorStep):
                live[step.task_executor.id] = step.task_executor.slots
            elif isinstance(step, KillTaskExecutorStep | StopTaskExecutorStep):
                del live[step.task_executor]
            elif isinstance(step, PartitionStep) and "resource_manager" in step.between:
                other = next(side for side in step.between if side != "resource_manager")
                if other in live:  # cut off until it is back: heartbeat loss, then backoff
                    away[other] = now + step.duration + 45.0


def test_a_run_past_the_start_up_period_finishes_its_jobs() -> None:
    # without the capacity rule, a kill after 300 s left job-4 short of slots: it FAILED
    result = run_one(25, FAULT_KINDS, 600.0)
    assert result.ok, "\n".join(v.line() + "\n" + v.detail for v in result.violations)


# --- a dumped run is a scenario that run-scenario repeats ---------------------------------


def test_a_dumped_scenario_reruns_with_run_scenario_and_writes_the_same_trace(
    tmp_path: Path,
) -> None:
    from cli.main import cli

    text = generate_scenario(11, FAULT_KINDS, 90.0)
    path = tmp_path / "simulate-seed-11.yaml"
    path.write_text(text)
    checked = io.StringIO()
    result = check_scenario(parse_scenario(text), trace=checked)
    assert result.ok, [v.line() for v in result.violations]
    trace = tmp_path / "trace.jsonl"
    outcome = CliRunner().invoke(
        cli, ["run-scenario", str(path), "--no-live", "--trace", str(trace)]
    )
    assert outcome.exit_code == 0, outcome.output
    assert checked.getvalue().count("\n") > 100
    assert trace.read_text() == checked.getvalue()


# --- the command ----------------------------------------------------------------------


def test_the_command_prints_a_summary_and_exits_0_without_violations() -> None:
    outcome = CliRunner().invoke(
        simulate_command, ["--runs", "2", "--seed", "3", "--duration", "1m", "-v"]
    )
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.output.splitlines()
    assert lines[0].startswith("run seed=3: ")
    assert lines[-1].startswith("simulated 2 run(s) (seeds 3..4), ")
    assert "no violations" in lines[-1] and "events" in lines[-1]


def test_the_command_prints_violations_dumps_the_run_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import minicluster.simulate as module

    real = module.run_one

    def planted(seed: int, faults: Any, duration: float, swarm: bool = False) -> RunResult:
        result = real(seed, faults, duration, swarm)
        if seed == 8:
            result.violations.append(Violation(seed, "slot-agreement", "planted", 1.5))
        return result

    monkeypatch.setattr(module, "run_one", planted)
    outcome = CliRunner().invoke(
        simulate_command,
        ["--runs", "2", "--seed", "7", "--duration", "1m", "--dump-scenario", str(tmp_path)],
    )
    assert outcome.exit_code == 1, outcome.output
    assert "VIOLATION seed=8: slot-agreement: planted (at 1.500 s)" in outcome.output
    dumped = tmp_path / "simulate-seed-8.yaml"
    assert dumped.exists() and not (tmp_path / "simulate-seed-7.yaml").exists()
    scenario = parse_scenario(dumped.read_text())
    assert scenario.seed == 8
    assert run_scenario(scenario).passed  # the planted violation is not the scenario's own


def test_the_command_prints_one_json_document() -> None:
    import json

    outcome = CliRunner().invoke(
        simulate_command, ["--runs", "1", "--seed", "4", "--duration", "30s", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.output)
    assert document["runs"] == 1 and document["seeds"] == [4, 4]
    assert document["violations"] == [] and document["events"] > 0
    assert document["faults"] == list(FAULT_KINDS)


def test_a_run_that_raises_is_a_crash_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    import minicluster.simulate as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a task of the cluster blew up")

    monkeypatch.setattr(module, "run_scenario", broken)
    result = run_one(9, FAULT_KINDS, 30.0)
    assert [(v.invariant, v.description) for v in result.violations] == [
        ("crash", "the run raised RuntimeError: a task of the cluster blew up")
    ]


def test_the_command_refuses_unknown_fault_kinds() -> None:
    outcome = CliRunner().invoke(simulate_command, ["--faults", "kill,meteor"])
    assert outcome.exit_code == 2
    assert "unknown fault kind 'meteor'" in outcome.output


def test_replay_checks_a_scenario_file(tmp_path: Path) -> None:
    # one pipelined region of three slots on a one-slot cluster: it waits for the slot request
    # timeout (300 s), far beyond the wait
    path = tmp_path / "starved.yaml"
    path.write_text(
        "name: starved\nseed: 1\ncluster: {task_executors: 1, slots_per_executor: 1}\n"
        "steps:\n"
        "  - submit: {job: big, vertices: [{name: a, parallelism: 3, task_duration: 2s},"
        " {name: b, parallelism: 3, task_duration: 2s}], edges: [{from: a, to: b}]}\n"
        "  - wait: {job: big, status: [FINISHED, FAILED, CANCELED], timeout: 30s}\n"
    )
    outcome = CliRunner().invoke(simulate_command, ["--replay", str(path)])
    assert outcome.exit_code == 1
    assert "VIOLATION seed=1: job-terminal: big did not reach FINISHED or FAILED or CANCELED" in (
        outcome.output
    )


# --- every checker fires on a planted violation -------------------------------------------


def fast() -> ClusterConfig:
    return ClusterConfig(seed=1, heartbeat_interval=1.0, heartbeat_timeout=5.0)


def long_job(parallelism: int = 2, duration: float = 60.0, job_id: int = 1) -> JobGraph:
    return JobGraph(
        uuid.UUID(int=job_id),
        f"job-{job_id}",
        [JobVertex("map", parallelism, duration)],
        restart=RestartStrategy(5, 1.0),
    )


class Watch:
    """A live cluster with an attached checker, its violations by invariant."""

    def __init__(self, cluster: MiniCluster) -> None:
        self.cluster = cluster
        self.found: list[tuple[str, str]] = []
        self.checker = InvariantChecker(cluster, lambda i, d, _: self.found.append((i, d)))
        cluster.events.subscribers.append(self.checker.on_event)

    def of(self, invariant: str) -> list[str]:
        return [d for i, d in self.found if i == invariant]

    def probe(self, endpoint_id: str) -> None:
        """An event naming the endpoint, as its next message would."""
        self.cluster.context.emit("info", "probe", sender=endpoint_id)

    def job_master(self, job_id: uuid.UUID) -> JobMaster:
        jm = self.cluster.store.jobs[job_id].job_master
        assert jm is not None
        return jm


async def running(cluster: MiniCluster, watch: Watch, parallelism: int = 2) -> uuid.UUID:
    job_id = await cluster.submit_job(long_job(parallelism))
    assert await cluster.wait_until(
        lambda: watch.job_master(job_id).state_counts[ExecutionState.RUNNING] == parallelism, 10
    )
    return job_id


async def test_a_quiet_running_cluster_holds_every_invariant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        await running(cluster, watch, 3)
        await trio.sleep(10)
        await trio.testing.wait_all_tasks_blocked()
        watch.checker.check_quiet()
        assert watch.found == []
        assert watch.checker.events > 50


async def test_slot_exclusive_fires_when_a_slot_runs_a_task_of_another_allocation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        await running(cluster, watch)
        te = next(te for te in cluster.task_executors.values() if te.tasks)
        slot = next(s for s in te.slots if s.tasks)
        slot.allocation_id = uuid.uuid4()  # re-allocated while its task still runs
        watch.probe(te.endpoint_id)
        assert any(
            f"slot {te.resource_id}/{slot.index} is held by" in d
            for d in watch.of("slot-exclusive")
        )


async def test_slot_exclusive_fires_when_a_job_master_holds_one_slot_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch)
        jm = watch.job_master(job_id)
        held = next(iter(jm.pool.values()))
        twin = uuid.uuid4()
        jm.pool[twin] = _PoolSlot(twin, held.task_executor, held.slot_index, group=None)
        watch.probe(jm.endpoint_id)
        assert any("under two allocations" in d for d in watch.of("slot-exclusive"))


async def test_slot_agreement_fires_on_a_corrupted_slot_table(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        await running(cluster, watch)
        await trio.testing.wait_all_tasks_blocked()
        watch.checker.check_quiet()
        assert watch.found == []
        rm = cluster.resource_manager
        slot_id, slot = next((i, s) for i, s in rm.slots.items() if s.state == "ALLOCATED")
        slot.state, slot.job_id, slot.allocation_id = "FREE", None, None
        watch.checker.check_quiet()
        assert any(
            d.startswith(f"slot {slot_id}: TaskExecutor") for d in watch.of("slot-agreement")
        )


async def test_slot_agreement_fires_on_a_slot_held_for_an_ended_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await cluster.submit_job(long_job(1, 1.0))
        assert await cluster.wait_for_job(job_id, 20) is JobStatus.FINISHED
        await trio.sleep(30)
        await trio.testing.wait_all_tasks_blocked()
        watch.checker.check_final()
        assert watch.found == []
        te = cluster.task_executors["te-1"]
        te.slots[0].job_id, te.slots[0].allocation_id = job_id, uuid.uuid4()
        watch.checker.check_final()
        assert any(
            "which is FINISHED and has no JobMaster" in d for d in watch.of("slot-agreement")
        )


async def test_fencing_fires_when_a_deposed_resource_manager_acts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=fast()) as cluster:
        watch = Watch(cluster)
        await trio.sleep(1)
        rm = cluster.resource_manager
        stale = cluster.rm_service.local_gateway(
            rm, ResourceManagerGateway, rm.fencing_token, caller="probe"
        )
        await stale.request_overview()
        assert watch.of("fencing") == []
        # HA now names another leader, but the old one still takes calls with its token
        cluster.ha._leaders[RESOURCE_MANAGER].token = uuid.uuid4()
        await stale.request_overview()
        assert any("resourcemanager acted on a call" in d for d in watch.of("fencing"))


async def test_fencing_fires_when_a_task_executor_takes_a_task_from_another_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 1)
        te = cluster.task_executors["te-1"]
        slot = next(s for s in te.slots if s.job_id == job_id)
        connection = te.jobs[job_id]
        other = connection.token = uuid.uuid4()  # the TaskExecutor follows another leader...
        assert slot.allocation_id is not None
        tdd = TaskDeploymentDescriptor(job_id, uuid.uuid4(), "map", 0, 0, slot.allocation_id, 5.0)
        # ...and takes a task from the real one
        await te.call_async(lambda: te.submit_task(tdd, other))
        watch.probe(te.endpoint_id)
        assert any("accepted map[0] of job-1" in d for d in watch.of("fencing")), watch.found


async def test_job_finished_fires_when_a_task_is_reported_finished_too_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 1)
        jm = watch.job_master(job_id)
        execution = jm.executions[("map", 0)]
        assert execution.execution_id is not None
        update = TaskExecutionState(job_id, execution.execution_id, ExecutionState.FINISHED)
        await jm.call_async(lambda: jm.update_task_execution_state(update))
        assert cluster.job_status(job_id) is JobStatus.FINISHED
        assert any("before its duration of 60 s" in d for d in watch.of("job-finished"))


async def test_job_finished_fires_when_a_subtask_finishes_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        graph = JobGraph(
            uuid.UUID(int=1), "job-1", [JobVertex("fast", 1, 2.0), JobVertex("slow", 1, 6.0)]
        )
        job_id = await cluster.submit_job(graph)
        jm = watch.job_master(job_id)
        assert await cluster.wait_until(lambda: jm.state_counts[ExecutionState.FINISHED] == 1, 10)
        done = next(e for e in jm.executions.values() if e.state is ExecutionState.FINISHED)
        done.execution_id = uuid.uuid4()  # a second execution of the subtask, also FINISHED
        assert await cluster.wait_for_job(job_id, 10) is JobStatus.FINISHED
        assert any("finished twice in attempt 0" in d for d in watch.of("job-finished"))


async def test_lost_task_executor_fires_when_tasks_outlive_the_loss(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 2)
        jm = watch.job_master(job_id)
        # the planted bug: the JobMaster ignores the ResourceManager's news of a lost
        # TaskExecutor, and the TaskExecutor does not stop its tasks when it loses the RM
        ignore = (lambda resource_id, cause: None, False)
        jm._handlers["disconnect_task_manager"] = ignore
        jm._inline["disconnect_task_manager"] = ignore  # local tells may be handled inline
        te = cluster.task_executors["te-1"]
        te._release_everything = lambda cause: None  # type: ignore[method-assign]
        cluster.partition("te-1", "resource_manager", 30.0)
        await trio.sleep(20)
        assert any(
            d.startswith("TaskExecutor te-1 still runs 2 task(s)")
            for d in watch.of("lost-task-executor")
        )


async def test_lost_task_executor_holds_when_the_job_master_lets_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        await running(cluster, watch, 2)
        te = next(te for te in cluster.task_executors.values() if te.tasks)
        cluster.partition(te.resource_id, "resource_manager", 30.0)
        await trio.sleep(20)
        assert watch.of("lost-task-executor") == []


async def test_ask_reply_fires_for_an_ask_pending_past_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=fast()) as cluster:
        watch = Watch(cluster)
        timeouts = cluster.rm_service.timeouts
        reply = Reply()
        timeouts.add(reply, 2.0)
        for queue in timeouts._queues.values():  # the planted bug: its expiry is lost
            for entry in list(queue):
                if entry[1] is reply:
                    queue.remove(entry)
        await trio.sleep(5)
        assert any("after its timeout" in d for d in watch.of("ask-reply"))


async def test_ask_reply_fires_for_an_ask_without_timeout_pending_at_quiescence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=fast()) as cluster:
        watch = Watch(cluster)
        timeouts = cluster.rm_service.timeouts
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Reply().wait, timeouts, None, lambda: "ask forever to nowhere")
            await trio.sleep(3)
            await trio.testing.wait_all_tasks_blocked()
            watch.checker.check_final()
            nursery.cancel_scope.cancel()
        assert watch.of("ask-reply") == [
            "ask forever to nowhere has no timeout and is still waiting for its reply at quiescence"
        ]


# --- regions, slot reuse, restart accounting, the slot request timeout --------------------


def chained(parallelism: int = 1, pattern: str = "pointwise", duration: float = 60.0) -> JobGraph:
    """source -> sink: pointwise, a region per subtask index; all-to-all, one region."""
    return JobGraph(
        uuid.UUID(int=1),
        "job-1",
        [JobVertex("source", parallelism, duration), JobVertex("sink", parallelism, duration)],
        [JobEdge("source", "sink", pattern)],
        restart=RestartStrategy(5, 1.0),
    )


def timing_out() -> ClusterConfig:
    return ClusterConfig(
        seed=1, heartbeat_interval=1.0, heartbeat_timeout=5.0, slot_request_timeout=10.0
    )


async def test_region_whole_fires_when_a_region_is_deployed_in_part(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deploy_first_only(self: JobMaster, bulk: Any) -> None:  # the planted bug
        first = self.executions[bulk.region.vertices[0]]
        self._deploy(first, self._group_slot[first.subtask])
        self._remove_bulk(bulk)

    monkeypatch.setattr(JobMaster, "_bulk_fulfilled", deploy_first_only)
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        await cluster.submit_job(chained())
        await trio.sleep(3)
        assert any(
            d.startswith(
                "region 0 of job-1 is deployed in part: source[0] is DEPLOYING while "
                "sink[0] is SCHEDULED"
            )
            for d in watch.of("region-whole")
        ), watch.found


async def test_region_whole_fires_when_a_region_runs_two_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await cluster.submit_job(chained())
        jm = watch.job_master(job_id)
        assert await cluster.wait_until(lambda: jm.state_counts[ExecutionState.RUNNING] == 2, 10)
        await trio.sleep(2)
        assert watch.found == []
        jm.executions[("sink", 0)].attempt += 1  # restarted without its region
        await trio.sleep(2)
        assert watch.of("region-whole") == [
            "region 0 of job-1 runs its subtasks in different attempts (source[0]#0, sink[0]#1)"
        ]


async def test_region_whole_fires_when_a_task_runs_outside_its_groups_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 2)
        jm = watch.job_master(job_id)
        slot = next(s for s in jm.pool.values() if s.group == 1)
        slot.group = 0  # two groups in one slot
        await trio.sleep(2)
        assert any(
            d.startswith(
                "map[1] of job-1 is RUNNING in a slot of group 0 on te-1, not in the "
                "slot of its slot sharing group 1"
            )
            for d in watch.of("region-whole")
        ), watch.found


async def test_slot_reuse_holds_when_regions_run_in_waves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await cluster.submit_job(long_job(3, 2.0))
        assert await cluster.wait_for_job(job_id, 20) is JobStatus.FINISHED
        assert watch.found == []


async def test_slot_reuse_fires_when_a_slot_given_back_does_not_serve_the_next_wave(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assign = JobMaster._assign_free_slots

    def first_wave_only(self: JobMaster) -> None:  # the planted bug
        if self.state_counts[ExecutionState.FINISHED] == 0:
            assign(self)

    monkeypatch.setattr(JobMaster, "_assign_free_slots", first_wave_only)
    async with MiniCluster(1, 1, config=fast()) as cluster:
        watch = Watch(cluster)
        await cluster.submit_job(long_job(2, 2.0))
        await trio.sleep(5)
        assert watch.of("slot-reuse") == [
            "the JobMaster of job-1 keeps 1 free slot(s) in its pool while waiting regions lack 1"
        ]


def two_waves() -> JobGraph:
    """a[1] ends after 2 s; group 0 (a[0], b[0]) stays in use for a minute."""
    return JobGraph(
        uuid.UUID(int=1),
        "job-1",
        [JobVertex("a", 2, 2.0), JobVertex("b", 1, 60.0)],
        restart=RestartStrategy(5, 1.0),
    )


@pytest.mark.parametrize("planted", [False, True])
async def test_slot_reuse_fires_when_an_idle_slot_is_never_given_back(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, planted: bool
) -> None:
    if planted:
        monkeypatch.setattr(JobMaster, "_release_idle_slots", lambda self: None)
    config = fast()
    config.slot_idle_timeout = 5.0
    async with MiniCluster(1, 2, config=config) as cluster:
        watch = Watch(cluster)
        job_id = await cluster.submit_job(two_waves())
        await trio.sleep(20)
        jm = watch.job_master(job_id)
        assert (len(jm.pool), jm.required) == ((2, 1) if planted else (1, 1))
        found = watch.of("slot-reuse")
        assert len(found) == planted, found
        if planted:
            assert found[0].startswith("the JobMaster of job-1 holds 2 slot(s) for a demand of 1")
            assert "(slot idle timeout 5 s)" in found[0]


async def test_restart_accounting_fires_when_restarts_exceed_the_strategy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        jm = watch.job_master(await running(cluster, watch, 1))
        jm.restarts = 6
        await trio.sleep(2)
        assert watch.of("restart-accounting") == [
            "job-1 counts 6 restarts, more than the 5 its fixed-delay strategy allows"
        ]


async def test_restart_accounting_fires_when_a_region_restart_is_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 1)
        jm = watch.job_master(job_id)
        await cluster.fail_task(job_id, 0)
        assert await cluster.wait_until(lambda: jm.executions[("map", 0)].attempt == 1, 10)
        await trio.sleep(2)
        assert watch.found == []
        jm.restarts = 0
        await trio.sleep(2)
        assert watch.of("restart-accounting") == [
            "job-1 restarted its regions 1 time(s) (region attempts [1]) but counts 0 restart(s)"
        ]


async def test_restart_accounting_fires_when_a_failure_restarts_nothing(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobMaster, "_restart_regions", lambda self, regions: None)
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 2)
        await cluster.fail_task(job_id, 1)
        await trio.sleep(2)
        assert watch.of("restart-accounting") == [
            "map[1] of job-1 is FAILED in a RUNNING job, and its region 1 waits for no restart"
        ]


async def test_restart_accounting_fires_when_a_job_fails_with_restarts_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=fast()) as cluster:
        watch = Watch(cluster)
        job_id = await running(cluster, watch, 1)
        jm = watch.job_master(job_id)
        await jm.call_async(lambda: jm._job_reached_terminal_state(JobStatus.FAILED))
        assert cluster.job_status(job_id) is JobStatus.FAILED
        assert watch.of("restart-accounting") == [
            "job-1 is FAILED after 0 of the 5 restarts its fixed-delay strategy allows"
        ]


@pytest.mark.parametrize("path", ["resource-manager", "bulk-timeout"])
async def test_slot_request_timeout_holds_when_a_region_fails_at_the_timeout(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    if path == "bulk-timeout":
        monkeypatch.setattr(JobMaster, "notify_not_enough_resources", lambda self, a, r: None)
    async with MiniCluster(1, 2, config=timing_out()) as cluster:
        watch = Watch(cluster)
        job_id = await cluster.submit_job(chained(3, "all-to-all"))
        jm = watch.job_master(job_id)
        assert await cluster.wait_until(lambda: jm.restarts == 2, 60)
        assert (jm.failure_cause or "").startswith(
            "NoResourceAvailableException: "
            + ("Could not acquire" if path == "resource-manager" else "Slot request bulk")
        )
        assert watch.found == []


async def test_slot_request_timeout_fires_when_a_region_waits_for_ever(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobMaster, "_check_bulks", lambda self, bulks: None)
    monkeypatch.setattr(JobMaster, "notify_not_enough_resources", lambda self, a, r: None)
    async with MiniCluster(1, 2, config=timing_out()) as cluster:
        watch = Watch(cluster)
        await cluster.submit_job(chained(3, "all-to-all"))
        await trio.sleep(19)
        assert watch.of("slot-request-timeout") == []
        await trio.sleep(3)
        found = watch.of("slot-request-timeout")
        assert len(found) == 1 and found[0].startswith("region 0 of job-1 has waited 2"), found
        assert found[0].endswith(
            "for 3 slot(s) with 2 in the pool, beyond twice the slot request timeout of 10 s"
        )


async def test_slot_request_timeout_fires_when_a_bulk_times_out_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=timing_out()) as cluster:
        watch = Watch(cluster)
        jm = watch.job_master(await cluster.submit_job(chained(3, "all-to-all")))
        await trio.sleep(4)
        await jm.call_async(
            lambda: jm._fail_bulks(list(jm._pending.values()), BULK_TIMEOUT.format(timeout=10))
        )
        found = watch.of("slot-request-timeout")
        assert len(found) == 1 and found[0].startswith(
            "region 0 of job-1 failed with NoResourceAvailableException 4."
        ), found
        assert found[0].endswith("before the slot request timeout of 10 s")


async def test_slot_request_timeout_fires_when_a_bulk_the_pool_can_serve_times_out(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobMaster, "notify_not_enough_resources", lambda self, a, r: None)
    async with MiniCluster(1, 1, config=timing_out()) as cluster:
        watch = Watch(cluster)
        jm = watch.job_master(await cluster.submit_job(long_job(2, 60.0)))
        await trio.sleep(12)  # region 1 waits for the slot region 0 runs in: the next wave
        assert list(jm._pending) == [1] and watch.found == []
        await jm.call_async(
            lambda: jm._fail_bulks(list(jm._pending.values()), BULK_TIMEOUT.format(timeout=10))
        )
        assert watch.of("slot-request-timeout") == [
            "region 1 of job-1 failed for its slot request timeout although the pool holds 1 "
            "slot(s) for its 1"
        ]


async def test_slot_request_timeout_fires_when_the_resource_manager_skips_its_start_up_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=timing_out()) as cluster:
        watch = Watch(cluster)
        cluster.resource_manager.fail_unfulfillable = True  # the planted bug
        await cluster.submit_job(chained(3, "all-to-all"))
        await trio.sleep(2)
        found = watch.of("slot-request-timeout")
        assert found and found[0].startswith(
            "job-1 failed a region with NoResourceAvailableException on the word of a "
            "ResourceManager leader 0."
        ), found
        assert found[0].endswith("s old, within its start-up period of 10 s")


def test_job_terminal_and_job_outcome_come_from_the_scenario_steps() -> None:
    scenario = parse_scenario(
        "name: doomed\nseed: 2\ncluster: {task_executors: 1, slots_per_executor: 2}\nsteps:\n"
        "  - submit: {job: flaky, parallelism: 1, task_duration: 5s,"
        " fail: {subtasks: [0], after: 1s, attempts: 9}, restart: {attempts: 1, delay: 0s}}\n"
        "  - wait: {job: flaky, status: [FINISHED, FAILED, CANCELED], timeout: 30s}\n"
        "  - expect: {job: flaky, status: FINISHED}\n"
    )
    result = check_scenario(scenario)
    assert [v.invariant for v in result.violations] == ["job-outcome"]
    assert "job 'flaky' is FAILED" in result.violations[0].description
    assert "restarts 1/1" in result.violations[0].detail


def test_run_one_counts_events_and_keeps_its_scenario() -> None:
    result = run_one(2, ("kill", "join"), 60.0)
    assert result.ok and result.events > 100 and result.steps_ok == result.steps
    assert result.scenario_text == generate_scenario(2, ("kill", "join"), 60.0)
    assert result.virtual_time > 60.0


# --- runtime bugs the simulator found (minimal scenarios; the lead fixes the runtime) ---------

SLOT_LEAK = """
name: slot-leak-after-a-job-ends-cut-off-from-the-resource-manager
seed: 1
cluster: {task_executors: 2, slots_per_executor: 1, heartbeat: {interval: 1s, timeout: 5s}}
steps:
  - submit: {job: a, parallelism: 1, task_duration: 60s}
  - wait: {job: a, status: RUNNING, timeout: 10s}
  - sleep: 2s
  - partition: {between: [resource_manager, "job_master:a"], duration: 20s}
  - cancel: a
  - wait: {job: a, status: CANCELED, timeout: 10s}
  - sleep: 90s
  - expect: {free_slots: 2}
"""

STALE_POOL = """
name: stale-slot-pool-after-a-short-partition
seed: 1
cluster:
  task_executors: [{id: te-1, slots: 2}]
  heartbeat: {interval: 1s, timeout: 5s}
  rpc_timeout: 10s
steps:
  - sleep: 500ms
  - submit: {job: a, parallelism: 3, task_duration: 30s}
  - sleep: 2.2s
  - partition: {between: [te-1, "job_master:a"], duration: 2s}
  - sleep: 20s
  - add_task_executor: {id: te-2, slots: 1}
  - wait: {job: a, status: FINISHED, timeout: 2m}
"""

REOFFER_TO_NEW_LEADER = """
name: a-lost-task-executor-offers-its-slots-to-a-new-job-master
seed: 1
cluster: {task_executors: 2, slots_per_executor: 2, heartbeat: {interval: 1s, timeout: 5s}}
steps:
  - submit: {job: a, parallelism: 4, task_duration: 60s}
  - wait: {job: a, status: RUNNING, timeout: 10s}
  - sleep: 2s
  - partition: {between: [te-1, resource_manager], duration: 20s}
  - sleep: 7s
  - failover: {job_master: a}
  - sleep: 20s
"""

LOST_NEWS = """
name: tasks-outlive-a-lost-task-executor-when-the-news-is-lost
seed: 1
cluster: {task_executors: 2, slots_per_executor: 2, heartbeat: {interval: 1s, timeout: 5s}}
steps:
  - submit: {job: a, parallelism: 4, task_duration: 60s}
  - wait: {job: a, status: RUNNING, timeout: 10s}
  - sleep: 2s
  - partition: {between: [te-1, resource_manager], duration: 30s}
  - partition: {between: [resource_manager, "job_master:a"], duration: 30s}
  - sleep: 120s
  - wait: {job: a, status: FINISHED, timeout: 3m}
"""


LOST_UPDATE = """
name: a-lost-final-task-update-hangs-the-job
seed: 1
cluster: {task_executors: 1, slots_per_executor: 1, heartbeat: {interval: 1s, timeout: 5s}}
steps:
  - submit: {job: a, parallelism: 1, task_duration: 5s}
  - sleep: 5.02s
  - partition: {between: [te-1, "job_master:a"], duration: 400ms}
  - wait: {job: a, status: [FINISHED, FAILED, CANCELED], timeout: 2m}
"""


@pytest.mark.parametrize(
    ("text", "invariant"),
    [
        pytest.param(
            LOST_UPDATE,
            "job-terminal",
            id="lost-update",
        ),
        pytest.param(
            SLOT_LEAK,
            "slot-agreement",
            id="slot-leak",
        ),
        pytest.param(
            STALE_POOL,
            "slot-exclusive",
            id="stale-pool",
        ),
        pytest.param(
            REOFFER_TO_NEW_LEADER,
            "lost-task-executor",
            id="reoffer",
        ),
        pytest.param(
            LOST_NEWS,
            "lost-task-executor",
            id="lost-news",
        ),
    ],
)
def test_a_run_that_once_broke_an_invariant_now_keeps_it(text: str, invariant: str) -> None:
    result = check_scenario(parse_scenario(text))
    found = {v.invariant for v in result.violations}
    assert invariant not in found, "\n".join(v.line() for v in result.violations)
    assert result.ok, "\n".join(v.line() for v in result.violations)


def test_a_generated_run_reads_the_same_through_libyaml() -> None:
    # the simulator parses its own runs with libyaml's parser (fast); a scenario file a person
    # wrote keeps the pure-Python one: both must give the same scenario
    from minicluster.scenario.loader import parse_scenario
    from minicluster.simulate import FAULT_KINDS
    from minicluster.simulate.generator import generate_run

    for seed in (3, 11):
        text, _ = generate_run(seed, FAULT_KINDS, 120.0, True)
        assert parse_scenario(text, generated=True) == parse_scenario(text)
