"""`python -m benchmarks.flow`: what optical flow at a working size (`video.flow_side`) saves, and
what it changes in the flow.

For each frame size, consecutive frames of a real shot (../shared/media/Megamind.avi, else the
fruits pan sample) scaled to that size; the flow between each pair is computed at full size and at
each working size, in the same run. Reported per size: milliseconds per pair (both directions and
the occlusion mask, as a follow-up frame computes them), the ratio to full size, and how far the
field is from the full-size one: the mean endpoint difference in pixels over the pixels both call
visible, and the share of pixels whose visibility differs. What this does to the dream (instability,
strength) is `benchmarks.video` with and without ``--set video.flow_side=0``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, parse_size, scaled_copy


def frames_of(size: tuple[int, int], count: int) -> list[np.ndarray]:
    from tests.jobs import frames_of as decoded

    megamind = REPO.parent / "shared" / "media" / "Megamind.avi"
    src, start = (megamind, 0.05) if megamind.exists() else (REPO / "samples" / "fruits-pan.mp4", None)
    with tempfile.TemporaryDirectory(prefix="dreamreel-flow-") as tmp:
        return decoded(scaled_copy(src, Path(tmp) / "clip.mp4", *size, start, count))


def main(argv: list[str] | None = None) -> None:
    import cv2

    from dreamcore.coherence import optical_flow

    p = argparse.ArgumentParser(prog="python -m benchmarks.flow", description=__doc__)
    p.add_argument(
        "--sizes", default="640x360,1280x720,1920x1080", help="frame sizes (default 640x360,1280x720,1920x1080)"
    )
    p.add_argument("--sides", default="512,256", help="working sizes to compare with full size (default 512,256)")
    p.add_argument("--pairs", type=int, default=8, help="consecutive frame pairs per size (default 8)")
    args = p.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    print(f"# optical flow per frame pair (both ways + mask), OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    for size in (parse_size(s) for s in args.sizes.split(",")):
        frames = frames_of(size, args.pairs + 1)
        pairs = list(zip(frames[:-1], frames[1:], strict=True))
        optical_flow(*pairs[0])  # warm-up
        results = {}
        for side in [None, *sides]:
            t0 = time.perf_counter()
            flows = [optical_flow(a, b, side) for a, b in pairs]
            results[side] = ((time.perf_counter() - t0) / len(pairs), flows)
        full_t, full = results[None]
        print(f"{size[0]}x{size[1]}: full size {full_t * 1000:.1f} ms")
        for side in sides:
            t, flows = results[side]
            if side >= max(size):
                continue
            epe, vis = [], []
            for f, g in zip(full, flows, strict=True):
                both = (f.visible > 0.5) & (g.visible > 0.5)
                epe.append(float(np.linalg.norm(f.backward - g.backward, axis=2)[both].mean()))
                vis.append(float(np.mean((f.visible > 0.5) != (g.visible > 0.5))))
            motion = np.mean([np.linalg.norm(f.backward, axis=2).mean() for f in full])
            print(
                f"  at {side}: {t * 1000:.1f} ms = {t / full_t:.2f}x; endpoint difference {np.mean(epe):.2f} px "
                f"(mean motion {motion:.2f} px), visibility differs on {np.mean(vis):.1%} of pixels"
            )


if __name__ == "__main__":
    main()
