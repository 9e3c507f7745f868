"""Any Keras image model, from a file, as the network to dream with (``model: path/model.keras``).

What fits: a model saved by Keras (``.keras``, a whole model in ``.h5``, or a SavedModel folder written
by Keras 2, opened with tf-keras) with one image input,
of free size or fixed (e.g. 224x224: then images are dreamt in tiles of that size). Dream layers are
its top-level layers with a 4-D output (batch, height, width, channels); a classifier top (a 2-D
last output) also gives ``class:N`` targets, its logits (the softmax, when there is one, is left
out: a probability saturates).

The input range: ``model_input`` (``0..1``, ``-1..1``, ``0..255``, ``caffe``: BGR 0..255 minus
ImageNet's means), or ``auto``: a model whose first layer is a preprocessing layer (Rescaling,
Normalization) is fed 8-bit values (0..255) for it to map; one without is fed 0..1, with one line
saying so.

Loss scale: each layer's own, calibrated so that its mean squared activation on a fixed
calibration image (seeded 1/f noise, the spectrum of natural photographs) is ``CALIBRATED_LOSS``:
the value the built-in vgg16_hed's default layers have on that image. So ``max_loss`` and the
presets read as they do on the built-ins (docs/benchmarks.md gives measurements), and
layers of very different magnitude weigh alike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamcore.backbones.base import Backbone, FeatureNet
from dreamcore.backbones.keras_ops import min_input_side
from dreamcore.config import INPUT_RANGES
from dreamcore.config import MODEL_SUFFIXES as SUFFIXES
from dreamcore.errors import ConfigError, LayerError, WeightsError, listing, setting, shown
from dreamcore.objective import CLASS, base_layers, dream_loss

_PREPROCESSING = ("Rescaling", "Normalization")
_NOT_FEATURES = (
    "InputLayer",
    "Rescaling",
    "Normalization",
    "Resizing",
    "CenterCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "Dropout",
    "SpatialDropout2D",
)
_BGR_MEAN = (103.939, 116.779, 123.68)
# The loss a layer gives on the calibration image at weight 1: what the built-in vgg16_hed's default
# layers give there with its hand-set loss scale (mean of the three; measured by
# `python -m benchmarks.loss --calibration`).
CALIBRATED_LOSS = 0.00528
CALIBRATION_SIDE = 224
CLASS_MIN_SIDE = 32
CALIBRATION_SEED = 7

_lock = threading.Lock()
_models: dict[tuple[str, str], Any] = {}  # (resolved path, model_version) -> the loaded model


def calibration_image(height: int, width: int) -> Any:
    """A canonical ([-1, 1]) RGB image of seeded 1/f noise: natural images' power spectrum, no content."""
    import numpy as np

    rng = np.random.default_rng(CALIBRATION_SEED)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    out = np.empty((height, width, 3), np.float32)
    luma = None
    for c in range(3):
        spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
        spec[0, 0] = 0
        plane = np.fft.irfft2(spec, s=(height, width))
        plane /= np.abs(plane).max() + 1e-12
        luma = plane if luma is None else luma
        out[..., c] = 0.7 * luma + 0.3 * plane  # colours that go together, like a photograph's
    out /= np.abs(out).max()
    return out * 0.9


def load_model(path: str) -> Any:
    """The Keras model in ``path``, loaded once per process (again when the file changes);
    WeightsError naming why it cannot be had."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"model file not found: {path}")
    if p.is_dir():
        if not (p / "saved_model.pb").exists():
            raise WeightsError(f"{path}: a folder, not a Keras model file (.keras or .h5) or a SavedModel")
        if not (p / "keras_metadata.pb").exists():
            raise WeightsError(
                f"{path}: a TensorFlow SavedModel without Keras layers (no keras_metadata.pb), so its "
                "inner layers cannot be reached; save the model with Keras (model.save('m.keras'))"
            )
    elif not p.name.lower().endswith(SUFFIXES):
        raise WeightsError(f"{path}: a model file must end in .keras or .h5 (or be a SavedModel folder)")
    key = (str(p.resolve()), model_version(path))
    with _lock:
        if key in _models:
            return _models[key]
    if p.is_dir():
        # A SavedModel written by Keras 2 (TensorFlow <= 2.15's model.save("dir")): Keras 3 cannot
        # open its layers, tf-keras (Keras 2) can.
        try:
            import tf_keras as keras
        except ImportError:
            raise WeightsError(
                f"{path}: a Keras 2 SavedModel, which needs tf-keras to open (pip install "
                "'dreamreel[savedmodel]', or save it as .keras)"
            ) from None
    else:
        import keras

    try:
        model = keras.models.load_model(str(p), compile=False)
    except Exception as exc:
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not a Keras model that loads ({why})") from None
    if not isinstance(model, keras.Model):
        raise WeightsError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    with _lock:
        _models[key] = model
    return model


def model_version(path: str) -> str:
    """Size and time of a model file, or of a SavedModel folder's files: another model at the same
    path is another network."""
    p = Path(path)
    files = [p] if not p.is_dir() else [f for f in (*p.glob("*.pb"), *p.glob("variables/*")) if f.is_file()]
    try:
        stats = [f.stat() for f in files]
    except OSError:
        return ""
    return f"{sum(st.st_size for st in stats)}-{max((st.st_mtime_ns for st in stats), default=0)}"


def _shape(tensor: Any) -> tuple[Any, ...]:
    return tuple(tensor.shape)


class KerasFile(Backbone):
    """One model file. Its ``name`` is the file's absolute path: what a job records and workers load."""

    trained_weights = "file"

    def __init__(self, path: str, model_input: str = "auto"):
        self.name = str(Path(path).resolve())
        self.path = path
        self.model_input = model_input
        if model_input not in INPUT_RANGES:
            raise ConfigError(f"model_input: {shown(model_input)} is not allowed; allowed: {', '.join(INPUT_RANGES)}")

    # --- what the file holds ---------------------------------------------------------------------

    def model(self) -> Any:
        model = load_model(self.path)
        if len(model.inputs) != 1:
            raise WeightsError(
                f"{self.path}: not an image model: it has {len(model.inputs)} inputs (one image input is needed)"
            )
        shape = _shape(model.inputs[0])
        if len(shape) != 4 or shape[-1] not in (1, 3):
            raise WeightsError(
                f"{self.path}: not an image model: its input is {shape}, not (batch, height, width, 3 or 1 channels)"
            )
        if (shape[1] is None) != (shape[2] is None):
            raise WeightsError(f"{self.path}: its input {shape} fixes one side only; give it both or neither")
        return model

    def version(self) -> str:
        return model_version(self.path)

    def fixed(self) -> tuple[int, int] | None:
        shape = _shape(self.model().inputs[0])
        return None if shape[1] is None else (int(shape[1]), int(shape[2]))

    def _layers(self) -> dict[str, Any]:
        return {layer.name: layer for layer in self.model().layers}

    def dream_layers(self) -> list[str]:
        return [
            name
            for name, layer in self._layers().items()
            if type(layer).__name__ not in _NOT_FEATURES and len(_output_shape(layer)) == 4
        ]

    def layer_names(self) -> list[str]:
        return list(self._layers())

    def output_shapes(self) -> dict[str, tuple[Any, ...]]:
        return {name: _output_shape(layer) for name, layer in self._layers().items()}

    def classes(self) -> int | None:
        """Logits of the classifier top, or None when the model has none."""
        out = _shape(self.model().outputs[0])
        return int(out[-1]) if len(out) == 2 and out[-1] is not None else None

    @property
    def default_layers(self) -> dict[str, float]:  # type: ignore[override]
        """The deepest three convolution outputs (else feature maps), weighted 1, 1.5, 2 like the
        keras.io example's rising weights."""
        names = self.dream_layers()
        layers = self._layers()
        convs = [n for n in names if "Conv" in type(layers[n]).__name__ or "Activation" in type(layers[n]).__name__]
        picked = (convs or names)[-3:]
        if not picked:
            raise WeightsError(
                f"{self.path}: no layer with a 4-D output (batch, height, width, channels) to dream with"
            )
        return {n: w for n, w in zip(picked, (1.0, 1.5, 2.0)[-len(picked) :], strict=True)}

    def input_range(self) -> tuple[str, str | None]:
        """The range the model is fed, and a note for the user when it was assumed."""
        if self.model_input != "auto":
            return self.model_input, None
        first = [la for la in self.model().layers if type(la).__name__ != "InputLayer"][:1]
        if first and type(first[0]).__name__ in _PREPROCESSING:
            return "0..255", None
        return "0..1", (
            f"{os.path.basename(self.path)} has no preprocessing layer: feeding it pixels in 0..1 "
            f"({setting('model_input', '-1..1, 0..255 or caffe')} if it was trained on another range)"
        )

    def weights_ready(self, weights: str | None) -> bool:
        try:
            self.model()
        except WeightsError:
            return False
        return True

    def check_layers(self, layers: Sequence[str]) -> None:

        self._check_outputs(base_layers(layers))

    def _check_outputs(self, names: Sequence[str]) -> None:

        shapes = self.output_shapes()
        for name in names:
            if name == CLASS:
                if self.classes() is None:
                    out = _shape(self.model().outputs[0])
                    raise LayerError(
                        f"class targets need a classifier top, and {os.path.basename(self.path)}'s "
                        f"output is {out}, not (batch, classes)"
                    )
                continue
            if name not in shapes:
                listed = self.dream_layers()
                more = f", ... ({len(listed)} in all: {listing(self.path)})" if len(listed) > 24 else ""
                raise LayerError(
                    f"unknown layer {shown(name)} for {os.path.basename(self.path)}; its dream layers: "
                    f"{', '.join(listed[:24])}{more}"
                )
            if len(shapes[name]) != 4:
                raise LayerError(
                    f"layer {shown(name)} of {os.path.basename(self.path)} is not a feature map: its "
                    f"output is {shapes[name]}; dream layers are 4-D (batch, height, width, channels) "
                    f"(a classifier's logits: {setting('layers', 'class:N')})"
                )

    # --- the feature network ---------------------------------------------------------------------

    def build(self, weights: str | None, layers: Sequence[str]) -> FeatureNet:
        import tensorflow as tf

        if weights not in (None, "file"):
            raise WeightsError(
                f"weights: {shown(weights)}: a model file carries its own weights (leave {setting('weights')} out)"
            )
        self._check_outputs(layers)
        model = self.model()
        keras = keras_of(model)
        by_name = self._layers()
        outputs = [_logits(model) if name == CLASS else by_name[name].output for name in layers]
        net_model = keras.Model(model.inputs[0], outputs)
        rng, _ = self.input_range()
        grey = _shape(model.inputs[0])[-1] == 1
        mean = tf.constant(_BGR_MEAN, tf.float32)

        def preprocess(images: Any) -> Any:
            if grey:
                images = tf.reduce_mean(images, axis=-1, keepdims=True)
            if rng == "-1..1":
                return images
            if rng == "0..1":
                return (images + 1.0) * 0.5
            if rng == "0..255":
                return (images + 1.0) * 127.5
            return (images + 1.0) * 127.5 - mean if grey else ((images + 1.0) * 127.5)[..., ::-1] - mean

        fixed = self.fixed()
        net = FeatureNet(
            backbone=self.name,
            weights="file",
            layers=tuple(layers),
            model=net_model,
            preprocess=preprocess,
            loss_scale=1.0,
            # A logit of a few pixels means nothing: class targets dream from CLASS_MIN_SIDE up.
            min_side=max(fixed) if fixed else min_input_side(net_model, CLASS_MIN_SIDE if CLASS in layers else 8),
            fixed=fixed,
        )
        # Calibrate: each feature map's loss on the calibration image, at weight 1, is CALIBRATED_LOSS.
        side = max(CALIBRATION_SIDE, net.min_side)
        h, w = fixed if fixed else (side, side)
        acts = net(tf.constant(calibration_image(h, w)[None]))
        scales = []
        for name, act in zip(layers, acts, strict=True):
            if name == CLASS:
                scales.append(1.0)  # a logit is its own unit
                continue
            m = float(dream_loss([act], [1.0], 1.0))
            scales.append(CALIBRATED_LOSS / m if m > 1e-30 else 1.0)
        net.scales = tuple(scales)
        return net


def _output_shape(layer: Any) -> tuple[Any, ...]:
    try:
        return _shape(layer.output)
    except Exception:  # a layer used twice, or never called: no single output
        return ()


def keras_of(model: Any) -> Any:
    """The Keras a model belongs to: Keras 3, or tf-keras (Keras 2) for a SavedModel."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _logits(model: Any) -> Any:
    """The classifier's output before its softmax (or sigmoid), as a tensor of the model's graph."""
    keras = keras_of(model)
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    act_name = getattr(act, "__name__", "")
    if isinstance(last, keras.layers.Dense) and act_name in ("softmax", "sigmoid"):
        config = {**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"}
        dense = keras.layers.Dense.from_config(config)
        out = dense(last.input)
        dense.set_weights(last.get_weights())
        return out
    if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)) and (
        isinstance(last, keras.layers.Softmax) or act_name in ("softmax", "sigmoid")
    ):
        return last.input
    return model.outputs[0]
