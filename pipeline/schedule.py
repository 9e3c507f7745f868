"""Dask: where tasks run, and chains of tasks (each waits for the one before it).

Local by default: one in-process worker with one thread (TensorFlow already uses every core, and
the model is loaded once). ``--workers N`` starts a local cluster of N processes. Tasks are plain
functions of picklable arguments; a chain's task gets the previous task's future as an argument,
which is all Dask needs to order them. Chains are independent of each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def dask_client(workers: int | None = None) -> Iterator[Any]:
    """A Dask client for this run, closed (and its cluster stopped) at the end."""
    from distributed import Client, LocalCluster

    # Dask's own INFO logs would tear the progress bar.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if workers and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
               "OMP_NUM_THREADS": str(threads)}
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               worker_dashboard_address=None, env=env)
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def run_chains(client: Any, chains: Sequence[Sequence[Task]], on_result: Callable[[Any], None]) -> None:
    """Submit every chain and call ``on_result`` as each task finishes; the first error raises
    (after the remaining tasks are cancelled)."""
    from distributed import as_completed

    futures = []
    for chain in chains:
        prev = None
        for task in chain:
            kwargs = dict(task.kwargs)
            if prev is not None:
                kwargs["after"] = prev
            prev = client.submit(task.fn, *task.args, key=task.key, pure=False, retries=2, **kwargs)
            futures.append(prev)
    try:
        for fut in as_completed(futures):
            on_result(fut.result())
    except BaseException:
        client.cancel(futures)
        raise
