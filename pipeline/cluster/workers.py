"""What every job's tasks need on a Dask worker, whatever the command: the check that the worker
sees the job's store, the files it reads made visible to it (uploaded to the store when it does not
see the command's), one network per process, and the end of a job's per-process state (encoders,
decoders, prefetches) when it fails or is interrupted."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dreamcore.config import DreamConfig
from dreamcore.engine import Engine
from dreamcore.errors import WeightsError
from pipeline.cluster.schedule import SchedulerError
from pipeline.io import decoders
from pipeline.job.locations import ends_digest, stored_ends_digest, worker_copy
from pipeline.job.record import file_fingerprint
from pipeline.job.store import Store, StoreNotShared, StoreUnavailable, is_url
from pipeline.settings import model_path

log = logging.getLogger("dreamcore")

_verified: set[tuple[str, str]] = set()
_releases: list[Callable[[str | None], None]] = []


class JobTicket(Protocol):
    """What a job's tasks carry that a worker checks: the job, its store and the command's token."""

    @property
    def id(self) -> str: ...
    @property
    def store(self) -> Store: ...
    @property
    def token(self) -> str: ...


def check_job(job: JobTicket) -> None:
    """This worker sees the job's store: the token the command wrote there is the job's. Once per
    job and worker, for workers that join later too."""

    if (job.id, job.token) in _verified:
        return
    try:
        found = job.store.read_bytes("token")
    except StoreUnavailable as exc:
        raise StoreNotShared(f"worker {socket.gethostname()} cannot read the job store ({exc})") from None
    if found is None or found.decode().strip() != job.token:
        raise StoreNotShared(
            f"worker {socket.gethostname()} does not see this job's store at {job.store.url} "
            f"({'no job there' if found is None else 'another job there'}): a folder local to "
            "another machine? give --workdir a path or URL that every worker shares"
        )
    _verified.add((job.id, job.token))


def _reads_token(store: Store, token: str) -> str | None:
    """Run on a worker: None when it reads this token from the store, else why not."""

    try:
        found = store.read_bytes("token")
    except StoreUnavailable as exc:
        return f"worker {socket.gethostname()} cannot read the job store ({exc})"
    if found is None or found.decode().strip() != token:
        return f"worker {socket.gethostname()} does not see this job's store at {store.url}"
    return None


def check_store_shared(client: Any, store: Store, token: str) -> None:
    """Every worker of the cluster now sees the job's store (the command wrote ``token`` there):
    checked before any work; workers that join later check in their first task."""
    answers = client.run(_reads_token, store, token)
    if not answers:
        raise SchedulerError("the Dask cluster has no workers")
    bad = [why for why in answers.values() if why]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise StoreNotShared(
            f"{bad[0]}{more}: a folder local to another machine? give --workdir a path or URL that every worker shares"
        )


def file_for_workers(client: Any, store: Store, src: Path, folder: str) -> str:
    """Where the cluster's workers read a local file: its path when every worker sees the same
    file there; else a copy in the store (``folder/NAME``), uploaded once."""
    st = src.stat()
    answers = client.run(sees_file, str(src.resolve()), st.st_size, st.st_mtime_ns)
    if not answers:
        raise SchedulerError("the Dask cluster has no workers")
    if all(answers.values()):
        return str(src.resolve())
    rel = f"{folder}/{src.name}"
    if store.size(rel) != st.st_size or stored_ends_digest(store, rel, st.st_size) != ends_digest(src):
        log.warning("the cluster's workers do not see %s: uploading it to the job store once", src)
        store.put_file(src, rel)
    return store.path(rel)


def config_for_workers(client: Any, store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The job's config as the cluster's workers load it: a model file they do not see is uploaded to
    the store once (``model/FINGERPRINT/NAME``) and named there; each worker copies it locally."""
    path = model_path(config.get("model", "auto"))
    if path is None or not path.is_file():  # a built-in, or a SavedModel folder (not uploaded)
        return config
    folder = f"model/{file_fingerprint(path)['sha256_ends'][:16]}"
    return {**config, "model": file_for_workers(client, store, path, folder)}


def abort_local() -> None:
    """Ctrl-C: end this process's encoders and decoders now, and wait for them. Sent SIGINT with the
    terminal's process group, ffmpeg would finish its file first and could outlive the command."""
    release_job(None)


def release_job(job_id: str | None) -> None:
    """End this process's encoders, decoders and prefetches of one job (None: of every job), and
    remove their temporary folders: a failed job's partial chunks are not left behind."""
    for release in _releases:
        release(job_id)
    decoders.release(job_id)


def on_release(release: Callable[[str | None], None]) -> None:
    """Register what a command's tasks keep per process (the video tasks' encoders and prefetches),
    to be ended by :func:`release_job`."""
    if release not in _releases:
        _releases.append(release)


def engine(cfg: DreamConfig) -> Engine:
    """The network the command resolved, built once per worker; a worker that cannot load it fails
    the job, naming itself (it never falls back to another network)."""
    if is_url(cfg.model):  # a model file uploaded to the job store: a local copy, once per machine
        key = "model-" + cfg.model.rstrip("/").split("/")[-2]
        cfg = cfg.replace(model=worker_copy(cfg.model, key, "model file"))
    try:
        return Engine(cfg)
    except WeightsError as exc:
        raise WeightsError(f"worker {socket.gethostname()}: {exc}") from None


def sees_file(path: str, size: int, mtime_ns: int) -> bool:
    """Run on a worker: whether it sees this very file at this path."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns
