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
                modes: tuple[str, ...] = ("none", "blend", "flow"), start: float | None = None,
                size: tuple[int, int] | None = None, reference_frames: int = 3) -> list[ModeResult]:
    """Each mode through the whole `dreamreel video` path; then, on the first ``reference_frames``
    source frames, the keras.io reference dreaming every frame in full at equal settings (its
    step traced on a frame beforehand: every frame of a clip has one size)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamreel-bench-") as tmp:
        if size:
            scaled = Path(tmp) / "scaled.mp4"
            media.scaled_copy(clip, scaled, size[0], size[1], start, frames)
            clip, start = scaled, None
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
        if reference_frames > 0:
            results.append(_reference_frames(Path(tmp) / f"work-{modes[0]}", config, reference_frames))
    return results


def _reference_frames(work: Path, config: DreamConfig, count: int) -> ModeResult:
    from dreamcore.ascent import octave_shapes, resize
    from dreamcore.engine import Engine

    engine = Engine(config)
    ref = make_reference(engine.dreamer.net, list(engine.resolved.layers.values()))
    paths = sorted((work / "src").glob("*.png"))

    def frame(path: Path) -> np.ndarray:
        """A source frame at the size the engine dreams it (its largest octave), in [-1, 1]."""
        img = read_rgb(path) * 2 - 1
        shape = octave_shapes(*img.shape[:2], 1, config.octave_scale, 1, config.max_side)[-1]
        return resize(img, shape)

    ref(frame(paths[0]), config)  # traces the step at the clip's octave shapes
    picked = paths[1:count + 1] or paths[:1]
    frames = [frame(p) for p in picked]
    t0 = time.perf_counter()
    for f in frames:
        ref(f, config)
    seconds = time.perf_counter() - t0
    return ModeResult("reference", len(picked), seconds, seconds, float("nan"), float("nan"))


def _with(video: VideoConfig, **changes: Any) -> VideoConfig:
    import dataclasses

    return dataclasses.replace(video, **changes)


def report(results: list[ModeResult]) -> str:
    modes = [r for r in results if r.mode != "reference"]
    base = next((r for r in modes if r.mode == "none"), modes[0])
    ref = next((r for r in results if r.mode == "reference"), None)
    lines = [f"{'mode':<9} {'frames':>6} {'s/frame':>8} {'vs none':>8} {'vs ref':>7} {'instability':>11} "
             f"{'vs none':>8} {'strength':>9} {'vs none':>8}"]
    for r in results:
        vs_ref = f"{r.per_frame / ref.per_frame:>7.2f}" if ref else f"{'-':>7}"
        if r.mode == "reference":
            lines.append(f"{r.mode:<9} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} "
                         f"{vs_ref}   (the keras.io loop dreaming every frame in full)")
            continue
        lines.append(f"{r.mode:<9} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} {vs_ref} "
                     f"{r.instability:>11.3f} {r.instability / base.instability:>8.2f} {r.strength:>9.4f} "
                     f"{r.strength / base.strength:>8.2f}")
    lines.append("where the time goes (seconds, share of wall):")
    for r in modes:
        if r.split:
            parts = ", ".join(f"{k} {v:.1f} ({v / r.seconds:.1%})" for k, v in r.split.items())
            io = sum(v for k, v in r.split.items() if k not in ("dream", "flow"))
            lines.append(f"  {r.mode}: {parts}; all but dream and flow: {io / r.seconds:.1%}")
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
    """The ceiling; the engine's achieved GFLOP/s per gradient step; seconds per image against a
    keras.io-style reference written here, at equal settings, for the keras-example preset and the
    default preset (plus the opt-in bfloat16). Untrained InceptionV3 on both sides: speed does not
    depend on the weights. ``max_loss`` is off on both sides, so both run every step."""
    import cv2

    from dreamcore.config import DreamConfig, load_preset
    from dreamcore.engine import Engine

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
        lines.append(f"gradient step {w}x{h}: {sec * 1000:.0f} ms, {flops / 1e9:.1f} GFLOP counted, "
                     f"{flops / sec / 1e9:.1f} GFLOP/s achieved")

    rgb = cv2.imread(str(image))[..., ::-1].astype(np.float32) / 255.0
    big = cv2.resize(rgb, (1280, 720), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    lines.append("seconds per image (dreamreel vs the reference at equal settings; the reference's first run "
                 "traces its step again for each octave's shape, as keras.io's does; its second run finds them "
                 "traced):")
    runs = [("keras-example", presets["keras-example"], rgb, image.name),
            ("default", presets["default"], rgb, image.name),
            ("default", presets["default"], big, f"{image.stem} at 1280x720"),
            ("default, bfloat16", presets["default"].replace(precision="bfloat16"), rgb, image.name),
            ("default, bfloat16", presets["default"].replace(precision="bfloat16"), big, f"{image.stem} at 1280x720")]
    reference_cache: dict[tuple[int, ...], tuple[float, float]] = {}
    for label, cfg, pic, what in runs:
        eng = Engine(cfg)
        eng.dream_rgb(rgb[:200, :200])  # trace once, at a size no run uses
        t0 = time.perf_counter()
        eng.dream_rgb(pic)
        ours = time.perf_counter() - t0
        key = (*pic.shape, cfg.octaves, cfg.iterations)
        if key not in reference_cache:
            ref = make_reference(d.net, list(cfg.layers.values()))
            ref(rgb[:200, :200] * 2 - 1, cfg)
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                ref(pic * 2 - 1, cfg)
                times.append(time.perf_counter() - t0)
            reference_cache[key] = (times[0], times[1])
        cold, warm = reference_cache[key]
        lines.append(f"  {label:<18} {what:<24} dreamreel {ours:6.2f} s | reference {cold:6.2f} s first run, "
                     f"{warm:6.2f} s again | ratio {ours / cold:.2f} / {ours / warm:.2f}")
    return "\n".join(lines)


def make_reference(features: Any, weights: list[float]) -> Any:
    """The keras.io deep_dream loop, as that example writes it: a plain ``tf.function`` step (traced
    for every new shape), the loss on the layers with a 2-pixel border crop, the gradient divided
    by its mean |g|, octaves small to large with the lost detail re-injected, ``max_loss`` ending an
    octave. ``features`` is the same network the engine uses. Returns run(img in [-1, 1], config)."""
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
                if config.max_loss is not None and float(loss) > config.max_loss:
                    break
            up = tf.image.resize(shrunk, shape)
            same = tf.image.resize(original, shape)
            x += same - up
            shrunk = tf.image.resize(original, shape)
        return x.numpy()[0]

    return run
