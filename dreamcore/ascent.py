"""Gradient ascent: the step, jitter, tiling and the octave loop.

Images here are float32 arrays (H, W, 3) in the canonical range [-1, 1]. The step follows the seed:
the gradient is divided by its mean absolute value, so ``step`` is the mean change per pixel per
step. Each step rolls the image by a random offset (jitter) first; a frame larger than the tile is
cut into tiles whose gradients are computed one at a time (bounded memory), and because the roll
moves the tile borders every step, no seam stays in one place long enough to show (the TensorFlow
tutorial's method).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamcore.backbones.base import FeatureNet
from dreamcore.errors import DreamError
from dreamcore.guide import Guide
from dreamcore.objective import Target, check_guidable, dream_loss, guide_features

# progress(octave, octaves, iteration, iterations, loss): octave and iteration count from 1.
Progress = Callable[[int, int, int, int, float], None]


_clock = threading.local()


def step_count() -> int:
    """Gradient steps this thread has run, all dreams together (what a benchmark reports)."""
    return getattr(_clock, "steps", 0)


def step_seconds() -> float:
    """Seconds this thread has spent in gradient steps (roll, gradient, update), all dreams
    together: the difference around a dream is its steps' own time, the rest of its time is fixed
    work (resizes, re-injection)."""
    return getattr(_clock, "seconds", 0.0)


@dataclass(frozen=True)
class AscentParams:
    """How an image is dreamt: the steps of each octave, and the octaves (the config's values)."""

    step: float
    iterations: int
    max_loss: float | None
    jitter: int
    tile: int
    octaves: int = 1
    octave_scale: float = 1.4
    max_side: int | None = None


def octave_shapes(
    height: int, width: int, octaves: int, scale: float, min_side: int, max_side: int | None
) -> list[tuple[int, int]]:
    """Octave sizes, small to large. The largest is the image's (capped at ``max_side``); octaves
    smaller than the network accepts are dropped; an image too small for the network even at full
    size is dreamt upscaled to the smallest size it accepts."""
    top = 1.0
    if max_side and max(height, width) > max_side:
        top = max_side / max(height, width)
    base = (max(1, round(height * top)), max(1, round(width * top)))
    shapes = []
    for i in range(octaves):
        shape = (int(base[0] / scale**i), int(base[1] / scale**i))
        if min(shape) >= min_side:
            shapes.append(shape)
    if not shapes:
        up = min_side / min(base)
        shapes = [(max(min_side, math.ceil(base[0] * up)), max(min_side, math.ceil(base[1] * up)))]
    return shapes[::-1]


def tile_bounds(length: int, tile: int) -> list[tuple[int, int]]:
    """Split [0, length) into near-equal parts no longer than ``tile``."""
    n = max(1, math.ceil(length / tile))
    cuts = [round(i * length / n) for i in range(n + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def resize(img: Any, shape: tuple[int, int]) -> Any:
    """Bilinear resize of a float image; antialiased when it shrinks. Growing, OpenCV's bilinear
    (half-pixel centres, as TensorFlow's) gives the same values as TensorFlow's to 1.4e-4 (0.02/255
    of a grey level; measured) in a tenth of the time: frames are grown back to full size every step
    of a video."""
    if tuple(img.shape[:2]) == tuple(shape):
        return img
    if shape[0] >= img.shape[0] and shape[1] >= img.shape[1]:
        import cv2

        return cv2.resize(
            np.ascontiguousarray(img, dtype=np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR
        )
    import tensorflow as tf

    return tf.image.resize(img, shape, method="bilinear", antialias=True).numpy()


def fixed_bounds(length: int, tile: int) -> list[tuple[int, int]]:
    """Cover [0, length) with windows of exactly ``tile`` (a fixed-size network's input), spread
    evenly and overlapping where they must; ``length`` >= ``tile``."""
    n = max(1, math.ceil(length / tile))
    if n == 1:
        return [(0, tile)]
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    return [(s, s + tile) for s in starts]


def whole_layers(net: FeatureNet) -> list[tuple[int, Target]]:
    """One whole-layer target per output of the network (the plain objective)."""
    return [(i, Target(name, name)) for i, name in enumerate(net.layers)]


def gradient_step(
    net: FeatureNet, targets: Sequence[tuple[int, Target]], guided: Sequence[int] = ()
) -> Callable[..., tuple[Any, Any]]:
    """The compiled step: (a batch (N, H, W, 3), one weight per target[, guide features of each
    output in ``guided``]) -> (loss, d loss / d batch).

    Traced once for every image size and weighting: the spatial dimensions are left unknown, so a new
    octave or frame size costs no retrace (the keras.io example's plain ``tf.function`` traces again
    at every new shape, about 1.5 s each for InceptionV3), and the weights are an input, so layers
    keyframed over a video (a weight of 0 is a layer off) share one network and one trace; so are a
    guide's features (a guide video's frames share one trace)."""
    import tensorflow as tf

    n = len(targets)
    scales = net.output_scales()

    def loss_and_grad(img: Any, weights: Any, *guide: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(img)
            loss = dream_loss(
                net(img), [weights[i] for i in range(n)], scales, targets, dict(zip(guided, guide, strict=True))
            )
        return loss, tape.gradient(loss, img)

    widths = net.widths()
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([n], tf.float32)]
    signature += [tf.TensorSpec([None, widths[out]], tf.float32) for out in guided]
    return tf.function(loss_and_grad, input_signature=signature)


# A guide's features are taken from the guide shrunk to the octave's size, but at most this long:
# the guided loss compares every position with every guide position (a matrix of both counts).
GUIDE_SIDE = 512
_GUIDE_CACHE = 8  # guide feature sets kept per Dreamer (a still guide's octaves are reused)


class Dreamer:
    """A feature network with its compiled gradient step; reuse one for many images. The targets
    (dreamcore.objective) default to each output as a whole layer; their weights are these, unless
    a dream is given others."""

    def __init__(
        self, net: FeatureNet, layer_weights: Sequence[float], targets: Sequence[tuple[int, Target]] | None = None
    ):
        self.net = net
        self.weights = np.asarray(layer_weights, np.float32)
        self.targets = list(targets) if targets is not None else whole_layers(net)
        self._step = gradient_step(net, self.targets)
        # Outputs a guide steers: those read by a whole-layer target.
        self.guided = sorted({out for out, t in self.targets if t.whole})
        self._guided_step: Callable[..., tuple[Any, Any]] | None = None
        self._features: Callable[[Any], Any] | None = None
        self._guide_cache: dict[tuple[Any, ...], list[Any]] = {}

    def _loss_and_grad(self, img: np.ndarray, weights: np.ndarray | None, guide: list[Any] | None) -> tuple[Any, Any]:
        w = self.weights if weights is None else weights
        if guide is None:
            loss, grad = self._step(img[None], w)
        else:
            assert self._guided_step is not None
            loss, grad = self._guided_step(img[None], w, *guide)
        return loss, grad[0]

    def guide_features(self, guide: Guide, shape: tuple[int, int], tile: int) -> list[Any]:
        """The guide's features for dreaming an octave of ``shape``: the guide shrunk (its aspect
        kept) to that octave's long side, or the tile's, or GUIDE_SIDE, whichever is least (a
        fixed-size network sees the guide at its own size)."""
        import tensorflow as tf

        check_guidable(self.targets)
        if self.net.fixed:
            size = self.net.fixed
        else:
            side = min(max(shape), tile or max(shape), GUIDE_SIDE)
            gh, gw = guide.pixels.shape[:2]
            k = side / max(gh, gw)
            size = (max(1, round(gh * k)), max(1, round(gw * k)))
            if min(size) < self.net.min_side:
                k = self.net.min_side / min(size)
                size = (max(self.net.min_side, round(size[0] * k)), max(self.net.min_side, round(size[1] * k)))
        key = (guide.digest, size)
        if key in self._guide_cache:
            feats = self._guide_cache.pop(key)
        else:
            if self._features is None:
                net, guided = self.net, self.guided

                def features(img: Any) -> list[Any]:
                    acts = net(img)
                    return [guide_features(acts[out]) for out in guided]

                self._features = tf.function(
                    features, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)]
                )
                self._guided_step = gradient_step(self.net, self.targets, self.guided)
            canonical = resize(guide.pixels.astype(np.float32), size) * np.float32(2.0 / 255.0) - np.float32(1.0)
            feats = list(self._features(np.ascontiguousarray(canonical, np.float32)[None]))
        self._guide_cache[key] = feats
        while len(self._guide_cache) > _GUIDE_CACHE:
            self._guide_cache.pop(next(iter(self._guide_cache)))
        return feats

    def gradient(
        self, img: np.ndarray, tile: int, weights: np.ndarray | None = None, guide: list[Any] | None = None
    ) -> tuple[float, np.ndarray]:
        """Loss and gradient of the whole image, tile by tile when it is larger than ``tile`` (or
        than a fixed-size network's input: then the tiles are exactly that size, overlapping where
        they must, and overlapping gradients are averaged)."""
        h, w = img.shape[:2]
        if self.net.fixed:
            fh, fw = self.net.fixed
            ys, xs = fixed_bounds(h, fh), fixed_bounds(w, fw)
            if len(ys) == 1 and len(xs) == 1:
                loss, grad = self._loss_and_grad(img, weights, guide)
                return float(loss), grad.numpy()
            grad = np.zeros_like(img)
            count = np.zeros((h, w, 1), np.float32)
            total = 0.0
            for y0, y1 in ys:
                for x0, x1 in xs:
                    loss, g = self._loss_and_grad(np.ascontiguousarray(img[y0:y1, x0:x1]), weights, guide)
                    grad[y0:y1, x0:x1] += g.numpy()
                    count[y0:y1, x0:x1] += 1.0
                    total += float(loss)
            return total / (len(ys) * len(xs)), grad / count
        # A tile must be big enough for the network; edge tiles are at least half a tile.
        tile = max(tile, 2 * self.net.min_side) if tile else max(h, w)
        if h <= tile and w <= tile:
            loss, grad = self._loss_and_grad(img, weights, guide)
            return float(loss), grad.numpy()
        grad = np.empty_like(img)
        total = 0.0
        for y0, y1 in tile_bounds(h, tile):
            for x0, x1 in tile_bounds(w, tile):
                loss, g = self._loss_and_grad(np.ascontiguousarray(img[y0:y1, x0:x1]), weights, guide)
                grad[y0:y1, x0:x1] = g.numpy()
                total += float(loss) * (y1 - y0) * (x1 - x0)
        return total / (h * w), grad

    def ascend(
        self,
        img: np.ndarray,
        params: AscentParams,
        rng: np.random.Generator,
        on_step: Callable[[int, float], None] | None = None,
        weights: np.ndarray | None = None,
        guide: list[Any] | None = None,
    ) -> np.ndarray:
        """Run up to ``params.iterations`` steps; a loss above ``max_loss`` ends the octave."""
        img = img.copy()
        h, w = img.shape[:2]
        if self.net.fixed:
            tiled, tile = h > self.net.fixed[0] or w > self.net.fixed[1], max(self.net.fixed)
        else:
            tiled, tile = bool(params.tile and max(h, w) > max(params.tile, 2 * self.net.min_side)), params.tile
        # When tiled, the roll must reach across a tile for the borders to wander everywhere.
        reach = max(params.jitter, tile // 2) if tiled else params.jitter
        for i in range(params.iterations):
            t0 = time.perf_counter()
            dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, size=2)) if reach else (0, 0)
            rolled = np.roll(img, (dy, dx), axis=(0, 1)) if (dy or dx) else img
            loss, grad = self.gradient(rolled, params.tile, weights, guide)
            if dy or dx:
                grad = np.roll(grad, (-dy, -dx), axis=(0, 1))
            # The floor only guards against 0/0: untrained networks have gradients far below
            # the keras example's 1e-6, and they still point somewhere worth going.
            norm = float(np.mean(np.abs(grad)))
            if not (math.isfinite(norm) and math.isfinite(loss)):
                # float32 overflowed (layer weights near its range, say): a NaN step would turn the
                # picture black, so stop and say it.
                raise DreamError(
                    f"the dream diverged: its loss became {loss:g} (float32 overflowed; smaller layer weights or step?)"
                )
            grad /= max(norm, 1e-20)
            img += params.step * grad
            _clock.seconds = step_seconds() + time.perf_counter() - t0
            _clock.steps = step_count() + 1
            if on_step is not None:
                on_step(i + 1, loss)
            if params.max_loss is not None and loss > params.max_loss:
                break
        return img

    def dream(
        self,
        image: np.ndarray,
        params: AscentParams,
        seed: int | Sequence[int] | None,
        progress: Progress | None = None,
        *,
        pixels: tuple[float, float] = (1.0, 0.0),
        uint8: bool = False,
        layer_weights: Sequence[float] | None = None,
        guide: Guide | None = None,
    ) -> np.ndarray:
        """Dream an image (H, W, 3) whose pixel value v stands for the canonical ``v * unit + offset``
        in [-1, 1], ``pixels`` being ``(unit, offset)`` (default: the image is canonical already; a
        uint8 frame is ``(2 / 255, -1)``), with ``params``' octaves (``octaves``, ``octave_scale``,
        ``max_side``). Returns the canonical dream, clipped to [-1, 1], or with ``uint8`` the dream
        as 8-bit RGB.

        Octaves run small to large; after each, the detail that shrinking lost is added back
        (the keras.io example's scheme). When the largest octave is smaller than the image
        (``max_side``), the same re-injection brings the dream back to full resolution.
        ``layer_weights``: this dream's weights of the Dreamer's targets, in their order (default:
        the Dreamer's). ``guide``: steer the whole-layer targets towards this image's features
        (dreamcore.objective).

        Full-size work is the cost of a video frame besides its steps, so the image is never
        converted at full size: each octave's copy is shrunk from it as it is and converted small
        (resizing is linear, and its weights sum to one), and the end is one fused pass (the
        upscaled residual added to the image, scaled, rounded and clipped to 8 bits).
        """
        h, w = image.shape[:2]
        unit, offset = pixels
        shapes = octave_shapes(h, w, params.octaves, params.octave_scale, self.net.min_side, params.max_side)
        rng = np.random.default_rng(seed)
        weights = None if layer_weights is None else np.asarray(layer_weights, np.float32)

        def shrink(shape: tuple[int, int]) -> np.ndarray:
            small = np.asarray(resize(image, shape), dtype=np.float32)
            if unit == 1.0 and offset == 0.0:
                return small
            small = small * np.float32(unit)
            small += np.float32(offset)
            return small

        shrunk = shrink(shapes[0])
        img = shrunk
        for o, shape in enumerate(shapes, start=1):
            img = resize(img, shape)

            def on_step(i: int, loss: float, o: int = o) -> None:
                if progress is not None:
                    progress(o, len(shapes), i, params.iterations, loss)

            feats = None if guide is None else self.guide_features(guide, shape, params.tile)
            img = self.ascend(img, params, rng, on_step, weights, feats)
            if shape != shapes[0]:  # at the first octave the lost detail is none (exactly zero)
                same_size = shrink(shape)
                img += same_size - resize(shrunk, shape)
                shrunk = same_size
        if shapes[-1] == (h, w):
            return to_uint8(img) if uint8 else np.clip(img, -1.0, 1.0, out=img)
        # Back to full size: image + upscaled dream residual, one upscale (resizing is linear).
        residual = img - shrunk
        if uint8:  # canonical c is the 8-bit (c + 1) * 127.5
            residual *= 127.5
            return add_to_uint8(image, unit * 127.5, (offset + 1.0) * 127.5, resize(residual, (h, w)))
        out = resize(residual, (h, w))
        out += image if unit == 1.0 and offset == 0.0 else image * np.float32(unit) + np.float32(offset)
        return np.clip(out, -1.0, 1.0, out=out)


def to_uint8(canonical: np.ndarray) -> np.ndarray:
    """A canonical image as 8-bit RGB: round((c + 1) * 127.5) clipped to [0, 255], in one pass."""
    return add_to_uint8(canonical, 127.5, 127.5, None)


def add_to_uint8(image: np.ndarray, scale: float, shift: float, add: np.ndarray | None) -> np.ndarray:
    """``image * scale + shift + add`` rounded half to even and saturated to uint8, in one pass
    (OpenCV's saturating arithmetic; numpy takes four passes and three full-size temporaries)."""
    import cv2

    if add is None:
        return cv2.addWeighted(image, scale, image, 0.0, shift, dtype=cv2.CV_8U)
    return cv2.addWeighted(image, scale, add, 1.0, shift, dtype=cv2.CV_8U)
