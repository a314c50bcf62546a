"""Cluster-scale benchmark (not part of the test suite).

Reproduces the job shape of Flink's published scheduler benchmark (FLINK-21110, Flink 1.14):
two vertices of parallelism P joined all-to-all, on P/4 TaskExecutors with 4 slots each, in
shared RPC mode on a virtual clock. Prints wall-clock time per phase, RPC messages and peak RSS,
for several P, with the growth ratio between sizes.

    python benchmarks/cluster_scale.py                 # P = 1000, 2000, 5000, 10000
    python benchmarks/cluster_scale.py --sizes 1000    # one size
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

import trio
import trio.testing

from minicluster.cluster import (
    ClusterConfig,
    ExecutionState,
    JobEdge,
    JobGraph,
    JobStatus,
    JobVertex,
    MiniCluster,
)

# Python's cyclic collector scans every young object each 700 allocations by default; with a
# cluster of millions of live objects its passes made deployment grow as n^1.3 (profiled:
# P=1000 -> 5000 took x9.4 with the default, x4.7 with the collector off).
GC_THRESHOLDS = (100_000, 1000, 1000)

# Flink 1.14, FLINK-21110 (parallelism 10,000, all-to-all): milliseconds
FLINK_1_14 = {"initialization": 627, "deployment": 17_183, "restart_computation": 170}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(parallelism: int, record_events: bool, tune_gc: bool) -> dict[str, Any]:
    executors = parallelism // 4
    config = ClusterConfig(seed=1, heartbeat_interval=10.0, heartbeat_timeout=50.0)
    figures: dict[str, Any] = {"parallelism": parallelism, "task_executors": executors}
    async with MiniCluster(executors, 4, config=config) as cluster:
        cluster.events.record_rpc = record_events
        await cluster.wait_until(
            lambda: cluster.registered_task_executors() == executors, 600, poll=0.5
        )
        if tune_gc:
            # the cluster's long-lived objects leave the collector's view (see docs/performance.md)
            gc.freeze()
        graph = JobGraph(
            uuid.UUID(int=1),
            "scale",
            [JobVertex("source", parallelism, 10_000.0), JobVertex("sink", parallelism, 10_000.0)],
            [JobEdge("source", "sink", "all-to-all")],
        )
        calls_before = cluster.events.rpc_calls
        started = time.perf_counter()
        job_id = await cluster.submit_job(graph)
        record = cluster.store.jobs[job_id]
        await cluster.wait_until(lambda: record.status is JobStatus.RUNNING, 600, poll=0.001)
        figures["initialization_ms"] = (time.perf_counter() - started) * 1000
        jm = record.job_master
        assert jm is not None
        started = time.perf_counter()
        await cluster.wait_until(lambda: len(jm.pool) == parallelism, 600, poll=0.01)
        figures["slot_allocation_ms"] = (time.perf_counter() - started) * 1000
        await cluster.wait_until(
            lambda: jm.state_counts[ExecutionState.RUNNING] == 2 * parallelism, 600, poll=0.01
        )
        figures["deployment_ms"] = (time.perf_counter() - started) * 1000
        figures["rpc_messages_to_running"] = cluster.events.rpc_calls - calls_before
        # a TaskExecutor is lost: how long the JobMaster takes to work out what to restart
        victim = next(iter(cluster.task_executors))
        started = time.perf_counter()
        await jm.call_async(lambda: jm.disconnect_task_manager(victim, "benchmark"))
        figures["restart_computation_ms"] = (time.perf_counter() - started) * 1000
        figures["rpc_messages_total"] = cluster.events.rpc_calls
    figures["peak_rss_mib"] = peak_rss_mib()
    return figures


def run_one(parallelism: int, record_events: bool, tune_gc: bool = True) -> dict[str, Any]:
    if tune_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    wall = time.perf_counter()
    result = trio.run(
        measure,
        parallelism,
        record_events,
        tune_gc,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    result["wall_s"] = time.perf_counter() - wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000")
    parser.add_argument("--no-events", action="store_true", help="do not record RPC events")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--default-gc", action="store_true", help="leave the collector as it is")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, not args.no_events, not args.default_gc)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        # each size in a fresh process, so that peak RSS is that size's own
        command = [sys.executable, __file__, "--one", str(size)]
        if args.no_events:
            command.append("--no-events")
        if args.default_gc:
            command.append("--default-gc")
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(f"P={size}: done in {rows[-1]['wall_s']:.1f} s", file=sys.stderr)
    header = (
        f"{'P':>6} {'TEs':>5} {'init ms':>9} {'slots ms':>9} {'deploy ms':>10} "
        f"{'restart ms':>10} {'messages':>9} {'RSS MiB':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['parallelism']:>6} {r['task_executors']:>5} {r['initialization_ms']:>9.1f} "
            f"{r['slot_allocation_ms']:>9.1f} {r['deployment_ms']:>10.1f} "
            f"{r['restart_computation_ms']:>10.1f} {r['rpc_messages_to_running']:>9} "
            f"{r['peak_rss_mib']:>8.0f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        scale = last["parallelism"] / first["parallelism"]
        print(f"\ngrowth from P={first['parallelism']} to P={last['parallelism']} (x{scale:g}):")
        for key in ("initialization_ms", "deployment_ms", "restart_computation_ms"):
            ratio = last[key] / max(first[key], 1e-9)
            verdict = "linear or better" if ratio <= scale * 1.2 else "WORSE than linear"
            print(f"  {key:<24} x{ratio:.1f} ({verdict})")
    biggest = rows[-1]
    if biggest["parallelism"] == 10_000:
        print("\nagainst Flink 1.14 at P=10000 (published, FLINK-21110):")
        for key, flink in FLINK_1_14.items():
            ours = biggest[f"{key}_ms"]
            verdict = "PASS" if ours < flink else "FAIL"
            print(f"  {key:<20} {ours:>9.1f} ms vs {flink:>6} ms  {verdict}")
        print(f"  peak RSS             {biggest['peak_rss_mib']:>9.0f} MiB (bar: 2048 MiB)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
