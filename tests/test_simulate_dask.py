"""Seeds as tasks on a real Dask cluster (a LocalCluster with worker processes, no mocks): the
same seeds give the same summary as a local run, and the command line takes the scheduler's
address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicluster.simulate import simulate
from minicluster.simulate.dask_sweep import DaskUnavailableError, dask_executor

distributed = pytest.importorskip("distributed")  # minicluster[dask], in the test extra

ROOT = Path(__file__).resolve().parent.parent
SEED, RUNS, DURATION = 40, 4, 60.0


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # worker processes import minicluster from this checkout, as the test process does
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _runs_done_on(scheduler: str) -> int:
    """How many `run_one` tasks the Dask cluster has finished (its scheduler counts them)."""

    def count(dask_scheduler: object) -> int:
        prefix = dask_scheduler.task_prefixes.get("run_one")  # type: ignore[attr-defined]
        return 0 if prefix is None else int(prefix.state_counts.get("memory", 0))

    with distributed.Client(scheduler, timeout=10) as client:
        return int(client.run_on_scheduler(count))


def _essentials(summary: dict[str, object]) -> dict[str, object]:
    """A summary without what depends on the machine (wall time)."""
    return {k: v for k, v in summary.items() if k not in ("wall_seconds",)}


def test_seeds_on_a_dask_cluster_give_the_summary_of_a_local_run(scheduler: str) -> None:
    local = simulate(RUNS, SEED, duration=DURATION)
    done_before = _runs_done_on(scheduler)
    order: list[int] = []
    with dask_executor(scheduler) as (executor, slots):
        assert slots == 2
        remote = simulate(
            RUNS,
            SEED,
            duration=DURATION,
            executor=executor,
            executor_slots=slots,
            on_run=lambda result: order.append(result.seed),
        )
    assert _runs_done_on(scheduler) == done_before + RUNS  # each run was a task there
    assert order == list(range(SEED, SEED + RUNS))  # results in seed order
    assert remote.runs == RUNS
    assert _essentials(remote.as_dict()) == _essentials(local.as_dict())


def test_simulate_takes_a_dask_scheduler_on_the_command_line(scheduler: str) -> None:
    def run(*extra: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "minicluster", "simulate", "--runs", "2", "--seed", "7",
             "--duration", "30s", "--json", *extra],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        document: dict[str, object] = json.loads(done.stdout)
        return _essentials(document)

    done_before = _runs_done_on(scheduler)
    assert run("--dask-scheduler", scheduler) == run()
    assert _runs_done_on(scheduler) == done_before + 2


def test_an_unreachable_dask_scheduler_is_one_sentence() -> None:
    with (
        pytest.raises(DaskUnavailableError, match="cannot reach the Dask scheduler at"),
        dask_executor("tcp://127.0.0.1:9", timeout=0.5),
    ):
        pass
    done = subprocess.run(
        [sys.executable, "-m", "minicluster", "simulate", "--runs", "1", "--workers", "2",
         "--dask-scheduler", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "do not go together" in done.stderr
