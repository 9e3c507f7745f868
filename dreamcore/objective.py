"""The objective: a weighted sum, over layers, of the mean squared activation.

Per layer the loss is ``weight * sum(a[border:-border, border:-border] ** 2) / a.size`` (the seed's
sum/size, with the keras.io example's border crop, which keeps the zero-padded borders from
dominating), times the backbone's ``loss_scale`` so loss values read alike on every network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backbones.base import LOSS_BORDER


def dream_loss(activations: Sequence[Any], weights: Sequence[float], loss_scale: float) -> Any:
    import tensorflow as tf

    loss = tf.constant(0.0, tf.float32)
    b = LOSS_BORDER
    for weight, act in zip(weights, activations, strict=True):
        act = tf.cast(act, tf.float32)  # a bfloat16 network's activations are summed in float32
        size = tf.cast(tf.reduce_prod(tf.shape(act)), tf.float32)
        loss += weight * tf.reduce_sum(tf.square(act[:, b:-b, b:-b, :])) / size
    return loss * loss_scale
