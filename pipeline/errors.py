"""Typed errors of the pipeline, each with the exit code the CLI gives it (README: "Exit codes and errors")."""

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


# What an OSError's errno means for a folder people gave us, in their words.
_WRITE_FAULTS = {"ENOSPC": "disk full", "EDQUOT": "disk quota exceeded", "EROFS": "read-only filesystem",
                 "EACCES": "permission denied", "EPERM": "permission denied"}


def write_fault(exc: BaseException) -> str | None:
    """'disk full', 'read-only filesystem', ... when ``exc`` is an OSError of a folder that cannot be
    written; None for anything else."""
    import errno

    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    return _WRITE_FAULTS.get(errno.errorcode.get(exc.errno, ""))
