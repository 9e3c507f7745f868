"""The work folder of a job: its record, fingerprints, lock, and what is already done.

A work folder holds ``job.json`` (what the job is: input fingerprint, resolved config, probe and
plan), the decoded source frames, the finished frames, and an append-only ``events.log``. Every
file is written under a temporary name and renamed into place, so a file that exists is whole: a
job killed at any moment resumes from what exists. The same folder with another input or config is
refused, naming what changed. An advisory lock (released by the kernel when the process dies,
even by SIGKILL) keeps two runs from writing one folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import PipelineError, UsageError
from .fsutil import write_atomic

JOB_FILE = "job.json"
JOB_VERSION = 2  # 2: the numerics layout (thread count) and the layouts seen


class WorkFolderBusy(UsageError):
    pass


class JobMismatch(UsageError):
    pass


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the first and last MiB: cheap on a 10 GB clip,
    and a changed file is caught even when a copy kept its mtime."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": h.hexdigest()}


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ (recursing into mappings)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += describe_changes(a, b, name + ".")
        elif a != b:
            changed.append(name)
    return changed


class WorkFolder:
    def __init__(self, path: Path):
        self.path = path

    # -- layout --
    @property
    def job_file(self) -> Path:
        return self.path / JOB_FILE

    def sub(self, name: str) -> Path:
        return self.path / name

    @property
    def events(self) -> Path:
        return self.path / "events.log"

    # -- lock --
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise WorkFolderBusy(f"{self.path}: work folder in use by another dreamreel run "
                                     "(wait for it, or give another --workdir)") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.close(fd)  # closing releases the lock; the file itself stays harmlessly

    # -- record --
    def read_job(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.job_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise PipelineError(f"{self.job_file}: unreadable job record ({exc}); --restart discards it") from None

    def write_job(self, job: Mapping[str, Any]) -> None:
        write_atomic(self.job_file, (json.dumps(job, indent=1, sort_keys=True) + "\n").encode())

    def check_same_job(self, identity: Mapping[str, Any], restart: bool) -> dict[str, Any] | None:
        """Return the existing record when it describes this job; refuse another job's folder."""
        job = self.read_job()
        if job is None:
            return None
        if restart:
            self.clear()
            return None
        changed = describe_changes(job.get("identity", {}), identity)
        if job.get("version") != JOB_VERSION:
            changed.insert(0, "job format version")
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise JobMismatch(f"{self.path}: this work folder belongs to another job (changed: {shown}); "
                              "run the original command to finish it, or pass --restart to discard it")
        return job

    def clear(self) -> None:
        """Remove everything but the lock (which this process holds)."""
        for child in self.path.iterdir():
            if child.name == "lock":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def log_event(self, text: str) -> None:
        """One line appended in one write (O_APPEND): lines from concurrent tasks don't interleave."""
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (text.rstrip("\n") + "\n").encode())
        finally:
            os.close(fd)


class LayoutLog:
    """The numerics layouts (pipeline.runtime) that dreamt a job's items, kept in its record: a job
    whose items were all dreamt under one layout equals an uninterrupted run's, item for item."""

    def __init__(self, work: WorkFolder, job: dict[str, Any]):
        self.work, self.job = work, job
        job.setdefault("layouts", {})

    def saw(self, layout: Mapping[str, Any]) -> None:
        from .runtime import layout_id

        key = layout_id(dict(layout))
        if key not in self.job["layouts"]:
            self.job["layouts"][key] = dict(layout)
            self.work.write_job(self.job)

    def warning(self) -> str | None:
        from .runtime import describe_layout

        layouts = list(self.job["layouts"].values())
        if len(layouts) <= 1:
            return None
        shown = "; ".join(map(describe_layout, layouts))
        return (f"this job was dreamt under {len(layouts)} numerics layouts ({shown}): "
                "where a shot or item crossed from one to another it can differ from an uninterrupted run by a "
                "fraction of a grey level (README: 'Exact results')")
