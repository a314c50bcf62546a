"""The cluster runtime: Flink's Dispatcher, ResourceManager, JobMaster and TaskExecutor as
endpoints of minicluster.rpc, and MiniCluster to run them together."""

from .context import ClusterConfig, Event
from .minicluster import MiniCluster
from .model import (
    DuplicateJobSubmissionError,
    ExecutionState,
    JobEdge,
    JobGraph,
    JobNotFoundError,
    JobStateError,
    JobStatus,
    JobVertex,
    RestartStrategy,
    SlotOccupiedError,
)

__all__ = [
    "ClusterConfig",
    "DuplicateJobSubmissionError",
    "Event",
    "ExecutionState",
    "JobEdge",
    "JobGraph",
    "JobNotFoundError",
    "JobStateError",
    "JobStatus",
    "JobVertex",
    "MiniCluster",
    "RestartStrategy",
    "SlotOccupiedError",
]
