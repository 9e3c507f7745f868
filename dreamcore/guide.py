"""The guide image of guided dreaming, as a value: 8-bit RGB pixels and the digest that names them.

A DreamConfig's ``guide`` is one (an image array given to it is made one). Reading a guide from a
file, or a guide clip's frames, is the pipeline's work (``pipeline.guide``).
"""

from __future__ import annotations

from typing import Any

from dreamcore.errors import ConfigError


class Guide:
    """A guide image for guided dreaming: 8-bit RGB pixels (read-only) and the digest that names
    them (two guides with the same pixels are equal)."""

    def __init__(self, pixels: Any):
        import hashlib

        import numpy as np

        a = np.asarray(pixels)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
            raise ConfigError(f"guide: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
        if a.dtype == np.uint16:
            a = (a.astype(np.float32) / 257.0).round()
        elif np.issubdtype(a.dtype, np.floating):
            a = np.clip(a, 0.0, 1.0) * 255.0
        elif a.dtype != np.uint8:
            raise ConfigError(f"guide: expected uint8, uint16 or float pixels, got {a.dtype}")
        a = np.round(a).astype(np.uint8) if a.dtype != np.uint8 else a
        rgb = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
        self.pixels = np.ascontiguousarray(rgb)
        self.pixels.setflags(write=False)
        h = hashlib.sha1(repr(self.pixels.shape).encode())
        h.update(self.pixels.tobytes())
        self.digest = h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Guide) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Guide({self.pixels.shape[1]}x{self.pixels.shape[0]}, {self.digest[:12]})"
