"""The built-in presets (``configs/*.yaml``, installed as the package data ``dreamcore.presets``) and
the YAML reading that presets and config files share.

A preset is read as a raw mapping: it is validated when merged into a DreamConfig
(``dreamcore.config``), so an error names the source it came from.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from dreamcore.errors import ConfigError, shown

# The package the presets install as (pyproject: package-dir): not this module.
PRESETS_PACKAGE = "dreamcore.presets"


def preset_names() -> list[str]:
    root = resources.files(PRESETS_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {shown(name)} (presets: {', '.join(names)})")
    return resources.files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


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
