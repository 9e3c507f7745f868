"""`python -m benchmarks.zoomquality`: does a long zoom stay crisp, and do its colours hold?

Runs `dreamreel zoom` (through the Python API, the command's own code) on one image once per way
of resampling the previous frame, side by side in one run, and reads each film back:

- sharpness: the variance of the Laplacian of the grey picture at frames 0, 48, 96, ... and the
  last, and each as a ratio of frame 0's (the issue's bar: >= 0.8x);
- colour drift: the mean L, a and b (CIELAB, OpenCV's 8-bit scale: L 0-255, a and b centred on
  128) of frames 0, 48, ... and the last, and the largest distance from frame 0's means;
- cost: seconds per frame after the first, and as a ratio of the first variant's.

Variants: ``linear`` (what `zoom` does today: bilinear, the classic zoom's order-1 resampling),
``cubic`` and ``lanczos`` (OpenCV's bicubic and Lanczos-4 kernels, clipped to 0-255).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
KERNELS = {"linear": "INTER_LINEAR", "cubic": "INTER_CUBIC", "lanczos": "INTER_LANCZOS4"}


def mover(kernel: str):
    """``pipeline.zoom.move`` with another resampling kernel (clipped: cubic kernels overshoot)."""
    import cv2

    flag = getattr(cv2, KERNELS[kernel])

    def move(frame: np.ndarray, motion) -> np.ndarray:
        h, w = frame.shape[:2]
        moved = cv2.warpAffine(
            np.asarray(frame, np.float32),
            motion.matrix(w, h),
            (w, h),
            flags=flag | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        return np.clip(np.rint(moved), 0, 255).astype(np.uint8)

    return move


def measure(film: Path, at: list[int]) -> tuple[dict[int, float], dict[int, tuple[float, float, float]]]:
    import cv2

    from pipeline.io import media

    sharp: dict[int, float] = {}
    lab: dict[int, tuple[float, float, float]] = {}

    def look(i: int, rgb: np.ndarray) -> None:
        if i in at:
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            sharp[i] = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            m = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0)
            lab[i] = (float(m[0]), float(m[1]), float(m[2]))

    media.scan(film, media.probe(film).display_size, on_frame=look)
    return sharp, lab


def main(argv: list[str] | None = None) -> None:
    from dreamcore.config import DreamConfig
    from pipeline import api, zoom
    from pipeline.settings import build_settings

    p = argparse.ArgumentParser(prog="python -m benchmarks.zoomquality", description=__doc__)
    p.add_argument("--image", type=Path, default=REPO / "samples" / "fruits.jpg")
    p.add_argument("--frames", type=int, default=240, help="default 240: the default 10 s at 24 fps")
    p.add_argument("--variants", default="linear,cubic,lanczos")
    p.add_argument("--every", type=int, default=48, help="measure every N frames (and the last)")
    p.add_argument("--set", action="append", default=[], dest="sets", help="config KEY=VALUE (as the CLI's)")
    p.add_argument("--model", default=None, help="default: the zoom preset's (auto: vgg16_hed offline)")
    p.add_argument("--work", type=Path, help="folder for the films (default: a new temporary one)")
    args = p.parse_args(argv)

    cfg, _ = build_settings("zoom", None, args.sets, {"model": args.model})
    assert isinstance(cfg, DreamConfig)
    at = sorted({*range(0, args.frames, args.every), args.frames - 1})
    work = args.work or Path(tempfile.mkdtemp(prefix="dreamreel-zoomquality-"))
    real_move = zoom.move
    rows = []
    for variant in args.variants.split(","):
        zoom.move = mover(variant)
        try:
            t0 = time.perf_counter()
            result = api.dream_zoom(
                zoom.ZoomRequest(
                    input=str(args.image),
                    output=str(work / f"{variant}.mp4"),
                    config=cfg,
                    frames=args.frames,
                    fps=Fraction(24),
                    motion=zoom.Motion(),
                )
            )
            total = time.perf_counter() - t0
        finally:
            zoom.move = real_move
        later = result.frame_seconds[1:] or (0.0,)
        sharp, lab = measure(work / f"{variant}.mp4", at)
        rows.append((variant, total, float(np.mean(later)), sharp, lab))

    base_cost = rows[0][2]
    print(f"{args.image.name}, {args.frames} frames, zoom preset, frames measured: {at}")
    for variant, total, per_frame, sharp, lab in rows:
        ratios = " ".join(f"{sharp[i] / sharp[0]:.2f}" for i in at)
        l0 = np.array(lab[0])
        drift = max(float(np.linalg.norm(np.array(lab[i]) - l0)) for i in at)
        last = lab[at[-1]]
        print(
            f"{variant:<8} {total:6.0f} s in all, {per_frame:.2f} s a later frame ({per_frame / base_cost:.2f}x)\n"
            f"         sharpness {' '.join(f'{sharp[i]:.0f}' for i in at)}  (x frame 0: {ratios})\n"
            f"         L,a,b frame 0 {lab[0][0]:.1f},{lab[0][1]:.1f},{lab[0][2]:.1f} -> last "
            f"{last[0]:.1f},{last[1]:.1f},{last[2]:.1f}; largest distance from frame 0: {drift:.1f}"
        )


if __name__ == "__main__":
    main()
