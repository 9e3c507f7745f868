"""`python -m benchmarks.images`: `dreamreel images` (one model load) against a loop of `dreamreel
image` per file (a model load each), on the same generated images; then the batch with more workers."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import SAMPLE


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
        img = base[y : y + size, x : x + size].copy()
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
        make_bench_images(src, count, size, SAMPLE)
        timings: dict[str, float] = {}
        for n in workers:
            t0 = time.perf_counter()
            subprocess.run(
                [*exe, "images", str(src), "-o", str(Path(tmp) / f"batch{n}"), "-q", "--workers", str(n), *engine_args],
                check=True,
                capture_output=True,
            )
            timings[f"images --workers {n}"] = time.perf_counter() - t0
        loop_out = Path(tmp) / "loop"
        loop_out.mkdir()
        t0 = time.perf_counter()
        for f in sorted(src.iterdir()):
            subprocess.run(
                [*exe, "image", str(f), "-o", str(loop_out / f.name), "-q", *engine_args],
                check=True,
                capture_output=True,
            )
        timings["loop of `image`"] = time.perf_counter() - t0
    loop = timings["loop of `image`"]
    rows.append(f"{'how':<20} {'seconds':>8} {'images/s':>9} {'vs loop':>8}")
    for name, sec in timings.items():
        rows.append(f"{name:<20} {sec:>8.1f} {count / sec:>9.3f} {loop / sec:>7.2f}x")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.images", description=__doc__)
    p.add_argument("--count", type=int, default=50, metavar="N", help="images (default 50)")
    p.add_argument("--size", type=int, default=512, metavar="PX", help="their side (default 512)")
    p.add_argument("--workers", default="1,2", help="batch worker counts to try (default 1,2)")
    p.add_argument("engine_args", nargs=argparse.REMAINDER, help="engine options after --, for both sides")
    args = p.parse_args(argv)
    extra = [a for a in args.engine_args if a != "--"]
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    print(f"# {args.count} images of {args.size} px; engine options: {' '.join(extra) or '(defaults)'}")
    print(bench_images(args.count, args.size, extra, workers))


if __name__ == "__main__":
    main()
