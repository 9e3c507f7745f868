"""The job's Dask client: a local cluster started and stopped with the command (one in-process
worker by default, ``--workers N`` processes), or an existing cluster (``--scheduler``) reached with
a bounded wait; Ctrl-C stops a local cluster's workers and their encoders at once."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.cluster.schedule import DREAM_SLOT, MAX_DEATHS, STOP, SchedulerError, _local_clusters
from pipeline.runtime import THREADS_ENV, env_threads, load_tensorflow, numerics, usable_cores

log = logging.getLogger("dreamcore")


# Closing a client or a local cluster waits at most this long (Ctrl-C must stop within 2 s).
CLOSE_TIMEOUT_S = 1.0


def job_threads(workers: int | None, scheduler: str | None) -> int | None:
    """TensorFlow's intra-op threads per worker for a new local job: $DREAMREEL_TF_THREADS, else every
    core shared among the workers. On a cluster the workers decide (None): each reports its layout."""

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
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE and so on; docs/cluster.md)"
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

    load_tensorflow(threads)
    return numerics()["threads"] == threads


def announce_dashboard(client: Any) -> None:
    """One line with the cluster's dashboard, where people watch long jobs (when it has one)."""
    if "dashboard" in client.scheduler_info().get("services", {}):
        logging.getLogger("dreamcore").info("Dask dashboard: %s", client.dashboard_link)
