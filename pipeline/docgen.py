"""The docs site's generated parts, as Markdown: the config table (from the schema), the presets (from
their YAML) and the CLI reference (from the argparse parser).

``docs/hooks.py`` (MkDocs' ``on_page_markdown`` hook, see ``mkdocs.yml``) replaces each marker
``<!-- generated: NAME -->`` in a page with the text of the generator of that name (:func:`expand`),
so the pages cannot drift from the code; ``tests/test_docs.py`` checks that every key and option is
in them. Pure functions returning text; importing this module is light (no TensorFlow, no Dask: the
CLI module is light too).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from dreamcore.config import SCHEMA, VIDEO_SCHEMA, DreamConfig, Field, VideoConfig
from dreamcore.keyframes import ENGINE_KEYS, VIDEO_KEYS
from dreamcore.preset import load_preset, preset_description, preset_names
from pipeline.commands import FLAGS, build_parser

# What each key does, in a few words (the schema says what it takes). tests/test_docs.py checks that
# every key of the schema has a line here.
MEANINGS: dict[str, str] = {
    "model": "the network: `auto` is InceptionV3 with ImageNet weights, or vgg16_hed offline "
    "([Networks and weights](models.md))",
    "model_input": "the pixel range a model file is fed ([Your own network](custom.md))",
    "weights": "the network's weights ([Networks and weights](models.md))",
    "layers": "the layers dreamt with and their weights; `NAME:C` targets channels, `class:N` a logit "
    "([Channels and classes](custom.md#channels-and-classes))",
    "step": "mean change per pixel per gradient step, in units of the [-1, 1] image range (the same on every network)",
    "octaves": "how many sizes the image is dreamt at, small to large",
    "octave_scale": "the ratio between one octave's size and the next",
    "iterations": "gradient steps per octave",
    "max_loss": "a loss above this ends the octave early",
    "jitter": "random roll of the image at each step, in pixels (moves the tile borders)",
    "tile": "tile size in pixels: a larger image has its gradient computed a tile at a time, so memory stays bounded",
    "max_side": "dream at most this many pixels on the long side; the output keeps the input's size",
    "seed": "random seed of the jitter: the same seed gives the same dream ([Exact results](exact.md))",
    "precision": "the network's arithmetic: `bfloat16` is faster where the hardware has it, "
    "with other pixels ([GPU and speed](gpu.md))",
    "video.coherence": "how a frame starts from the previous dream: carried along the optical flow, "
    "blended, or not at all ([Video](video.md#coherence))",
    "video.blend": "`blend` coherence: share of the previous dreamt frame mixed into the next",
    "video.carry": "`flow` coherence: share of the warped dream carried to the next frame",
    "video.followup_iterations": "gradient steps per octave for a frame that follows another in its shot",
    "video.followup_octaves": "a follow-up frame dreams only this many of the largest octaves "
    "(faster, but the dream fades along a shot)",
    "video.scene_detector": "how cuts are found: `adaptive` compares a frame's change with its "
    "neighbours', `content` uses a fixed threshold",
    "video.scene_threshold": "`content` cut detection: the change that makes a cut",
    "video.adaptive_threshold": "`adaptive` cut detection: the ratio that makes a cut",
    "video.min_scene_frames": "the shortest shot, in frames",
    "video.flow_side": "optical flow is computed on frames shrunk to this long side, its field scaled up",
    "video.chunk_frames": "split every shot into pieces this long, dreamt in parallel",
    "video.overlap_frames": "frames over which the dream cross-fades where a shot is split",
}

_KIND_NAMES = {"int": "integer", "float": "number", "str": "text", "layers": "mapping"}

# The width usage lines are wrapped at (argparse would take the terminal's: the pages must not).
WIDTH = 100


def _cell(text: str) -> str:
    """Text made safe for one cell of a Markdown table (no pipe, no line break, no HTML, no stray emphasis)."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def _code(text: str) -> str:
    """Inline code for a table cell."""
    text = " ".join(str(text).split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _yaml(value: Any) -> str:
    """A value as it would be written in YAML (a mapping in flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _defaults(cls: type) -> dict[str, Any]:
    """A dataclass's defaults by field name (a default_factory called)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_keys() -> list[tuple[str, Field, Any]]:
    """Every config key as YAML and ``--set`` write it (``video.`` keys prefixed), its field and default."""
    dream, video = _defaults(DreamConfig), _defaults(VideoConfig)
    keys = [(name, spec, dream[name]) for name, spec in SCHEMA.items()]
    keys += [(f"video.{name}", spec, video[name]) for name, spec in VIDEO_SCHEMA.items()]
    return keys


def _flags() -> dict[str, str]:

    return FLAGS


def _keyframes(key: str) -> str:
    if key == "layers":
        return "per layer"
    if key.startswith("video."):
        return "yes" if key[len("video.") :] in VIDEO_KEYS else "no"
    return "yes" if key in ENGINE_KEYS else "no"


def config_table() -> str:
    """The table of every config key: its meaning, type, allowed values, default, the flag that sets
    it and whether keyframes can change it along a clip."""
    flags = _flags()
    rows = [
        "| key | meaning | type | allowed values | default | flag | keyframes |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, spec, default in config_keys():
        kind = _KIND_NAMES.get(spec.kind, spec.kind) + (" or null" if spec.nullable else "")
        flag = _code(flags[key]) if key in flags else _code(f"--set {key}=...")
        rows.append(
            f"| `{key}` | {_cell(MEANINGS.get(key, ''))} | {kind} | {_cell(spec.allowed)} | "
            f"{_code(_yaml(default))} | {flag} | {_keyframes(key)} |"
        )
    return "\n".join(rows) + "\n"


def presets_table() -> str:
    """The built-in presets: name, description and the keys each sets (read from their YAML files)."""

    rows = ["| preset | what | sets |", "|---|---|---|"]
    for name in preset_names():
        sets = ", ".join(f"{k}: {_yaml(v)}" for k, v in load_preset(name).items())
        rows.append(f"| `{name}` | {_cell(preset_description(name))} | {_cell(sets)} |")
    return "\n".join(rows) + "\n"


# --- the command line -------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each subcommand's one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: str(a.help or "") for a in action._choices_actions}
    return {}


def shown_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a parser documents (not those whose help is suppressed)."""
    return [a for a in parser._actions if a.help != argparse.SUPPRESS]


def _help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    default = action.default
    if action.option_strings and default not in (None, False, [], argparse.SUPPRESS) and "default" not in text.lower():
        text += f" (default: {default})"
    return text


def _value(action: argparse.Action) -> str:
    if action.nargs == 0 or not action.option_strings:
        return ""
    if action.choices is not None:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return f"`{metavar}`"


def _names(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(f"`{o}`" for o in action.option_strings)
    return f"`{action.metavar if isinstance(action.metavar, str) else action.dest}`"


def _exclusive(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for group in parser._mutually_exclusive_groups:
        opts = [a.option_strings[-1] for a in group._group_actions if a.help != argparse.SUPPRESS]
        if len(opts) > 1:
            lines.append("Only one of " + ", ".join(f"`{o}`" for o in opts) + ".")
    return lines


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        out += ["", f"**{_cell(group.title or 'arguments')}**", "", "| argument | value | what |", "|---|---|---|"]
        out += [f"| {_names(a)} | {_value(a)} | {_cell(_help_text(parser, a))} |" for a in actions]
    return out


def _usage(parser: argparse.ArgumentParser) -> str:
    """The parser's usage, wrapped at WIDTH, without the ``usage:`` prefix."""
    formatter = argparse.RawDescriptionHelpFormatter(parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _anchor(heading: str) -> str:
    """The id MkDocs (Python-Markdown's toc) gives a heading: lower case, words joined by hyphens."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def _command(parser: argparse.ArgumentParser, summary: str) -> list[str]:
    out = [f"## {parser.prog}", ""]
    if summary:
        out += [summary[:1].upper() + summary[1:] + ".", ""]
    out += ["```text", _usage(parser), "```"]
    if parser.description:
        out += ["", parser.description]
    out += _arguments(parser)
    exclusive = _exclusive(parser)
    if exclusive:
        out += ["", *exclusive]
    if parser.epilog:
        out += ["", "```text", parser.epilog.strip("\n"), "```"]
    return out


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Every subcommand of ``dreamreel`` (default: ``pipeline.commands.build_parser()``) with its usage,
    each argument with its value and help text, and its examples."""
    if parser is None:
        parser = build_parser()
    commands, summaries = subcommands(parser), _summaries(parser)
    out = ["```text", _usage(parser), "```"]
    if parser.description:
        out += ["", parser.description]
    out += ["", "| command | what |", "|---|---|"]
    out += [
        f"| [`{name}`](#{_anchor(sub.prog)}) | {_cell(summaries.get(name, ''))} |" for name, sub in commands.items()
    ]
    if parser.epilog:
        out += ["", parser.epilog]
    for name, sub in commands.items():
        out += ["", *_command(sub, summaries.get(name, ""))]
    return "\n".join(out) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "config-table": config_table,
    "presets-table": presets_table,
    "cli-reference": cli_reference,
}

MARKER = re.compile(r"<!--\s*generated:\s*([\w-]+)\s*-->")


def expand(markdown: str) -> str:
    """A page's Markdown with every ``<!-- generated: NAME -->`` replaced by ``GENERATORS[NAME]()``;
    KeyError for a name that has no generator."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise KeyError(f"unknown generated block {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(one, markdown)
