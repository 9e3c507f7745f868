"""Dask: where tasks run, chains of tasks (each waits for the one before it), stopping, and deaths.

Local by default: one in-process worker (the model is loaded once) that dreams one task at a time
(TensorFlow already uses every core) while a light task, such as a chunk waiting for its encoder,
runs beside it. ``--workers N`` starts a local cluster of N processes; ``--scheduler
tcp://HOST:PORT`` uses an existing cluster. Local workers run TensorFlow with the thread count the
job recorded when it began, so a job resumed with another ``--workers`` dreams with the same numerics
(README: "Exact results"). Tasks are plain functions of picklable arguments; a chain's task gets the
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
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError

# A task that took this many workers down with it fails (the item, or the job).
MAX_DEATHS = 3
# Closing a client or a local cluster waits at most this long (Ctrl-C must stop within 2 s).
CLOSE_TIMEOUT_S = 1.0

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


def job_threads(workers: int | None, scheduler: str | None) -> int | None:
    """TensorFlow's intra-op threads per worker for a new local job: $DREAMREEL_TF_THREADS, else every
    core shared among the workers. On a cluster the workers decide (None): each reports its layout."""
    from pipeline.runtime import env_threads, usable_cores

    if scheduler:
        return None
    return env_threads() or max(1, usable_cores() // (workers or 1))


def _quiet_dask() -> None:
    # Dask's INFO logs would tear the progress bar; its warnings about a lost worker are expected.
    for name in (
        "distributed",
        "distributed.worker",
        "distributed.scheduler",
        "distributed.nanny",
        "distributed.core",
        "distributed.client",
        "distributed.comm",
        "distributed.http.proxy",
        "distributed.batched",
        "distributed.utils_perf",
        "tornado",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Dask's config sets these to ERROR. While a run stops (Ctrl-C), the tasks and waits it cancels
    # end in tracebacks there (a CI run printed one above the command's one line): dropped then.
    for name in ("tornado.application", "asyncio"):
        log = logging.getLogger(name)
        if _quiet_while_stopping not in log.filters:
            log.addFilter(_quiet_while_stopping)


def _quiet_while_stopping(record: logging.LogRecord) -> bool:
    return not STOP.is_set()


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, threads: int | None = None) -> Iterator[Any]:
    """A Dask client for this run, closed (and a local cluster stopped) at the end.

    Locally, ``threads`` is every worker's intra-op thread count. One worker runs in this process
    when this process's TensorFlow has that count (it is set when TensorFlow loads); otherwise, as
    for ``--workers N``, in processes started with it."""
    import dask
    from distributed import Client, LocalCluster

    from pipeline.runtime import THREADS_ENV

    _quiet_dask()
    cluster = None
    if scheduler:
        _check_listening(scheduler)
        client = _connect(scheduler)
    else:
        n = max(1, workers or 1)
        # Our own count ends a worker-killing task; the scheduler's is only a backstop behind it.
        with dask.config.set({"distributed.scheduler.allowed-failures": MAX_DEATHS + 1}):
            if n == 1 and _threads_here(threads):
                # ":0": Dask serves HTTP even without a dashboard; a fixed port collides between two jobs.
                cluster = LocalCluster(
                    n_workers=1,
                    threads_per_worker=2,
                    processes=False,
                    dashboard_address=":0",
                    worker_dashboard_address=":0",
                    resources=DREAM_SLOT,
                )
            else:
                env = {THREADS_ENV: str(threads)} if threads else {}
                if threads:
                    env["OMP_NUM_THREADS"] = str(threads)
                with _sigint_ignored():  # inherited: Ctrl-C is for this command, which stops the workers
                    cluster = LocalCluster(
                        n_workers=n,
                        threads_per_worker=2,
                        processes=True,
                        dashboard_address=":0",
                        worker_dashboard_address=":0",
                        env=env,
                        silence_logs=logging.CRITICAL,
                        resources=DREAM_SLOT,
                    )
        client = Client(cluster)
        _local_clusters.add(id(client))
    try:
        yield client
    finally:
        _local_clusters.discard(id(client))
        stopping = cluster is not None and STOP.is_set()
        processes = _worker_processes(cluster) if stopping else []
        if stopping:
            _stop_worker_processes(cluster)
        with contextlib.suppress(BaseException):
            client.close(timeout=CLOSE_TIMEOUT_S)
        if cluster is not None:
            with contextlib.suppress(BaseException):
                cluster.close(timeout=CLOSE_TIMEOUT_S)
        if stopping:
            _abandon(cluster, processes)


def _worker_processes(cluster: Any) -> list[Any]:
    """A local cluster's worker processes and everything they started (their encoders), as psutil
    processes: taken before the workers are stopped, when their children are still theirs."""
    import psutil

    found = []
    for w in getattr(cluster, "workers", {}).values():
        pid = getattr(getattr(getattr(w, "process", None), "process", None), "pid", None)
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            found += [proc, *proc.children(recursive=True)]
    return found


def _abandon(cluster: Any, processes: list[Any]) -> None:
    """After Ctrl-C and the bounded closes: what still runs is killed, and the cluster is left as it
    is. Otherwise Dask's exit hook closes a cluster that did not close in time again, waiting up
    to 10 s (a Ctrl-C on a busy machine took 11.5 s to stop)."""
    import psutil

    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(processes, timeout=CLOSE_TIMEOUT_S)
    cluster.shutdown_on_close = False


# Connecting to a scheduler (Dask's own timeout covers only the TCP connection) ends after this long.
CONNECT_TIMEOUT_S = 20.0
NOT_DASK = "the dashboard's port? A scheduler listens on 8786 unless given another"


def _connect(scheduler: str) -> Any:
    """A client of the scheduler at ``scheduler``, or one line saying why not. Dask's client waits
    forever for a service that accepts the connection and then says nothing (a web server), and
    takes a reply in another protocol as a message of exabytes (MemoryError): both are bounded and
    named here. The client is made in a thread of its own so that a wait can be abandoned."""
    from distributed import Client

    made: dict[str, Any] = {}

    def attempt() -> None:
        try:
            made["client"] = Client(scheduler, timeout="10s")
        except BaseException as exc:  # noqa: BLE001 (handed to the command's thread)
            made["error"] = exc

    thread = threading.Thread(target=attempt, name="dreamreel-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise SchedulerError(
            f"the Dask scheduler at {scheduler}: something took the connection but did not answer "
            f"as a Dask scheduler in {CONNECT_TIMEOUT_S:.0f} s ({NOT_DASK})"
        )
    exc = made.get("error")
    if exc is None:
        return made["client"]
    if isinstance(exc, MemoryError):
        raise SchedulerError(
            f"cannot talk to the Dask scheduler at {scheduler}: what answers there is not a Dask scheduler ({NOT_DASK})"
        ) from None
    if isinstance(exc, TypeError) and "ssl_context" in str(exc):
        raise SchedulerError(
            f"the Dask scheduler at {scheduler} takes TLS, and this machine has no client "
            "certificate for it: set Dask's TLS settings (distributed.comm.tls.ca-file, "
            "distributed.comm.tls.client.cert and .key, in Dask's config or as "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE and so on; README: 'On a Dask cluster')"
        ) from None
    if isinstance(exc, OSError | TimeoutError):
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no answer'})"
        ) from None
    raise exc


def _check_listening(scheduler: str) -> None:
    """A TCP address where nothing listens fails at once: Dask's client would retry for its whole
    timeout (10 s) before saying so. Anything else (no answer within 2 s, a name that does not
    resolve) is left to the client, which says it in its own time."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} (connection refused: nothing listens there)"
        ) from None
    except OSError:
        return


def _stop_worker_processes(cluster: Any) -> None:
    """Stop a local cluster's worker processes now. Closing the cluster retires its workers
    gracefully, which waits for a task inside a gradient step to finish its frame (Dask cannot stop
    a running task): seconds to minutes. Work in flight is disposable (frames are written whole), so
    each nanny closes at once, terminating its worker; a closed nanny restarts nothing."""
    import asyncio

    nannies = [w for w in getattr(cluster, "workers", {}).values() if hasattr(w, "process")]

    async def close_all() -> None:
        await asyncio.gather(*(n.close(timeout=0.2, reason="dreamreel-stop") for n in nannies), return_exceptions=True)

    if nannies:
        with contextlib.suppress(BaseException):
            cluster.sync(close_all, callback_timeout=CLOSE_TIMEOUT_S)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while child processes start: they inherit it (across exec too), so a terminal's
    Ctrl-C, sent to the whole process group, reaches only this command, which then stops them."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _threads_here(threads: int | None) -> bool:
    if threads is None:
        return True
    from pipeline.runtime import load_tensorflow, numerics

    load_tensorflow(threads)
    return numerics()["threads"] == threads


def announce_dashboard(client: Any) -> None:
    """One line with the cluster's dashboard, where people watch long jobs (when it has one)."""
    if "dashboard" in client.scheduler_info().get("services", {}):
        logging.getLogger("dreamcore").info("Dask dashboard: %s", client.dashboard_link)


def sees_file(path: str, size: int, mtime_ns: int) -> bool:
    """Run on a worker: whether it sees this very file at this path."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


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
