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
