"""benchmarks/identical.py: the old commit against itself is identical, and one changed pixel is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.identical import REPO, Verdict, compare_path


@pytest.mark.slow
def test_old_commit_against_itself_is_identical_and_a_changed_pixel_is_found(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.identical", "--self-check", "--only", "image,bad input"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 cases identical" in proc.stdout
    assert "pipeline from" in proc.stderr and "old-tree" in proc.stderr  # the worktree's code ran

    pixels = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    pixels[3, 4, 1] = 7
    Image.fromarray(pixels).save(tmp_path / "b.png")
    v = Verdict()
    compare_path(tmp_path / "a.png", tmp_path / "b.png", "x.png", v)
    assert v.max_diff == 7 and v.frames == 1 and v.reasons
