"""The registry of networks, and the rule that picks one.

``model: auto`` (the default) means InceptionV3 with ImageNet weights when they are cached or can
be downloaded, and otherwise ``vgg16_hed`` with one line saying so. Naming a model (or asking for
``weights: imagenet``) forces that choice: then a missing file is an error, never a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dreamcore.backbones.base import Backbone, FeatureNet
from dreamcore.backbones.inception import InceptionV3
from dreamcore.backbones.keras_file import KerasFile
from dreamcore.backbones.vgg16_hed import VGG16HED
from dreamcore.config import is_model_path
from dreamcore.errors import ConfigError, LayerError, setting, shown

REGISTRY: dict[str, Backbone] = {b.name: b for b in (InceptionV3(), VGG16HED())}

__all__ = ["REGISTRY", "Backbone", "FeatureNet", "KerasFile", "Resolution", "get", "is_model_path", "resolve"]


def get(name: str, model_input: str = "auto") -> Backbone:
    """A built-in network by name, or the model in a file (``model: path/model.keras``)."""
    if name in REGISTRY:
        if model_input != "auto":
            raise ConfigError(
                f"model_input: {shown(model_input)}: {name} converts its input itself; model_input "
                f"is for model files ({setting('model', 'FILE')})"
            )
        return REGISTRY[name]
    if is_model_path(name):
        return KerasFile(name, model_input)
    raise ConfigError(
        f"model: {shown(name)} is not allowed; allowed: auto, {', '.join(REGISTRY)} or a Keras model file (.keras, .h5)"
    )


@dataclass(frozen=True)
class Resolution:
    """What a config resolved to: the backbone, the weights and layers it will really use."""

    backbone: Backbone
    weights: str | None
    layers: dict[str, float]
    notes: list[str] = field(default_factory=list)  # one-line warnings for the user


def resolve(model: str, weights: str | None, layers: Mapping[str, float], model_input: str = "auto") -> Resolution:
    """Pick the backbone and layers; raises WeightsError/LayerError where the user forced a choice."""
    notes: list[str] = []
    fell_back = False
    if model != "auto":
        backbone = get(model, model_input)
        if isinstance(backbone, KerasFile):
            backbone.model()  # a file that does not load, or is no image model, is said first
            if weights not in (None, "file"):
                raise ConfigError(
                    f"weights: {shown(weights)}: a model file carries its own weights (leave {setting('weights')} out)"
                )
            note = backbone.input_range()[1]
            if note:
                notes.append(note)
    elif model_input != "auto":
        raise ConfigError(
            f"model_input: {shown(model_input)}: model_input is for model files ({setting('model', 'FILE')})"
        )
    elif weights == "hed":
        backbone = REGISTRY["vgg16_hed"]
    elif weights is None and not REGISTRY["inception_v3"].weights_ready(None):
        backbone = REGISTRY["vgg16_hed"]
        fell_back = True
    else:
        backbone = REGISTRY["inception_v3"]

    names = list(layers)
    if fell_back:
        # Judge the names against the network the user meant (InceptionV3), so a typo like
        # `mixed27` is reported with InceptionV3's layer list, not the fallback's.
        _check_known(REGISTRY["inception_v3"], names)
    try:
        backbone.check_layers(names)
    except LayerError:
        others = [b for b in REGISTRY.values() if b is not backbone]
        owner = next((b for b in others if _all_valid(b, names)), None)
        if owner is None:
            raise
        layers = backbone.default_layers
        if not fell_back:
            notes.append(
                f"layers {', '.join(names)} belong to {owner.name}: using {backbone.name}'s default layers "
                f"({_fmt(layers)})"
            )
    if fell_back:
        # One line for the whole fallback, layers included.
        notes.append(
            "InceptionV3 ImageNet weights are not cached and cannot be downloaded: dreaming with vgg16_hed "
            f"({_fmt(layers)}) instead; {setting('model', 'inception_v3')} insists (docs/models.md: offline use)"
        )
    return Resolution(backbone, weights, dict(layers), notes)


def _fmt(layers: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in layers.items())


def _check_known(intended: Backbone, names: list[str]) -> None:
    """Raise the intended backbone's LayerError when some name belongs to no backbone at all."""
    if not any(_all_valid(b, names) for b in REGISTRY.values()):
        intended.check_layers(names)


def _all_valid(backbone: Backbone, names: list[str]) -> bool:
    try:
        backbone.check_layers(names)
    except LayerError:
        return False
    return True
