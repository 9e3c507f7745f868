"""Typed errors of the pipeline, each with the exit code the CLI gives it (README: "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    exit_code = EXIT_FAILED


class UsageError(PipelineError):
    """Bad arguments: unknown option values, an existing output without --overwrite, ..."""

    exit_code = EXIT_USAGE


class InputError(PipelineError):
    """An input file that cannot be used: missing, empty, not an image, truncated, too large."""

    exit_code = EXIT_USAGE


class Unwritable(UsageError):
    """A folder the user gave (OUT's, OUT_DIR, the work folder) that cannot be written: read-only, no
    permission, or full. Bad input, like a missing file: exit 2, nothing lost."""


# What keeps a folder people gave us from being written, in their words: by an OSError's errno, or
# by the text a program (ffmpeg) prints for it.
_WRITE_FAULTS = {
    "ENOSPC": ("No space left on device", "disk full"),
    "EDQUOT": ("Disk quota exceeded", "disk quota exceeded"),
    "EROFS": ("Read-only file system", "read-only filesystem"),
    "EACCES": ("Permission denied", "permission denied"),
    "EPERM": ("Operation not permitted", "permission denied"),
}


def write_fault(exc: BaseException) -> str | None:
    """'disk full', 'read-only filesystem', ... when ``exc`` is an OSError of a folder that cannot be
    written; None for anything else."""
    import errno

    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    return _WRITE_FAULTS.get(errno.errorcode.get(exc.errno, ""), (None, None))[1]


def printed_write_fault(text: str) -> str | None:
    """The same, read from what a program printed (ffmpeg's stderr)."""
    return next((fault for said, fault in _WRITE_FAULTS.values() if said in text), None)


# Every message dreamreel prints is one line of at most this many characters.
MESSAGE_LIMIT = 1000


def redact(text: str) -> str:
    """``text`` with every credential in a URL (``scheme://user:secret@host``) replaced by ``***``:
    for messages and for what a job records."""
    import re

    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@", r"\1***@", text)


def one_line(text: str) -> str:
    """A message as it is printed: credentials in URLs hidden, one line, bounded."""
    text = " ".join(redact(text).split("\n"))
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "... (cut)"
