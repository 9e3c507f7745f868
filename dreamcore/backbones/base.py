"""The small interface every backbone implements, and the feature network it builds.

A backbone turns (weights, layer names) into a :class:`FeatureNet`: a callable that maps a batch of
images in the canonical range [-1, 1] (RGB) to the activations of those layers. Converting to the
network's own input range happens inside the FeatureNet, so ``step`` means the same on every
backbone. ``loss_scale`` does the same for loss values (and so for ``max_loss``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamcore.errors import LayerError, shown

# The border the objective crops off each activation (as the keras.io example does); a layer
# must be larger than twice this for the cropped loss to see anything.
LOSS_BORDER = 2


@dataclass
class FeatureNet:
    """Canonical image batch -> list of activations, one per requested layer, in order."""

    backbone: str
    weights: str  # what the weights resolved to: "imagenet", "hed", "untrained" or a path
    layers: tuple[str, ...]
    model: Any  # keras.Model from network input to the activations
    preprocess: Callable[[Any], Any]  # canonical [-1, 1] RGB -> network input
    loss_scale: float
    min_side: int  # smallest input side for which every layer keeps a cropped activation
    # Per output: its own loss scale (a model file's, calibrated per layer), else loss_scale for all.
    scales: tuple[float, ...] | None = None
    # (height, width) of a model that only takes one input size: images are dreamt in tiles of it.
    fixed: tuple[int, int] | None = None

    def __call__(self, images: Any) -> list[Any]:
        out = self.model(self.preprocess(images), training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def output_scales(self) -> list[float]:
        return list(self.scales) if self.scales is not None else [self.loss_scale] * len(self.layers)

    def widths(self) -> list[int]:
        """Channels (or classes) of each output."""
        outs = self.model.outputs
        return [int(o.shape[-1]) for o in outs]


class Backbone(ABC):
    """One network the engine can dream with."""

    name: str
    trained_weights: str  # the name of its trained weights, e.g. "imagenet"
    default_layers: dict[str, float]
    loss_scale: float = 1.0

    @abstractmethod
    def dream_layers(self) -> list[str]:
        """The names worth dreaming with, shallow to deep (no model is built)."""

    @abstractmethod
    def layer_names(self) -> list[str]:
        """Every valid layer name, in network order (builds the architecture, no weights)."""

    @abstractmethod
    def weights_ready(self, weights: str | None) -> bool:
        """Whether these weights can be had now (cached, bundled, a file, or downloadable)."""

    @abstractmethod
    def build(self, weights: str | None, layers: Sequence[str]) -> FeatureNet:
        """The feature network for these layers, truncated at the deepest one."""

    def output_shapes(self) -> dict[str, tuple[Any, ...]]:
        """Each layer's output shape (batch first; None where the size is free)."""
        net = self.build("untrained", self.layer_names())
        return {n: tuple(o.shape) for n, o in zip(net.layers, net.model.outputs, strict=True)}

    def version(self) -> str:
        """What tells this network's builds apart besides its name and weights (a model file's size
        and time: another file at the same path is another network)."""
        return ""

    def weights_name(self, weights: str | None) -> str:
        return self.trained_weights if weights is None else weights

    def check_layers(self, layers: Sequence[str]) -> None:
        """Raise LayerError naming the first unknown layer and listing the valid ones. ``layers`` are
        the keys of a config's ``layers`` (``mixed4``, ``mixed4:97``, ``class:N``: dreamcore.objective)."""
        from dreamcore.objective import CLASS, base_layers

        layers = base_layers(layers)
        if CLASS in layers:
            raise LayerError(
                f"{self.name} is built without its classifier top: class targets (--class) need a model "
                "file with one (--model FILE)"
            )
        cheap = set(self.dream_layers())
        unknown = [n for n in layers if n not in cheap]
        if unknown:
            known = set(self.layer_names())
            unknown = [n for n in unknown if n not in known]
        if unknown:
            raise LayerError(
                f"unknown layer {shown(unknown[0])} for {self.name}; valid dream layers: "
                f"{', '.join(self.dream_layers())} (and any layer `dreamreel layers --model {self.name} --all` lists)"
            )


def stable_layer_names(model: Any) -> dict[str, Any]:
    """Map stable names to layers.

    Keras numbers auto-named layers with a process-wide counter, so the second InceptionV3 built
    in a process calls its first convolution ``conv2d_94``. Renumbering auto names by their order
    within the model gives every layer the name a fresh process would give it, on every build.
    """
    counts: dict[str, int] = {}
    out: dict[str, Any] = {}
    for layer in model.layers:
        base = to_snake_case(type(layer).__name__)
        if re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name):
            n = counts.get(base, 0)
            counts[base] = n + 1
            out[base if n == 0 else f"{base}_{n}"] = layer
        else:
            out[layer.name] = layer
    return out


def seeded_init(model: Any, seed: int) -> None:
    """Give every convolution kernel fresh Glorot-uniform values from our own seeded generator
    (and zero its bias), in layer order.

    ``keras.utils.set_random_seed`` is not enough: Keras keeps its global seed generator per
    thread and does not reset one that exists, so the second untrained build in a Dask worker's
    thread would be another network. This makes ``untrained`` one network everywhere."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = tuple(kernel.shape)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        kernel.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.assign(np.zeros(tuple(bias.shape), np.float32))


def with_precision(net: FeatureNet, precision: str) -> FeatureNet:
    """The network the engine runs: ``net`` with each batch normalisation that alone follows a
    convolution folded into it (the kernel scaled per channel, a bias added: the same function at
    inference, to float rounding), and for ``bfloat16`` every layer cloned under Keras'
    mixed_bfloat16 policy (bfloat16 compute, float32 weights and input). The input gradient comes
    back in float32; the objective sums activations in float32.

    Why fold: each normalisation is a full pass over its activations, forward and in the gradient,
    and under the mixed policy Keras normalises in float32, casting every activation there and back.
    Untrained InceptionV3 (94 normalisations) per gradient step against the folded float32 step,
    `python -m benchmarks.trials --only bfloat16,fold` (512x512 / 1280x720): float32 unfolded
    1.10 / 1.07x the time; bfloat16 folded 0.48 / 0.44x, unfolded 0.73 / 0.66x. A network without
    them (vgg16_hed) is used as it is in float32."""
    import dataclasses

    if precision == "float32":
        if type(net.model).__module__.startswith("tf_keras"):
            return net
        import keras

        if not _foldable(net.model, keras):
            return net
        try:  # an optimisation only: a model Keras cannot clone (a custom layer) runs as it is
            return dataclasses.replace(net, model=cloned(net.model, "float32"))
        except Exception:  # noqa: BLE001
            return net
    policy = {"bfloat16": "mixed_bfloat16"}[precision]
    return dataclasses.replace(net, model=cloned(net.model, policy))


def cloned(model: Any, policy: str, fold: bool = True) -> Any:
    """``model`` with every layer under the dtype ``policy``, batch normalisations folded (with
    ``fold``)."""
    if type(model).__module__.startswith("tf_keras"):  # a Keras 2 SavedModel: cloned as it is
        import tf_keras as keras

        folds: dict[str, Any] = {}
    else:
        import keras

        folds = _foldable(model, keras) if fold else {}
    folded_norms = {bn.name for bn in folds.values()}

    def clone(layer: Any) -> Any:
        if layer.name in folded_norms:
            return _Unchanged(name=layer.name, dtype=policy)
        config = layer.get_config()
        config["dtype"] = policy
        if layer.name in folds:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in copy.layers:
        if layer.name not in by_name or layer.name in folded_norms:  # the input; a folded normalisation
            continue
        weights = by_name[layer.name].get_weights()
        if layer.name in folds:
            weights = _folded(by_name[layer.name], folds[layer.name])
        if weights:
            layer.set_weights(weights)
    return copy


def _foldable(model: Any, keras: Any) -> dict[str, Any]:
    """Convolution name -> the batch normalisation that alone reads its output (channels last)."""
    folds = {}
    outputs = {id(t) for t in model.outputs}
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or len(bn._inbound_nodes) != 1:
            continue
        axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
        if axis not in (-1, 3):
            continue
        source = bn.input._keras_history.operation
        if (
            type(source) is keras.layers.Conv2D
            and len(source._inbound_nodes) == 1
            and len(source._outbound_nodes) == 1
            and id(source.output) not in outputs
            and source.get_config().get("activation") == "linear"
        ):
            folds[source.name] = bn
    return folds


def _folded(conv: Any, bn: Any) -> list[np.ndarray]:
    """The kernel and bias of ``conv`` followed by ``bn`` at inference, as one convolution."""
    weights = conv.get_weights()
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else np.zeros(weights[0].shape[-1], np.float32))
    values = dict(zip([w.path.split("/")[-1] for w in bn.weights], bn.get_weights(), strict=True))
    gamma = values.get("gamma", np.ones_like(values["moving_mean"]))
    beta = values.get("beta", np.zeros_like(values["moving_mean"]))
    k = gamma / np.sqrt(values["moving_variance"] + np.float32(bn.epsilon))
    return [(kernel * k).astype(np.float32), ((bias - values["moving_mean"]) * k + beta).astype(np.float32)]


def _unchanged_layer() -> Any:
    import keras

    class Unchanged(keras.layers.Layer):
        """Where a folded batch normalisation was: its input, under its name."""

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return inputs

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return Unchanged


def _Unchanged(**kwargs: Any) -> Any:  # noqa: N802 (a class made on first use: no keras at import)
    return _unchanged_layer()(**kwargs)


def to_snake_case(name: str) -> str:
    """Keras' rule for turning a layer class name into its auto name (Conv2D -> conv2d)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def min_input_side(model: Any, lo: int = 8, hi: int = 4096) -> int:
    """Smallest square input side (at least ``lo``) for which every 4-D output keeps > 2*LOSS_BORDER rows
    and columns."""

    def ok(side: int) -> bool:
        try:
            shapes = model.compute_output_shape((1, side, side, 3))
        except Exception:  # Keras raises assorted errors when a layer's output would be empty
            return False
        if hasattr(shapes, "as_list"):  # tf-keras (a Keras 2 SavedModel) gives a TensorShape
            shapes = [shapes.as_list()]
        elif isinstance(shapes, tuple) and shapes and isinstance(shapes[0], int | None):
            shapes = [shapes]
        shapes = [s.as_list() if hasattr(s, "as_list") else s for s in shapes]
        # A 2-D output (a classifier's logits) needs only to be computable.
        return all(
            len(s) == 2 or (s[1] is not None and s[1] > 2 * LOSS_BORDER and s[2] > 2 * LOSS_BORDER) for s in shapes
        )

    if not ok(hi):
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
