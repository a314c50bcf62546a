"""minicluster: Flink's RPC layer and cluster coordination, re-created in Python with trio."""

__version__ = "0.1.0"
