"""Dask: where tasks run, and chains of tasks (each waits for the one before it).

Local by default: one in-process worker with one thread (TensorFlow already uses every core, and
the model is loaded once). ``--workers N`` starts a local cluster of N processes, each with
TensorFlow limited to its share of the cores; ``--scheduler tcp://HOST:PORT`` uses an existing
cluster, whose workers must see the same paths. Tasks are plain functions of picklable arguments;
a chain's task gets the previous task's future as an argument, which is all Dask needs to order
them. A worker lost mid-task costs only that task: the scheduler runs it again elsewhere, and a
task that keeps killing workers ends as that task's failure (``KilledWorker``), not a hung job.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PipelineError

# How many times a task may take a worker down with it before it counts as failed.
ALLOWED_FAILURES = 2


@dataclass
class Task:
    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class SchedulerError(PipelineError):
    """The Dask scheduler cannot be reached, or was lost mid-job."""


def _quiet_dask() -> None:
    # Dask's INFO logs would tear the progress bar; its warnings about a lost worker are expected.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.client", "distributed.comm", "distributed.http.proxy",
                 "distributed.batched", "distributed.utils_perf", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client for this run, closed (and a local cluster stopped) at the end."""
    import dask
    from distributed import Client, LocalCluster

    _quiet_dask()
    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no answer'})") from None
    else:
        if workers and workers > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, worker_dashboard_address=None,
                                   env={"DREAMREEL_TF_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)})
        else:
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                                   worker_dashboard_address=None)
        client = Client(cluster)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


def _probe_paths(read: str, write_dir: str) -> str | None:
    """Run on each worker: None when it can read ``read`` and write in ``write_dir``."""
    import socket
    import tempfile

    if not os.access(read, os.R_OK):
        return f"{socket.gethostname()} cannot read {read}"
    try:
        with tempfile.NamedTemporaryFile(dir=write_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        return f"{socket.gethostname()} cannot write in {write_dir} ({exc.strerror})"
    return None


def check_shared_paths(client: Any, read: Path, write_dir: Path) -> None:
    """Every worker must see the input and the work folder at the same paths (a shared filesystem)."""
    answers = client.run(_probe_paths, str(read), str(write_dir))
    if not answers:
        raise SchedulerError("the Dask cluster has no workers")
    bad = [f"{addr}: {why}" for addr, why in answers.items() if why]
    if bad:
        raise SchedulerError(f"Dask workers must see the same paths as this machine (a shared filesystem): "
                             f"{bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def run_chains(
    client: Any,
    chains: Sequence[Sequence[Task]],
    on_result: Callable[[Any], None],
    on_error: Callable[[Task, BaseException], None] | None = None,
) -> None:
    """Submit every chain and call ``on_result`` as each task finishes. A failed task goes to
    ``on_error`` when given (the batch records it and goes on); otherwise it raises, after the
    remaining tasks are cancelled."""
    from distributed import as_completed

    futures = {}
    for chain in chains:
        prev = None
        for task in chain:
            kwargs = dict(task.kwargs)
            if prev is not None:
                kwargs["after"] = prev
            prev = client.submit(task.fn, *task.args, key=task.key, pure=False, **kwargs)
            futures[prev] = task
    try:
        for fut in as_completed(list(futures)):
            if fut.status == "error" and on_error is not None:
                on_error(futures[fut], fut.exception())
                continue
            if fut.status in ("cancelled", "lost"):
                raise SchedulerError("lost the Dask scheduler mid-job (its tasks were cancelled); run the same "
                                     "command again, against a new scheduler if need be: it resumes")
            on_result(fut.result())
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
        raise
