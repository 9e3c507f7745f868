"""Octaves, tiles, jitter and the step, on untrained InceptionV3 at small sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dreamcore import DreamConfig
from dreamcore.ascent import AscentParams, octave_shapes, tile_bounds
from dreamcore.engine import Engine, dream_image
from tests.media import synthetic_image

SMALL = dict(model="inception_v3", weights="untrained", layers={"mixed3": 1.0}, iterations=3, octaves=2, jitter=8)


def test_octaves_run_small_to_large_and_end_at_full_size() -> None:
    shapes = octave_shapes(480, 640, 3, 1.4, min_side=75, max_side=None)
    assert shapes == [(244, 326), (342, 457), (480, 640)]


def test_octaves_too_small_for_the_network_are_dropped() -> None:
    assert octave_shapes(100, 200, 5, 1.4, min_side=75, max_side=None) == [(100, 200)]


def test_an_image_smaller_than_the_network_accepts_is_dreamt_upscaled() -> None:
    assert octave_shapes(20, 40, 3, 1.4, min_side=75, max_side=None) == [(75, 150)]


def test_max_side_caps_the_largest_octave() -> None:
    assert octave_shapes(2160, 3840, 2, 2.0, min_side=75, max_side=1000) == [(281, 500), (562, 1000)]


def test_tile_bounds_cover_exactly_with_near_equal_parts() -> None:
    for length, tile in [(1000, 512), (512, 512), (513, 512), (3840, 512), (100, 512)]:
        bounds = tile_bounds(length, tile)
        assert bounds[0][0] == 0 and bounds[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        sizes = [b - a for a, b in bounds]
        assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1


def test_progress_reports_every_step_of_every_octave() -> None:
    seen: list[tuple[int, int, int, int]] = []
    img = synthetic_image(160, 200)
    dream_image(img, DreamConfig(**SMALL, max_loss=None), progress=lambda o, n, i, m, loss: seen.append((o, n, i, m)))
    assert seen == [(1, 2, 1, 3), (1, 2, 2, 3), (1, 2, 3, 3), (2, 2, 1, 3), (2, 2, 2, 3), (2, 2, 3, 3)]


def test_fewer_octaves_keep_the_largest_ones() -> None:
    """video.followup_octaves: dream_rgb(octaves=1) of a 3-octave config is that config's dream with
    its largest octave only (the same pixels as a 1-octave config), and never more than it has."""
    rgb = synthetic_image(160, 200).astype(np.float32) / 255
    cfg = {**SMALL, "octaves": 3, "max_loss": None}
    three = Engine(DreamConfig(**cfg))
    one = Engine(DreamConfig(**{**cfg, "octaves": 1})).dream_rgb(rgb, seed_key=(4,))
    np.testing.assert_array_equal(three.dream_rgb(rgb, octaves=1, seed_key=(4,)), one)
    full = three.dream_rgb(rgb, seed_key=(4,))
    assert not np.array_equal(full, one)
    np.testing.assert_array_equal(three.dream_rgb(rgb, octaves=5, seed_key=(4,)), full)


@pytest.mark.parametrize("max_side", [None, 120])
def test_uint8_frames_dream_like_float_images(max_side: int | None) -> None:
    """A video frame goes in and out as uint8 (no full-size float copies; one fused pass at the end):
    the float path's dream, rounded. Not bit for bit: the two convert in another order, and the
    ascent turns a 1e-7 difference into a different choice in a max-pool here and there (a few
    pixels move by a step). So: almost every pixel within one grey level, and no bias (a wrong
    rounding, scale or offset shows in the mean). The dream itself must show: it is not the source."""
    u8 = synthetic_image(160, 200)
    engine = Engine(DreamConfig(**{**SMALL, "max_loss": None, "step": 0.05, "max_side": max_side}))
    fast = engine.dream_rgb(u8, seed_key=(2,), uint8=True)
    ref = np.rint(np.clip(engine.dream_rgb(u8.astype(np.float32) / 255, seed_key=(2,)), 0, 1) * 255)
    assert fast.dtype == np.uint8 and fast.shape == u8.shape
    diff = np.abs(fast.astype(np.float32) - ref)
    assert (diff > 1).mean() < 0.05 and diff.mean() < 0.2, ((diff > 1).mean(), diff.mean())
    assert abs(float(np.mean(fast - ref))) < 0.05
    assert np.abs(fast.astype(np.float32) - u8).mean() > 2


def test_max_loss_ends_the_octave() -> None:
    seen: list[tuple[int, int]] = []
    img = synthetic_image(160, 200)
    dream_image(img, DreamConfig(**SMALL, max_loss=1e-9), progress=lambda o, n, i, m, loss: seen.append((o, i)))
    assert seen == [(1, 1), (2, 1)]


def test_a_step_moves_pixels_by_step_on_average() -> None:
    engine = Engine(DreamConfig(**SMALL))
    img = synthetic_image(150, 150).astype(np.float32) / 127.5 - 1
    params = AscentParams(step=0.01, iterations=1, max_loss=None, jitter=0, tile=512)
    out = engine.dreamer.ascend(img, params, np.random.default_rng(0))
    assert np.mean(np.abs(out - img)) == pytest.approx(0.01, rel=1e-3)  # normalised by mean |grad|


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (75, 75), (33, 20, 4), (64, 64, 1)])
def test_any_input_size_dreams_without_error(shape: tuple[int, ...]) -> None:
    img = np.full(shape, 128, dtype=np.uint8)
    out = dream_image(img, DreamConfig(**SMALL))
    channels = 4 if len(shape) == 3 and shape[2] == 4 else 3
    assert out.shape == shape[:2] + (channels,)


def test_alpha_passes_through_and_dtype_is_kept() -> None:
    rgba = np.dstack([synthetic_image(90, 120), np.linspace(0, 255, 90 * 120).reshape(90, 120).astype(np.uint8)])
    out = dream_image(rgba, DreamConfig(**SMALL))
    assert out.dtype == np.uint8 and out.shape == rgba.shape
    assert np.array_equal(out[..., 3], rgba[..., 3])
    out16 = dream_image(rgba.astype(np.uint16) * 257, DreamConfig(**SMALL))
    assert out16.dtype == np.uint16


def test_tiled_gradient_is_every_tiles_own_gradient() -> None:
    """Tiling covers every pixel once: each tile of the assembled gradient equals the gradient of
    that tile alone (a tile left out would hold whatever memory the buffer started with)."""
    engine = Engine(DreamConfig(**SMALL))
    d = engine.dreamer
    img = synthetic_image(300, 520).astype(np.float32) / 127.5 - 1
    tile = 2 * d.net.min_side
    loss, grad = d.gradient(img, tile)
    ys, xs = tile_bounds(300, tile), tile_bounds(520, tile)
    assert len(ys) * len(xs) >= 4
    weighted = 0.0
    for y0, y1 in ys:
        for x0, x1 in xs:
            tile_loss, g_tile = d.gradient(np.ascontiguousarray(img[y0:y1, x0:x1]), 0)
            np.testing.assert_allclose(grad[y0:y1, x0:x1], g_tile, rtol=1e-5, atol=1e-8, err_msg=f"tile {y0},{x0}")
            weighted += tile_loss * (y1 - y0) * (x1 - x0)
    assert loss == pytest.approx(weighted / (300 * 520), rel=1e-6)


def test_tiled_dream_has_no_seam_at_tile_borders() -> None:
    """With the roll, the dream's strength at tile borders matches its strength elsewhere."""
    cfg = DreamConfig(**{**SMALL, "iterations": 6, "octaves": 1, "step": 0.02})
    engine = Engine(cfg)
    tile = max(128, 2 * engine.dreamer.net.min_side)
    cfg = cfg.replace(tile=tile)
    img = synthetic_image(2 * tile, 2 * tile, seed=3)
    out = dream_image(img, cfg)
    change = np.abs(out.astype(np.float32) - img.astype(np.float32)).mean(axis=2)
    border = change[tile - 2 : tile + 2, 8:-8].mean()
    elsewhere = change[8:-8, 8:-8].mean()
    assert 0.6 < border / elsewhere < 1.6


def test_same_seed_same_pixels_other_seed_other_pixels() -> None:
    img = synthetic_image(120, 160)
    a = dream_image(img, DreamConfig(**SMALL, seed=11))
    b = dream_image(img, DreamConfig(**SMALL, seed=11))
    c = dream_image(img, DreamConfig(**SMALL, seed=12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bfloat16_is_the_same_kind_of_dream_with_other_pixels() -> None:
    """The opt-in bfloat16 network: a dream of the same strength, not the float32 pixels, and
    repeatable; the float32 default is untouched by its existence (separate cached networks)."""
    cfg = DreamConfig(model="vgg16_hed", layers={"block4_conv3": 1.0}, iterations=4, octaves=2, jitter=8)
    img = synthetic_image(128, 160, seed=5)
    exact = dream_image(img, cfg)
    fast = dream_image(img, cfg.replace(precision="bfloat16"))
    again = dream_image(img, cfg.replace(precision="bfloat16"))
    assert np.array_equal(fast, again)
    assert np.array_equal(exact, dream_image(img, cfg))
    assert not np.array_equal(exact, fast)
    strength = [np.abs(o.astype(np.float32) - img.astype(np.float32)).mean() for o in (exact, fast)]
    assert strength[0] > 1.0 and 0.7 < strength[1] / strength[0] < 1.4
    assert Engine(cfg.replace(precision="bfloat16")).dreamer.net.model.layers[1].compute_dtype == "bfloat16"


def test_bfloat16_folds_each_normalisation_into_the_convolution_before_it() -> None:
    """The bfloat16 clone folds a batch normalisation into the convolution it alone follows: the
    same function (checked here in float32, with nonzero statistics), no normalisation left in
    InceptionV3's bfloat16 network. A convolution whose output is also read elsewhere keeps its
    normalisation, since folding it would change that other reader."""
    import keras

    from dreamcore.backbones.keras_ops import cloned

    rng = np.random.default_rng(0)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="c1")(inp)
    x = keras.layers.BatchNormalization(scale=False, name="b1")(x)
    x = keras.layers.Activation("relu", name="r1")(x)
    y = keras.layers.BatchNormalization(name="b2")(keras.layers.Conv2D(6, 3, name="c2")(x))
    z = keras.layers.Conv2D(4, 1, name="c3")(y)  # read by b3 and by the model's outputs
    model = keras.Model(inp, [x, y, z, keras.layers.BatchNormalization(name="b3")(z)])
    for layer in model.layers:
        layer.set_weights(
            [
                rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
                if "variance" in v.path
                else rng.normal(size=w.shape).astype(np.float32)
                for w, v in zip(layer.get_weights(), layer.weights, strict=True)
            ]
        )
    folded = cloned(model, "float32")
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert kinds["b1"] == kinds["b2"] == "Unchanged" and kinds["b3"] == "BatchNormalization"
    batch = rng.uniform(-1, 1, (1, 20, 24, 3)).astype(np.float32)
    for want, got in zip(model(batch), folded(batch), strict=True):
        want = np.asarray(want)
        assert np.abs(np.asarray(got) - want).max() < 1e-5 * np.abs(want).max()

    cfg = DreamConfig(model="inception_v3", weights="untrained", precision="bfloat16")
    layers = Engine(cfg).dreamer.net.model.layers
    assert not [la for la in layers if isinstance(la, keras.layers.BatchNormalization)]
    assert sum(type(la).__name__ == "Unchanged" for la in layers) > 50


def test_a_model_keras_cannot_clone_runs_unfolded_in_float32() -> None:
    """Folding is an optimisation: a network with a layer Keras cannot rebuild from its config runs
    as it is, not refused."""
    import dataclasses

    import keras

    from dreamcore.backbones.keras_ops import with_precision

    class Scaled(keras.layers.Layer):
        def __init__(self, factor: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x: Any) -> Any:
            return x * self.factor

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            raise TypeError("Scaled cannot be rebuilt from its config")

    inp = keras.Input((None, None, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, use_bias=False)(inp))
    model = keras.Model(inp, Scaled(2.0)(x))
    net = dataclasses.replace(Engine(DreamConfig(model="inception_v3", weights="untrained")).dreamer.net, model=model)
    assert with_precision(net, "float32").model is model
