"""`python -m benchmarks.trials`: every speed idea measured against the engine as it is, side by side.

Each trial runs in a fresh Python process, because what it changes is process-wide in TensorFlow
(thread pools, op determinism, dtype policies). A trial reports:

- milliseconds per gradient step at 512x512 and 1280x720 (untrained InceptionV3 to mixed4..7: the
  product's network, and speed does not depend on the weights);
- how far its gradient is from the baseline's (mean |g - g0| / mean |g0| at 512x512);
- where the trial can run the whole engine, how far a dream's pixels move: mean |out - out0| in
  1/255 steps, on samples/fruits.jpg at 256 px with the default settings and the network the
  default resolves to (trained). Above 1/255 a trial can only be opt-in (issue 6).

The verdict is computed from those numbers, not written in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import REPO, SAMPLE

LAYERS = {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}


def trials(cores: int) -> dict[str, dict[str, Any]]:
    """name -> spec. ``env`` is set before TensorFlow starts; the rest the trial process reads."""
    specs: dict[str, dict[str, Any]] = {
        "baseline (the engine)": {},
        "bfloat16": {"precision": "bfloat16"},
        # Keras normalises in float32 under the mixed policy: every batch norm casts there and back
        "bfloat16, batch norms not folded": {
            "precision": "bfloat16",
            "fold": False,
            "verdict": "slower than bfloat16 folded: not used",
        },
        "batch norms not folded (float32)": {"fold": False},
        # oneDNN's math mode: float32 tensors, its kernels may compute in bfloat16 (AMX/AVX512_BF16)
        "oneDNN bf16 math mode": {"env": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}},
        "bfloat16 and oneDNN bf16 math mode": {"precision": "bfloat16", "env": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}},
        "XLA jit_compile": {"jit": True, "determinism": False},
        "no op determinism": {"determinism": False},
        "retrace per shape": {"retrace": True},
        "untruncated network": {"untruncated": True},
        "batch of 4 (per image)": {"batch": 4},
        "tiles of 512 (720p, the default)": {"tile": 512},
        "threads 1 intra": {"threads": 1},
        f"threads {2 * cores} intra (oversubscribed)": {"threads": 2 * cores},
    }
    return specs


# --- the parent: run each trial in its own process and compare ------------------------------------


def bench_trials(only: list[str] | None = None, steps: int = 4, small: bool = False) -> str:
    """Run the trials (those whose names contain one of ``only``, and the baseline) and tabulate.
    ``small`` shrinks every size (for tests of the harness; its timings mean nothing)."""
    cores = os.cpu_count() or 1
    specs = trials(cores)
    names = [n for n in specs if not only or n == "baseline (the engine)" or any(o in n for o in only)]
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="dreamreel-trials-") as tmp:
        for i, name in enumerate(names):
            spec = dict(specs[name])
            env = dict(os.environ)
            env.pop("DREAMREEL_TF_THREADS", None)  # trials set threads themselves
            env.update(spec.pop("env", {}))
            out = Path(tmp) / f"trial{i}"
            sizes = {"sizes": [[192, 192], [192, 320]], "dream_side": 96} if small else {}
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.trials",
                "--child",
                json.dumps({**spec, **sizes, "steps": steps}),
                str(out),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                rows[name] = {"error": err[:160]}
                continue
            rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[name]["dir"] = str(out)
            if "verdict" in spec:
                rows[name]["verdict"] = spec["verdict"]
        return _table(rows)


def _table(rows: dict[str, dict[str, Any]]) -> str:
    base = rows["baseline (the engine)"]
    if "error" in base:
        return f"baseline failed: {base['error']}"
    g0 = np.load(Path(base["dir"]) / "grad.npy")
    p0 = np.load(Path(base["dir"]) / "dream.npy") if base.get("dream") else None
    head = (
        f"{'trial':<34} {'512 ms':>7} {'ratio':>6} {'720p ms':>8} {'ratio':>6} {'grad diff':>9} {'pixels':>8}  verdict"
    )
    lines = [head]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"{name:<34} failed: {r['error']}")
            continue
        r512 = r["ms_512"] / base["ms_512"] if r["ms_512"] is not None else None
        r720 = r["ms_720"] / base["ms_720"]
        gd = "-"
        gpath = Path(r["dir"]) / "grad.npy"
        if gpath.is_file():
            g = np.load(gpath)
            gd = f"{np.mean(np.abs(g - g0)) / np.mean(np.abs(g0)):.2%}" if g.shape == g0.shape else "-"
        pix = None
        if p0 is not None and r.get("dream"):
            p = np.load(Path(r["dir"]) / "dream.npy")
            pix = float(np.mean(np.abs(p.astype(np.float64) - p0.astype(np.float64))))
        c512 = f"{r['ms_512']:>7.0f} {r512:>6.2f}" if r512 is not None else f"{'-':>7} {'-':>6}"
        verdict = r.get("verdict") or _verdict(name, r512, r720, pix)
        lines.append(
            f"{name:<34} {c512} {r['ms_720']:>8.0f} {r720:>6.2f} {gd:>9} "
            f"{'-' if pix is None else f'{pix:.2f}':>8}  {verdict}"
        )
        if r.get("retrace"):
            lines.append(
                f"{'':<34} first call at a new shape: {r['trace_ms']:.0f} ms, then "
                f"{r['again_ms']:.0f} ms (the engine: {base['trace_ms']:.0f} ms, then "
                f"{base['again_ms']:.0f} ms)"
            )
    lines.append(
        "ratio: trial / baseline time (below 1 is faster); grad diff: mean |g - g0| / mean |g0|; "
        "pixels: mean |dream - baseline dream| in 1/255 steps (- where the engine cannot run it)"
    )
    return "\n".join(lines)


# Repeated runs of the same settings differ by up to about 5% on a busy 2-core machine.
NOISE = 0.05


def _verdict(name: str, r512: float | None, r720: float, pix: float | None) -> str:
    if name.startswith("baseline"):
        return ""
    ratios = [r for r in (r512, r720) if r is not None]
    if max(ratios) > 1 + NOISE:
        return "slower: not used"
    if min(ratios) > 1 - NOISE:
        return "no gain (within noise): not used"
    if pix is not None and pix > 1.0:
        return "faster, other pixels: opt-in"
    return "faster: adopt"


# --- the child: one trial --------------------------------------------------------------------------


def _load_tensorflow(spec: dict[str, Any]) -> None:
    """The product's set-up, or for the determinism trials TensorFlow as it comes."""
    if spec.get("determinism", True):
        from pipeline.runtime import load_tensorflow

        load_tensorflow(spec.get("threads"))
    else:
        import tensorflow  # noqa: F401


def _step(net: Any, weights: list[float], spec: dict[str, Any]) -> Any:
    """The engine's gradient step, or the variant the trial tries: keras.io's plain tf.function
    (traced again for every new shape) and/or XLA."""
    if not (spec.get("retrace") or spec.get("jit")):
        import tensorflow as tf

        from dreamcore.ascent import gradient_step, whole_layers

        engine_step, w = gradient_step(net, whole_layers(net)), tf.constant(weights, tf.float32)
        return lambda img: engine_step(img, w)
    import tensorflow as tf

    from dreamcore.objective import dream_loss

    def loss_and_grad(img: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(img)
            loss = dream_loss(net(img), weights, net.loss_scale)
        return loss, tape.gradient(loss, img)

    jit = bool(spec.get("jit"))
    if spec.get("retrace"):
        return tf.function(loss_and_grad, jit_compile=jit)
    return tf.function(
        loss_and_grad, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], jit_compile=jit
    )


def _run_trial(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    _load_tensorflow(spec)
    import keras
    import tensorflow as tf

    from dreamcore.ascent import Dreamer
    from dreamcore.backbones import REGISTRY
    from dreamcore.backbones.keras_ops import cloned, seeded_init, stable_layer_names, with_precision

    out.mkdir(parents=True, exist_ok=True)
    inception = REGISTRY["inception_v3"]
    net = inception.build("untrained", list(LAYERS))
    weights = list(LAYERS.values())
    if spec.get("untruncated"):
        # The whole network runs (to mixed10, weighted 0); the loss still reads mixed4..7.
        full = inception._architecture()
        seeded_init(full, 1)
        by_name = stable_layer_names(full)
        model = keras.Model(full.input, [by_name[n].output for n in LAYERS] + [full.output])
        net = dataclasses.replace(net, model=model)
        weights.append(0.0)
    precision = spec.get("precision", "float32")
    if spec.get("fold") is False:  # the network as built (the engine folds its batch norms)
        if precision != "float32":
            net = dataclasses.replace(net, model=cloned(net.model, "mixed_bfloat16", fold=False))
    else:
        net = with_precision(net, precision)
    step = _step(net, weights, spec)
    steps = int(spec.get("steps", 4))
    batch = int(spec.get("batch", 1))
    tile = int(spec.get("tile", 0))
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {}

    def timed(h: int, w: int, n: int) -> tuple[float, np.ndarray]:
        x = rng.uniform(-1, 1, (batch, h, w, 3)).astype(np.float32)
        if tile:  # through the engine's own tiling
            dreamer = Dreamer(net, weights)

            def run() -> np.ndarray:
                return dreamer.gradient(x[0], tile)[1][None]
        else:

            def run() -> np.ndarray:
                return step(tf.constant(x))[1].numpy()

        g = run()  # warm: traces and oneDNN set-up
        t0 = time.perf_counter()
        for _ in range(n):
            g = run()
        return (time.perf_counter() - t0) / n / batch * 1000, g[0]

    (h1, w1), (h2, w2) = spec.get("sizes", [[512, 512], [720, 1280]])
    if tile:  # a tile trial is about the large image; the small one is a single tile anyway
        result["ms_512"] = None
    else:
        result["ms_512"], g512 = timed(h1, w1, steps)
        if batch == 1:
            np.save(out / "grad.npy", g512)
    result["ms_720"], _ = timed(h2, w2, max(1, steps // 2))
    # The cost of a new image size: the keras.io way traces the whole step again.
    for side in (300, 301):
        x = tf.constant(rng.uniform(-1, 1, (1, side, side, 3)).astype(np.float32))
        t0 = time.perf_counter()
        step(x)[1].numpy()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        step(x)[1].numpy()
        result["trace_ms"], result["again_ms"] = first * 1000, (time.perf_counter() - t0) * 1000
    result["retrace"] = bool(spec.get("retrace"))
    # (a fold trial's pixels would be the engine's: vgg16_hed, the dream's network, has no batch norms)
    if not (spec.get("jit") or spec.get("untruncated") or spec.get("retrace") or batch > 1 or tile or "fold" in spec):
        np.save(out / "dream.npy", _short_dream(spec.get("precision", "float32"), spec.get("dream_side", 256)))
        result["dream"] = True
    return result


def _short_dream(precision: str, side: int) -> np.ndarray:
    """The default settings on fruits.jpg at ``side`` px, through the whole engine, as uint8."""
    import cv2

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine

    bgr = cv2.imread(str(SAMPLE))
    h, w = bgr.shape[:2]
    s = side / max(h, w)
    bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    rgb = bgr[..., ::-1].astype(np.float32) / 255.0
    out = Engine(DreamConfig(precision=precision)).dream_rgb(rgb)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":  # one trial, in this fresh process
        print(json.dumps(_run_trial(json.loads(argv[1]), Path(argv[2]))))
        return
    p = argparse.ArgumentParser(prog="python -m benchmarks.trials", description=__doc__)
    p.add_argument("--only", metavar="NAMES", help="comma-separated parts of trial names (the baseline always runs)")
    p.add_argument("--steps", type=int, default=4, metavar="N", help="timed gradient steps per size (default 4)")
    args = p.parse_args(argv)
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None
    print(f"# gradient steps of untrained InceptionV3 to mixed4..7; {os.cpu_count()} cores")
    print(bench_trials(only, max(1, args.steps)))


if __name__ == "__main__":
    main()
