"""Component names: endpoint ids and the names scenario files use, mapped in one place."""

from __future__ import annotations

import uuid

import pytest

from minicluster.cluster.components import (
    endpoint_of,
    job_master_endpoint,
    job_name_of,
    job_of,
    task_executor_endpoint,
    task_executor_of,
)

JOB = uuid.UUID(int=7)


def test_scenario_names_become_endpoint_ids() -> None:
    jobs = {"etl": JOB}.get
    assert endpoint_of("resource_manager", jobs) == "resourcemanager"
    assert endpoint_of("dispatcher", jobs) == "dispatcher"
    assert endpoint_of("te-1", jobs) == "taskexecutor-te-1"
    assert endpoint_of("job_master:etl", jobs) == job_master_endpoint(JOB)
    assert endpoint_of(f"job_master:{JOB.hex}", jobs) == job_master_endpoint(JOB)


def test_a_job_master_of_an_unknown_job_is_refused() -> None:
    with pytest.raises(KeyError, match="no job named 'nope'"):
        endpoint_of("job_master:nope", {}.get)


def test_endpoint_ids_give_back_their_task_executor_or_job() -> None:
    assert task_executor_of(task_executor_endpoint("te-9")) == "te-9"
    assert job_of(job_master_endpoint(JOB)) == JOB.hex
    assert task_executor_of("resourcemanager") is None and job_of("taskexecutor-te-1") is None
    assert job_of(None) is None and task_executor_of(None) is None
    assert job_name_of("job_master:etl") == "etl" and job_name_of("te-1") is None
