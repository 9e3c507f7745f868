"""Typed errors raised by the engine.

The library raises these; only the CLI (``pipeline.cli``) turns them into one-line messages and
exit codes. Every message is written to stand alone on one line and name what is wrong.
"""

from __future__ import annotations


class DreamError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(DreamError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class LayerError(ConfigError):
    """A requested layer does not exist in the chosen network."""


class WeightsError(DreamError):
    """Weights were asked for that cannot be had (not cached, not downloadable, wrong file)."""
