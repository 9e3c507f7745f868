"""Keras model surgery: the code that inspects and rebuilds the networks the backbones build.

Stable names for auto-named layers (:func:`stable_layer_names`, :func:`to_snake_case`), seeded
initialisation of an untrained network (:func:`seeded_init`), the smallest input a network takes
(:func:`min_input_side`), and the network the engine really runs (:func:`with_precision`): a clone
with batch normalisations folded into their convolutions and, for bfloat16, under Keras' mixed policy.
Keras is imported inside the functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from dreamcore.backbones.base import FeatureNet
from dreamcore.objective import LOSS_BORDER


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
