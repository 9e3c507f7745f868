"""Typed errors raised by the engine.

The library raises these; only the CLI (``pipeline.cli``) turns them into one-line messages and
exit codes. Every message is written to stand alone on one line and name what is wrong.
"""

from __future__ import annotations

from typing import Any

# A value shown in a message is cut to about this many characters: a YAML value built from nested
# aliases is a few hundred bytes on disk and gigabytes once written out whole.
SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """``repr(value)`` for a message, bounded: containers show their first items and depth only, so a
    huge or self-multiplying value (YAML aliases) is never expanded."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = SHOWN_CHARS, SHOWN_CHARS, 40
    text = r.repr(value)
    return text if len(text) <= 2 * SHOWN_CHARS else text[: 2 * SHOWN_CHARS] + "..."


class DreamError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(DreamError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class LayerError(ConfigError):
    """A requested layer does not exist in the chosen network."""


class WeightsError(DreamError):
    """Weights were asked for that cannot be had (not cached, not downloadable, wrong file)."""
