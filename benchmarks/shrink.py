"""`python -m benchmarks.shrink`: the octave path's shrink, TensorFlow's antialiased bilinear (what
the engine runs) against OpenCV's area average (a cheaper kernel, tried for video follow-up
frames and not kept), in one run.

For each frame size, a real frame (../shared/media/Megamind.avi scaled to that size, else the fruits
pan sample) shrunk to the octave sizes a follow-up frame dreams at (``--max-side``, default 360):
milliseconds per shrink of each kernel (a uint8 video frame, as the video path shrinks it) and the
mean and largest difference of their results, in 1/255 steps. Then a whole default dream of
samples/fruits.jpg at 256 px with each kernel (the network of the default config, offline
vgg16_hed where ImageNet weights cannot be fetched): the mean pixel difference of the two dreams
and their strengths (mean |dream - image|): what the cheaper kernel would change.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, SAMPLE, parse_size, scaled_copy


def _frame(size: tuple[int, int]) -> np.ndarray:
    from tests.jobs import frames_of

    megamind = REPO.parent / "shared" / "media" / "Megamind.avi"
    src, start = (megamind, 0.5) if megamind.exists() else (REPO / "samples" / "fruits-pan.mp4", None)
    with tempfile.TemporaryDirectory(prefix="dreamreel-shrink-") as tmp:
        return frames_of(scaled_copy(src, Path(tmp) / "clip.mp4", *size, start, 1))[0]


def _area(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32)


def _tf_shrink(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    return tf.image.resize(img, shape, method="bilinear", antialias=True).numpy()


def _ms(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000


def main(argv: list[str] | None = None) -> None:
    from dreamcore import ascent
    from dreamcore.ascent import octave_shapes
    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from pipeline.io.imagefile import read_image
    from pipeline.runtime import load_tensorflow

    p = argparse.ArgumentParser(prog="python -m benchmarks.shrink", description=__doc__)
    p.add_argument(
        "--sizes", default="640x360,1280x720,1920x1080", help="frame sizes (default 640x360,1280x720,1920x1080)"
    )
    p.add_argument("--max-side", type=int, default=360, help="the dream's max_side (default 360)")
    args = p.parse_args(argv)
    load_tensorflow()
    print("size       octave     area ms    TF ms   ratio   mean |diff|   max |diff| (1/255)")
    for text in args.sizes.split(","):
        w, h = parse_size(text)
        frame = _frame((w, h))
        for shape in octave_shapes(h, w, 3, 1.4, 75, args.max_side):
            area, tf_ = _area(frame, shape), _tf_shrink(frame, shape)
            a_ms = _ms(lambda s=shape, f=frame: _area(f, s))
            t_ms = _ms(lambda s=shape, f=frame: _tf_shrink(f, s))
            diff = np.abs(area - tf_)
            print(
                f"{text:10s} {shape[1]:4d}x{shape[0]:<4d} {a_ms:8.2f} {t_ms:8.2f} {a_ms / t_ms:7.2f} "
                f"{diff.mean():11.3f} {diff.max():12.1f}"
            )

    image = read_image(SAMPLE).pixels[..., :3].astype(np.float32) / 255.0
    cfg = DreamConfig(max_side=256)
    dreams = {}
    engine = Engine(cfg)
    original = ascent.resize

    def area_first(img, shape):  # type: ignore[no-untyped-def]
        if shape[0] <= img.shape[0] and shape[1] <= img.shape[1] and tuple(shape) != tuple(img.shape[:2]):
            return _area(img, shape)
        return original(img, shape)

    dreams["TF"] = engine.dream_rgb(image)
    ascent.resize = area_first
    try:
        dreams["area"] = engine.dream_rgb(image)
    finally:
        ascent.resize = original
    a, t = dreams["area"], dreams["TF"]
    print(
        f"default dream of {SAMPLE.name} at 256 px ({engine.resolved.model}/{engine.resolved.weights}): mean "
        f"|area - TF| {np.abs(a - t).mean() * 255:.2f}/255; strength (mean |dream - image|) area "
        f"{np.abs(a - image).mean() * 255:.2f}/255, TF {np.abs(t - image).mean() * 255:.2f}/255"
    )


if __name__ == "__main__":
    main()
