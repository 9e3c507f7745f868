"""`dreamreel preview` and `video --preview`: a contact sheet of dreamt frames and a time estimate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.preview import contact_sheet
from tests.clips import make_clip
from tests.media import synthetic_image
from tests.test_video import FAST, run


def test_the_sheet_puts_each_source_above_its_dream() -> None:
    a, b = synthetic_image(40, 60), synthetic_image(40, 60, seed=1)
    dream_a, dream_b = 255 - a, 255 - b
    sheet = contact_sheet([("one", a, dream_a), ("two", b, dream_b)])
    assert sheet.shape[0] >= 80 and sheet.shape[1] >= 120
    np.testing.assert_array_equal(sheet[:40, :60], a)
    np.testing.assert_array_equal(sheet[44:84, :60], dream_a)
    x = 60 + 8  # the second column after the gap
    np.testing.assert_array_equal(sheet[:40, x : x + 60], b)
    assert np.abs(sheet[88:, :60].astype(int) - 24).sum() > 0  # a label is written under the first


def test_preview_of_a_clip_writes_a_sheet_and_estimates_the_job(tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "c.mp4", size="128x96", seconds=1.0, cut_at=0.5, audio=False)
    sheet = tmp_path / "sheet.png"
    code, err = run(["preview", str(clip), "-o", str(sheet), "--count", "3", *FAST], capsys)
    assert code == 0, err
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[1] >= 3 * 128  # three columns of 128 px frames
    assert "The full job would take about" in err and "24 frames of 128x96, 2 shots;" in err
    # The dreams are dreams: each column's lower frame differs from its upper one.
    top, bottom = img[:96, :128].astype(np.float32), img[100:196, :128].astype(np.float32)
    assert np.abs(top - bottom).mean() > 1


def test_video_preview_stops_before_the_job(tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "c.mp4", size="96x64", seconds=0.5, audio=False)
    out = tmp_path / "dream.mp4"
    code, err = run(["video", str(clip), "-o", str(out), "--preview", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "dream-preview.png").is_file() and not out.exists()
    assert not list(tmp_path.glob(".dream.mp4.dreamreel-work*"))


def test_preview_of_a_folder_picks_its_images(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), synthetic_image(60, 80, seed=i)[..., ::-1])
    (folder / "notes.txt").write_text("not an image")
    code, err = run(["preview", str(folder), "-o", str(tmp_path / "s.png"), "--count", "2", *FAST], capsys)
    assert code == 0, err
    assert "4 images" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--count", "0"], "--count 0"),
        (["--set", "step=0:0.01,9s:0.02"], "past the end"),
    ],
)
def test_bad_preview_arguments_exit_2(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "c.mp4", size="96x64", seconds=0.5, audio=False)
    code, err = run(["preview", str(clip), "-o", str(tmp_path / "s.png"), *args, *FAST], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.png").exists()
