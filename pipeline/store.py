"""The job store: where a job's record, dreamt frames and encoded chunks live.

A local folder (the default, beside the output) or any fsspec URL (``s3://bucket/job``, ``gs://...``),
with storage options from the environment as the filesystem reads them (for S3: ``AWS_*`` variables,
``FSSPEC_S3_ENDPOINT_URL``). Workers reach the job through the store only, never through the
command's own paths, so a cluster needs no shared filesystem. Writes are whole: a local file is
written under a temporary name and renamed into place; an object store creates an object whole.

A store is picklable (it travels inside tasks) and holds no connection: each process opens its own.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import PipelineError, UsageError
from .fsutil import write_atomic


class StoreBusy(UsageError):
    """Another run holds the store's lock."""


class StoreUnavailable(PipelineError):
    """The store cannot be read or written (wrong URL, no credentials, not shared with a worker)."""


def is_url(text: str | os.PathLike[str]) -> bool:
    return "://" in str(text) and not str(text).startswith("file://")


class Store:
    """A folder of a job, local or remote. ``rel`` paths use '/'."""

    def __init__(self, url: str | os.PathLike[str]):
        text = str(url)
        if text.startswith("file://"):
            text = text[len("file://"):]
        self.url = text.rstrip("/") if is_url(text) else str(Path(text).resolve())
        self._fs: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Store, (self.url,))

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def local(self) -> bool:
        return not is_url(self.url)

    @property
    def fs(self) -> Any:
        if self._fs is None:
            if self.local:
                from fsspec.implementations.local import LocalFileSystem

                self._fs = LocalFileSystem()
            else:
                import fsspec

                try:
                    self._fs, _ = fsspec.core.url_to_fs(self.url)
                except (ImportError, ValueError) as exc:
                    raise StoreUnavailable(f"{self.url}: {exc}") from None
        return self._fs

    def path(self, rel: str = "") -> str:
        if not rel:
            return self.url
        return f"{self.url}/{rel}" if not self.local else str(Path(self.url) / rel)

    def local_path(self, rel: str = "") -> Path:
        assert self.local
        return Path(self.path(rel))

    # -- bytes --
    def read_bytes(self, rel: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            if self.local:
                return self.local_path(rel).read_bytes()
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"{self.path(rel)}: cannot read ({exc})") from None

    def write_bytes(self, rel: str, data: bytes, durable: bool = True) -> None:
        """Write whole; ``durable=False``: no fsync (see fsutil.write_atomic), for frames, whose size
        tells when a power cut tore one."""
        try:
            if self.local:
                target = self.local_path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, data, durable)
            else:
                self.fs.pipe_file(self.path(rel), data)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path(rel)}: cannot write ({exc})") from None

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise PipelineError(f"{self.path(rel)}: unreadable ({exc}); --restart discards it") from None

    def write_json(self, rel: str, value: Any) -> None:
        self.write_bytes(rel, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())

    # -- files --
    def put_file(self, local: Path, rel: str) -> None:
        """Copy a local file into the store, whole."""
        if self.local:
            import shutil

            target = self.local_path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        else:
            self.fs.put_file(str(local), self.path(rel))

    def get_file(self, rel: str, local: Path) -> Path:
        """A local copy of a stored file (the file itself for a local store)."""
        if self.local:
            return self.local_path(rel)
        self.fs.get_file(self.path(rel), str(local))
        return local

    # -- listing and removal --
    def fresh(self, rel: str) -> str:
        """A remote path, its cached listings dropped first: other processes write this store, and
        fsspec caches what it listed."""
        path = self.path(rel)
        self.fs.invalidate_cache(path)
        return path

    def exists(self, rel: str) -> bool:
        return Path(self.path(rel)).exists() if self.local else self.fs.exists(self.fresh(rel))

    def names(self, rel: str) -> list[str]:
        """Names in a folder (empty when there is none)."""
        try:
            if self.local:
                return sorted(p.name for p in self.local_path(rel).iterdir() if not p.name.startswith("."))
            return sorted(Path(p).name for p in self.fs.ls(self.fresh(rel), detail=False))
        except FileNotFoundError:
            return []

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                self.local_path(rel).unlink()
            else:
                self.fs.rm_file(self.path(rel))

    def delete_tree(self, rel: str = "") -> None:
        if self.local:
            import shutil

            shutil.rmtree(self.local_path(rel), ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path(rel), recursive=True)

    def sweep_partials(self) -> int:
        """Remove the temporary files (``.NAME.*.part``) a killed run left half-written in a local
        store; the job holds the store's lock, so no writer of this job is alive to finish them. An
        object store writes whole objects: nothing to sweep. Returns how many went."""
        if not self.local or not self.local_path().exists():
            return 0
        gone = 0
        for p in self.local_path().rglob(".*.part"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                p.unlink()
                gone += 1
        return gone

    def clear(self) -> None:
        """Remove everything but the lock (which this run holds)."""
        for name in self.names(""):
            if name in ("lock", "lock.json"):
                continue
            if self.local and not self.local_path(name).is_dir():
                self.delete(name)
            else:
                self.delete_tree(name)

    def size(self, rel: str = "") -> int:
        """Bytes stored under ``rel``."""
        if self.local:
            root = self.local_path(rel)
            return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
        try:
            return int(self.fs.du(self.fresh(rel)))
        except FileNotFoundError:
            return 0

    def log(self, text: str) -> None:
        """One line appended to ``events.log`` of a local store, in one write (concurrent lines
        never interleave): what was dreamt in which run, for people and tests asking whether
        anything was done twice. An object store cannot append: nothing is logged there."""
        if self.local:
            self.local_path().mkdir(parents=True, exist_ok=True)
            fd = os.open(self.local_path("events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (text.rstrip("\n") + "\n").encode())
            finally:
                os.close(fd)

    # -- lock --
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One run at a time. A local store takes an advisory lock (released by the kernel when the
        process dies, even by SIGKILL); an object store, a lease object renewed while the run lives,
        taken over when it has not been renewed for LEASE_S, or at once when its holder was a
        process of this machine that no longer exists."""
        if self.local:
            with _flock(self.local_path()):
                yield
        else:
            with _Lease(self):
                yield


@contextlib.contextmanager
def _flock(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise StoreBusy(f"{folder}: work folder in use by another dreamreel run "
                            "(wait for it, or give another --workdir)") from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock; the file itself stays harmlessly


LEASE_S = 60.0


class _Lease:
    def __init__(self, store: Store):
        self.store = store
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder_alive(self, held: dict[str, Any]) -> bool:
        if time.time() - float(held.get("renewed", 0)) > LEASE_S:
            return False
        if held.get("host") == self.me["host"]:
            try:
                os.kill(int(held.get("pid", 0)), 0)
            except (OSError, ValueError):
                return False
        return True

    def __enter__(self) -> _Lease:
        held = self.store.read_json("lock.json")
        if held and held.get("id") != self.me["id"] and self._holder_alive(held):
            raise StoreBusy(f"{self.store.url}: work folder in use by another dreamreel run on {held.get('host')} "
                            f"(wait for it, or give another --workdir)")
        self._renew()
        time.sleep(0.2)  # two runs that raced: the later write wins, the other sees it and yields
        if (self.store.read_json("lock.json") or {}).get("id") != self.me["id"]:
            raise StoreBusy(f"{self.store.url}: work folder taken by another dreamreel run just now")
        self._thread = threading.Thread(target=self._keep, daemon=True, name="dreamreel-lease")
        self._thread.start()
        return self

    def _renew(self) -> None:
        self.store.write_json("lock.json", {**self.me, "renewed": time.time()})

    def _keep(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            with contextlib.suppress(Exception):
                self._renew()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if (self.store.read_json("lock.json") or {}).get("id") == self.me["id"]:
            self.store.delete("lock.json")


def check_output_url(url: str, overwrite: bool, extensions: tuple[str, ...]) -> str:
    """Refuse, before any work, an output URL of the wrong kind, or one that exists (without
    ``overwrite``)."""
    import fsspec

    ext = "." + url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    if ext not in extensions:
        raise UsageError(f"{url}: the output goes in {', '.join(extensions)}, not {ext or 'no extension'!r}")
    try:
        fs, path = fsspec.core.url_to_fs(url)
        exists = fs.exists(path)
    except (ImportError, ValueError, OSError) as exc:
        raise UsageError(f"{url}: cannot reach ({exc})") from None
    if exists and not overwrite:
        raise UsageError(f"{url}: already exists (pass --overwrite to replace it)")
    return url
