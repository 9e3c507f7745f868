"""The objective: what a dream maximises, as a weighted sum over targets.

A target is a key of the config's ``layers`` mapping:

- ``mixed4``: the whole layer. Its loss is ``sum(a[border:-border, border:-border] ** 2) / a.size``
  (the seed's sum/size, with the keras.io example's border crop, which keeps the zero-padded
  borders from dominating): the mean squared activation.
- ``mixed4:97``, ``mixed4:97+101``, ``mixed4:0-15``: some channels of the layer, with the same
  loss over those channels only (so a channel's loss reads like its layer's).
- ``class:N``: logit N of a model with a classifier top (the logit itself: it may be negative).

With a guide image, a whole-layer target's loss is instead the original deep-dream notebook's
guided objective: each position's features are matched with the guide's features that they
already resemble most (largest dot product), and the sum of those dot products over positions,
divided like the plain loss (``a.size``), is maximised. With features equal to the guide's it is
the plain loss again, so weights and ``max_loss`` keep their meaning.

Each term is multiplied by its layer's loss scale (the backbone's), so loss values read alike on
every network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dreamcore.errors import ConfigError, LayerError, setting, shown

CLASS = "class"  # the layer name under which a backbone exposes its classifier's logits
# The border the loss crops off each activation (as the keras.io example does); a layer must be
# larger than twice this for the cropped loss to see anything (dreamcore.backbones.keras_ops.min_input_side).
LOSS_BORDER = 2
MAX_CHANNELS_LISTED = 4096


@dataclass(frozen=True)
class Target:
    """One key of ``layers``: a whole layer, some of its channels, or a class logit."""

    key: str
    layer: str  # the network output it reads (CLASS for a logit)
    channels: tuple[int, ...] | None = None  # channel indices (or, for CLASS, the one class)

    @property
    def whole(self) -> bool:
        return self.channels is None and self.layer != CLASS


_CHANNELS = re.compile(r"\d+(-\d+)?(\+\d+(-\d+)?)*")


def parse_target(key: str) -> Target:
    """``name``, ``name:C``, ``name:C+C+...``, ``name:A-B`` or ``class:N``; LayerError otherwise."""
    name, sep, spec = key.partition(":")
    name, spec = name.strip(), spec.replace(" ", "")
    if not sep:
        if name == CLASS:
            raise LayerError(
                f"layer {shown(key)}: a class target needs its number, e.g. class:281 "
                f"({setting('layers', 'class:281')})"
            )
        return Target(key, name)
    if not name or not _CHANNELS.fullmatch(spec):
        raise LayerError(
            f"layer {shown(key)}: expected NAME, NAME:CHANNEL, NAME:C1+C2+... or NAME:FIRST-LAST "
            "(channels count from 0), or class:N"
        )
    channels: list[int] = []
    for part in spec.split("+"):
        lo, dash, hi = part.partition("-")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise LayerError(f"layer {shown(key)}: the range {part} runs backwards")
        if b - a >= MAX_CHANNELS_LISTED:
            raise LayerError(f"layer {shown(key)}: the range {part} is longer than {MAX_CHANNELS_LISTED} channels")
        channels.extend(range(a, b + 1))
    if name == CLASS and len(channels) != 1:
        raise LayerError(f"layer {shown(key)}: one class per target (class:N); weigh several with several targets")
    return Target(key, name, tuple(dict.fromkeys(channels)))


def parse_targets(keys: Sequence[str]) -> tuple[list[str], list[tuple[int, Target]]]:
    """The network outputs the targets need (each once, in first-use order) and, per target, the
    index of the output it reads."""
    outputs: list[str] = []
    targets: list[tuple[int, Target]] = []
    for key in keys:
        t = parse_target(key)
        if t.layer not in outputs:
            outputs.append(t.layer)
        targets.append((outputs.index(t.layer), t))
    return outputs, targets


def base_layers(keys: Sequence[str]) -> list[str]:
    """The network layers (CLASS included) that these layer keys read."""
    return parse_targets(keys)[0]


def check_guidable(targets: Sequence[tuple[int, Target]]) -> None:
    """A guide steers whole layers: with only channel or class targets it would steer nothing."""
    if not any(t.whole for _, t in targets):
        raise ConfigError(
            f"{setting('guide')} steers whole layers, and every target here is a channel or a class: add a layer "
            f"(e.g. {setting('layers', 'mixed4,mixed5:97')})"
        )


def check_channels(targets: Sequence[tuple[int, Target]], widths: Sequence[int], network: str) -> None:
    """Every channel (or class) a target names exists: ``widths`` are the outputs' channel counts."""
    for out, t in targets:
        if t.channels is None:
            continue
        bad = [c for c in t.channels if c >= widths[out]]
        if bad:
            what = "classes" if t.layer == CLASS else "channels"
            raise LayerError(
                f"layer {shown(t.key)}: {t.layer} of {network} has {widths[out]} {what} (0 to "
                f"{widths[out] - 1}); {bad[0]} is not one"
            )


# Bounds on the guided loss's work and memory: at most this many guide positions per layer (a
# larger guide is sampled evenly), and the image's positions matched this many at a time (a layer
# at high resolution, e.g. a small network's first convolutions, has tens of thousands).
MAX_GUIDE_POSITIONS = 8192
MATCH_CHUNK = 2048


def guide_features(act: Any) -> Any:
    """A guide's activation (1, H, W, C) as the (positions, C) matrix the guided loss matches: at
    most MAX_GUIDE_POSITIONS rows, every k-th position when there are more."""
    import tensorflow as tf

    act = tf.cast(act, tf.float32)
    b = LOSS_BORDER
    if act.shape[1] is None or act.shape[1] > 2 * b:
        act = act[:, b:-b, b:-b, :]
    rows = tf.reshape(act, [-1, tf.shape(act)[-1]])
    k = (tf.shape(rows)[0] + MAX_GUIDE_POSITIONS - 1) // MAX_GUIDE_POSITIONS
    return rows[::k]


def best_match(x: Any, guide: Any) -> Any:
    """sum over the rows x_i of max_j x_i . guide_j: the guided loss before its scaling. Its gradient
    with respect to x_i is the best-matching guide row (the notebook's objective); computed in
    chunks of MATCH_CHUNK rows with a gradient of its own, so memory stays at a chunk's matches, not
    all of them (the guide is a constant: it gets no gradient)."""
    import tensorflow as tf

    @tf.custom_gradient
    def match(x: Any) -> Any:
        n, c = tf.shape(x)[0], tf.shape(x)[1]
        padded = tf.pad(x, [[0, (-n) % MATCH_CHUNK], [0, 0]])

        def best(chunk: Any) -> Any:
            return tf.argmax(tf.matmul(chunk, guide, transpose_b=True), axis=1, output_type=tf.int32)

        idx = tf.map_fn(
            best, tf.reshape(padded, [-1, MATCH_CHUNK, c]), fn_output_signature=tf.TensorSpec([MATCH_CHUNK], tf.int32)
        )
        chosen = tf.gather(guide, tf.reshape(idx, [-1])[:n])

        def grad(upstream: Any) -> Any:
            return upstream * chosen

        return tf.reduce_sum(x * chosen), grad

    return match(x)


def dream_loss(
    activations: Sequence[Any],
    weights: Sequence[Any],
    scales: Sequence[float] | float,
    targets: Sequence[tuple[int, Target]] | None = None,
    guides: Mapping[int, Any] | None = None,
) -> Any:
    """The weighted loss. ``targets`` default to one whole-layer target per activation;
    ``scales`` is one loss scale per activation (or one for all); ``guides`` maps an output index to
    its guide features (:func:`guide_features`), for the guided objective on whole-layer targets."""
    import tensorflow as tf

    if targets is None:
        targets = [(i, Target(str(i), str(i))) for i in range(len(activations))]
    if not isinstance(scales, Sequence):
        scales = [scales] * len(activations)
    loss = tf.constant(0.0, tf.float32)
    b = LOSS_BORDER
    for weight, (out, t) in zip(weights, targets, strict=True):
        act = tf.cast(activations[out], tf.float32)  # a bfloat16 network's activations are summed in float32
        if t.layer == CLASS:
            assert t.channels is not None
            loss += weight * tf.reduce_mean(act[:, t.channels[0]]) * scales[out]
            continue
        if t.channels is not None:
            act = tf.gather(act, list(t.channels), axis=-1)
        size = tf.cast(tf.reduce_prod(tf.shape(act)), tf.float32)
        guide = None if guides is None or not t.whole else guides.get(out)
        if guide is None:
            term = tf.reduce_sum(tf.square(act[:, b:-b, b:-b, :]))
        else:
            term = best_match(tf.reshape(act[:, b:-b, b:-b, :], [-1, tf.shape(act)[-1]]), guide)
        loss += weight * term / size * scales[out]
    return loss
