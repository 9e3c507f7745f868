"""The docs site stays complete: every config key and every CLI option is in its generated pages, and
the site builds with ``mkdocs build --strict`` (when the docs extra is installed)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dreamcore.config import SCHEMA, VIDEO_SCHEMA
from pipeline import docgen
from pipeline.commands import build_parser
from tests.media import REPO


def _row(table: str, key: str) -> str:
    rows = [line for line in table.splitlines() if line.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"config key {key} has {len(rows)} rows in the generated table"
    return rows[0]


def test_every_config_key_is_in_the_table_with_its_default() -> None:
    table = docgen.config_table()
    keys = [*SCHEMA, *(f"video.{k}" for k in VIDEO_SCHEMA)]
    assert [k for k, _, _ in docgen.config_keys()] == keys
    for key, spec, default in docgen.config_keys():
        row = _row(table, key)
        assert f"`{docgen._yaml(default)}`" in row, f"{key}: default {default!r} missing from {row}"
        assert docgen._cell(spec.allowed) in row, f"{key}: allowed values missing from {row}"
    # Every key says what it does: a key added to the schema needs its line in docgen.MEANINGS.
    assert sorted(docgen.MEANINGS) == sorted(keys)
    assert _row(table, "iterations").count("`20`") == 1 and "`null`" in _row(table, "max_side")


def _sections(reference: str) -> dict[str, str]:
    parts = re.split(r"^## dreamreel (\S+)$", reference, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_cli_option_is_in_the_reference() -> None:
    parser = build_parser()
    sections = _sections(docgen.cli_reference(parser))
    commands = docgen.subcommands(parser)
    assert list(sections) == list(commands) and {"image", "video", "zoom", "images", "preview"} <= set(commands)
    for name, sub in commands.items():
        text = sections[name]
        for action in sub._actions:
            names = action.option_strings or [str(action.metavar or action.dest)]
            for opt in names:
                if action.help == argparse.SUPPRESS:
                    assert f"`{opt}`" not in text, f"dreamreel {name}: hidden option {opt} documented"
                else:
                    assert f"`{opt}`" in text, f"dreamreel {name}: {opt} missing from the CLI reference"
            if action.help not in (None, argparse.SUPPRESS) and "%(" not in action.help:
                assert docgen._cell(action.help) in text, f"dreamreel {name} {names[0]}: help text missing"
        if sub.epilog:
            assert sub.epilog.strip().splitlines()[-1] in text


def test_docgen_is_light() -> None:
    code = (
        "import sys; from pipeline import docgen; docgen.config_table(); docgen.cli_reference(); "
        "assert 'tensorflow' not in sys.modules and 'distributed' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_markers_expand_and_an_unknown_one_fails() -> None:
    pages = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md")}
    assert "<!-- generated: config-table -->" in pages["configuration.md"]
    assert "<!-- generated: cli-reference -->" in pages["cli.md"]
    assert "| `video.carry` |" in docgen.expand(pages["configuration.md"])
    with pytest.raises(KeyError, match="no-such-table"):
        docgen.expand("<!-- generated: no-such-table -->")


def _text(html_file: Path) -> str:
    return re.sub(r"<[^>]+>", "", html_file.read_text(encoding="utf-8")).replace("&amp;", "&")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.mark.skipif(
    not all(_installed(m) for m in ("mkdocs", "material", "mkdocstrings_handlers.python")),
    reason='the docs extra is not installed (pip install -e ".[docs]")',
)
def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = _text(site / "configuration" / "index.html")
    for key in ("followup_iterations", "max_loss", "octave_scale", "flow_side", "precision"):
        assert key in config
    assert "<!-- generated" not in config
    cli = _text(site / "cli" / "index.html")
    for text in ("dreamreel zoom", "--octaves-after", "--guide-end", "--keep-frames", "--max-side"):
        assert text in cli
    api = _text(site / "api" / "index.html")
    assert "dream_video" in api and "a path, or a URL fsspec reads" in api and ":class:" not in api
    for page in ("index", "video", "faq", "cluster"):
        assert (site / page / "index.html" if page != "index" else site / "index.html").is_file()
    assert (site / "img" / "zoom-strip.jpg").is_file() and not (site / "hooks.py").exists()
