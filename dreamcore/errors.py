"""Typed errors raised by the engine.

The library raises these; only the CLI (``pipeline.cli``) turns them into one-line messages and
exit codes. Every message is written to stand alone on one line and name what is wrong.

Messages speak the engine's language: a setting is named by its config key, written with
:func:`setting` (```weights=FILE```), and where a network's layers are listed by :func:`listing`
(```backbones.get('inception_v3').layer_names()```). They read as they are from Python; the command
line rewrites each into the flag or the command that does the same (``pipeline.commands.in_flags``).
"""

from __future__ import annotations

import re
from typing import Any

# How a message names a setting (see setting) and a layer listing (see listing): what the command
# line finds to rewrite.
SETTING = re.compile(r"`([a-z][a-z_]*(?:\.[a-z][a-z_]*)?)(?:=([^`]*))?`")
LISTING = re.compile(r"`backbones\.get\(('[^`]*'|\"[^`]*\")\)\.(dream_layers|layer_names)\(\)`")


def setting(key: str, value: str | None = None) -> str:
    """A setting as a message names it: its config key (``video.blend`` for a video key), with a value
    or a placeholder such as FILE: ```weights=FILE```, or the key alone: ```weights```."""
    return f"`{key}`" if value is None else f"`{key}={value}`"


def listing(model: str, every: bool = False) -> str:
    """Where a message sends the reader for a network's layers: its dream layers, or with ``every``
    every layer name (``dreamcore.backbones.get(model)``)."""
    return f"`backbones.get({model!r}).{'layer_names' if every else 'dream_layers'}()`"


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
