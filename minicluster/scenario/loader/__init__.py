"""Scenario files and job files: safe YAML loading that keeps line numbers, validated into types.

Every problem with a file is a :class:`ScenarioError` that names the file, the path inside it
(``steps[3].submit.parallelism``) and the line, in one sentence. A key this reader does not know
is an error with a did-you-mean hint, like an unknown step kind: a typo such as ``paralelism``
would otherwise run the default and pass. Sizes (the file, steps, jobs, TaskExecutors, names)
are bounded by :mod:`minicluster.limits`, so a hostile file is refused before it costs time.

Step indexes are 0-based, as in the paths (``steps[0]`` is the first step).
"""

# The loader is a package of modules with one job each: model (the dataclasses), reader (safe
# YAML with line numbers), jobs and parsers. Every public name is importable from here.

from minicluster.limits import (
    MAX_TASK_EXECUTORS,
)
from minicluster.scenario.loader.model import (
    DEFAULT_WAIT_TIMEOUT,
    AddTaskExecutorStep,
    BaseCondition,
    BaseStep,
    CancelStep,
    ClusterSpec,
    ClusterView,
    Condition,
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
    ScenarioWarning,
    SleepStep,
    Source,
    Step,
    StopTaskExecutorStep,
    SubmitStep,
    TaskExecutorSpec,
    WaitStep,
    to_job_graph,
)
from minicluster.scenario.loader.parsers import (
    load_cluster_config,
    load_job_file,
    load_scenario,
    parse_cluster_config,
    parse_job,
    parse_scenario,
)

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "MAX_TASK_EXECUTORS",
    "AddTaskExecutorStep",
    "BaseCondition",
    "BaseStep",
    "CancelStep",
    "ClusterSpec",
    "ClusterView",
    "Condition",
    "Count",
    "ExpectStep",
    "FailTaskStep",
    "FailoverStep",
    "FencingRejectionsCondition",
    "FreeSlotsCondition",
    "JobRestartsCondition",
    "JobSpec",
    "JobStatusCondition",
    "KillTaskExecutorStep",
    "PartitionStep",
    "RegisteredTaskExecutorsCondition",
    "Scenario",
    "ScenarioError",
    "ScenarioWarning",
    "SleepStep",
    "Source",
    "Step",
    "StopTaskExecutorStep",
    "SubmitStep",
    "TaskExecutorSpec",
    "WaitStep",
    "load_job_file",
    "load_scenario",
    "parse_job",
    "parse_scenario",
    "to_job_graph",
    "load_cluster_config",
    "parse_cluster_config",
]
