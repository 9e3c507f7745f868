"""The job store: where a job's record, dreamt frames and encoded chunks live.

A local folder (the default, beside the output) or any fsspec URL (``s3://bucket/job``, ``gs://...``),
with storage options from the environment as the filesystem reads them (for S3: ``AWS_*`` variables,
``FSSPEC_S3_ENDPOINT_URL``). Workers reach the job through the store only, never through the
command's own paths, so a cluster needs no shared filesystem. Writes are whole: a local file is
written under a temporary name and renamed into place; an object store creates an object whole.

A store is picklable (it travels inside tasks) and holds no connection: each process opens its own.

A work folder is dreamreel's own (:meth:`Store.claim`): a marker (``.dreamreel``) written when a job
first takes it says so, and whether dreamreel created the folder. A folder, prefix or bucket that
already holds anything else is refused. Removing a job (:meth:`Store.remove`, ``--restart``)
removes only the names dreamreel writes there, and the folder itself only when dreamreel created
it and nothing else was put in it since; a bucket is never removed.
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

from pipeline.errors import EXIT_USAGE, PipelineError, Unwritable, UsageError, redact, write_fault
from pipeline.io.fsutil import copy_atomic, write_atomic
from pipeline.job.integrity import Damaged, check_file, payload, seal_file, trailer


class StoreBusy(UsageError):
    """Another run holds the store's lock."""


class StoreUnavailable(PipelineError):
    """The store cannot be read or written (wrong URL, no credentials, not shared with a worker)."""


class StoreNotShared(StoreUnavailable):
    """A worker does not see the job's store (a path local to another machine): the user must give
    one every worker shares, so it is bad usage."""

    exit_code = EXIT_USAGE


class ForeignFolder(UsageError):
    """A work folder that holds what dreamreel did not write there."""


def is_url(text: str | os.PathLike[str]) -> bool:
    return "://" in str(text) and not str(text).startswith("file://")


# The marker of a work folder, and every name dreamreel writes at the top of one: the only names it
# ever removes there.
MARKER = ".dreamreel"
OWN_FILES = frozenset(
    {MARKER, "lock", "lock.json", "job.json", "job.copy.json", "token", "events.log", "guide.png", "guide-pts.json"}
)
OWN_FOLDERS = frozenset({"frames", "chunks", "attempts", "input", "model", "guide", "out"})
_LOCKS = ("lock", "lock.json")


def _partial(name: str) -> bool:
    """A temporary name of a write cut short (fsutil.write_atomic, Store.put_file)."""
    return name.startswith(".") and name.endswith(".part")


class Store:
    """A folder of a job, local or remote. ``rel`` paths use '/'."""

    def __init__(self, url: str | os.PathLike[str]):
        text = str(url)
        if text.startswith("file://"):
            text = text[len("file://") :]
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
            raise self._cannot("read", rel, exc) from None

    def write_bytes(self, rel: str, data: bytes | list[Any], durable: bool = True) -> None:
        """Write whole (``data``: bytes, or buffers written one after the other); ``durable=False``:
        no fsync (see fsutil.write_atomic), for checksummed data that can be made again."""
        try:
            if self.local:
                target = self.local_path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, data, durable)
            else:
                self.fs.pipe_file(self.path(rel), data if isinstance(data, bytes) else b"".join(data))
        except OSError as exc:
            raise self._cannot("write", rel, exc) from None

    def _cannot(self, what: str, rel: str, exc: OSError) -> PipelineError:
        fault = write_fault(exc)
        if fault and what == "write":
            return Unwritable(
                f"{redact(self.path(rel))}: cannot write ({fault}): free some space or give --workdir "
                "another folder, then run the same command again: what is done is kept"
            )
        return StoreUnavailable(f"{redact(self.path(rel))}: cannot {what} ({redact(str(exc))})")

    def write_sealed(self, rel: str, data: bytes | memoryview, durable: bool = False) -> None:
        """Write ``data`` with its checksum (pipeline.job.integrity), read back by :meth:`read_sealed`."""
        self.write_bytes(rel, [data, trailer([data])], durable)

    def read_sealed(self, rel: str) -> memoryview | None:
        """What :meth:`write_sealed` wrote, checked (None when there is none); a damaged file raises
        :class:`~pipeline.job.integrity.Damaged`."""
        data = self.read_bytes(rel)
        return None if data is None else payload(data, rel, redact(self.path(rel)))

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise PipelineError(f"{redact(self.path(rel))}: unreadable ({exc})") from None

    def write_json(self, rel: str, value: Any) -> None:
        self.write_bytes(rel, (json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())

    # -- files --
    def put_file(self, local: Path, rel: str, sealed: bool = False) -> None:
        """Copy a local file into the store, whole and durably (fsynced, then renamed, its folder
        fsynced: it may be the only copy of work that took hours). ``sealed``: a checksum is
        appended to ``local`` first (a file of ours, such as a chunk just encoded)."""
        if sealed:
            seal_file(local)
        try:
            if self.local:
                target = self.local_path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                copy_atomic(local, target)
            else:
                self.fs.put_file(str(local), self.path(rel))
        except OSError as exc:
            raise self._cannot("write", rel, exc) from None

    def get_file(self, rel: str, local: Path) -> Path:
        """A local copy of a stored file (the file itself for a local store)."""
        if self.local:
            return self.local_path(rel)
        try:
            self.fs.get_file(self.path(rel), str(local))
        except FileNotFoundError:
            raise Damaged(rel, redact(self.path(rel)), "missing") from None
        return local

    def get_sealed(self, rel: str, local: Path) -> Path:
        """:meth:`get_file` of a file stored with ``sealed=True``, its checksum checked
        (:class:`~pipeline.job.integrity.Damaged` when it does not match)."""
        path = self.get_file(rel, local)
        check_file(path, rel, redact(self.path(rel)))
        return path

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
        """Names in a folder of the store, hidden ones left out (empty when there is none)."""
        try:
            if self.local:
                return sorted(p.name for p in self.local_path(rel).iterdir() if not p.name.startswith("."))
            return sorted(
                n
                for p in self.fs.ls(self.fresh(rel), detail=False)
                if not (n := Path(p.rstrip("/")).name).startswith(".")
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                self.local_path(rel).unlink()
            else:
                self.fs.rm_file(self.path(rel))

    def delete_tree(self, rel: str) -> None:
        """Remove a folder of the store and everything under it; never the store itself."""
        if not rel.strip("/"):
            raise ValueError("delete_tree: a store's own root is removed by Store.remove only")
        if self.local:
            import shutil

            shutil.rmtree(self.local_path(rel), ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path(rel), recursive=True)

    def entries(self) -> list[str]:
        """Every name at the top of the store, hidden ones included (empty when there is none)."""
        try:
            if self.local:
                return sorted(os.listdir(self.local_path()))
            return sorted(Path(p.rstrip("/")).name for p in self.fs.ls(self.fresh(""), detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._cannot("read", "", exc) from None

    def holds_files(self, rel: str) -> bool:
        """Whether any file lies under ``rel`` (empty folders do not count)."""
        if self.local:
            root = self.local_path(rel)
            return root.is_dir() and any(p.is_file() for p in root.rglob("*"))
        try:
            return bool(self.fs.find(self.fresh(rel)))
        except FileNotFoundError:
            return False

    def sweep_partials(self) -> int:
        """Remove the temporary files (``.NAME.*.part``) a killed run left half-written in a local
        store, in the folders dreamreel writes; the job holds the store's lock, so no writer of
        this job is alive to finish them. An object store writes whole objects: nothing to sweep.
        Returns how many went."""
        if not self.local or not self.local_path().exists():
            return 0
        gone = 0
        places = [self.local_path()] + [self.local_path(f) for f in OWN_FOLDERS if self.local_path(f).is_dir()]
        for place in places:
            found = place.glob(".*.part") if place == self.local_path() else place.rglob(".*.part")
            for p in found:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    p.unlink()
                    gone += 1
        return gone

    # -- a work folder of dreamreel's own --
    def claim(self) -> bool:
        """Take this store as a work folder: create it with its marker, or check that it is one.
        Returns whether dreamreel created the folder (recorded in the marker, so a later run knows).

        Refused (:class:`ForeignFolder`): a folder, prefix or bucket that holds anything dreamreel did
        not write there. Taken as it is: a new or empty one (an empty folder that existed is used,
        and left in place when the job is removed), or one with dreamreel's marker. A folder an
        older dreamreel left (no marker, only dreamreel's names, a job record) is taken too."""
        created = False
        if self.local:
            folder = self.local_path()
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"{folder}: is a file, not a folder (--workdir names a work folder)")
            try:
                folder.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise Unwritable(f"{folder}: cannot create the work folder ({write_fault(exc) or exc})") from None
        marker = self.read_json(MARKER) if MARKER in (names := self.entries()) else None
        if isinstance(marker, dict) and marker.get("dreamreel") == "work folder":
            return bool(marker.get("created"))
        foreign = [n for n in names if n not in OWN_FILES and n not in OWN_FOLDERS and not _partial(n)]
        if MARKER in names:
            foreign.insert(0, MARKER)
        if foreign:
            shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
            raise ForeignFolder(
                f"{redact(self.url)}: holds files dreamreel did not write there ({shown}); a work "
                "folder is dreamreel's alone and is removed when the job is done: give --workdir "
                "a new or empty folder"
            )
        if names and not _legacy_record(self):
            raise ForeignFolder(
                f"{redact(self.url)}: holds {', '.join(names[:4])} but no dreamreel job: give "
                "--workdir a new or empty folder"
            )
        if not self.local:
            created = not names and "/" in self.fs._strip_protocol(self.url).strip("/")  # never a bucket itself
        self.write_json(MARKER, {"dreamreel": "work folder", "created": created})
        return created

    def remove(self) -> list[str]:
        """Remove the job: the names dreamreel writes here, then the folder itself when dreamreel
        created it and nothing else is left. Returns the names left that dreamreel did not write
        (the folder is kept for them)."""
        names = self.entries()
        marker = self.read_json(MARKER) if MARKER in names else None
        created = isinstance(marker, dict) and bool(marker.get("created"))
        self._remove_own(names, keep=_LOCKS)
        others = [n for n in self.entries() if n != MARKER and n not in _LOCKS]
        self.delete(MARKER)
        for lock in _LOCKS:  # last: while it is there, no other run can take the folder
            self.delete(lock)
        if others:
            return others
        if created and self.local:
            with contextlib.suppress(OSError):
                self.local_path().rmdir()
        return []

    def clear(self) -> None:
        """``--restart``: remove what a job wrote here, but the marker and the lock (which this run
        holds)."""
        self._remove_own(self.entries(), keep=(MARKER, *_LOCKS))

    def _remove_own(self, names: list[str], keep: tuple[str, ...]) -> None:
        for name in names:
            if name in keep or name == MARKER:
                continue
            if name in OWN_FOLDERS:
                self.delete_tree(name)
            elif name in OWN_FILES or _partial(name):
                self.delete(name)

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
            try:
                fd = os.open(self.local_path("events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (text.rstrip("\n") + "\n").encode())
                finally:
                    os.close(fd)
            except OSError as exc:
                raise self._cannot("write", "events.log", exc) from None

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


def _legacy_record(store: Store) -> bool:
    """Whether the store holds a job record of an older dreamreel (one that wrote no marker)."""
    try:
        job = store.read_json("job.json")
    except PipelineError:
        return False
    return isinstance(job, dict) and "version" in job and isinstance(job.get("identity"), dict)


@contextlib.contextmanager
def _flock(folder: Path) -> Iterator[None]:
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise Unwritable(
            f"{folder}: cannot lock the work folder ({write_fault(exc) or exc}): give --workdir a "
            "folder dreamreel can write"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise StoreBusy(
                f"{folder}: work folder in use by another dreamreel run (wait for it, or give another --workdir)"
            ) from None
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
            raise StoreBusy(
                f"{self.store.url}: work folder in use by another dreamreel run on {held.get('host')} "
                f"(wait for it, or give another --workdir)"
            )
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
        if self._thread is not None:
            self._thread.join(timeout=30)  # a renewal in flight lands before the lease is dropped
        if (self.store.read_json("lock.json") or {}).get("id") == self.me["id"]:
            self.store.delete("lock.json")


def check_output_url(url: str, overwrite: bool, extensions: tuple[str, ...]) -> str:
    """Refuse, before any work, an output URL of the wrong kind, or one that exists (without
    ``overwrite``)."""
    import fsspec

    ext = "." + url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    if ext not in extensions:
        raise UsageError(f"{redact(url)}: the output goes in {', '.join(extensions)}, not {ext or 'no extension'!r}")
    try:
        fs, path = fsspec.core.url_to_fs(url)
        exists = fs.exists(path)
    except (ImportError, ValueError, OSError) as exc:
        raise UsageError(f"{redact(url)}: cannot reach ({redact(str(exc))})") from None
    if exists and not overwrite:
        raise UsageError(f"{redact(url)}: already exists (pass --overwrite to replace it)")
    return url
