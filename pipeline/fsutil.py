"""Atomic file writes: a file under its final name is always whole. Temporary folders that a
killed process leaves behind are removed by the next one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, UsageError


def write_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    A kill at any moment leaves either the old file (or none) or the complete new one; the
    temporary name starts with a dot and ends in ``.part`` so it is never taken for an output.
    ``durable=False`` skips the fsync: the rename still makes a killed process's file whole (its
    writes reach the disk), only a power cut can tear it; for data that can be checked and redone.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
