"""Dask: where tasks run, chains of tasks (each waits for the one before it), stopping, and deaths.

Local by default: one in-process worker (the model is loaded once) that dreams one task at a time
(TensorFlow already uses every core) while a light task, such as a chunk waiting for its encoder,
runs beside it. ``--workers N`` starts a local cluster of N processes; ``--scheduler
tcp://HOST:PORT`` uses an existing cluster. Local workers run TensorFlow with the thread count the
job recorded when it began, so a job resumed with another ``--workers`` dreams with the same numerics
(docs/exact.md). Tasks are plain functions of picklable arguments; a chain's task gets the
previous task's future as an argument, which is all Dask needs to order them.

A worker lost mid-task costs only that task: the scheduler runs it again elsewhere. The results
it held are computed again too, with their lineage (the earlier tasks of a chain); the video tasks
make that cheap and harmless (a stored frame is read, an encoded one skipped). A task that
keeps taking workers down is stopped by the job itself: every start of a task leaves a mark in the
job's work folder, and the start after :data:`MAX_DEATHS` unfinished ones fails at once. That bound
holds whatever the scheduler's own ``allowed-failures`` is (a remote scheduler never reads this
client's config); a scheduler set lower reports ``KilledWorker`` first, which ends the same way.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError

# A task that took this many workers down with it fails (the item, or the job).
MAX_DEATHS = 3

# Set the moment the command is interrupted; tasks in this process poll it between gradient steps.
STOP = threading.Event()
# Set by Ctrl-C and kept: Python may deliver the KeyboardInterrupt inside a finalizer (a Dask
# future's __del__), which swallows it; the scheduling loop then still sees this and stops.
INTERRUPTED = threading.Event()


def on_sigint(signum: int, frame: Any) -> None:
    """The command's SIGINT handler: remember, tell this process's tasks, then interrupt."""
    INTERRUPTED.set()
    STOP.set()
    raise KeyboardInterrupt


class Stopped(Exception):
    """Raised inside a task when the run is being stopped (Ctrl-C)."""


def check_stop(*_: Any) -> None:
    """A progress callback that ends the task when the run is stopping."""
    if STOP.is_set():
        raise Stopped()


@dataclass(frozen=True)
class Ref:
    """In a task's arguments: the result of the earlier task with this key (``KEY-summary``: its
    summary's, small, for a task that only has to come after it)."""

    key: str


@dataclass
class Task:
    """A function call for Dask. Arguments may hold :class:`Ref` s to earlier tasks' results. With
    a ``summary``, the command never fetches the (large) result: it waits for ``summary(result)``,
    computed where the result is."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    summary: Callable[[Any], Any] | None = None
    # A light task (waiting on an encoder, moving a file) runs beside the dream on a local worker;
    # the others take the worker's one dream slot (see :data:`DREAM_SLOT`).
    light: bool = False


# Local workers have two threads and one "dream" resource: every task but the light ones needs it,
# so one dream runs at a time (TensorFlow already uses every core) while a chunk task waits for its
# encoder to drain beside it. Without it, that wait (x264's look-ahead: ~40 frames) stalls the
# dreaming. Workers of a cluster the command did not start have no such resource, and tasks sent
# there ask for none.
DREAM_SLOT = {"dream": 1}


_local_clusters: set[int] = set()


class SchedulerError(PipelineError):
    """The Dask scheduler cannot be reached, or was lost mid-job."""


LOST_SCHEDULER = (
    "lost the Dask scheduler mid-job (its tasks were cancelled); run the same command again, against "
    "a new scheduler if need be: it resumes"
)


class WorkerDeaths(PipelineError):
    """A task took :data:`MAX_DEATHS` workers down with it."""


@dataclass(frozen=True)
class DeathGuard:
    """Where a job counts the starts of its tasks: ``<prefix>/<task key>/<run>-<n>`` marks in its
    store, one per start in this run (a run is one invocation of the command; an earlier run's
    marks are from kills of the command, not deaths of workers)."""

    store: Any  # pipeline.job.store.Store
    prefix: str = "attempts"
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    limit: int = MAX_DEATHS

    def started(self, key: str) -> None:
        folder = f"{self.prefix}/{key}"
        mine = [m for m in self.store.names(folder) if m.startswith(self.run)]
        if len(mine) >= self.limit:
            raise WorkerDeaths(
                f"took down {len(mine)} workers (out of memory? try --max-side or a smaller --set tile=...)"
            )
        self.store.write_bytes(f"{folder}/{self.run}-{uuid.uuid4().hex[:8]}", b"", durable=False)  # a mark only

    def finished(self, key: str) -> None:
        self.store.delete_tree(f"{self.prefix}/{key}")


def _guarded(guard: DeathGuard, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    guard.started(key)
    result = fn(*args, **kwargs)
    guard.finished(key)
    return result


def run_chains(
    client: Any,
    chains: Sequence[Sequence[Task]],
    on_result: Callable[[Any], None],
    on_error: Callable[[Task, BaseException], None] | None = None,
    guard: DeathGuard | None = None,
) -> None:
    """Chains of tasks, each task waiting for the one before it (given as its ``after``)."""
    tasks = []
    for chain in chains:
        prev = None
        for task in chain:
            kwargs = dict(task.kwargs) if prev is None else {**task.kwargs, "after": Ref(prev.key)}
            tasks.append(Task(task.key, task.fn, task.args, kwargs, task.summary, task.light))
            prev = task
    run_graph(client, tasks, on_result, on_error, guard)


def _as_completed(futures: list[Any]) -> Iterator[Any]:
    """Futures as they finish, in half-second waits, so that an interrupt that Python swallowed is
    still noticed (:data:`INTERRUPTED`) within half a second."""
    from distributed import wait
    from distributed.client import FuturesCancelledError

    pending = set(futures)
    while pending:
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        try:
            done, _ = wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            continue
        except FuturesCancelledError:
            raise SchedulerError(LOST_SCHEDULER) from None
        for fut in done:
            pending.discard(fut)
            yield fut


def _refs(value: Any) -> list[str]:
    if isinstance(value, Ref):
        return [value.key]
    if isinstance(value, (list, tuple)):
        return [k for v in value for k in _refs(v)]
    if isinstance(value, dict):
        return [k for v in value.values() for k in _refs(v)]
    return []


def _bind(value: Any, futures: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return futures[value.key]
    if isinstance(value, (list, tuple)):
        return type(value)(_bind(v, futures) for v in value)
    if isinstance(value, dict):
        return {k: _bind(v, futures) for k, v in value.items()}
    return value


def run_graph(
    client: Any,
    tasks: Sequence[Task],
    on_result: Callable[[Any], None],
    on_error: Callable[[Task, BaseException], None] | None = None,
    guard: DeathGuard | None = None,
) -> None:
    """Submit the tasks in order (earlier ones first when several could run) and call
    ``on_result`` with each result (or summary) as it finishes. A failed task goes to ``on_error``
    when given (a batch records it and goes on); otherwise it raises, after the remaining tasks are
    cancelled. The command holds a task's future only until its last dependent is submitted, so
    Dask drops every result as soon as nothing needs it. With a ``guard``, a task that keeps killing
    workers fails after ``guard.limit`` deaths. Ctrl-C sets :data:`STOP` at once, then cancels."""
    if not INTERRUPTED.is_set():
        STOP.clear()
    last_use = {}
    for n, task in enumerate(tasks):
        for key in _refs((task.args, task.kwargs)):
            last_use[key] = n
    futures: dict[str, Any] = {}
    watched: dict[Any, Task] = {}
    slot = DREAM_SLOT if id(client) in _local_clusters else None
    for n, task in enumerate(tasks):
        fn, args = task.fn, _bind(task.args, futures)
        if guard is not None:
            fn, args = _guarded, (guard, task.key, task.fn, *args)
        # An explicit priority: submissions within Dask's fifo_timeout (100 ms) share one, and then
        # the order is arbitrary (chains interleave, chunks wait, stored frames pile up).
        fut = client.submit(
            fn,
            *args,
            key=task.key,
            pure=False,
            priority=-n,
            resources=None if task.light else slot,
            **_bind(task.kwargs, futures),
        )
        if task.key in last_use:
            futures[task.key] = fut
        if task.summary is not None:
            fut = client.submit(task.summary, fut, key=f"{task.key}-summary", pure=False, priority=-n)
            if f"{task.key}-summary" in last_use:
                futures[f"{task.key}-summary"] = fut
        watched[fut] = task
        for key in _refs((task.args, task.kwargs)):
            if last_use[key] == n:
                del futures[key]
    try:
        for fut in _as_completed(list(watched)):
            task = watched.pop(fut)
            if fut.status == "error" and on_error is not None:
                on_error(task, fut.exception())
                continue
            # "lost" is not this: a finished task whose result died with its worker is lost until
            # Dask computes it again, which result() waits for.
            if fut.status == "cancelled":
                raise SchedulerError(LOST_SCHEDULER)
            on_result(fut.result())
    except BaseException:
        STOP.set()
        with contextlib.suppress(BaseException):
            client.cancel([*watched, *futures.values()], asynchronous=False)
        raise
