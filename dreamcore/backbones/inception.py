"""InceptionV3 (Keras applications), the classic deep-dream network.

Weights: ``imagenet`` (Keras' notop file, downloaded once into ``$KERAS_HOME/models`` or
``~/.keras/models``), ``untrained`` (a fixed seeded random init) or a path to a weights file saved
from ``keras.applications.InceptionV3(include_top=False)``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamcore.backbones.base import Backbone, FeatureNet
from dreamcore.backbones.keras_ops import min_input_side, seeded_init, stable_layer_names
from dreamcore.errors import WeightsError, setting

log = logging.getLogger("dreamcore")

WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + WEIGHTS_FILE
WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
# The origin can be pointed elsewhere (a mirror, or in tests an address that refuses).
URL_ENV = "DREAMREEL_INCEPTION_WEIGHTS_URL"
DOWNLOAD_TIMEOUT_S = 20.0
# `untrained` is one fixed network, not a new one per run: what makes untrained dreams repeatable.
UNTRAINED_SEED = 1


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def _fetch_imagenet() -> str:
    """Path of the cached ImageNet file, downloading it if needed; WeightsError when impossible."""
    cached = keras_cache_dir() / WEIGHTS_FILE
    if cached.is_file():
        return str(cached)
    import keras

    url = os.environ.get(URL_ENV, WEIGHTS_URL)
    log.debug("downloading the InceptionV3 ImageNet weights (84 MB, once) into %s", cached.parent)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib under get_file has no timeout of its own
    try:
        # get_file prints to stdout, which belongs to the user's data (e.g. `dreamreel layers`)
        with contextlib.redirect_stdout(io.StringIO()):
            return keras.utils.get_file(
                WEIGHTS_FILE, url, cache_dir=str(cached.parent.parent), cache_subdir="models", file_hash=WEIGHTS_MD5
            )
    except Exception as exc:
        reason = str(exc).split(" -- ")[-1].strip() or type(exc).__name__
        raise WeightsError(
            f"InceptionV3 ImageNet weights are not cached at {cached} and could not be downloaded "
            f"({reason}); copy {WEIGHTS_FILE} there, pass {setting('weights', 'FILE')}, "
            f"or use {setting('model', 'vgg16_hed')} (trained weights that need no download)"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


class InceptionV3(Backbone):
    name = "inception_v3"
    trained_weights = "imagenet"
    default_layers = {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}

    def dream_layers(self) -> list[str]:
        return [f"mixed{i}" for i in range(11)]

    def layer_names(self) -> list[str]:
        return list(stable_layer_names(self._architecture()))

    def output_shapes(self) -> dict[str, tuple[Any, ...]]:
        return {n: tuple(layer.output.shape) for n, layer in stable_layer_names(self._architecture()).items()}

    def weights_ready(self, weights: str | None) -> bool:
        w = self.weights_name(weights)
        if w == "untrained":
            return True
        if w == "imagenet":
            try:
                _fetch_imagenet()
            except WeightsError:
                return False
            return True
        return Path(w).is_file()

    def _architecture(self) -> Any:
        import keras

        return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))

    def build(self, weights: str | None, layers: Sequence[str]) -> FeatureNet:
        import keras

        w = self.weights_name(weights)
        if w == "untrained":
            full = self._architecture()
            seeded_init(full, UNTRAINED_SEED)
        else:
            path = _fetch_imagenet() if w == "imagenet" else _check_file(w)
            full = self._architecture()
            try:
                with warnings.catch_warnings():
                    # Keras only warns when a file lacks some layers and leaves them at random
                    # init: for a dream that is a wrong network, so an error.
                    warnings.simplefilter("error")
                    full.load_weights(path)
            except Exception as exc:
                raise WeightsError(
                    f"{path}: not InceptionV3 (include_top=False) weights: {str(exc).splitlines()[0][:200]}"
                ) from None
        by_name = stable_layer_names(full)
        self.check_layers(layers)
        model = keras.Model(full.input, [by_name[n].output for n in layers])
        return FeatureNet(
            backbone=self.name,
            weights=w if w in ("imagenet", "untrained") else str(Path(w).resolve()),
            layers=tuple(layers),
            model=model,
            preprocess=lambda x: x,  # InceptionV3 sees [-1, 1]: the canonical range itself
            loss_scale=self.loss_scale,
            min_side=min_input_side(model),
        )


def _check_file(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {path} (weights: imagenet, untrained or a file path)")
    if not (p.name.endswith(".weights.h5") or p.suffix in (".h5", ".hdf5", ".keras")):
        raise WeightsError(f"{path}: weights files must end in .weights.h5, .h5 or .keras")
    return str(p)
