"""`dreamreel video` end to end on clips the tests generate."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import media
from pipeline.cli import main
from pipeline.video import plan_segments
from tests.clips import ffmpeg, make_clip
from tests.media import SHARED_MEDIA

FAST = ["--model", "inception_v3", "--weights", "untrained", "--layers", "mixed2=1", "--set", "iterations=2",
        "--set", "octaves=1", "--set", "video.followup_iterations=1", "-q"]


def decoded(path: Path, tmp: Path) -> media.Decoded:
    d = tmp / f"dec-{path.stem}"
    d.mkdir()
    return media.decode(path, d)


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "cut.mp4", cut_at=0.5, seconds=1.5)


def test_plan_splits_at_cuts_and_chunks_long_shots_with_warmup() -> None:
    segs = plan_segments(300, [0, 100], chunk=80, warmup=5)
    assert [(s.warm_from, s.first, s.end) for s in segs] == [(0, 0, 100), (100, 100, 180), (175, 180, 260),
                                                             (255, 260, 300)]
    # a short tail joins the chunk before it instead of paying for its own warm-up
    assert [(s.first, s.end) for s in plan_segments(95, [0], chunk=80, warmup=5)] == [(0, 95)]
    assert [(s.first, s.end) for s in plan_segments(1, [0], 80, 5)] == [(0, 1)]


def test_cut_clip_keeps_frames_rate_and_audio(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    code, err = run(["video", str(cut_clip), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    src, dst = decoded(cut_clip, tmp_path), decoded(out, tmp_path)
    assert dst.frames == src.frames == 36
    assert dst.frame_rate == src.frame_rate == Fraction(24000, 1001)
    d_src, d_dst = media.stream_durations(cut_clip), media.stream_durations(out)
    assert abs(d_dst["audio"] - d_src["audio"]) <= 0.1
    assert not (tmp_path / ".out.mp4.dreamreel-work").exists()  # removed after success
    assert "2 shots" in err


def test_first_frame_after_a_cut_holds_nothing_of_the_shot_before(cut_clip: Path, tmp_path: Path, capsys) -> None:
    """The frame that starts shot 2 is dreamt from its source alone: it equals the same frame of a
    run where no frame sees another (coherence none), while the frame after it does not."""
    runs = {}
    for mode in ("flow", "none"):
        work = tmp_path / f"work-{mode}"
        code, err = run(["video", str(cut_clip), "-o", str(tmp_path / f"{mode}.mp4"), *FAST, "--coherence", mode,
                         "--workdir", str(work), "--keep-work"], capsys)
        assert code == 0, err
        runs[mode] = work
    plan = json.loads((runs["flow"] / "job.json").read_text())["plan"]
    cut = plan["shots"][1]
    assert cut == 12

    def frame(mode: str, i: int) -> bytes:
        return (runs[mode] / "dream" / media.frame_name(i)).read_bytes()

    assert frame("flow", cut) == frame("none", cut)
    assert frame("flow", cut + 1) != frame("none", cut + 1)
    assert frame("flow", 0) == frame("none", 0)


def test_existing_output_refused_and_bad_extension(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    code, err = run(["video", str(cut_clip), "-o", str(out), *FAST], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"keep me"
    code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.webm"), *FAST], capsys)
    assert code == 2 and ".webm" in err


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    audio = tmp / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio))
    good = make_clip(tmp / "good.mp4", seconds=1.0)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"text": (text, "not a video"), "empty": (empty, "empty file"), "audio": (audio, "no video stream"),
            "truncated": (truncated, "truncated")}


@pytest.mark.parametrize("kind", ["text", "empty", "audio", "truncated"])
def test_bad_inputs_exit_2_one_line_nothing_written(kind: str, tmp_path: Path, capsys) -> None:
    src, words = _bad_inputs(tmp_path)[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = run(["video", str(src), "-o", str(out_dir / "o.mp4"), *FAST], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    "kind",
    ["odd", "rotated", "10bit", "vfr", "one-frame"],
)
def test_awkward_clips_are_dreamt_with_their_frame_count(kind: str, tmp_path: Path, capsys) -> None:
    if kind == "odd":
        src = make_clip(tmp_path / "odd.mkv", vcodec="ffv1", pix_fmt="yuv444p", audio=False,
                        extra=("-vf", "scale=97:63"))
    elif kind == "rotated":
        plain = make_clip(tmp_path / "plain.mp4", size="96x64", audio=False)
        src = tmp_path / "rotated.mp4"
        ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(src))
    elif kind == "10bit":
        src = make_clip(tmp_path / "ten.mkv", vcodec="ffv1", pix_fmt="yuv420p10le", audio=False)
    elif kind == "vfr":
        src = make_clip(tmp_path / "vfr.mkv", rate="25", audio=True,
                        extra=("-vf", "setpts='N/25/TB+if(gte(N,10),0.3/TB,0)+if(gte(N,17),0.5/TB,0)'",
                               "-fps_mode", "passthrough"))
    else:
        src = make_clip(tmp_path / "one.mp4", seconds=0.04, rate="25", audio=False)
    out = tmp_path / f"out-{kind}.mp4"
    code, err = run(["video", str(src), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    s, d = decoded(src, tmp_path), decoded(out, tmp_path)
    assert d.frames == s.frames
    first_src = media.read_frames(src)[0]
    first_out = media.read_frames(out)[0]
    if kind == "odd":
        assert first_out.shape[:2] == (64, 98)  # yuv420p: one pixel of edge added per odd side
    else:
        assert first_out.shape == first_src.shape
    if kind == "rotated":
        assert first_out.shape[:2] == (96, 64)  # upright: the rotation is applied, not left as metadata
    if kind == "vfr":
        assert not s.is_constant_rate()
        np.testing.assert_allclose(d.times, s.times, atol=0.002)
        total = media.stream_durations(out)
        assert abs(total["audio"] - media.stream_durations(src)["audio"]) <= 0.1


def test_damaged_avi_dreams_what_decodes(tmp_path: Path, capsys) -> None:
    good = make_clip(tmp_path / "good.avi", seconds=1.0, vcodec="mpeg4", audio=False)
    data = good.read_bytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: int(len(data) * 0.7)])  # the index (idx1) and the last frames are gone
    out = tmp_path / "o.mp4"
    code, err = run(["video", str(damaged), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    frames = decoded(out, tmp_path).frames
    assert 0 < frames == decoded(damaged, tmp_path).frames < decoded(good, tmp_path).frames


def test_changed_config_on_same_workdir_is_refused_unless_restart(cut_clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    base = ["video", str(cut_clip), "--workdir", str(work), "--frames", "3", *FAST]
    assert run([*base, "-o", str(tmp_path / "a.mp4"), "--keep-work"], capsys)[0] == 0
    code, err = run([*base, "-o", str(tmp_path / "b.mp4"), "--set", "step=0.02"], capsys)
    assert code == 2 and "config.step" in err and "--restart" in err
    code, err = run([*base, "-o", str(tmp_path / "b.mp4"), "--set", "step=0.02", "--restart"], capsys)
    assert code == 0, err
    assert not work.exists()


def test_locked_work_folder_is_refused(cut_clip: Path, tmp_path: Path, capsys) -> None:
    from pipeline.jobs import WorkFolder

    work = WorkFolder(tmp_path / "work")
    with work.locked():
        code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.mp4"), "--workdir", str(work.path), *FAST],
                        capsys)
    assert code == 2 and "in use" in err
    assert not (tmp_path / "o.mp4").exists()


def test_not_enough_disk_space_fails_at_once(cut_clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.mp4"), *FAST], capsys)
    assert code == 1 and "not enough disk space" in err and "GB" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("name", ["with space ünï.mp4", "-dash.mp4", "colon:name.mp4"])
def test_awkward_file_names(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = make_clip(tmp_path / "src.mp4", seconds=0.2)
    awkward = Path(name)
    awkward.write_bytes(src.read_bytes())
    out = Path("out " + name.replace("-", "_"))
    code, err = run(["video", "--frames", "2", *FAST, "-o", str(out), "--", str(awkward)], capsys)
    assert code == 0, err
    assert decoded(out, tmp_path).frames == 2


def test_start_and_frames_select_a_range(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.mp4"
    code, err = run(["video", str(cut_clip), "-o", str(out), "--start", "0.5", "--frames", "4", *FAST], capsys)
    assert code == 0, err
    assert decoded(out, tmp_path).frames == 4
    assert media.stream_durations(out)["audio"] == pytest.approx(4 / (24000 / 1001), abs=0.1)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_MEDIA / "Megamind.avi").exists(), reason="../shared/media not here")
def test_megamind_frames_rate_audio(tmp_path: Path, capsys) -> None:
    src = SHARED_MEDIA / "Megamind.avi"
    out = tmp_path / "megamind.mp4"
    code, err = run(["video", str(src), "-o", str(out), *FAST, "--max-side", "128"], capsys)
    assert code == 0, err
    s, d = decoded(src, tmp_path), decoded(out, tmp_path)
    assert d.frames == s.frames == 270
    assert d.frame_rate == s.frame_rate
    assert abs(media.stream_durations(out)["audio"] - media.stream_durations(src)["audio"]) <= 0.1
