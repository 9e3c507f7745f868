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

from ..errors import LayerError

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
        from ..objective import CLASS, base_layers

        layers = base_layers(layers)
        if CLASS in layers:
            raise LayerError(f"{self.name} is built without its classifier top: class targets (--class) need a model "
                             "file with one (--model FILE)")
        cheap = set(self.dream_layers())
        unknown = [n for n in layers if n not in cheap]
        if unknown:
            known = set(self.layer_names())
            unknown = [n for n in unknown if n not in known]
        if unknown:
            raise LayerError(
                f"unknown layer {unknown[0]!r} for {self.name}; valid dream layers: "
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
    """The same network computing in ``precision``: ``bfloat16`` clones every layer under Keras'
    mixed_bfloat16 policy (bfloat16 compute, float32 weights and input) and copies the weights.
    The input gradient comes back in float32; the objective sums activations in float32."""
    import dataclasses

    if precision == "float32":
        return net
    if type(net.model).__module__.startswith("tf_keras"):  # a Keras 2 SavedModel
        import tf_keras as keras
    else:
        import keras
    policy = {"bfloat16": "mixed_bfloat16"}[precision]

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        config["dtype"] = policy
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(net.model, clone_function=clone)
    model.set_weights(net.model.get_weights())
    return dataclasses.replace(net, model=model)


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
        return all(len(s) == 2 or (s[1] is not None and s[1] > 2 * LOSS_BORDER and s[2] > 2 * LOSS_BORDER)
                   for s in shapes)

    if not ok(hi):
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
