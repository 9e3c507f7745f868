"""The engine: a config resolved to a loaded network, and the easy ``dream_image`` over it.

:class:`Engine` is what the pipeline holds on to (one per process, many images); ``dream_image``
is the one-call function for notebooks. Both take and return arrays only.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamcore.ascent import AscentParams, Dreamer, Progress
from dreamcore.backbones import Resolution, resolve
from dreamcore.backbones.keras_ops import with_precision
from dreamcore.config import DreamConfig
from dreamcore.objective import check_channels, parse_targets

# What the engine computes beyond its config, for job records: a change here changes pixels for the
# same config. 1: networks as Keras builds them; 2: batch norms folded into their convolutions.
ARITHMETIC = 2

_cache_lock = threading.Lock()
_dreamers: dict[tuple[Any, ...], Dreamer] = {}


_resolutions: dict[tuple[Any, ...], Resolution] = {}


def _key(config: DreamConfig) -> tuple[Any, ...]:
    return (config.model, config.model_input, config.weights, tuple(sorted(config.layers.items())), config.precision)


def resolve_config(config: DreamConfig) -> Resolution:
    """Which network, weights and layers this config will really use, with notes for the user (e.g.
    the offline fallback) that the caller shows. Builds no network, but ``model: auto`` may
    download the ImageNet weights (84 MB, once) to learn whether they can be had. Cached per process."""
    key = _key(config)
    with _cache_lock:
        if key not in _resolutions:
            _resolutions[key] = resolve(config.model, config.weights, config.layers, config.model_input)
        return _resolutions[key]


def _load(config: DreamConfig) -> tuple[Resolution, Dreamer]:
    """Resolve, and build once per process for each network (model, weights, the set of layers):
    the layers' weights are the dream's, so configs that weigh the same layers otherwise (a video's
    keyframes) share one network and one traced step."""

    res = resolve_config(config)
    key = (
        res.backbone.name,
        res.backbone.version(),
        config.model_input,
        str(res.weights),
        tuple(res.layers),
        config.precision,
    )
    with _cache_lock:
        if key not in _dreamers:
            outputs, targets = parse_targets(list(res.layers))
            net = res.backbone.build(res.weights, outputs)
            check_channels(targets, net.widths(), res.backbone.name)
            net = with_precision(net, config.precision)
            _dreamers[key] = Dreamer(net, list(res.layers.values()), targets)
        return res, _dreamers[key]


@dataclass(frozen=True)
class Resolved:
    """What the engine really runs with, for job records and messages."""

    model: str
    weights: str
    layers: dict[str, float]


class Engine:
    """A DreamConfig with its network loaded."""

    def __init__(self, config: DreamConfig):
        self.config = config
        resolution, self.dreamer = _load(config)
        net = self.dreamer.net
        self.resolved = Resolved(net.backbone, net.weights, dict(resolution.layers))
        self.layer_weights = [float(w) for w in resolution.layers.values()]
        self.params = AscentParams(
            step=config.step,
            iterations=config.iterations,
            max_loss=config.max_loss,
            jitter=config.jitter,
            tile=config.tile,
            octaves=config.octaves,
            octave_scale=config.octave_scale,
            max_side=config.max_side,
        )

    def dream_rgb(
        self,
        rgb: np.ndarray,
        progress: Progress | None = None,
        *,
        iterations: int | None = None,
        octaves: int | None = None,
        seed_key: Sequence[int] = (),
        uint8: bool = False,
    ) -> np.ndarray:
        """Dream an RGB image (H, W, 3): float in [0, 1], or uint8. Returns float32 (H, W, 3) in
        [0, 1], or with ``uint8`` 8-bit RGB (rounded half to even), without a full-size float copy
        of the image when it is shrunk to ``max_side``: the cheap way for video frames.

        ``iterations`` overrides the config's (a video's follow-up frames run fewer); ``octaves``
        keeps only the largest ones of the config's (at most as many as it has);
        ``seed_key`` extends the seed (a frame's index), so every frame of a clip has its own
        repeatable jitter, whatever order or process it is dreamt in.
        """
        c = self.config
        params = self.params
        if iterations is not None:
            params = dataclasses.replace(params, iterations=iterations)
        if octaves is not None:
            params = dataclasses.replace(params, octaves=max(1, min(octaves, c.octaves)))
        seed = None if c.seed is None else [c.seed, *seed_key]
        unit = 2.0 / 255.0 if rgb.dtype == np.uint8 else 2.0
        out = self.dreamer.dream(
            rgb,
            params,
            seed,
            progress,
            pixels=(unit, -1.0),
            uint8=uint8,
            layer_weights=self.layer_weights,
            guide=c.guide,
        )
        if uint8:
            return out
        out += 1.0
        out *= 0.5
        return out


def to_float_rgb(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an array image into float RGB in [0, 1] and its alpha (or None).

    Accepts (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), as uint8, uint16 or float in [0, 1].
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        f = np.clip(a.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"expected uint8, uint16 or float pixels, got {a.dtype}")
    alpha = f[..., 3] if f.shape[2] == 4 else None
    rgb = np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f[..., :3]
    return np.ascontiguousarray(rgb), alpha


def from_float_rgb(rgb: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_float_rgb` (gray inputs come back as RGB: the dream adds colour)."""
    out = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    if dtype == np.uint8:
        return np.round(np.clip(out, 0, 1) * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(np.clip(out, 0, 1) * 65535.0).astype(np.uint16)
    return out.astype(dtype)


def dream_image(
    image: np.ndarray,
    config: DreamConfig | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Dream one image array and return one of the same dtype (alpha kept, gray becomes RGB).

    >>> out = dream_image(img, iterations=10, layers={"mixed3": 1.0})   # doctest: +SKIP
    """
    cfg = (config or DreamConfig()).replace(**overrides) if overrides else (config or DreamConfig())
    rgb, alpha = to_float_rgb(image)
    out = Engine(cfg).dream_rgb(rgb, progress)
    return from_float_rgb(out, alpha, np.asarray(image).dtype)
