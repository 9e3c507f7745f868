"""Tiny Keras models for the custom-model tests: trained here, in seconds, on generated shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def shapes(n: int, side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8 RGB) of one white circle (label 0) or square (label 1) on black."""
    import cv2

    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side, 3), np.uint8)
    y = np.zeros(n, np.int64)
    for i in range(n):
        r = int(rng.integers(side // 6, side // 3))
        cy, cx = (int(v) for v in rng.integers(r + 1, side - r - 1, size=2))
        y[i] = i % 2
        if y[i] == 0:
            cv2.circle(x[i], (cx, cy), r, (255, 255, 255), -1)
        else:
            cv2.rectangle(x[i], (cx - r, cy - r), (cx + r, cy + r), (255, 255, 255), -1)
    return x, y


def tiny_cnn(fixed: int | None = None, preprocessing: bool = True) -> Any:
    """conv1 (8) -> pool -> conv2 (16) -> global pool -> dense softmax over 2 classes."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((fixed, fixed, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp) if preprocessing else inp
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(2, activation="softmax", name="dense")(x)
    return keras.Model(inp, out)


def trained_cnn(path: Path, fixed: int | None = None, epochs: int = 8) -> Path:
    """Train the tiny CNN on circles vs squares for a few seconds and save it as ``path``."""
    import keras

    model = tiny_cnn(fixed)
    x, y = shapes(512, fixed or 32)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path
