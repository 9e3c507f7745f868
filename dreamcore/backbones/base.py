"""The small interface every backbone implements, and the feature network it builds.

A backbone turns (weights, layer names) into a :class:`FeatureNet`: a callable that maps a batch of
images in the canonical range [-1, 1] (RGB) to the activations of those layers. Converting to the
network's own input range happens inside the FeatureNet, so ``step`` means the same on every
backbone. ``loss_scale`` does the same for loss values (and so for ``max_loss``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dreamcore.errors import LayerError, listing, setting, shown
from dreamcore.objective import CLASS, base_layers


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

        layers = base_layers(layers)
        if CLASS in layers:
            raise LayerError(
                f"{self.name} is built without its classifier top: class targets ({setting('layers', 'class:N')}) "
                f"need a model file with one ({setting('model', 'FILE')})"
            )
        cheap = set(self.dream_layers())
        unknown = [n for n in layers if n not in cheap]
        if unknown:
            known = set(self.layer_names())
            unknown = [n for n in unknown if n not in known]
        if unknown:
            raise LayerError(
                f"unknown layer {shown(unknown[0])} for {self.name}; valid dream layers: "
                f"{', '.join(self.dream_layers())} (and any layer {listing(self.name, every=True)} lists)"
            )
