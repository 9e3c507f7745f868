"""DreamConfig: the one typed, frozen, validated description of a dream.

One schema serves the YAML presets, ``--config FILE`` and ``--set key=value``: every source is a
plain mapping that :func:`merge` layers in precedence order and :meth:`DreamConfig.from_mapping`
checks once. An error names the source, the field, the value and what is allowed; unknown keys are
errors, never silently ignored. The command line's flags for config keys take their types from the
same fields (:meth:`Field.from_text`). Reading presets and YAML: ``dreamcore.preset``; the guide
image: ``dreamcore.guide``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dreamcore.errors import ConfigError, shown
from dreamcore.guide import Guide

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


class _Refused(ValueError):
    """A value a field does not take; the message says why (or is empty). ``shown_as``: the value as
    read (``5.0`` for a float key given ``5``), when it was read before it was refused."""

    def __init__(self, why: str = "", shown_as: Any = None, read: bool = False):
        super().__init__(why)
        self.shown_as, self.read = shown_as, read


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Refused("not an integer")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused("not a number")
    value = float(value)
    if not math.isfinite(value):
        raise _Refused("not finite")
    return value


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused("not a string")
    return value


def _as_layers(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise _Refused("not a mapping")
    try:
        return {str(k): float(w) for k, w in value.items()}
    except (TypeError, ValueError):
        raise _Refused("every weight must be a number") from None


_KINDS: dict[str, Callable[[Any], Any]] = {"int": _as_int, "float": _as_float, "str": _as_str, "layers": _as_layers}
# How a kind is read from command-line text (a flag's value), and what a text that does not read is.
_READ: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "not an integer"),
    "float": (float, "not a number"),
    "str": (str, ""),
}


def _anything(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Field:
    """One key of the schema: its kind, what its values may be (in words, written once here), and
    the check. Config errors say ``allowed``; the command line builds the type of a flag that sets
    the key from the same field (:meth:`from_text`), so both refuse the same values in the same words."""

    kind: str  # "int" | "float" | "str" | "layers"
    values: str  # what a value other than null may be, in words
    check: Callable[[Any], bool] = _anything
    null: str | None = None  # what null means, where the key may be null

    @property
    def nullable(self) -> bool:
        return self.null is not None

    @property
    def allowed(self) -> str:
        """Every value the key takes, in words (for messages)."""
        return f"null ({self.null}) or {self.values}" if self.null is not None else self.values

    def coerce(self, value: Any) -> Any:
        """The value as a config keeps it (an integral float as an int, a number as a float);
        ValueError when it is not allowed."""
        if value is None:
            if self.nullable:
                return None
            raise _Refused("it may not be null")
        value = _KINDS[self.kind](value)
        if not self.check(value):
            raise _Refused(shown_as=value, read=True)
        return value

    def from_text(self, text: str) -> Any:
        """A value written as text, as a command-line flag gives it: read as this key's kind (never
        null) and checked like any other. ConfigError saying what is allowed (``values``)."""
        read, unreadable = _READ[self.kind]
        try:
            value = read(text)
        except ValueError:
            raise ConfigError(f"{shown(text)} is not allowed ({unreadable}); allowed: {self.values}") from None
        try:
            return self.coerce(value)
        except _Refused as exc:
            why = f" ({exc})" if str(exc) else ""
            raise ConfigError(
                f"{shown(exc.shown_as if exc.read else value)} is not allowed{why}; allowed: {self.values}"
            ) from None


def _in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _words(items: Sequence[str]) -> str:
    """``a, b or c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _one_of(choices: Sequence[str], notes: Mapping[str, str] | None = None) -> Field:
    """A key that takes one of ``choices`` (a note in brackets after those ``notes`` explain)."""
    notes = notes or {}
    return Field("str", _words([f"{c} ({notes[c]})" if c in notes else c for c in choices]), lambda v: v in choices)


def _ranged(
    kind: str, lo: float, hi: float, note: str = "", *, zero: str = "", null: str | None = None, hi_text: str = ""
) -> Field:
    """A number from ``lo`` to ``hi`` (``kind`` "int" or "float"); with ``zero`` (what 0 means), 0 too."""
    noun = "an integer" if kind == "int" else "a number"
    text = f"{noun} from {lo:g} to {hi_text or format(hi, 'g')}" + (f" ({note})" if note else "")
    if zero:
        return Field(kind, f"0 ({zero}) or {text}", lambda v: v == 0 or lo <= v <= hi, null)
    return Field(kind, text, _in(lo, hi), null)


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


MAX_OCTAVES = 12
MAX_ITERATIONS = 10000

# The schema. Ranges are generous but finite: each bound stops a typo from turning into an
# hours-long or out-of-memory run.
SCHEMA: dict[str, Field] = {
    "model": Field(
        "str",
        "one of " + ", ".join(MODELS) + ", or a Keras model file (.keras, .h5) or "
        "SavedModel folder (a path with a /, e.g. ./my_model)",
        _model_ok,
    ),
    "model_input": Field(
        "str",
        "the pixel range a model file takes: "
        + ", ".join(INPUT_RANGES)
        + " (auto: 0..255 when its first layer is Rescaling or Normalization, else 0..1)",
        lambda v: v in INPUT_RANGES,
    ),
    "weights": Field(
        "str", "imagenet, hed, untrained or a file path", lambda v: bool(v), null="the network's trained weights"
    ),
    "layers": Field(
        "layers",
        "a non-empty mapping of layer name to a weight within float32's range (about 3.4e38), not all zero in float32",
        _valid_layers,
    ),
    "step": _ranged("float", 0, 1, "0: no dream, e.g. a keyframe fading it in"),
    "octaves": _ranged("int", 1, MAX_OCTAVES),
    "octave_scale": _ranged("float", 1.05, 4),
    "iterations": _ranged("int", 1, MAX_ITERATIONS),
    "max_loss": Field("float", "a number > 0", lambda v: v > 0, null="no limit"),
    "jitter": _ranged("int", 0, 2048, "pixels"),
    "tile": _ranged("int", 128, 8192, "pixels", zero="never tile"),
    "max_side": _ranged("int", 64, 65536, "pixels", null="full size"),
    "seed": _ranged("int", 0, 2**32 - 1, null="random", hi_text="2**32-1"),
    "precision": _one_of(PRECISIONS, {"float32": "exact", "bfloat16": "faster, other pixels"}),
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
    # with AVX512_BF16, and as strong a dream, but not the same pixels (docs/benchmarks.md).
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


def _coerce(source: str, name: str, value: Any, schema: Mapping[str, Field] = SCHEMA) -> Any:
    spec = schema[name]
    try:
        return spec.coerce(value)
    except _Refused as exc:
        why = f" ({exc})" if str(exc) else ""
        bad = exc.shown_as if exc.read else value  # the value as read, as the message always showed it
        raise ConfigError(f"{source}: {name}: {shown(bad)} is not allowed{why}; allowed: {spec.allowed}") from None


def _checked(
    data: Mapping[str, Any], schema: Mapping[str, Field], source: str, known_elsewhere: tuple[str, ...] = ()
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

VIDEO_SCHEMA: dict[str, Field] = {
    "coherence": _one_of(COHERENCE),
    "blend": _ranged("float", 0, 1, "share of the previous dreamt frame"),
    "carry": _ranged("float", 0, 1, "share of the warped dream kept by flow"),
    "followup_iterations": _ranged("int", 1, MAX_ITERATIONS),
    "followup_octaves": _ranged(
        "int",
        1,
        MAX_OCTAVES,
        "a follow-up frame dreams only that many of the largest octaves",
        zero="every octave",
    ),
    "scene_detector": _one_of(SCENE_DETECTORS),
    "scene_threshold": _ranged("float", 1, 255, "content: mean HSV difference"),
    "adaptive_threshold": _ranged("float", 1, 255, "adaptive: a frame's change over its neighbours'"),
    "min_scene_frames": _ranged("int", 1, 100000),
    "flow_side": _ranged(
        "int", 64, 100000, "the long side frames are shrunk to for optical flow", zero="optical flow at full size"
    ),
    "chunk_frames": _ranged(
        "int",
        8,
        100000,
        "split every shot into pieces this long",
        zero="split a shot only when workers would otherwise wait",
    ),
    "overlap_frames": _ranged("int", 0, 1000, "frames over which the dream cross-fades where a shot is split"),
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
