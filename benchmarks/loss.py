"""`python -m benchmarks.loss`: what a network's dream loss reads on real photos.

The loss at the first step and at the end of each octave (default settings, ``max_loss`` off so
every step runs), per network and image: what ``max_loss`` is compared with. Images: the stills of
../shared/media when present, else samples/fruits.jpg.

Networks: the built-ins, and model files (``--model FILE``), whose loss is calibrated per layer
(dreamcore.backbones.keras_file): vgg16_hed's own trunk saved as a .keras file (the same network, so
the two rows show what the calibration changes), an untrained InceptionV3 saved as a file, and the
tests' tiny CNN trained on circles and squares (tests/models.py). ``--calibration`` prints the
built-in vgg16_hed's per-layer loss on the calibration image, which CALIBRATED_LOSS is the mean of.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from .common import REPO, SAMPLE

MEDIA = REPO.parent / "shared" / "media"
VGG_LAYERS = {"block4_conv3": 1.0, "block5_conv1": 1.5, "block5_conv2": 2.0}
INCEPTION_LAYERS = {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}


def calibration() -> None:
    import tensorflow as tf

    from dreamcore.backbones.keras_file import CALIBRATED_LOSS, calibration_image
    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from dreamcore.objective import dream_loss

    net = Engine(DreamConfig(model="vgg16_hed", layers=VGG_LAYERS)).dreamer.net
    acts = net(tf.constant(calibration_image(224, 224)[None]))
    values = [float(dream_loss([a], [1.0], net.loss_scale)) for a in acts]
    for name, v in zip(VGG_LAYERS, values, strict=True):
        print(f"vgg16_hed {name}: {v:.5f} on the calibration image (224x224) at weight 1")
    print(f"mean {np.mean(values):.5f}; dreamcore.backbones.keras_file.CALIBRATED_LOSS = {CALIBRATED_LOSS}")


def model_files(folder: Path) -> dict[str, tuple[str, str | None, dict[str, float]]]:
    """label -> (model, weights, layers) for the model-file rows, saved into ``folder``."""
    import keras

    from dreamcore.backbones.keras_ops import seeded_init
    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from tests.models import trained_cnn

    trunk = Engine(DreamConfig(model="vgg16_hed", layers={"block5_conv3": 1.0})).dreamer.net.model
    vgg = folder / "vgg16_hed_trunk.keras"
    keras.Model(trunk.inputs[0], trunk.outputs[0]).save(vgg)
    inception = folder / "inception_v3_untrained.keras"
    model = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    seeded_init(model, 1)
    model.save(inception)
    cnn = trained_cnn(folder / "shapes_cnn.keras")
    return {
        "file: vgg16_hed trunk": (str(vgg), None, VGG_LAYERS),
        "file: inception untrained": (str(inception), None, INCEPTION_LAYERS),
        "file: tiny shapes CNN": (str(cnn), None, {"conv1": 1.0, "conv2": 2.0}),
    }


def main(argv: list[str] | None = None) -> None:
    import cv2

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from pipeline.runtime import load_tensorflow

    p = argparse.ArgumentParser(prog="python -m benchmarks.loss", description=__doc__)
    p.add_argument("--calibration", action="store_true", help="only the calibration constant's measurement")
    p.add_argument("--no-files", action="store_true", help="the built-ins only")
    args = p.parse_args(argv)
    load_tensorflow()
    if args.calibration:
        calibration()
        return
    networks: dict[str, tuple[str, str | None, dict[str, float]]] = {
        "vgg16_hed/trained": ("vgg16_hed", None, VGG_LAYERS),
        "inception_v3/untrained": ("inception_v3", "untrained", INCEPTION_LAYERS),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_files:
            networks.update(model_files(Path(tmp)))
        stills = [MEDIA / n for n in ("fruits.jpg", "starry_night.jpg", "baboon.jpg", "chicky_512.png")]
        images = [s for s in stills if s.exists()] or [SAMPLE]
        print(f"{'image':<18} {'network':<27} {'first step':>10}  end of octave 1, 2, 3")
        for path in images:
            rgb = cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255
            for label, (model, weights, layers) in networks.items():
                model_input = (
                    "caffe"
                    if "vgg16_hed trunk" in label
                    else "-1..1"
                    if "inception" in label and label.startswith("file")
                    else "auto"
                )
                cfg = DreamConfig(model=model, weights=weights, layers=layers, max_loss=None, model_input=model_input)
                seen: list[tuple[int, float]] = []

                def record(o: int, n: int, i: int, m: int, loss: float, seen: list = seen) -> None:
                    seen.append((o, loss))

                Engine(cfg).dream_rgb(rgb, progress=record)
                ends = [next(loss for o, loss in reversed(seen) if o == k) for k in sorted({o for o, _ in seen})]
                print(f"{path.name:<18} {label:<27} {seen[0][1]:>10.3f}  {', '.join(f'{v:.2f}' for v in ends)}")


if __name__ == "__main__":
    main()
