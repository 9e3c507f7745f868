"""dreamreel's Python API: the jobs the command line runs, for a notebook, a web page or a script.

Each function runs one resumable job exactly as the CLI does (the CLI calls these): the same work
folder, the same record, the same output. Call it again after a crash, a kill or a cancel and it
resumes; the result equals an uninterrupted run's.

    from dreamcore.config import DreamConfig
    from pipeline import VideoRequest, dream_video

    result = dream_video(
        VideoRequest("clip.mp4", "dreamt.mp4", DreamConfig.from_mapping({"step": 0.02})),
        on_progress=lambda e: print(e.stage, e.done, e.total, e.eta_s),
    )
    print(result.frames, result.dreamt, result.resumed)

Progress comes as :class:`~pipeline.progress.Progress` events (stage, items done and total, items
resumed, ETA, and lines worth showing) to ``on_progress``, called in the job's thread. ``cancel``:
a :class:`~pipeline.progress.Cancel` that another thread sets to stop the job, which then keeps
what it finished and raises :class:`~pipeline.progress.Cancelled`. Bad input raises
:class:`~pipeline.errors.PipelineError` (its ``exit_code`` is the CLI's), a bad config
:class:`~dreamcore.errors.ConfigError`, both with a one-line message. One job runs in a process at a
time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pipeline.cluster.schedule import INTERRUPTED, STOP, Stopped
from pipeline.images import BatchReport, BatchRequest, run_batch
from pipeline.progress import Cancel, Cancelled, ProgressCallback, Reporter
from pipeline.video.job import VideoRequest, VideoResult, run_video
from pipeline.zoom import ZoomRequest, ZoomResult, run_zoom

R = TypeVar("R")
Q = TypeVar("Q")


def dream_video(
    request: VideoRequest, on_progress: ProgressCallback | None = None, cancel: Cancel | None = None
) -> VideoResult:
    """Dream a clip into a film (``dreamreel video``): frames carried along the optical flow,
    fresh at scene cuts, audio and timing kept; resumed from ``request.workdir`` when it holds the
    job. Returns what the job did (frames, shots, dreamt now, resumed, seconds)."""
    report = Reporter("video", on_progress, Path(request.input).name)
    return _run(run_video, request, report, cancel)


def dream_folder(
    request: BatchRequest, on_progress: ProgressCallback | None = None, cancel: Cancel | None = None
) -> BatchReport:
    """Dream every image under ``request.in_dir`` into the mirrored ``request.out_dir``
    (``dreamreel images``); images already dreamt are skipped, a bad file is a failed item in the
    report, not an error."""
    report = Reporter("images", on_progress, "images", unit="image")
    return _run(run_batch, request, report, cancel)


def dream_zoom(
    request: ZoomRequest, on_progress: ProgressCallback | None = None, cancel: Cancel | None = None
) -> ZoomResult:
    """Grow an endless zoom film from one image (``dreamreel zoom``), resumable like a video."""
    report = Reporter("zoom", on_progress, Path(request.input).name)
    return _run(run_zoom, request, report, cancel)


def _run(job: Callable[[Q, Reporter], R], request: Q, report: Reporter, cancel: Cancel | None) -> R:
    if cancel is None or not cancel.is_set():
        INTERRUPTED.clear()  # a new job: an earlier one's stop is not this one's
        STOP.clear()
    try:
        return job(request, report)
    except (KeyboardInterrupt, Stopped):
        # A cancel reaches the scheduling loop as KeyboardInterrupt within half a second, unless a
        # task it stopped fails first: then the task's Stopped comes back through its result.
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{report.command}: cancelled; what it finished is kept: the same call resumes") from None
        raise
    finally:
        if cancel is not None and cancel.is_set():
            INTERRUPTED.clear()
            STOP.clear()
