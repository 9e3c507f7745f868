"""`python -m benchmarks.studio`: how long the studio's quick dream of a 1024 px photo takes.

The studio's "Quick dream" button runs `dreamreel image PHOTO -o ... --max-side 320` in the
studio's process (pipeline.studio.work.Studio.dream, the code the button calls, without the web
page). This times it on a photo scaled to 1024 px on its long side: the first quick dream of a
session (the network is built and its step traced), then the next ones, and beside them the
full-size dream of the same photo with the same settings, measured in the same run. Networks:
vgg16_hed (trained, what `model: auto` dreams with offline) and InceptionV3 (untrained weights
here: the same arithmetic as the ImageNet ones, which this machine cannot download).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = REPO.parent / "shared" / "media" / "starry_night.jpg"


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from pipeline.studio.commands import QUICK_SIDE, Folder, Look
    from pipeline.studio.work import Studio

    p = argparse.ArgumentParser(prog="python -m benchmarks.studio", description=__doc__)
    p.add_argument(
        "--photo", type=Path, default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else REPO / "samples/fruits.jpg"
    )
    p.add_argument("--side", type=int, default=1024, help="the photo's long side (default 1024)")
    p.add_argument("--repeat", type=int, default=3, help="quick dreams after the first (default 3)")
    p.add_argument("--networks", default="vgg16_hed,inception_v3")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dreamreel-studio-bench-"))
    photo = Image.open(args.photo).convert("RGB")
    scale = args.side / max(photo.size)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    photo.save(work / "photo.jpg", quality=92)
    os.chdir(work)
    studio = Studio(Folder(work))
    print(f"{args.photo.name} at {photo.width}x{photo.height}; quick dreams at {QUICK_SIDE} px; {os.cpu_count()} cores")
    print(f"{'network':<14}{'first quick':>13}{'next quick (median)':>21}{'full size':>12}{'full/quick':>12}")
    for network in args.networks.split(","):
        look = Look(model=network, weights="untrained" if network == "inception_v3" else "")
        t0 = time.perf_counter()
        studio.dream("photo.jpg", look, quick=True)
        first = time.perf_counter() - t0
        nexts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            studio.dream("photo.jpg", look, quick=True)
            nexts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        studio.dream("photo.jpg", look, quick=False)
        full = time.perf_counter() - t0
        quick = statistics.median(nexts)
        print(f"{network:<14}{first:>12.1f}s{quick:>20.1f}s{full:>11.1f}s{full / quick:>11.1f}x")


if __name__ == "__main__":
    main()
