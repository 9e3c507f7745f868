"""dreamcore: the deep-dream engine. An image array in, a dreamt image array out.

Knows no files, no Dask and no CLI. Importing it is cheap: TensorFlow loads on first use.

    from dreamcore import dream_image, DreamConfig
    out = dream_image(rgb_uint8, DreamConfig(model="vgg16_hed", layers={"block4_conv3": 1.0}))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dreamcore.config import DreamConfig
from dreamcore.errors import ConfigError, DreamError, LayerError, WeightsError

if TYPE_CHECKING:
    from dreamcore.engine import Engine, dream_image

__all__ = ["ConfigError", "DreamConfig", "DreamError", "Engine", "LayerError", "WeightsError", "dream_image"]


def __getattr__(name: str) -> Any:
    # The engine imports numpy at module level and TensorFlow on use: load it only when asked.
    if name in ("Engine", "dream_image"):
        from dreamcore import engine  # lazy: numpy and the engine load only when asked for

        return getattr(engine, name)
    raise AttributeError(name)
