"""From command-line options to a DreamConfig: preset < --config FILE < --set k=v < flags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamcore.backbones.keras_file import model_version
from dreamcore.config import DreamConfig, VideoConfig, is_model_path, merge
from dreamcore.engine import resolve_config
from dreamcore.errors import ConfigError, shown
from dreamcore.keyframes import Key, Schedule, looks_keyframed, split
from dreamcore.objective import check_guidable, parse_targets
from dreamcore.preset import load_preset, parse_yaml
from pipeline.job.record import file_fingerprint
from pipeline.runtime import bfloat16_hardware

if TYPE_CHECKING:
    from dreamcore.backbones import Resolution


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set key=value``: the value is read as YAML (numbers, null, {a: 1}), the key as-is."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {shown(item)}: expected key=value")
        try:
            # A keyframe list stays text: YAML 1.1 would read 0:1 as a base-60 number.
            value = raw.strip() if looks_keyframed(raw) else yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        section, dot, sub = key.partition(".")
        if dot and section in ("layers", "video"):
            inner = dict(out.get(section) or {})
            inner[sub] = value
            out[section] = inner
        else:
            out[key] = value
    return out


def parse_layers(text: str) -> dict[str, float]:
    """``--layers mixed3=1,mixed5=1.5`` (a bare name weighs 1)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--layers: {shown(part)}: the weight must be a number (name=weight)") from None
    if not out:
        raise ConfigError("--layers: give at least one layer, e.g. --layers mixed3=1,mixed5=1.5")
    return out


def read_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc})") from None
    return parse_yaml(text, str(p))


def build_config(
    preset: str | None,
    config_file: str | None,
    sets: Sequence[str],
    flags: Mapping[str, Any],
) -> DreamConfig:
    """The engine config alone (for commands that have no video section, and no time)."""
    cfg, _, schedule = build_job_settings(preset, config_file, sets, flags)
    if schedule:
        raise ConfigError(f"{next(iter(schedule.keys))}: keyframes change a setting over time: for video and zoom only")
    return cfg


def build_settings(
    preset: str | None,
    config_file: str | None,
    sets: Sequence[str],
    flags: Mapping[str, Any],
    video_flags: Mapping[str, Any] | None = None,
) -> tuple[DreamConfig, VideoConfig]:
    """The settings of a job whose settings do not change over time (a benchmark's)."""
    cfg, vcfg, schedule = build_job_settings(preset, config_file, sets, flags, video_flags)
    if schedule:
        raise ConfigError(f"{next(iter(schedule.keys))}: keyframes are not taken here")
    return cfg, vcfg


def build_job_settings(
    preset: str | None,
    config_file: str | None,
    sets: Sequence[str],
    flags: Mapping[str, Any],
    video_flags: Mapping[str, Any] | None = None,
) -> tuple[DreamConfig, VideoConfig, Schedule]:
    """Merge every source and validate once. Errors name the source that gave the bad value.
    Keyframed settings (dreamcore.keyframes) come back as a Schedule, their first values in the
    configs; a later source that sets a keyframed setting plainly ends its keyframes (``layers`` as a
    whole ends every layer's)."""
    sources: list[tuple[str, dict[str, Any]]] = [
        (f"preset {preset or 'default'!r}", load_preset(preset or "default")),
    ]
    if config_file:
        sources.append((config_file, read_config_file(config_file)))
    if sets:
        sources.append(("--set", parse_set(sets)))
    given = {k: v for k, v in flags.items() if v is not None}
    video_given = {k: v for k, v in (video_flags or {}).items() if v is not None}
    if video_given:
        given["video"] = video_given
    if given:
        sources.append(("command line", given))
    # Validate each source on its own first, so a bad value is blamed on where it came from.
    keys: dict[str, list[Key]] = {}
    plain_sources = []
    for name, data in sources:
        plain, found = split(data, name)
        if "layers" in plain:
            keys = {k: v for k, v in keys.items() if not k.startswith("layers.")}
        for k, v in plain.items():
            if k == "video" and isinstance(v, Mapping):
                for vk in v:
                    keys.pop(f"video.{vk}", None)
            else:
                keys.pop(k, None)
        keys.update(found)
        try:
            DreamConfig.from_mapping(merge(DreamConfig().to_dict(), plain), source=name)
            VideoConfig.from_mapping(plain.get("video"), source=name)
        except ConfigError as exc:
            if not found:
                raise
            firsts = ", ".join(f"{n} {ks[0].label}" for n, ks in found.items())
            raise ConfigError(f"{exc} (with the first keyframes: {firsts})") from None
        plain_sources.append(plain)
    merged = merge(*plain_sources)
    return (
        DreamConfig.from_mapping(merged, source="config"),
        VideoConfig.from_mapping(merged.get("video"), source="config"),
        Schedule({k: tuple(v) for k, v in keys.items()}),
    )


def resolve_noted(config: DreamConfig) -> Resolution:
    """The config's resolution, its notes (e.g. the offline fallback) shown as warning lines: once
    per command, whatever the process did before. A bfloat16 config on a CPU without bfloat16
    instructions gets a warning too: there it emulates them, and can be slower than float32."""
    import logging

    res = resolve_config(config)
    for note in res.notes:
        logging.getLogger("dreamcore").warning(note)
    if config.precision == "bfloat16" and bfloat16_hardware() is False:
        logging.getLogger("dreamcore").warning(
            "precision bfloat16: this CPU has no bfloat16 instructions (AVX512_BF16 or AMX), so bfloat16 is "
            "likely slower here than float32 (unless a GPU runs it)"
        )
    return res


def pinned(config: DreamConfig) -> DreamConfig:
    """The config with the network the command resolved: workers build exactly this (no worker
    resolves `auto` on its own, so one job never mixes networks)."""
    check_guide(config)
    res = resolve_noted(config)
    return config.replace(
        model=res.backbone.name, weights=res.backbone.weights_name(res.weights), layers=dict(res.layers)
    )


def check_keyframed_layers(schedule: Schedule, cfg: DreamConfig) -> None:
    """Keyframed layers must be layers the resolved network dreams with (a fallback network has others)."""
    missing = [n for n in schedule.keys if n.startswith("layers.") and n[7:] not in cfg.layers]
    if missing:
        raise ConfigError(
            f"{missing[0]}: keyframes for a layer the job's network ({cfg.model}) does not dream with "
            f"(its layers: {', '.join(cfg.layers)})"
        )


def identity_extras(config: DreamConfig) -> dict[str, Any]:
    """What a job's identity needs besides ``config.to_dict()``: a model file's fingerprint (another
    file at the same path is another network) and a still guide's digest."""

    out: dict[str, Any] = {}
    p = model_path(config.model)
    if p is not None:
        if p.is_file():
            fp = file_fingerprint(p)
            out["model_file"] = {"size": fp["size"], "sha256_ends": fp["sha256_ends"]}
        elif p.is_dir():  # a SavedModel folder: its files' sizes and times
            out["model_file"] = {"folder": model_version(str(p))}
    if config.guide is not None:
        out["guide"] = {"image": config.guide.digest}
    return out


def check_guide(config: DreamConfig) -> None:
    """A guide steers whole layers: with only channel or class targets it would steer nothing."""
    if config.guide is not None:
        check_guided_layers(config.layers)


def check_guided_layers(layers: Mapping[str, float]) -> None:

    check_guidable(parse_targets(list(layers))[1])


def model_path(model: str) -> Path | None:
    """The model file (or SavedModel folder) a ``model`` value names, when it names one that exists."""

    return Path(model) if is_model_path(model) and Path(model).exists() else None
