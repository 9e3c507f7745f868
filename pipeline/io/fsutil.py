"""Atomic file writes: a file under its final name is always whole. Temporary folders that a
killed process leaves behind are removed by the next one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, UsageError


def write_atomic(
    path: str | os.PathLike[str], data: bytes | Sequence[Any], durable: bool = True, overwrite: bool = True
) -> None:
    """Write ``data`` (bytes, or several buffers written one after the other) to a temporary file
    beside ``path``, then rename it into place.

    A kill at any moment leaves either the old file (or none) or the complete new one; the
    temporary name starts with a dot and ends in ``.part`` so it is never taken for an output.
    ``durable``: the file and then its folder are fsynced, so a power cut cannot leave a torn file
    under the final name, nor lose the rename. ``durable=False`` skips both: the rename still makes a
    killed process's file whole (its writes reach the disk), only a power cut can tear it; for
    data that is checksummed and can be made again (pipeline.job.integrity). ``overwrite=False``: a
    file that appeared at ``path`` meanwhile is kept, and FileExistsError raised (:func:`publish`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            parts: list[Any] = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
            for part in parts:
                f.write(part)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        publish(Path(tmp), path, overwrite, durable)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def copy_atomic(src: Path, path: Path, durable: bool = True) -> None:
    """:func:`write_atomic` of a file's content (copied, not held in memory)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.close(fd)
        shutil.copyfile(src, tmp)
        if durable:
            sync_file(Path(tmp))
        publish(Path(tmp), path, True, durable)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_beside(final: Path) -> Path:
    """A temporary name beside ``final`` for a file that another program writes (ffmpeg's film),
    renamed into place when whole: its own to this process (two runs writing one OUT never share
    it), named for this host and process, so the next run removes those a killed one left."""
    from psutil import pid_exists

    host = _host_tag()
    name, suffix = re.escape(final.name), re.escape(final.suffix)
    stale = re.compile(rf"\.{name}\.{re.escape(host)}-(\d+)-[0-9a-f]{{8}}\.part{suffix}")
    if final.parent.is_dir():
        for old in final.parent.iterdir():
            m = stale.fullmatch(old.name)
            if m and int(m.group(1)) != os.getpid() and not pid_exists(int(m.group(1))):
                old.unlink(missing_ok=True)
    import uuid

    return final.parent / f".{final.name}.{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part{final.suffix}"


def publish(tmp: Path, final: Path, overwrite: bool, durable: bool = True) -> None:
    """Rename a finished file into place, its folder fsynced after (``durable``). Without
    ``overwrite`` a file at ``final`` is never replaced, even one that appeared a moment ago: the
    file is linked there (which fails when the name is taken) and the temporary name removed;
    FileExistsError says it was taken. Filesystems without hard links get a check, then the rename."""
    if overwrite:
        os.replace(tmp, final)
    else:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
            os.replace(tmp, final)
        else:
            os.unlink(tmp)
    if durable:
        sync_folder(final.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the names just made or renamed in it survive a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse to sync a folder; the file itself was synced
        pass
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """fsync a file written by another program (ffmpeg's output) before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_file(p: Path, overwrite: bool) -> Path:
    """Refuse, before any work, an output file we could not or should not write."""
    if p.is_dir():
        raise UsageError(f"{p}: is a folder; give a file name")
    if p.exists() and not overwrite:
        raise UsageError(f"{p}: already exists (pass --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{parent}: output folder is not writable")
    return p


def check_input_file(p: Path, folder_hint: str) -> None:
    """An input must exist, be a file, be readable and not be empty; each fault is one line."""
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, {folder_hint}")
    try:
        with open(p, "rb") as f:  # os.access says yes to root: really open it
            empty = not f.read(1)
    except PermissionError:
        raise InputError(f"{p}: permission denied") from None
    if empty:
        raise InputError(f"{p}: empty file")


def make_temp_dir(prefix: str) -> Path:
    """A new temporary folder named for this host and process, ``<prefix>-<host>-<pid>-<random>``.
    Every ``dreamreel-*`` one of this host whose process is gone is removed first: a process killed
    mid-task (SIGKILL, a worker stopped on Ctrl-C) cannot remove its own, and a partial chunk is
    left in each. The host in the name keeps a temp folder shared between machines (or containers
    with their own process ids) from losing another's folders."""
    from psutil import pid_exists

    base = Path(tempfile.gettempdir())
    host = _host_tag()
    pattern = re.compile(rf"dreamreel-[a-z]+-{re.escape(host)}-(\d+)-")
    for old in base.glob(f"dreamreel-*-{host}-*"):
        m = pattern.match(old.name)
        if m and int(m.group(1)) != os.getpid() and not pid_exists(int(m.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{host}-{os.getpid()}-", dir=base))


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """:func:`make_temp_dir`, removed at the end."""
    path = make_temp_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
