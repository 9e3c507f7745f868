"""A path or a URL, wherever a job reads or writes a file: a local path of an input (the command's
temporary download, or a worker machine's cached copy), an output written whole at a URL, and the
hash that says a copy is the file the job began with."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PipelineError, UsageError
from pipeline.io.fsutil import temp_dir
from pipeline.job.record import ends_hash, file_fingerprint
from pipeline.job.store import Store, StoreNotShared, is_url, redact

log = logging.getLogger("dreamcore")

_lock = threading.Lock()
_inputs: dict[str, str] = {}  # a worker machine's copies of URLs: fingerprint key -> local path


def worker_copy(location: str, key: str, what: str = "input") -> str:
    """A local path of a file a job reads (its input, a guide clip, a model file): ``location``
    itself, or a copy of a URL made once per worker machine, named by ``key`` (the file's
    fingerprint), so jobs on the same file share it. Every use marks the copy used; copies unused
    for :data:`COPY_DAYS` are removed when a new one is made, so a long-lived worker's disk does not
    keep every file it was ever given."""
    if not is_url(location):
        if not os.path.exists(location):
            raise StoreNotShared(f"worker {socket.gethostname()} cannot read the {what} {location}")
        return location
    with _lock:
        known = _inputs.get(key)
        if known is not None and _used(known):
            return known
        cache = Path(tempfile.gettempdir()) / "dreamreel-inputs"
        cache.mkdir(exist_ok=True)
        _remove_unused(cache)
        target = cache / f"{key}{Path(location).suffix}"
        if not _used(target):
            part = target.with_name(f".{target.name}.{os.getpid()}.part")
            _download(location, part)
            if ends_digest(part)[:16] != key.rsplit("-", 1)[-1]:
                part.unlink(missing_ok=True)
                raise PipelineError(
                    f"the {what} at {redact(location)} is not the file the job began with (changed or "
                    "damaged): run the same command again (a copy in the job store is uploaded anew)"
                )
            os.replace(part, target)
        _inputs[key] = str(target)
        return str(target)


def ends_digest(path: str | Path) -> str:
    """The hash of a file's first and last MiB (record.file_fingerprint's ``sha256_ends``)."""
    return str(file_fingerprint(Path(path))["sha256_ends"])


# A worker machine's copy of a job's file (worker_copy) that no task used for this long is removed.
COPY_DAYS = 1.0


def _used(path: str | Path) -> bool:
    """Mark a copy used now (its time); False when it is gone (removed as unused by another process)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except PermissionError:  # another user's copy: readable, not ours to mark
        pass
    return True


def _remove_unused(cache: Path) -> None:
    """Remove the copies (and downloads a killed worker left half done) unused for COPY_DAYS."""
    cutoff = time.time() - COPY_DAYS * 86400
    for f in cache.iterdir():
        with contextlib.suppress(OSError):
            if f.stat().st_mtime < cutoff:
                f.unlink()


def stored_ends_digest(store: Store, rel: str, size: int) -> str:
    """:func:`ends_digest` of a file in the store, from its first and last MiB only."""
    return ends_hash(size, lambda start, end: store.fs.cat_file(store.path(rel), start=start, end=end))


def _download(url: str, target: Path) -> None:
    """Stream a URL into a local file (never whole in memory)."""
    import fsspec

    with fsspec.open(url, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def fetch(location: str, folder: Path) -> Path:
    """A local path of a file: itself, or a download of a URL into ``folder``."""
    if not is_url(location):
        return Path(location)
    target = folder / (Path(location.rstrip("/")).name or "input")
    _download(location, target)
    return target


@contextlib.contextmanager
def local_path(location: str) -> Iterator[Path]:
    """A local path of the command's input: itself, or a temporary download of a URL (removed after)."""
    if not is_url(location):
        yield Path(location)
        return
    with temp_dir("dreamreel-input") as tmp:
        try:
            target = fetch(location, Path(tmp))
        except FileNotFoundError:
            raise UsageError(f"{location}: no such file") from None
        except (OSError, ImportError, ValueError) as exc:
            raise UsageError(f"{location}: cannot read ({exc})") from None
        yield target


def upload(local: Path, url: str, overwrite: bool, store: Store) -> None:
    """Put a finished output at a URL, never over an object that appeared there without ``overwrite``."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if not overwrite and fs.exists(path):
        raise UsageError(
            f"{redact(url)}: appeared while the job ran, and is kept (pass --overwrite to replace it, "
            f"or give another -o with --workdir {redact(store.url)}: the dreamt chunks are kept there)"
        )
    fs.put_file(str(local), path)


def default_workdir(output: str) -> str:
    """A job's work folder when none is given: hidden, beside its output (a path or a URL)."""
    if is_url(output):
        parent, _, name = output.rstrip("/").rpartition("/")
        return f"{parent}/.{name}.dreamreel-work"
    p = Path(output)
    return str(p.parent / f".{p.name}.dreamreel-work")
