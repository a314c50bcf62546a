"""The names of a cluster's components, in one place.

A component has two spellings, one for each audience that reads it:

- its **endpoint id**, on the wire, in traces, events and logs, as Flink names its RPC
  endpoints: ``dispatcher``, ``resourcemanager``, ``jobmaster-<job id hex>``,
  ``taskexecutor-<TaskExecutor id>``;
- its **name in scenario files** and the command line, which a person writes: ``dispatcher``,
  ``resource_manager``, ``job_master:<job name>``, ``<TaskExecutor id>`` (``te-1``).

This module is where one becomes the other; no other module builds or splits these strings.
Faults (partitions, kills) are kept by endpoint id, so that a message is checked against them
without translating its sender and receiver.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

# endpoint ids
DISPATCHER = "dispatcher"
RESOURCE_MANAGER = "resourcemanager"
JOB_MASTER_PREFIX = "jobmaster-"
TASK_EXECUTOR_PREFIX = "taskexecutor-"

# names in scenario files
DISPATCHER_NAME = "dispatcher"
RESOURCE_MANAGER_NAME = "resource_manager"
JOB_MASTER_NAME_PREFIX = "job_master:"


def job_master_endpoint(job_id: uuid.UUID) -> str:
    """The endpoint id of a job's JobMaster (also its leader-election component)."""
    return f"{JOB_MASTER_PREFIX}{job_id.hex}"


def task_executor_endpoint(resource_id: str) -> str:
    return f"{TASK_EXECUTOR_PREFIX}{resource_id}"


def task_executor_of(endpoint_id: str | None) -> str | None:
    """The TaskExecutor id of a TaskExecutor's endpoint id; None for any other endpoint."""
    if endpoint_id is not None and endpoint_id.startswith(TASK_EXECUTOR_PREFIX):
        return endpoint_id[len(TASK_EXECUTOR_PREFIX) :]
    return None


def job_of(endpoint_id: str | None) -> str | None:
    """The job id (hex) of a JobMaster's endpoint id; None for any other endpoint."""
    if endpoint_id is not None and endpoint_id.startswith(JOB_MASTER_PREFIX):
        return endpoint_id[len(JOB_MASTER_PREFIX) :]
    return None


def job_name_of(name: str) -> str | None:
    """The job name in a scenario name ``job_master:<job name>``; None for another component."""
    if name.startswith(JOB_MASTER_NAME_PREFIX):
        return name[len(JOB_MASTER_NAME_PREFIX) :]
    return None


def endpoint_of(name: str, job_id_of: Callable[[str], uuid.UUID | None]) -> str:
    """The endpoint id of a component named as scenario files name it. `job_id_of` finds a
    job by its name; ``job_master:<job id hex>`` is accepted too. KeyError for a job that is
    not known."""
    if name == RESOURCE_MANAGER_NAME:
        return RESOURCE_MANAGER
    if name == DISPATCHER_NAME:
        return DISPATCHER
    job = job_name_of(name)
    if job is None:
        return task_executor_endpoint(name)
    job_id = job_id_of(job)
    if job_id is None:
        try:
            job_id = uuid.UUID(hex=job)
        except ValueError:
            raise KeyError(f"no job named {job!r}") from None
    return job_master_endpoint(job_id)
