"""A sweep on a Dask cluster: seeds become tasks of an existing distributed engine.

`--workers N` runs seeds in processes of one machine. A user with more seeds than one machine
can take runs them on a Dask cluster instead (`simulate --dask-scheduler tcp://HOST:PORT`,
with the extra `minicluster[dask]`, which is dask.distributed): each seed is one task,
`run_one(seed, faults, duration)`, the same function a local run calls, so a seed that fails
there is repeated on a laptop with `--runs 1 --seed S`. Results come back through Dask's
concurrent.futures executor and are taken in seed order into the same summary.

The workers need minicluster importable (the same version as the client: a run's trace
depends on the code), as for any Dask task.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any, cast


class DaskUnavailableError(RuntimeError):
    """dask.distributed is not installed, or the scheduler cannot be reached."""


@contextmanager
def dask_executor(address: str, timeout: float = 10.0) -> Iterator[tuple[Executor, int]]:
    """An executor on the Dask cluster whose scheduler is at `address`, and how many tasks
    it runs at once (its workers' threads)."""
    try:
        import distributed
    except ImportError:
        raise DaskUnavailableError(
            "--dask-scheduler needs dask.distributed: pip install 'minicluster[dask]'"
        ) from None
    try:
        # dask's own API is untyped: the few calls made here are checked by the tests
        client: Any = cast(Any, distributed).Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise DaskUnavailableError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        slots = sum(client.nthreads().values()) or 1
        yield client.get_executor(), slots
    finally:
        client.close()
