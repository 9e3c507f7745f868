"""DreamConfig: the one typed, frozen, validated description of a dream.

One schema serves the YAML presets, ``--config FILE`` and ``--set key=value``: every source is a
plain mapping that :func:`merge` layers in precedence order and :meth:`DreamConfig.from_mapping`
checks once. An error names the source, the field, the value and what is allowed; unknown keys are
errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from dreamcore.errors import ConfigError, shown

MODELS = ("auto", "inception_v3", "vgg16_hed")
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
INPUT_RANGES = ("auto", "0..1", "-1..1", "0..255", "caffe")
PRECISIONS = ("float32", "bfloat16")


def is_model_path(text: str) -> bool:
    """Whether a ``model`` value names a file (or SavedModel folder) rather than a built-in network."""
    return text not in MODELS and (text.lower().endswith(MODEL_SUFFIXES) or "/" in text or "\\" in text)


def _model_ok(v: str) -> bool:
    # A built-in's name, or a model file's path (checked when it is loaded).
    return v in MODELS or is_model_path(v)


class Guide:
    """A guide image for guided dreaming: 8-bit RGB pixels (read-only) and the digest that names
    them (two guides with the same pixels are equal)."""

    def __init__(self, pixels: Any):
        import hashlib

        import numpy as np

        a = np.asarray(pixels)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
            raise ConfigError(f"guide: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
        if a.dtype == np.uint16:
            a = (a.astype(np.float32) / 257.0).round()
        elif np.issubdtype(a.dtype, np.floating):
            a = np.clip(a, 0.0, 1.0) * 255.0
        elif a.dtype != np.uint8:
            raise ConfigError(f"guide: expected uint8, uint16 or float pixels, got {a.dtype}")
        a = np.round(a).astype(np.uint8) if a.dtype != np.uint8 else a
        rgb = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
        self.pixels = np.ascontiguousarray(rgb)
        self.pixels.setflags(write=False)
        h = hashlib.sha1(repr(self.pixels.shape).encode())
        h.update(self.pixels.tobytes())
        self.digest = h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Guide) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Guide({self.pixels.shape[1]}x{self.pixels.shape[0]}, {self.digest[:12]})"


@dataclass(frozen=True)
class _Field:
    kind: str  # "int" | "float" | "str" | "layers"
    nullable: bool
    allowed: str  # human text for error messages
    check: Callable[[Any], bool] = lambda v: True


def _in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


# The engine weighs layers in float32: a weight is checked as it will be used there.
FLOAT32_MAX = 3.4028234663852886e38


def _valid_layers(v: Mapping[str, float]) -> bool:
    import numpy as np

    as_used = [float(np.float32(w)) if math.isfinite(w) and abs(w) <= FLOAT32_MAX else math.inf for w in v.values()]
    return (
        len(v) > 0
        and all(isinstance(k, str) and k for k in v)
        and all(math.isfinite(w) for w in as_used)
        and any(w != 0 for w in as_used)
    )


# The schema. Ranges are generous but finite: each bound stops a typo from turning into an
# hours-long or out-of-memory run.
SCHEMA: dict[str, _Field] = {
    "model": _Field(
        "str",
        False,
        "one of " + ", ".join(MODELS) + ", or a Keras model file (.keras, .h5) or "
        "SavedModel folder (a path with a /, e.g. ./my_model)",
        _model_ok,
    ),
    "model_input": _Field(
        "str",
        False,
        "the pixel range a model file takes: "
        + ", ".join(INPUT_RANGES)
        + " (auto: 0..255 when its first layer is Rescaling or Normalization, else 0..1)",
        lambda v: v in INPUT_RANGES,
    ),
    "weights": _Field(
        "str", True, "null (the network's trained weights), imagenet, hed, untrained or a file path", lambda v: bool(v)
    ),
    "layers": _Field(
        "layers",
        False,
        "a non-empty mapping of layer name to a weight within float32's range (about 3.4e38), not all zero in float32",
        _valid_layers,
    ),
    "step": _Field("float", False, "a number from 0 to 1 (0: no dream, e.g. a keyframe fading it in)", _in(0, 1)),
    "octaves": _Field("int", False, "an integer from 1 to 12", _in(1, 12)),
    "octave_scale": _Field("float", False, "a number from 1.05 to 4", _in(1.05, 4)),
    "iterations": _Field("int", False, "an integer from 1 to 10000", _in(1, 10000)),
    "max_loss": _Field("float", True, "null (no limit) or a number > 0", lambda v: v > 0),
    "jitter": _Field("int", False, "an integer from 0 to 2048 (pixels)", _in(0, 2048)),
    "tile": _Field(
        "int", False, "0 (never tile) or an integer from 128 to 8192 (pixels)", lambda v: v == 0 or 128 <= v <= 8192
    ),
    "max_side": _Field("int", True, "null (full size) or an integer from 64 to 65536 (pixels)", _in(64, 65536)),
    "seed": _Field("int", True, "null (random) or an integer from 0 to 2**32-1", _in(0, 2**32 - 1)),
    "precision": _Field("str", False, "float32 (exact) or bfloat16 (faster, other pixels)", lambda v: v in PRECISIONS),
}


@dataclass(frozen=True)
class DreamConfig:
    """Everything that decides how an image is dreamt.

    ``step`` is in units of the [-1, 1] image range and ``jitter``/``tile``/``max_side`` in pixels,
    so a value means the same on every backbone (the backbone converts to its own input range).
    """

    model: str = "auto"
    model_input: str = "auto"
    weights: str | None = None
    layers: Mapping[str, float] = field(
        default_factory=lambda: {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}
    )
    step: float = 0.01
    octaves: int = 3
    octave_scale: float = 1.4
    iterations: int = 20
    max_loss: float | None = 15.0
    jitter: int = 32
    tile: int = 512
    max_side: int | None = None
    seed: int | None = 0
    # bfloat16 runs the network's convolutions in bfloat16 (float32 sums): 1.5-1.9x faster on CPUs
    # with AVX512_BF16, and as strong a dream, but not the same pixels (README: "Speed").
    precision: str = "float32"
    # Guided dreaming (an image array, made a Guide): whole layers are steered towards its features.
    # Not a YAML key: the command line's --guide reads the file.
    guide: Guide | None = None

    def __post_init__(self) -> None:
        # Checked here too, so a DreamConfig built in Python is as safe as one loaded from YAML.
        for name in SCHEMA:
            value = _coerce("DreamConfig", name, getattr(self, name))
            object.__setattr__(self, name, value)
        if self.guide is not None and not isinstance(self.guide, Guide):
            object.__setattr__(self, "guide", Guide(self.guide))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> DreamConfig:
        """Build from a (merged) mapping; unknown keys and bad values raise ConfigError."""
        return cls(**_checked(data, SCHEMA, source, known_elsewhere=("video",)))

    def to_dict(self) -> dict[str, Any]:
        """The YAML keys (the guide, an image, is not one)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "guide"}
        d["layers"] = dict(self.layers)
        return d

    def replace(self, **changes: Any) -> DreamConfig:
        return dataclasses.replace(self, **changes)


def _coerce(source: str, name: str, value: Any, schema: Mapping[str, _Field] = SCHEMA) -> Any:
    spec = schema[name]

    def bad(why: str = "") -> ConfigError:
        extra = f" ({why})" if why else ""
        return ConfigError(f"{source}: {name}: {shown(value)} is not allowed{extra}; allowed: {spec.allowed}")

    if value is None:
        if spec.nullable:
            return None
        raise bad("it may not be null")
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise bad("not an integer")
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("not a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("not finite")
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise bad("not a string")
    elif spec.kind == "layers":
        if not isinstance(value, Mapping):
            raise bad("not a mapping")
        try:
            value = {str(k): float(w) for k, w in value.items()}
        except (TypeError, ValueError):
            raise bad("every weight must be a number") from None
        if any(isinstance(w, bool) for w in value.values()):
            raise bad("weights must be numbers")
    if not spec.check(value):
        raise bad()
    return value


def _checked(
    data: Mapping[str, Any], schema: Mapping[str, _Field], source: str, known_elsewhere: tuple[str, ...] = ()
) -> dict[str, Any]:
    unknown = sorted(set(data) - set(schema) - set(known_elsewhere))
    if unknown:
        prefix = "video." if schema is VIDEO_SCHEMA else ""
        raise ConfigError(
            f"{source}: unknown key {prefix}{shown(unknown[0])} (known keys: {', '.join(schema)}"
            + (f", {', '.join(known_elsewhere)}" if known_elsewhere else "")
            + ")"
        )
    return {name: _coerce(source, name, value, schema) for name, value in data.items() if name in schema}


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge mappings, later ones winning. ``layers`` is replaced whole, never merged key by key:
    a preset's layer list and the user's are different dreams, not one to be patched. The
    ``video`` section merges key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "video" and isinstance(value, Mapping) and isinstance(out.get("video"), Mapping):
                out["video"] = {**out["video"], **value}
            else:
                out[key] = value
    return out


# --- video -----------------------------------------------------------------------------------

COHERENCE = ("flow", "blend", "none")
SCENE_DETECTORS = ("adaptive", "content")

VIDEO_SCHEMA: dict[str, _Field] = {
    "coherence": _Field("str", False, "flow, blend or none", lambda v: v in COHERENCE),
    "blend": _Field("float", False, "a number from 0 to 1 (share of the previous dreamt frame)", _in(0, 1)),
    "carry": _Field("float", False, "a number from 0 to 1 (share of the warped dream kept by flow)", _in(0, 1)),
    "followup_iterations": _Field("int", False, "an integer from 1 to 10000", _in(1, 10000)),
    "followup_octaves": _Field(
        "int",
        False,
        "0 (every octave) or an integer from 1 to 12 (a follow-up frame dreams only that many of the largest octaves)",
        _in(0, 12),
    ),
    "scene_detector": _Field("str", False, "adaptive or content", lambda v: v in SCENE_DETECTORS),
    "scene_threshold": _Field("float", False, "a number from 1 to 255 (content: mean HSV difference)", _in(1, 255)),
    "adaptive_threshold": _Field(
        "float", False, "a number from 1 to 255 (adaptive: a frame's change over its neighbours')", _in(1, 255)
    ),
    "min_scene_frames": _Field("int", False, "an integer from 1 to 100000", _in(1, 100000)),
    "flow_side": _Field(
        "int",
        False,
        "0 (optical flow at full size) or an integer from 64 to 100000 (the long side "
        "frames are shrunk to for optical flow)",
        lambda v: v == 0 or 64 <= v <= 100000,
    ),
    "chunk_frames": _Field(
        "int",
        False,
        "0 (split a shot only when workers would otherwise wait) or an integer "
        "from 8 to 100000 (split every shot into pieces this long)",
        lambda v: v == 0 or 8 <= v <= 100000,
    ),
    "overlap_frames": _Field(
        "int",
        False,
        "an integer from 0 to 1000 (frames over which the dream cross-fades where a shot is split)",
        _in(0, 1000),
    ),
}


@dataclass(frozen=True)
class VideoConfig:
    """How frames of a clip are chained: coherence, follow-up effort, shots, and how shots split."""

    coherence: str = "flow"
    blend: float = 0.5
    carry: float = 0.95
    followup_iterations: int = 1
    followup_octaves: int = 0
    scene_detector: str = "adaptive"
    scene_threshold: float = 27.0
    adaptive_threshold: float = 3.0
    min_scene_frames: int = 1
    flow_side: int = 768
    chunk_frames: int = 0
    overlap_frames: int = 12

    def __post_init__(self) -> None:
        for name in VIDEO_SCHEMA:
            object.__setattr__(self, name, _coerce("VideoConfig", name, getattr(self, name), VIDEO_SCHEMA))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "config") -> VideoConfig:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: video: {shown(data)} is not allowed; allowed: a mapping of video keys")
        return cls(**_checked(data, VIDEO_SCHEMA, f"{source}: video"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- presets ---------------------------------------------------------------------------------


def preset_names() -> list[str]:
    root = resources.files("dreamcore.presets")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {shown(name)} (presets: {', '.join(names)})")
    return resources.files("dreamcore.presets").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse a YAML mapping; a preset's optional ``description`` key is dropped here."""
    import yaml  # local: keep `import dreamcore` light

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of keys to values, not {type(data).__name__}")
    data.pop("description", None)
    return data


def load_preset(name: str) -> dict[str, Any]:
    """The preset's raw mapping (validated when merged into a DreamConfig)."""
    return parse_yaml(preset_text(name), f"preset {name!r}")


def preset_description(name: str) -> str:
    import yaml

    data = yaml.safe_load(preset_text(name)) or {}
    return str(data.get("description", "")).strip()
