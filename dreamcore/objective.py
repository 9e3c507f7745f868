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

from .backbones.base import LOSS_BORDER
from .errors import LayerError

CLASS = "class"  # the layer name under which a backbone exposes its classifier's logits
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
            raise LayerError(f"layer {key!r}: a class target needs its number, e.g. class:281 (--class 281)")
        return Target(key, name)
    if not name or not _CHANNELS.fullmatch(spec):
        raise LayerError(f"layer {key!r}: expected NAME, NAME:CHANNEL, NAME:C1+C2+... or NAME:FIRST-LAST "
                         "(channels count from 0), or class:N")
    channels: list[int] = []
    for part in spec.split("+"):
        lo, dash, hi = part.partition("-")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise LayerError(f"layer {key!r}: the range {part} runs backwards")
        if b - a >= MAX_CHANNELS_LISTED:
            raise LayerError(f"layer {key!r}: the range {part} is longer than {MAX_CHANNELS_LISTED} channels")
        channels.extend(range(a, b + 1))
    if name == CLASS and len(channels) != 1:
        raise LayerError(f"layer {key!r}: one class per target (class:N); weigh several with several targets")
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


def check_channels(targets: Sequence[tuple[int, Target]], widths: Sequence[int], network: str) -> None:
    """Every channel (or class) a target names exists: ``widths`` are the outputs' channel counts."""
    for out, t in targets:
        if t.channels is None:
            continue
        bad = [c for c in t.channels if c >= widths[out]]
        if bad:
            what = "classes" if t.layer == CLASS else "channels"
            raise LayerError(f"layer {t.key!r}: {t.layer} of {network} has {widths[out]} {what} (0 to "
                             f"{widths[out] - 1}); {bad[0]} is not one")


def guide_features(act: Any) -> Any:
    """A guide's activation (1, H, W, C) as the (positions, C) matrix the guided loss matches."""
    import tensorflow as tf

    act = tf.cast(act, tf.float32)
    b = LOSS_BORDER
    if act.shape[1] is None or act.shape[1] > 2 * b:
        act = act[:, b:-b, b:-b, :]
    return tf.reshape(act, [-1, tf.shape(act)[-1]])


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
            x = tf.reshape(act[:, b:-b, b:-b, :], [-1, tf.shape(act)[-1]])
            term = tf.reduce_sum(tf.reduce_max(tf.matmul(x, guide, transpose_b=True), axis=1))
        loss += weight * term / size * scales[out]
    return loss
