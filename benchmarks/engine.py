"""`python -m benchmarks.engine`: the fp32 matmul ceiling, the engine's GFLOP/s per gradient step,
and seconds per image against the keras.io deep_dream loop (written here) at equal settings."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig

from .common import SAMPLE


def matmul_ceiling(n: int = 2048, repeats: int = 10) -> float:
    """fp32 matrix-multiply GFLOP/s of TensorFlow on every core: the ceiling a step can approach."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(size=(n, n)).astype(np.float32))
    b = tf.constant(rng.uniform(size=(n, n)).astype(np.float32))

    @tf.function
    def mm(x: Any, y: Any) -> Any:
        return tf.reduce_sum(tf.matmul(x, y))

    mm(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(repeats):
        mm(a, b).numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def conv_flops(model: Any, height: int, width: int) -> float:
    """FLOPs of one forward pass of ``model``'s convolutions at this input size, counted layer by
    layer from their real output shapes (2 x multiply-adds). A dream step's backward pass needs
    only the input gradient, whose convolutions cost the same again: a step is twice this."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            sub = keras.Model(model.input, layer.output)
            _, h, w, _ = sub.compute_output_shape((1, height, width, 3))
            total += 2.0 * h * w * cout * kh * kw * cin
    return total


def bench_engine(image: Path, sizes: tuple[tuple[int, int], ...] = ((512, 512), (720, 1280))) -> str:
    """The ceiling; the engine's achieved GFLOP/s per gradient step; seconds per image against a
    keras.io-style reference written here, at equal settings, for the keras-example preset and the
    default preset (plus the opt-in bfloat16). Untrained InceptionV3 on both sides: speed does not
    depend on the weights. ``max_loss`` is off on both sides, so both run every step."""
    import cv2

    from dreamcore.ascent import step_count
    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from dreamcore.preset import load_preset

    lines = [f"fp32 matmul ceiling: {matmul_ceiling():.1f} GFLOP/s"]
    net = {"model": "inception_v3", "weights": "untrained", "max_loss": None}
    presets = {}
    for name in ("keras-example", "default"):
        d = load_preset(name)
        presets[name] = DreamConfig.from_mapping({**d, **net}, source=f"preset {name!r}")
    engine = Engine(presets["default"])
    d = engine.dreamer
    for h, w in sizes:
        img = np.random.default_rng(0).uniform(-1, 1, (h, w, 3)).astype(np.float32)
        d.gradient(img, 0)
        t0 = time.perf_counter()
        steps = 5
        for _ in range(steps):
            d.gradient(img, 0)
        sec = (time.perf_counter() - t0) / steps
        flops = 2 * conv_flops(d.net.model, h, w)
        lines.append(
            f"gradient step {w}x{h}: {sec * 1000:.0f} ms, {flops / 1e9:.1f} GFLOP counted, "
            f"{flops / sec / 1e9:.1f} GFLOP/s achieved"
        )

    rgb = cv2.imread(str(image))[..., ::-1].astype(np.float32) / 255.0
    big = cv2.resize(rgb, (1280, 720), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    lines.append(
        "seconds per image (dreamreel vs the reference at equal settings; the reference's first run "
        "traces its step again for each octave's shape, as keras.io's does; its second run finds them "
        "traced):"
    )
    runs = [
        ("keras-example", presets["keras-example"], rgb, image.name),
        ("default", presets["default"], rgb, image.name),
        ("default", presets["default"], big, f"{image.stem} at 1280x720"),
        ("default, bfloat16", presets["default"].replace(precision="bfloat16"), rgb, image.name),
        ("default, bfloat16", presets["default"].replace(precision="bfloat16"), big, f"{image.stem} at 1280x720"),
    ]
    reference_cache: dict[tuple[int, ...], tuple[float, float, int]] = {}
    for label, cfg, pic, what in runs:
        eng = Engine(cfg)
        eng.dream_rgb(rgb[:200, :200])  # trace once, at a size no run uses
        t0, n0 = time.perf_counter(), step_count()
        eng.dream_rgb(pic)
        ours, our_steps = time.perf_counter() - t0, step_count() - n0
        key = (*pic.shape, cfg.octaves, cfg.iterations)
        if key not in reference_cache:
            ref = make_reference(as_built(eng), list(cfg.layers.values()))
            ref(rgb[:200, :200] * 2 - 1, cfg)
            times = []
            for _ in range(2):
                t0, n0 = time.perf_counter(), ref.steps
                ref(pic * 2 - 1, cfg)
                times.append(time.perf_counter() - t0)
            reference_cache[key] = (times[0], times[1], ref.steps - n0)
        cold, warm, ref_steps = reference_cache[key]
        lines.append(
            f"  {label:<18} {what:<24} dreamreel {ours:6.2f} s | reference {cold:6.2f} s first run, "
            f"{warm:6.2f} s again | ratio {ours / cold:.2f} / {ours / warm:.2f} | gradient steps "
            f"{our_steps} / {ref_steps}"
        )
    return "\n".join(lines)


def as_built(engine: Any) -> Any:
    """The engine's feature network as Keras builds it, batch norms not folded into the convolutions
    (the engine folds them): what the keras.io example runs."""
    from dreamcore.engine import resolve_config
    from dreamcore.objective import parse_targets

    res = resolve_config(engine.config)
    return res.backbone.build(res.weights, parse_targets(list(res.layers))[0])


def make_reference(features: Any, weights: list[float]) -> Any:
    """The keras.io deep_dream loop, as that example writes it: a plain ``tf.function`` step (traced
    for every new shape), the loss on the layers with a 2-pixel border crop, the gradient divided
    by its mean |g|, octaves small to large with the lost detail re-injected, ``max_loss`` ending an
    octave. ``features``: the engine's network as Keras builds it (:func:`as_built`). Returns
    run(img in [-1, 1], config), whose ``steps`` counts the gradient steps it ran."""
    import tensorflow as tf

    def compute_loss(x: Any) -> Any:
        feats = features(x)
        loss = tf.zeros(shape=())
        for coeff, act in zip(weights, feats, strict=True):
            act = tf.cast(act, tf.float32)
            scaling = tf.reduce_prod(tf.cast(tf.shape(act), "float32"))
            loss += coeff * tf.reduce_sum(tf.square(act[:, 2:-2, 2:-2, :])) / scaling
        return loss * features.loss_scale

    @tf.function
    def gradient_ascent_step(x: Any, lr: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = compute_loss(x)
        grads = tape.gradient(loss, x)
        grads /= tf.maximum(tf.reduce_mean(tf.abs(grads)), 1e-6)
        return loss, x + lr * grads

    class Run:
        steps = 0  # gradient steps run so far, all calls together

        def __call__(self, img: np.ndarray, config: DreamConfig) -> np.ndarray:
            return run(img, config)

    counter = Run()

    def run(img: np.ndarray, config: DreamConfig) -> np.ndarray:
        original = tf.constant(img[None])
        shape0 = original.shape[1:3]
        shapes = [tuple(int(d / (config.octave_scale**i)) for d in shape0) for i in range(config.octaves)][::-1]
        shrunk = tf.image.resize(original, shapes[0])
        x = tf.identity(original)
        lr = tf.constant(config.step)
        for shape in shapes:
            x = tf.image.resize(x, shape)
            for _ in range(config.iterations):
                loss, x = gradient_ascent_step(x, lr)
                counter.steps += 1
                if config.max_loss is not None and float(loss) > config.max_loss:
                    break
            up = tf.image.resize(shrunk, shape)
            same = tf.image.resize(original, shape)
            x += same - up
            shrunk = tf.image.resize(original, shape)
        return x.numpy()[0]

    return counter


def main(argv: list[str] | None = None) -> None:
    from pipeline.runtime import load_tensorflow

    p = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    p.add_argument("--image", type=Path, default=SAMPLE, help="image for the per-image timing (default %(default)s)")
    args = p.parse_args(argv)
    load_tensorflow()
    print(bench_engine(args.image))


if __name__ == "__main__":
    main()
