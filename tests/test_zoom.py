"""`dreamreel zoom`: the motion (sub-pixel, the edge kept out), the film (frame count, rate, audio
cut to length, a dream that feeds on itself) and resume after real kills, on generated images."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.zoom import Motion, check_request, move
from tests.clips import ffmpeg, read_frames, stream_durations
from tests.jobs import encoder_threads_spy, scanned
from tests.media import synthetic_image
from tests.test_video_resume import default_sigint, events, wait_for_events

FAST = [
    "--model",
    "inception_v3",
    "--weights",
    "untrained",
    "--layers",
    "mixed2=1",
    "--set",
    "iterations=2",
    "--set",
    "octaves=1",
    "-q",
]


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zoom") / "picture.png"
    cv2.imwrite(str(path), synthetic_image(80, 112)[..., ::-1])
    return path


def spot(h: int, w: int, x: float, y: float) -> np.ndarray:
    """A soft bright spot centred at (x, y) on black, uint8 RGB."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    return np.repeat(np.round(g).astype(np.uint8)[..., None], 3, axis=2)


def centroid(img: np.ndarray) -> tuple[float, float]:
    g = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    return float((g * xx).sum() / g.sum()), float((g * yy).sum() / g.sum())


def test_a_slow_zoom_moves_the_picture_by_a_fraction_of_a_pixel() -> None:
    """Sub-pixel sampling: at zoom 1.004 a spot 50 px right of the centre moves out by 0.2 px a frame
    (nearest-pixel sampling would leave it in place, then jump a whole pixel: a stutter)."""
    h, w = 101, 201
    cx = (w - 1) / 2
    img = spot(h, w, cx + 50, (h - 1) / 2)
    x0, _ = centroid(img)
    moved = move(img, Motion(zoom=1.004))
    x1, y1 = centroid(moved)
    assert x1 - x0 == pytest.approx(0.2, abs=0.01)
    assert y1 == pytest.approx((h - 1) / 2, abs=0.01)


def test_rotation_and_pan_move_the_view() -> None:
    h, w = 101, 201
    cx, cy = (w - 1) / 2, (h - 1) / 2
    img = spot(h, w, cx + 40, cy)
    x, y = centroid(move(img, Motion(zoom=1.0, rotate=90)))  # the spot turns counter-clockwise: above
    assert (x, y) == (pytest.approx(cx, abs=0.05), pytest.approx(cy - 40, abs=0.05))
    x, _ = centroid(move(img, Motion(zoom=1.0, pan_x=3)))  # the view moves right: the picture left
    assert x == pytest.approx(cx + 37, abs=0.05)


def test_the_edge_never_enters_the_frame() -> None:
    for motion in (Motion(), Motion(zoom=1.05, rotate=1.5), Motion(zoom=1.02, pan_x=2, pan_y=-1)):
        assert motion.fits(320, 180), motion
    with pytest.raises(UsageError, match=r"edge would enter the frame .*at least --zoom 1\.0"):
        check_request_for(Motion(zoom=1.0, rotate=2))
    with pytest.raises(UsageError, match="edge would enter"):
        check_request_for(Motion(zoom=0.99))
    need = Motion(zoom=1.0, rotate=2).least_zoom(320, 180)
    assert need is not None and Motion(zoom=need, rotate=2).fits(320, 180)
    assert not Motion(zoom=need - 1e-3, rotate=2).fits(320, 180)


def check_request_for(motion: Motion) -> None:
    from dreamcore.config import DreamConfig
    from pipeline.zoom import ZoomRequest

    check_request(
        ZoomRequest(input="x", output="y.mp4", config=DreamConfig(), frames=10, fps=Fraction(24), motion=motion),
        320,
        180,
    )


def test_zoom_makes_the_film_with_its_rate_count_and_audio(picture: Path, tmp_path: Path, capsys) -> None:
    tone = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=5", "-c:a", "aac", str(tone))
    out = tmp_path / "zoom.mp4"
    code = main(
        [
            "zoom",
            str(picture),
            "-o",
            str(out),
            "--frames",
            "14",
            "--fps",
            "30000/1001",
            "--zoom",
            "1.03",
            "--audio",
            str(tone),
            "--chunk-frames",
            "5",
            "--keep-work",
            *FAST,
        ]
    )
    assert code == 0, capsys.readouterr().err
    scan = scanned(out)
    assert scan.frames == 14 and scan.frame_rate == Fraction(30000, 1001)
    lengths = stream_durations(out)
    assert lengths["audio"] == pytest.approx(14 * 1001 / 30000, abs=0.05)  # cut to the film, not 5 s
    frames = read_frames(out)
    src = synthetic_image(80, 112).astype(np.float32)
    assert np.abs(frames[0] - src).mean() > 2  # frame 0 is the picture dreamt
    # Each later frame is the one before, moved and dreamt again: closer to the moved previous frame
    # than to the previous frame unmoved, and not just the moved frame (a dream was added).
    for i in (1, 7, 13):
        moved = move(frames[i - 1], Motion(zoom=1.03)).astype(np.float32)
        assert np.abs(frames[i] - moved).mean() < np.abs(frames[i] - frames[i - 1].astype(np.float32)).mean()
        assert np.abs(frames[i] - moved).mean() > 0.5
    assert stream_durations(out)["video"] == pytest.approx(14 * 1001 / 30000, abs=0.05)


def test_zoom_keeps_the_encoder_thread_count_it_began_with(
    picture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for `video`: x264's pixels depend on its thread count, so a zoom resumed on another
    machine (x264's count for it faked) encodes with the count recorded when it began."""
    import json

    from pipeline import zoom
    from pipeline.io import media

    made = encoder_threads_spy(monkeypatch)
    monkeypatch.setattr(media, "encoder_threads", lambda: 5)
    args = [str(picture), "--keep-work", "--frames", "8", "--chunk-frames", "4", *FAST]
    assert main(["zoom", "-o", str(tmp_path / "ref.mp4"), "--workdir", str(tmp_path / "ref"), *args]) == 0
    first = (tmp_path / "ref.mp4").read_bytes()
    work, out = tmp_path / "work", tmp_path / "zoom.mp4"
    cmd = ["zoom", "-o", str(out), "--workdir", str(work), *args]
    moves = 0

    def stop_at_frame_6(image, motion):  # Ctrl-C while frame 6 dreams: the first chunk is encoded
        nonlocal moves
        moves += 1
        if moves == 6:
            raise KeyboardInterrupt
        return move(image, motion)

    monkeypatch.setattr(zoom, "move", stop_at_frame_6)
    assert main(cmd) == 130
    assert json.loads((work / "job.json").read_text())["numerics"]["encoder_threads"] == 5
    monkeypatch.setattr(zoom, "move", move)
    monkeypatch.setattr(media, "encoder_threads", lambda: 2)  # resumed on another machine
    made.clear()
    assert main(cmd) == 0
    assert made == [5]
    assert out.read_bytes() == first


def test_a_zoom_begun_before_every_command_shared_one_record_resumes(
    picture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zoom job record as the previous dreamreel wrote it (x264's threads at the top, no token, no
    numerics) is read as the one typed record every command now shares, and the job resumes."""
    import json

    from pipeline import zoom
    from pipeline.io import media
    from pipeline.job.record import write_record
    from pipeline.job.store import Store

    made = encoder_threads_spy(monkeypatch)
    args = [str(picture), "--frames", "8", "--chunk-frames", "4", *FAST]
    assert main(["zoom", "-o", str(tmp_path / "ref.mp4"), *args]) == 0
    work, out = tmp_path / "work", tmp_path / "zoom.mp4"
    cmd = ["zoom", "-o", str(out), "--workdir", str(work), *args]
    monkeypatch.setattr(zoom, "move", lambda image, motion: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(cmd) == 130  # stopped at frame 1: frame 0 stored
    record = json.loads((work / "job.json").read_text())
    old = {"version": record["version"], "identity": record["identity"], "encoder_threads": 3}
    write_record(Store(str(work)), old)
    monkeypatch.setattr(zoom, "move", move)
    monkeypatch.setattr(media, "encoder_threads", lambda: 7)
    made.clear()
    assert main(cmd) == 0
    assert made == [3, 3]  # the count the old record kept, for both chunks
    assert len(read_frames(out)) == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zoom", "0.98"], "edge would enter the frame"),
        (["--zoom", "1.0", "--rotate", "3"], "at least --zoom"),
        (["--frames", "0"], "--frames 0"),
        (["--fps", "abc"], "--fps abc: not a rate"),
        (["--pan", "1"], "--pan 1: expected DX,DY"),
        (["--audio", "missing.wav"], "--audio missing.wav: no such file"),
    ],
)
def test_bad_zoom_arguments_exit_2_with_one_line(
    args: list[str], message: str, picture: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["zoom", str(picture), "-o", "z.mp4", *args, *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "z.mp4").exists()


def test_an_audio_file_without_audio_is_refused(picture: Path, tmp_path: Path, capsys) -> None:
    silent = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=10:duration=0.3", "-c:v", "libx264", str(silent))
    code = main(["zoom", str(picture), "-o", str(tmp_path / "z.mp4"), "--audio", str(silent), *FAST])
    assert code == 2 and "no audio stream" in capsys.readouterr().err


FRAMES = 24


def start(picture: Path, out: Path, work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "zoom",
            str(picture),
            "-o",
            str(out),
            "--workdir",
            str(work),
            "--keep-work",
            "--frames",
            str(FRAMES),
            "--chunk-frames",
            "5",
            *FAST,
            "--set",
            "iterations=8",
            "--steps",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    picture = tmp_path / "big.png"  # large enough that a run lasts a few kills
    cv2.imwrite(str(picture), synthetic_image(192, 256, seed=3)[..., ::-1])
    ref = start(picture, tmp_path / "ref.mp4", tmp_path / "ref-work")
    assert ref.wait(timeout=600) == 0, ref.stderr.read() if ref.stderr else ""
    rng = random.Random(20261126)
    work, out = tmp_path / "work", tmp_path / "out.mp4"
    kills = 0
    while kills < 4:
        seen = len(events(work))
        proc = start(picture, out, work)
        if not wait_for_events(work, seen, proc):
            break
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # it had written the film and was on its way out
            break
        kills += 1
    assert kills >= 3
    final = start(picture, out, work)
    assert final.wait(timeout=600) == 0, final.stderr.read() if final.stderr else ""
    assert "resumed" in (final.stderr.read() if final.stderr else "")
    assert [f.tobytes() for f in read_frames(out)] == [f.tobytes() for f in read_frames(tmp_path / "ref.mp4")]
    counts = Counter(events(work))
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]  # nothing dreamt twice
    assert len(counts) == FRAMES  # every frame dreamt, once, over all the runs
