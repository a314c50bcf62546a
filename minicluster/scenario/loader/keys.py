"""The keys each map of a scenario, job or config file may hold, written once.

The parsers refuse every other key (a typo such as ``paralelism`` must not run the default and
pass), and docs/scenarios.md documents each of these keys; a test holds the two together. A key
starting with :data:`EXTENSION_PREFIX` is the user's own and is ignored wherever it appears.
"""

from __future__ import annotations

from minicluster.limits import CLUSTER_DURATIONS

# Keys of this prefix are never read: notes, owners or YAML anchors to reuse (as x- in OpenAPI
# and docker-compose files).
EXTENSION_PREFIX = "x-"

SCENARIO_KEYS = ("name", "description", "seed", "checks", "cluster", "steps")

# The cluster durations' keys under cluster:, from limits.CLUSTER_DURATIONS: a one-part key is a
# duration directly in the cluster section (rpc_timeout), a two-part key a sub-map's entry
# (heartbeat: {interval, timeout}).
CLUSTER_DURATION_KEYS = tuple(dict.fromkeys(setting.key[0] for setting in CLUSTER_DURATIONS))
CLUSTER_SUB_MAPS: dict[str, tuple[str, ...]] = {
    section: tuple(s.key[1] for s in CLUSTER_DURATIONS if s.key[0] == section)
    for section in CLUSTER_DURATION_KEYS
    if any(len(s.key) == 2 and s.key[0] == section for s in CLUSTER_DURATIONS)
}
CLUSTER_KEYS = (
    "task_executors",
    "slots_per_executor",
    "rpc",
    "clock",
    "failover_strategy",
    *CLUSTER_DURATION_KEYS,
)
TASK_EXECUTOR_KEYS = ("id", "slots")  # an item of cluster.task_executors, add_task_executor

# A job: the keys of a job file besides name, of a submit step besides job.
JOB_KEYS = (
    "parallelism",
    "task_duration",
    "vertices",
    "edges",
    "restart",
    "failover_strategy",
    "fail",
)
JOB_FILE_KEYS = ("name", *JOB_KEYS)
SUBMIT_KEYS = ("job", *JOB_KEYS)
VERTEX_KEYS = ("name", "parallelism", "task_duration", "fail")
EDGE_KEYS = ("from", "to", "pattern")
RESTART_KEYS = ("attempts", "delay")
FAIL_KEYS = ("subtasks", "after", "attempts")

# Conditions: exactly one of CONDITION_KEYS; job with status and restarts.
CONDITION_KEYS = (
    "status",
    "restarts",
    "free_slots",
    "registered_task_executors",
    "fencing_rejections",
)
EXPECT_KEYS = (*CONDITION_KEYS, "job")
WAIT_KEYS = (*EXPECT_KEYS, "timeout")
COUNT_KEYS = ("min", "max")

# Steps besides submit, wait and expect.
TASK_EXECUTOR_REFERENCE_KEYS = ("id",)  # kill_task_executor, stop_task_executor as a map
FAIL_TASK_KEYS = ("job", "subtask", "vertex")
MEMBER_KEYS = ("job_master",)  # a failover target or partition member as a map
PARTITION_KEYS = ("between", "duration")
CANCEL_KEYS = ("job",)

STEP_KINDS = (
    "submit",
    "wait",
    "expect",
    "kill_task_executor",
    "stop_task_executor",
    "add_task_executor",
    "fail_task",
    "failover",
    "partition",
    "sleep",
    "cancel",
)

# Every place of a file that is a map, and the keys it may hold. A config file (start --config)
# may be a scenario file: it takes the scenario's top-level keys and reads only cluster.
KEYS_BY_PLACE: dict[str, tuple[str, ...]] = {
    "scenario": SCENARIO_KEYS,
    "cluster": CLUSTER_KEYS,
    **{f"cluster.{section}": keys for section, keys in CLUSTER_SUB_MAPS.items()},
    "cluster.task_executors[]": TASK_EXECUTOR_KEYS,
    "steps[]": STEP_KINDS,
    "submit": SUBMIT_KEYS,
    "wait": WAIT_KEYS,
    "expect": EXPECT_KEYS,
    "count": COUNT_KEYS,
    "kill_task_executor": TASK_EXECUTOR_REFERENCE_KEYS,
    "stop_task_executor": TASK_EXECUTOR_REFERENCE_KEYS,
    "add_task_executor": TASK_EXECUTOR_KEYS,
    "fail_task": FAIL_TASK_KEYS,
    "failover": MEMBER_KEYS,
    "partition": PARTITION_KEYS,
    "partition.between[]": MEMBER_KEYS,
    "cancel": CANCEL_KEYS,
    "job file": JOB_FILE_KEYS,
    "vertices[]": VERTEX_KEYS,
    "edges[]": EDGE_KEYS,
    "restart": RESTART_KEYS,
    "fail": FAIL_KEYS,
    "config file": SCENARIO_KEYS,
}


def is_extension(key: str) -> bool:
    """Whether ``key`` is the user's own (``x-owner``), never read and never refused."""
    return key.startswith(EXTENSION_PREFIX)
