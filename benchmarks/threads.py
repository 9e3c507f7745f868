"""`python -m benchmarks.threads`: does TensorFlow's intra-op thread count change a dream's pixels?

Each thread count runs in fresh processes (TensorFlow fixes its thread pools at start), twice, so
the table shows both whether a layout repeats itself and whether layouts differ. Images: both
backbones, two seeds, three sizes, the whole engine. Video: `dreamreel video` on a generated pan.
Differences are mean |a - b| over the uint8 pixels, in 1/255 steps, and the largest single one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import REPO, SAMPLE

CASES = [
    (model, seed, size)
    for model in ("inception_v3", "vgg16_hed")
    for seed in (0, 7)
    for size in ((128, 160), (240, 256), (480, 512))
]


def _child(threads: int, out: Path) -> None:
    import cv2

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from pipeline.runtime import load_tensorflow, numerics

    load_tensorflow(threads)
    assert numerics()["threads"] == threads
    rgb = cv2.imread(str(SAMPLE))[..., ::-1].astype(np.float32) / 255
    dreams = {}
    for model, seed, (h, w) in CASES:
        weights = "untrained" if model == "inception_v3" else None  # ImageNet weights can't be assumed
        cfg = DreamConfig(
            model=model,
            weights=weights,
            seed=seed,
            layers={"mixed4": 1.0, "mixed5": 1.5}
            if model == "inception_v3"
            else {"block4_conv3": 1.0, "block5_conv1": 1.5},
        )
        img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        dreams[f"{model} seed {seed} {w}x{h}"] = np.round(Engine(cfg).dream_rgb(img) * 255).astype(np.uint8)
    np.savez(out, **dreams)


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return f"{d.mean():6.3f} max {d.max():3d}"


def _video(threads: int, clip: Path, work: Path) -> list[np.ndarray]:
    import cv2

    env = {**os.environ, "DREAMREEL_TF_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "video",
        str(clip),
        "-o",
        str(work.with_suffix(".mp4")),
        "-q",
        "--workdir",
        str(work),
        "--keep-work",
        "--model",
        "inception_v3",
        "--weights",
        "untrained",
    ]
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=REPO)
    return [cv2.imread(str(p)) for p in sorted((work / "dream").glob("*.png"))]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(int(argv[1]), Path(argv[2]))
        return
    from pipeline.runtime import usable_cores

    p = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__)
    p.add_argument("--threads", default=f"1,{usable_cores()}", help="thread counts to compare (default 1,cores)")
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="dreamreel-threads-") as tmp:
        runs: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for t in counts:
            for rep in (0, 1):
                out = Path(tmp) / f"t{t}-{rep}.npz"
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.threads", "--child", str(t), str(out)],
                    check=True,
                    cwd=REPO,
                    capture_output=True,
                )
                runs[t, rep] = dict(np.load(out))
        a, b = counts[0], counts[-1]
        print(
            f"# image dreams (default settings, fruits.jpg resized): mean |diff| in 1/255, and max; "
            f"{a} vs {b} threads, and each against itself in another process"
        )
        print(f"{'case':<34} {f'{a} vs {b}':>16} {f'{a} vs {a}':>16} {f'{b} vs {b}':>16}")
        for key in runs[a, 0]:
            print(
                f"{key:<34} {_diff(runs[a, 0][key], runs[b, 0][key]):>16} "
                f"{_diff(runs[a, 0][key], runs[a, 1][key]):>16} {_diff(runs[b, 0][key], runs[b, 1][key]):>16}"
            )
        from tests.clips import make_pan

        clip = make_pan(Path(tmp) / "pan.mp4", frames=12, size=(320, 240))
        frames = {t: _video(t, clip, Path(tmp) / f"video-{t}") for t in (a, b)}
        worst = [_diff(x, y) for x, y in zip(frames[a], frames[b], strict=True)]
        print(
            f"# `dreamreel video` on a 12-frame 320x240 pan (untrained InceptionV3, default settings), "
            f"{a} vs {b} threads, per frame:"
        )
        print(json.dumps(worst))


if __name__ == "__main__":
    main()
