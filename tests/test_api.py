"""The Python job API (pipeline.api): what a notebook or a web page calls. Progress comes as events,
a job is cancelled from another thread and resumed by the same call, and the result is typed."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dreamcore.config import DreamConfig, VideoConfig
from pipeline import (
    BatchRequest,
    Cancel,
    Cancelled,
    Motion,
    Progress,
    VideoRequest,
    ZoomRequest,
    dream_folder,
    dream_video,
    dream_zoom,
)
from pipeline.errors import EXIT_INTERRUPTED
from tests.clips import make_clip, read_frames
from tests.media import synthetic_image

CFG = DreamConfig(model="inception_v3", weights="untrained", layers={"mixed2": 1.0}, iterations=2, octaves=1)
VIDEO = VideoConfig(followup_iterations=1)


def test_a_video_job_reports_its_stages_and_every_frame(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=0.6, cut_at=0.3)
    events: list[Progress] = []
    result = dream_video(
        VideoRequest(str(clip), str(tmp_path / "out.mp4"), CFG, VIDEO, quiet=True), on_progress=events.append
    )
    stages = [e.stage for e in events if e.note is None]
    assert stages[0] == "plan" and stages[-1] == "done" and "join" in stages
    dream = [e for e in events if e.stage == "dream"]
    assert [e.done for e in dream] == list(range(result.frames + 1))  # the stage's start, then each frame
    assert all(e.total == result.frames and e.unit == "frame" and e.label == "c.mp4" for e in dream)
    assert dream[0].eta_s is None and all(e.eta_s is not None for e in dream[1:])
    assert dream[-1].eta_s == 0
    assert result.frames == len(read_frames(tmp_path / "out.mp4")) and len(result.shots) == 2
    assert result.dreamt == result.frames and result.resumed == 0 and result.audio == "audio copied"


def test_a_cancelled_job_keeps_its_work_and_the_same_call_resumes_it(tmp_path: Path) -> None:
    """Cancelled from another thread mid-job: Cancelled (the CLI's exit code for Ctrl-C), the frames
    dreamt are kept, and the same call finishes the film an uninterrupted run gives."""
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0, audio=False)
    dream_video(VideoRequest(str(clip), str(tmp_path / "ref.mp4"), CFG, VIDEO, quiet=True))
    req = VideoRequest(str(clip), str(tmp_path / "out.mp4"), CFG, VIDEO, workdir=str(tmp_path / "work"), quiet=True)
    cancel = Cancel()
    seen: list[int] = []
    failure: list[BaseException] = []
    button = threading.Thread(target=cancel.set)  # another thread, as a UI's button

    def on_progress(e: Progress) -> None:
        if e.stage == "dream":
            seen.append(e.done)
            if e.done >= 5 and not button.is_alive() and button.ident is None:
                button.start()

    def job() -> None:
        try:
            dream_video(req, on_progress, cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(timeout=300)
    button.join(timeout=10)
    assert not worker.is_alive() and not button.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], Cancelled), failure
    assert failure[0].exit_code == EXIT_INTERRUPTED and "the same call resumes" in str(failure[0])
    assert not (tmp_path / "out.mp4").exists() and max(seen) < 24
    result = dream_video(req)  # the same call, no cancel: resumed
    assert result.resumed >= 5 and result.dreamt == result.frames - result.resumed
    assert [f.tobytes() for f in read_frames(tmp_path / "out.mp4")] == [
        f.tobytes() for f in read_frames(tmp_path / "ref.mp4")
    ]


def test_a_folder_job_reports_images_and_says_what_it_skipped(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), synthetic_image(40, 48))
    (src / "b.png").write_bytes(b"not an image")
    events: list[Progress] = []
    report = dream_folder(BatchRequest(src, tmp_path / "out", CFG, quiet=True), on_progress=events.append)
    assert report.done == ["a.png"] and [rel for rel, _ in report.failed] == ["b.png"]
    dream = [e for e in events if e.stage == "dream" and e.note is None]
    assert dream[-1].done == dream[-1].total == 2 and dream[-1].unit == "image"
    assert [e.note for e in events if e.note] == [next(e.note for e in events if e.note and "skipped b.png" in e.note)]


def test_a_zoom_job_reports_its_frames_and_returns_what_it_did(tmp_path: Path) -> None:
    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(48, 64))
    events: list[Progress] = []
    req = ZoomRequest(str(pic), str(tmp_path / "z.mp4"), CFG, frames=6, fps=Fraction(24), motion=Motion(), quiet=True)
    result = dream_zoom(req, on_progress=events.append)
    assert [e.done for e in events if e.stage == "dream"] == list(range(7))
    assert result.frames == 6 == result.dreamt and result.resumed == 0 and len(result.frame_seconds) == 6
    assert len(read_frames(tmp_path / "z.mp4")) == 6


def test_a_cancel_set_before_the_call_stops_it_at_once(tmp_path: Path) -> None:
    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(48, 64))
    cancel = Cancel()
    cancel.set()
    req = ZoomRequest(str(pic), str(tmp_path / "z.mp4"), CFG, frames=4, fps=Fraction(24), motion=Motion(), quiet=True)
    with pytest.raises(Cancelled):
        dream_zoom(req, cancel=cancel)
    assert not (tmp_path / "z.mp4").exists()
    result = dream_zoom(req)  # the next call is not stopped by the earlier cancel
    assert result.frames == 4 and np.asarray(read_frames(tmp_path / "z.mp4")).shape[0] == 4


def test_a_cancel_whose_stopped_task_fails_first_is_still_cancelled(tmp_path: Path, monkeypatch) -> None:
    """The race a notebook met: the cancelled task's Stopped came back through its result before the
    scheduling loop saw the cancel. Still Cancelled, not the task's Stopped."""
    from pipeline import api
    from pipeline.cluster.schedule import Stopped

    cancel = Cancel()

    def job(request: VideoRequest, report: object) -> None:
        cancel.set()
        raise Stopped()

    monkeypatch.setattr(api, "run_video", job)
    with pytest.raises(Cancelled):
        dream_video(VideoRequest("c.mp4", str(tmp_path / "out.mp4")), cancel=cancel)

    def uncancelled(request: VideoRequest, report: object) -> None:
        raise Stopped()

    monkeypatch.setattr(api, "run_video", uncancelled)
    with pytest.raises(Stopped):  # no cancel of the caller's: not turned into Cancelled
        dream_video(VideoRequest("c.mp4", str(tmp_path / "out.mp4")), cancel=Cancel())
