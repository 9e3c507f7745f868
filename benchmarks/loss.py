"""`python -m benchmarks.loss`: what a network's dream loss reads on real photos.

The loss at the first step and at the end of each octave (default settings, ``max_loss`` off so
every step runs), per network and image: what ``max_loss`` is compared with. Images: the stills of
../shared/media when present, else samples/fruits.jpg.
"""

from __future__ import annotations

import argparse

import numpy as np

from .common import REPO, SAMPLE

MEDIA = REPO.parent / "shared" / "media"
NETWORKS = {"vgg16_hed": (None, {"block4_conv3": 1.0, "block5_conv1": 1.5, "block5_conv2": 2.0}),
            "inception_v3": ("untrained", {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5})}


def main(argv: list[str] | None = None) -> None:
    import cv2

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from pipeline.runtime import load_tensorflow

    p = argparse.ArgumentParser(prog="python -m benchmarks.loss", description=__doc__)
    p.parse_args(argv)
    load_tensorflow()
    stills = [MEDIA / n for n in ("fruits.jpg", "starry_night.jpg", "baboon.jpg", "chicky_512.png")]
    images = [s for s in stills if s.exists()] or [SAMPLE]
    print(f"{'image':<18} {'network':<24} {'first step':>10}  end of octave 1, 2, 3")
    for path in images:
        rgb = cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255
        for name, (weights, layers) in NETWORKS.items():
            cfg = DreamConfig(model=name, weights=weights, layers=layers, max_loss=None)
            seen: list[tuple[int, float]] = []

            def record(o: int, n: int, i: int, m: int, loss: float, seen: list = seen) -> None:
                seen.append((o, loss))

            Engine(cfg).dream_rgb(rgb, progress=record)
            ends = [next(loss for o, loss in reversed(seen) if o == k) for k in sorted({o for o, _ in seen})]
            label = f"{name}/{weights or 'trained'}"
            print(f"{path.name:<18} {label:<24} {seen[0][1]:>10.3f}  {', '.join(f'{v:.2f}' for v in ends)}")


if __name__ == "__main__":
    main()
