"""The README's two commands stay true: CI runs the same test command, the sample exists."""

from __future__ import annotations

import re

from tests.media import REPO


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = _bash_blocks()[1].strip().split("&&")[-1].strip()
    assert test_cmd == ".venv/bin/python -m pytest -q"
    assert test_cmd in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_the_main_command_uses_a_file_in_samples() -> None:
    main_cmd = _bash_blocks()[0]
    sample = re.search(r"dreamreel (?:image|video) (\S+)", main_cmd).group(1)
    assert sample.startswith("samples/") and (REPO / sample).is_file()
