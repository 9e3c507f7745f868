"""Settings that change over time: keyframes, linearly interpolated.

A keyframed setting is written ``TIME:VALUE,TIME:VALUE,...`` where TIME is a frame number (``12``)
or seconds (``2.5s``), e.g. ``step=0:0.005,5s:0.02`` or ``layers.mixed5=0:0,10s:2``; in YAML the
same string, or a mapping ``{0: 0.005, 5s: 0.02}``. Before the first keyframe the setting holds
its first value, after the last its last; integers are rounded after interpolating. A layer whose
weight is 0 is off at that moment, so keyframes also switch layers on and off.

A frame's settings are a pure function of its index and its time (seconds from the clip's first
frame), so they are the same however a job is split, resumed or scheduled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dreamcore.config import SCHEMA, VIDEO_SCHEMA, DreamConfig, VideoConfig
from dreamcore.errors import ConfigError, shown

# Numeric settings a frame may change. Not those that shape the job itself (the seed, the plan's
# shots and chunks, the flow's size): they are one value for a whole job.
ENGINE_KEYS = ("step", "octaves", "octave_scale", "iterations", "max_loss", "jitter", "tile", "max_side")
VIDEO_KEYS = ("blend", "carry", "followup_iterations", "followup_octaves")

_TIME = r"\d+(?:\.\d+)?s|\d+"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TEXT = re.compile(rf"^\s*(?:{_TIME})\s*:\s*{_NUMBER}\s*(?:,\s*(?:{_TIME})\s*:\s*{_NUMBER}\s*)*$")


def looks_keyframed(text: str) -> bool:
    """Whether a ``--set`` value is a keyframe list (checked before YAML reads it: YAML 1.1 would
    read ``1:30`` as a base-60 number)."""
    return bool(_TEXT.match(text))


@dataclass(frozen=True)
class Key:
    """One keyframe: at frame ``frame`` or at ``seconds``, the value ``value``."""

    frame: int | None
    seconds: float | None
    value: float

    @property
    def label(self) -> str:
        at = f"{self.seconds:g}s" if self.seconds is not None else str(self.frame)
        return f"{at}:{self.value:g}"

    def time(self, fps: float) -> float:
        """Seconds from the first frame (a frame number at the clip's nominal rate)."""
        return self.seconds if self.seconds is not None else (self.frame or 0) / fps


def _parse_time(text: str, where: str) -> tuple[int | None, float | None]:
    t = str(text).strip()
    try:
        if t.endswith("s"):
            return None, float(t[:-1])
        return int(t), None
    except ValueError:
        raise ConfigError(
            f"{where}: keyframe time {shown(t)} is neither a frame number (12) nor seconds (2.5s)"
        ) from None


def parse_keys(value: Any, where: str) -> list[Key] | None:
    """The keyframes in a setting's value, or None when it is a plain value."""
    if isinstance(value, str) and looks_keyframed(value):
        pairs = [part.split(":", 1) for part in value.split(",")]
    elif (
        isinstance(value, Mapping)
        and value
        and all(isinstance(k, (int, str)) and not isinstance(k, bool) for k in value)
    ):
        pairs = [[str(k), v] for k, v in value.items()]
    else:
        return None
    keys = []
    for t, v in pairs:
        frame, seconds = _parse_time(t, where)
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: keyframe {shown(t)}: {shown(v)}: the value must be a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: keyframe {shown(t)}: {shown(v)}: the value must be finite")
        keys.append(Key(frame, seconds, number))
    return keys


@dataclass(frozen=True)
class Schedule:
    """Keyframed settings by dotted name (``step``, ``video.carry``, ``layers.mixed5``)."""

    keys: Mapping[str, tuple[Key, ...]]

    def __bool__(self) -> bool:
        return bool(self.keys)

    def to_dict(self) -> dict[str, list[list[Any]]]:
        return {name: [[k.frame, k.seconds, k.value] for k in ks] for name, ks in sorted(self.keys.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Schedule:
        return cls({name: tuple(Key(f, s, v) for f, s, v in ks) for name, ks in (data or {}).items()})

    def values_at(self, index: int, seconds: float, fps: float) -> dict[str, float]:
        """Every keyframed setting's value at frame ``index``, ``seconds`` from the first frame."""
        out = {}
        for name, ks in self.keys.items():
            out[name] = _interpolate(ks, index, seconds, fps)
        return out

    def apply(
        self, config: DreamConfig, video: VideoConfig, index: int, seconds: float, fps: float
    ) -> tuple[DreamConfig, VideoConfig]:
        """The settings of one frame."""
        if not self.keys:
            return config, video
        return _with_values(config, video, self.values_at(index, seconds, fps), "config")

    def check(self, config: DreamConfig, video: VideoConfig, frames: int, duration: float, fps: float) -> None:
        """Each keyframe's time within the clip (``frames`` frames, ``duration`` seconds) and after
        the one before, and the settings valid at every keyframe: one line naming the keyframe."""
        for name, ks in self.keys.items():
            last = None
            for k in ks:
                if k.frame is not None and k.frame >= frames:
                    raise ConfigError(f"{name}: keyframe {k.label} is past the end (frames 0 to {frames - 1})")
                if k.seconds is not None and k.seconds > duration + 1e-9:
                    raise ConfigError(f"{name}: keyframe {k.label} is past the end ({duration:g} s)")
                t = k.time(fps)
                if last is not None and t <= last[0]:
                    raise ConfigError(
                        f"{name}: keyframe {k.label} is not after {last[1].label} (keyframes go in time order)"
                    )
                last = (t, k)
            for k in ks:
                values = self.values_at(*_frame_of(k, fps), fps)
                _with_values(config, video, values, f"{name}: keyframe {k.label}")


def _frame_of(k: Key, fps: float) -> tuple[int, float]:
    if k.seconds is not None:
        return round(k.seconds * fps), k.seconds
    return k.frame or 0, (k.frame or 0) / fps


def _interpolate(ks: tuple[Key, ...], index: int, seconds: float, fps: float) -> float:
    # A frame-numbered keyframe is compared by frame number, a timed one by time: exact either way.
    def before(k: Key) -> bool:
        if k.seconds is not None:
            return k.seconds <= seconds + 1e-9
        return (k.frame or 0) <= index  # a key without seconds has a frame

    if not before(ks[0]):
        return ks[0].value
    for a, b in zip(ks, ks[1:], strict=False):
        if before(a) and not before(b):
            ta, tb = a.time(fps), b.time(fps)
            now = seconds if (a.seconds is not None or b.seconds is not None) else index / fps
            w = 0.0 if tb <= ta else min(1.0, max(0.0, (now - ta) / (tb - ta)))
            return a.value + w * (b.value - a.value)
    return ks[-1].value


def _with_values(
    config: DreamConfig, video: VideoConfig, values: Mapping[str, float], source: str
) -> tuple[DreamConfig, VideoConfig]:
    engine = config.to_dict()
    vid = video.to_dict()
    layers = dict(engine["layers"])
    for name, v in values.items():
        section, _, key = name.partition(".")
        if section == "layers":
            layers[key] = v
        elif section == "video":
            vid[key] = _number(VIDEO_SCHEMA[key].kind, v)
        else:
            engine[name] = _number(SCHEMA[name].kind, v)
    engine["layers"] = layers
    frame = DreamConfig.from_mapping(engine, source=source)
    if config.guide is not None:  # not a YAML key: carried over as it is
        frame = frame.replace(guide=config.guide)
    return frame, VideoConfig.from_mapping(vid, source=source)


def _number(kind: str, v: float) -> float | int:
    return round(v) if kind == "int" else v


def split(settings: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, list[Key]]]:
    """A merged settings mapping without its keyframed values (each replaced by its first value),
    and the keyframes by dotted name. Unknown or unkeyframable keys are refused, naming them."""
    plain = dict(settings)
    found: dict[str, list[Key]] = {}
    for key, value in settings.items():
        if key == "layers" and isinstance(value, Mapping):
            layers = dict(value)
            for layer, w in value.items():
                keys = parse_keys(w, f"{source}: layers.{layer}")
                if keys is not None:
                    found[f"layers.{layer}"] = keys
                    layers[layer] = keys[0].value
            plain["layers"] = layers
        elif key == "video" and isinstance(value, Mapping):
            vid = dict(value)
            for k, v in value.items():
                keys = _keys_of(f"video.{k}", k, v, VIDEO_SCHEMA, VIDEO_KEYS, source)
                if keys is not None:
                    found[f"video.{k}"] = keys
                    vid[k] = _number(VIDEO_SCHEMA[k].kind, keys[0].value)
            plain["video"] = vid
        else:
            keys = _keys_of(key, key, value, SCHEMA, ENGINE_KEYS, source)
            if keys is not None:
                found[key] = keys
                plain[key] = _number(SCHEMA[key].kind, keys[0].value)
    return plain, found


def _keys_of(
    name: str, key: str, value: Any, schema: Mapping[str, Any], keyframable: tuple[str, ...], source: str
) -> list[Key] | None:
    """A setting's keyframes (None for a plain value), refused for an unknown or a fixed key."""
    keys = parse_keys(value, f"{source}: {name}")
    if keys is not None and key not in schema:
        raise ConfigError(
            f"{source}: unknown key {shown(name)} in keyframes {shown(value)} (known keys: {', '.join(schema)})"
        )
    if keys is not None and key not in keyframable:
        raise _not_keyframable(name, source)
    return keys


def _not_keyframable(name: str, source: str) -> ConfigError:
    allowed = ", ".join([*ENGINE_KEYS, *(f"video.{k}" for k in VIDEO_KEYS), "layers.NAME"])
    return ConfigError(f"{source}: {name} cannot change over time (keyframes: {allowed})")
