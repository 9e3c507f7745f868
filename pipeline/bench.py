"""`dreamreel bench video CLIP`: seconds per frame, instability and strength of each coherence mode.

All modes run in one process on the same frames with the same settings, so their ratios are
comparable. Instability is the warping error of the dream's residual (out - src) between
consecutive frames of a shot (flow computed on the source frames, occluded pixels masked), divided
by the residual's mean power; strength is mean |out - src| on the 0..1 scale.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig

from . import media
from .video import VideoRequest, read_rgb, run_video


@dataclass
class ModeResult:
    mode: str
    frames: int
    seconds: float
    dream_seconds: float
    instability: float
    strength: float
    split: dict[str, float] | None = None

    @property
    def per_frame(self) -> float:
        return self.seconds / self.frames


def measure(work: Path) -> tuple[float, float, int]:
    """(instability, strength, frames) from a kept work folder."""
    from dreamcore.coherence import optical_flow, warping_error

    job = json.loads((work / "job.json").read_text())
    n = job["decoded"]["frames"]
    starts = set(job["plan"]["shots"])
    ratios, strength = [], []
    prev = None
    for i in range(n):
        src = read_rgb(work / "src" / media.frame_name(i))
        out = read_rgb(work / "dream" / media.frame_name(i))
        res = out - src
        strength.append(float(np.mean(np.abs(res))))
        if prev is not None and i not in starts:
            prev_src, prev_res = prev
            err, power = warping_error(prev_res, res, optical_flow(prev_src, src))
            ratios.append(err / max(power, 1e-12))
        prev = (src, res)
    return (float(np.mean(ratios)) if ratios else float("nan")), float(np.mean(strength)), n


def bench_video(clip: Path, config: DreamConfig, video: VideoConfig, frames: int | None,
                modes: tuple[str, ...] = ("none", "blend", "flow"), start: float | None = None) -> list[ModeResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamreel-bench-") as tmp:
        for mode in modes:
            out = Path(tmp) / f"{mode}.mp4"
            work = Path(tmp) / f"work-{mode}"
            req = VideoRequest(input=clip, output=out, config=config, video=_with(video, coherence=mode),
                               workdir=work, keep_work=True, frames=frames, start=start, quiet=True)
            t0 = time.perf_counter()
            stats = run_video(req)
            seconds = time.perf_counter() - t0
            instability, strength, n = measure(work)
            t = stats["timings"]
            tasks = sum(stats["task_seconds"])
            flow = sum(stats["flow_seconds"])
            dream = sum(stats["dream_seconds"])
            split = {"decode": t.get("decode", 0.0), "cuts": t.get("cuts", 0.0), "flow": flow, "dream": dream,
                     "frame I/O": tasks - flow - dream, "scheduling": t["frames"] - tasks,
                     "encode": t["encode"]}
            split["other"] = seconds - sum(split.values())
            results.append(ModeResult(mode, n, seconds, tasks, instability, strength, split))
    return results


def _with(video: VideoConfig, **changes: Any) -> VideoConfig:
    import dataclasses

    return dataclasses.replace(video, **changes)


def report(results: list[ModeResult]) -> str:
    base = next((r for r in results if r.mode == "none"), results[0])
    lines = [f"{'mode':<6} {'frames':>6} {'s/frame':>8} {'vs none':>8} {'instability':>11} {'vs none':>8} "
             f"{'strength':>9} {'vs none':>8}"]
    for r in results:
        lines.append(f"{r.mode:<6} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} "
                     f"{r.instability:>11.3f} {r.instability / base.instability:>8.2f} {r.strength:>9.4f} "
                     f"{r.strength / base.strength:>8.2f}")
    lines.append("where the time goes (seconds, share of wall):")
    for r in results:
        if r.split:
            parts = ", ".join(f"{k} {v:.1f} ({v / r.seconds:.1%})" for k, v in r.split.items())
            lines.append(f"  {r.mode}: {parts}")
    return "\n".join(lines)


# --- images -------------------------------------------------------------------------------------

def make_bench_images(folder: Path, count: int, size: int, source: Path) -> None:
    """``count`` different images of about ``size`` px: crops, flips and hue turns of ``source``."""
    import cv2

    base = cv2.imread(str(source))
    if base is None:
        raise ValueError(f"{source}: not an image")
    h, w = base.shape[:2]
    scale = size / min(h, w) * 1.25
    base = cv2.resize(base, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        y = int(rng.integers(0, base.shape[0] - size + 1))
        x = int(rng.integers(0, base.shape[1] - size + 1))
        img = base[y:y + size, x:x + size].copy()
        if i % 2:
            img = img[:, ::-1]
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + i * 7) % 180
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        cv2.imwrite(str(folder / f"img{i:03d}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 92])


def bench_images(count: int, size: int, engine_args: list[str], workers: tuple[int, ...] = (1, 2)) -> str:
    """`dreamreel images` (one model load) against a shell-style loop of `dreamreel image` per file
    (a model load each), on the same generated images; then the batch with more local workers."""
    import subprocess
    import sys

    exe = [sys.executable, "-m", "pipeline.cli"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dreamreel-bench-images-") as tmp:
        src = Path(tmp) / "in"
        make_bench_images(src, count, size, Path(__file__).resolve().parent.parent / "samples" / "fruits.jpg")
        timings: dict[str, float] = {}
        for n in workers:
            t0 = time.perf_counter()
            subprocess.run([*exe, "images", str(src), "-o", str(Path(tmp) / f"batch{n}"), "-q", "--workers", str(n),
                            *engine_args], check=True, capture_output=True)
            timings[f"images --workers {n}"] = time.perf_counter() - t0
        loop_out = Path(tmp) / "loop"
        loop_out.mkdir()
        t0 = time.perf_counter()
        for f in sorted(src.iterdir()):
            subprocess.run([*exe, "image", str(f), "-o", str(loop_out / f.name), "-q", *engine_args], check=True,
                           capture_output=True)
        timings["loop of `image`"] = time.perf_counter() - t0
    loop = timings["loop of `image`"]
    rows.append(f"{'how':<20} {'seconds':>8} {'images/s':>9} {'vs loop':>8}")
    for name, sec in timings.items():
        rows.append(f"{name:<20} {sec:>8.1f} {count / sec:>9.3f} {loop / sec:>7.2f}x")
    return "\n".join(rows)


# --- scheduling overhead ------------------------------------------------------------------------

def _noop(i: int, after: Any = None) -> int:
    return i


def bench_dask(tasks: int, workers: tuple[int, ...] = (1, 2)) -> str:
    """Seconds of scheduling per task: ``tasks`` empty tasks, chained like a video's frames and
    independent like a batch's images, through the same client set-up the commands use."""
    from .schedule import Task, dask_client, run_chains

    rows = [f"{'cluster':<22} {'shape':<12} {'ms/task':>8}"]
    for n in workers:
        with dask_client(n) as client:
            run_chains(client, [[Task(f"warm-{n}-{i}", _noop, (i,))] for i in range(8)], lambda r: None)
            for shape in ("chain", "independent"):
                if shape == "chain":
                    chains = [[Task(f"c-{n}-{i}", _noop, (i,)) for i in range(tasks)]]
                else:
                    chains = [[Task(f"i-{n}-{i}", _noop, (i,))] for i in range(tasks)]
                t0 = time.perf_counter()
                run_chains(client, chains, lambda r: None)
                ms = (time.perf_counter() - t0) / tasks * 1000
                label = "in-process, 1 worker" if n == 1 else f"{n} worker processes"
                rows.append(f"{label:<22} {shape:<12} {ms:>8.2f}")
    return "\n".join(rows)


# --- engine: ceiling, achieved GFLOP/s, reference -----------------------------------------------

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
    """The ceiling, the engine's achieved GFLOP/s per gradient step, and seconds per image for the
    keras-example settings against a keras.io-style reference written here (untrained InceptionV3
    on both sides: speed does not depend on the weights)."""
    import cv2

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine

    lines = [f"fp32 matmul ceiling: {matmul_ceiling():.1f} GFLOP/s"]
    layers = {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}
    cfg = DreamConfig(model="inception_v3", weights="untrained", layers=layers, step=0.01, octaves=3,
                      octave_scale=1.4, iterations=20, max_loss=None, jitter=0, tile=0, seed=0)
    engine = Engine(cfg)
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
        lines.append(f"gradient step {w}x{h}: {sec * 1000:.0f} ms, {flops / 1e9:.1f} GFLOP counted, "
                     f"{flops / sec / 1e9:.1f} GFLOP/s achieved")

    rgb = cv2.imread(str(image))[..., ::-1].astype(np.float32) / 255.0
    engine.dream_rgb(rgb[:200, :200])
    t0 = time.perf_counter()
    engine.dream_rgb(rgb)
    ours = time.perf_counter() - t0
    ref_sec = _reference_keras_dream(d.net.model, rgb * 2 - 1, 3, 1.4, 20, 0.01)
    lines.append(f"keras-example settings on {image.name} ({rgb.shape[1]}x{rgb.shape[0]}): dreamreel {ours:.2f} s, "
                 f"reference {ref_sec:.2f} s, ratio {ours / ref_sec:.2f}")
    return "\n".join(lines)


def _reference_keras_dream(feature_model: Any, img: np.ndarray, octaves: int, scale: float, iterations: int,
                           step: float) -> float:
    """The keras.io deep_dream loop (same feature model, tf.function step, octaves with detail
    re-injection), timed; the first call's tracing is done beforehand on a small image."""
    import tensorflow as tf

    weights = [1.0, 1.5, 2.0, 2.5]

    def compute_loss(x: Any) -> Any:
        feats = feature_model(x)
        loss = tf.zeros(shape=())
        for coeff, act in zip(weights, feats, strict=True):
            scaling = tf.reduce_prod(tf.cast(tf.shape(act), "float32"))
            loss += coeff * tf.reduce_sum(tf.square(act[:, 2:-2, 2:-2, :])) / scaling
        return loss

    @tf.function
    def gradient_ascent_step(x: Any, lr: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = compute_loss(x)
        grads = tape.gradient(loss, x)
        grads /= tf.maximum(tf.reduce_mean(tf.abs(grads)), 1e-6)
        return loss, x + lr * grads

    def run(original: Any) -> Any:
        shape0 = original.shape[1:3]
        shapes = [tuple(int(d / (scale**i)) for d in shape0) for i in range(octaves)][::-1]
        shrunk = tf.image.resize(original, shapes[0])
        x = tf.identity(original)
        for shape in shapes:
            x = tf.image.resize(x, shape)
            for _ in range(iterations):
                _, x = gradient_ascent_step(x, step)
            up = tf.image.resize(shrunk, shape)
            same = tf.image.resize(original, shape)
            x += same - up
            shrunk = tf.image.resize(original, shape)
        return x

    small = tf.constant(img[None, :200, :200])
    run(small)
    t0 = time.perf_counter()
    run(tf.constant(img[None]))
    return time.perf_counter() - t0
