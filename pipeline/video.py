"""`dreamreel video`: a clip in, a dreamt clip out, resumable after a kill at any moment.

1. probe; decode every frame once to lossless PNGs in the work folder (rotation applied, source
   timestamps kept aside); 2. find scene cuts on the source frames; 3. plan segments: one per shot,
   long shots cut into chunks that start a few warm-up frames early; 4. Dask runs one task per
   frame, each waiting for the previous frame of its segment; 5. encode at the source's timing
   with its audio, under a temporary name renamed into place.

A frame's task reads everything it needs from disk (source frames, the previous dreamt frame as
saved) and seeds its jitter with its index, so a resumed job continues exactly as an uninterrupted
one would have, frame for frame.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig

from . import media
from .errors import PipelineError
from .fsutil import write_atomic
from .jobs import JOB_VERSION, LayoutLog, WorkFolder, file_fingerprint

log = logging.getLogger("dreamcore")

# PNG frames of a dream compress to well under raw size; this is a conservative ratio.
PNG_RATIO = 0.75
# Room for the job record, logs and the encoder's output before it is renamed into place.
WORK_MARGIN = 64 << 20


@dataclass(frozen=True)
class Segment:
    """Frames [first, end) are kept; dreaming starts fresh at ``warm_from`` (<= first)."""

    id: int
    warm_from: int
    first: int
    end: int


def plan_segments(frames: int, shot_starts: list[int], chunk: int, warmup: int) -> list[Segment]:
    segments: list[Segment] = []
    bounds = [*shot_starts, frames]
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        first = s
        while first < e:
            end = e if not chunk or e - first <= chunk + chunk // 4 else first + chunk
            segments.append(Segment(len(segments), max(s, first - warmup) if first > s else s, first, end))
            first = end
    return segments


# --- the frame task (runs on a Dask worker) ----------------------------------------------------

_job_cache: dict[str, tuple[DreamConfig, VideoConfig]] = {}


def _settings(work_dir: str) -> tuple[DreamConfig, VideoConfig]:
    if work_dir not in _job_cache:
        job = WorkFolder(Path(work_dir)).read_job()
        if job is None:
            raise PipelineError(f"{work_dir}: job record missing (was the work folder removed?)")
        ident = job["identity"]
        _job_cache[work_dir] = (DreamConfig.from_mapping(ident["config"]), VideoConfig.from_mapping(ident["video"]))
    return _job_cache[work_dir]


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if arr is None:
        raise PipelineError(f"{path}: unreadable frame")
    return arr[..., ::-1].astype(np.float32) / 255.0


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    import cv2

    u8 = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(u8[..., ::-1]))
    if not ok:
        raise PipelineError(f"{path}: cannot encode frame")
    write_atomic(path, buf.tobytes())


def frame_task(work_dir: str, index: int, prev_dream: str | None, out: str, keep: bool, after: Any = None) -> dict:
    """Dream frame ``index`` into ``out``; start from ``prev_dream`` (a path) when given."""
    from dreamcore.coherence import optical_flow, start_frame
    from dreamcore.engine import Engine

    from .runtime import load_tensorflow, numerics
    from .schedule import check_stop

    out_path = Path(out)
    if out_path.exists():  # done before a restart: nothing to redo
        return {"index": index, "keep": keep, "skipped": True}
    load_tensorflow()
    cfg, vcfg = _settings(work_dir)
    work = WorkFolder(Path(work_dir))
    t0 = time.perf_counter()
    src = read_rgb(work.sub("src") / media.frame_name(index))
    flow_s = 0.0
    if prev_dream is None:
        start, iterations = src, cfg.iterations
    else:
        prev_src = read_rgb(work.sub("src") / media.frame_name(index - 1))
        prev = read_rgb(Path(prev_dream))
        tf0 = time.perf_counter()
        flow = optical_flow(prev_src, src) if vcfg.coherence == "flow" else None
        flow_s = time.perf_counter() - tf0
        start = start_frame(vcfg.coherence, src, prev_src, prev, vcfg.blend, vcfg.carry, flow)
        iterations = vcfg.followup_iterations

    td0 = time.perf_counter()
    dreamt = Engine(cfg).dream_rgb(start, progress=check_stop, iterations=iterations, seed_key=(index,))
    dream_s = time.perf_counter() - td0
    write_rgb(out_path, dreamt)
    work.log_event(f"dreamt {index} {'keep' if keep else 'warm'}")
    return {"index": index, "keep": keep, "skipped": False, "seconds": time.perf_counter() - t0,
            "flow_s": flow_s, "dream_s": dream_s, "layout": numerics()}


# --- the job (runs in the command's process) --------------------------------------------------

@dataclass
class VideoRequest:
    input: Path
    output: Path
    config: DreamConfig
    video: VideoConfig
    workdir: Path | None = None
    restart: bool = False
    keep_work: bool = False
    start: float | None = None
    duration: float | None = None
    frames: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    quiet: bool = False


def default_workdir(output: Path) -> Path:
    return output.parent / f".{output.name}.dreamreel-work"


def run_video(req: VideoRequest) -> dict[str, Any]:
    from .settings import resolve_noted

    info = media.probe(req.input)
    res = resolve_noted(req.config)
    work = WorkFolder((req.workdir or default_workdir(req.output)).resolve())
    identity = {
        "input": file_fingerprint(req.input),
        "range": {"start": req.start, "duration": req.duration, "frames": req.frames},
        "config": req.config.to_dict(),
        "video": req.video.to_dict(),
        "resolved": {"model": res.backbone.name, "weights": res.backbone.weights_name(res.weights),
                     "layers": res.layers},
    }
    with work.locked():
        job = work.check_same_job(identity, req.restart)
        if job is None:
            from .schedule import job_threads

            check_disk_space(work.path, planned_frames(info, req), *info.display_size)
            job = {"version": JOB_VERSION, "identity": identity, "probe": _probe_dict(info),
                   "numerics": {"threads": job_threads(req.workers, req.scheduler)}}
            work.write_job(job)
        timings: dict[str, float] = {}
        if "decoded" not in job:
            t0 = time.perf_counter()
            job["decoded"] = _decode(req, work)
            timings["decode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            job["plan"] = _plan(work, job["decoded"]["frames"], req.video)
            timings["cuts"] = time.perf_counter() - t0
            work.write_job(job)
        dec = job["decoded"]
        if dec["errors"]:
            log.warning("%s: %d decode errors (a damaged file?): dreaming the %d frames that decode",
                        req.input, dec["errors"], dec["frames"])
        t0 = time.perf_counter()
        layouts = LayoutLog(work, job)
        stats = _dream_frames(req, work, job, layouts)
        timings["frames"] = time.perf_counter() - t0
        if layouts.warning():
            log.warning(layouts.warning())
        t0 = time.perf_counter()
        _encode(req, work, job, info)
        timings["encode"] = time.perf_counter() - t0
        if not req.keep_work:
            work.remove()
    return {"frames": dec["frames"], "cuts": job["plan"]["shots"], "timings": timings, **stats}


def _probe_dict(info: media.SourceInfo) -> dict[str, Any]:
    d = asdict(info)
    d["fps"] = str(info.fps) if info.fps else None
    return d


def planned_frames(info: media.SourceInfo, req: VideoRequest) -> int:
    """How many frames the job will dream at most (counted from the packets when the header can't say)."""
    frames = info.estimated_frames()
    if frames is None:
        frames = media.count_frames(req.input)
    if req.frames:
        frames = min(frames, req.frames)
    elif req.duration and info.fps:
        frames = min(frames, max(1, round(req.duration * float(info.fps))))
    return frames


def work_bytes(frames: int, width: int, height: int) -> int:
    """Disk the work folder needs: every source frame and every dreamt frame as a PNG, and a margin."""
    return int(frames * width * height * 3 * 2 * PNG_RATIO) + WORK_MARGIN


def check_disk_space(path: Path, frames: int, width: int, height: int) -> None:
    need = work_bytes(frames, width, height)
    probe_dir = path if path.exists() else path.parent
    free = shutil.disk_usage(probe_dir).free
    if free < need:
        raise PipelineError(f"{probe_dir}: not enough disk space for the work folder: needs about "
                            f"{need / 1e9:.1f} GB for {frames} frames of {width}x{height}, {free / 1e9:.1f} GB free "
                            "(free some, or give --workdir on a bigger disk)")


def _decode(req: VideoRequest, work: WorkFolder) -> dict[str, Any]:
    part, final = work.sub("src.part"), work.sub("src")
    for d in (part, final):
        if d.exists():
            shutil.rmtree(d)
    part.mkdir()
    dec = media.decode(req.input, part, req.start, req.duration, req.frames)
    os.replace(part, final)
    return {"frames": dec.frames, "times": dec.times, "frame_rate": str(dec.frame_rate) if dec.frame_rate else None,
            "constant_rate": dec.is_constant_rate(), "errors": dec.errors, "last_duration": dec.last_duration}


def _plan(work: WorkFolder, frames: int, vcfg: VideoConfig) -> dict[str, Any]:
    import cv2

    from dreamcore.coherence import cut_features, cut_score, find_cuts

    scores = [0.0]
    prev = None
    for i in range(frames):
        bgr = cv2.imread(str(work.sub("src") / media.frame_name(i)), cv2.IMREAD_COLOR)
        feat = cut_features(bgr[..., ::-1])
        if prev is not None:
            scores.append(cut_score(prev, feat))
        prev = feat
    shots = find_cuts(scores, vcfg.scene_threshold, vcfg.min_scene_frames)
    segments = plan_segments(frames, shots, vcfg.chunk_frames, vcfg.warmup_frames)
    return {"shots": shots, "segments": [asdict(s) for s in segments]}


def _chains(work: WorkFolder, job: dict[str, Any], coherence: str) -> tuple[list[list[Any]], int]:
    """The tasks still to run, as chains; and how many kept frames are already done."""
    from .schedule import Task

    dream_dir, warm_dir = work.sub("dream"), work.sub("warm")
    dream_dir.mkdir(exist_ok=True)
    warm_dir.mkdir(exist_ok=True)
    wd = str(work.path)
    tag = job["identity"]["input"]["sha256_ends"][:8]
    done = {int(p.stem) for p in dream_dir.glob("*.png") if p.stem.isdigit()}
    chains: list[list[Any]] = []
    for seg in (Segment(**s) for s in job["plan"]["segments"]):
        if coherence == "none":
            chains += [[Task(f"frame-{tag}-{i}", frame_task, (wd, i, None, str(dream_dir / media.frame_name(i)), True))]
                       for i in range(seg.first, seg.end) if i not in done]
            continue
        # The chain restarts at the first kept frame not done (all before it are on disk).
        todo = next((i for i in range(seg.first, seg.end) if i not in done), None)
        if todo is None:
            continue
        begin = seg.warm_from if todo == seg.first else todo
        chain = []
        for i in range(begin, seg.end):
            keep = i >= seg.first
            out = dream_dir / media.frame_name(i) if keep else warm_dir / f"{seg.id}-{media.frame_name(i)}"
            if i == seg.warm_from:
                prev = None
            elif i - 1 >= seg.first:
                prev = str(dream_dir / media.frame_name(i - 1))
            else:
                prev = str(warm_dir / f"{seg.id}-{media.frame_name(i - 1)}")
            chain.append(Task(f"frame-{tag}-{seg.id}-{i}", frame_task, (wd, i, prev, str(out), keep)))
        chains.append(chain)
    return chains, len(done)


def _dream_frames(req: VideoRequest, work: WorkFolder, job: dict[str, Any], layouts: LayoutLog) -> dict[str, Any]:
    from tqdm import tqdm

    from .schedule import DeathGuard, check_shared_paths, dask_client, run_chains

    total = job["decoded"]["frames"]
    chains, already = _chains(work, job, req.video.coherence)
    dreamt = 0
    seconds: list[float] = []
    flow_s: list[float] = []
    dream_s: list[float] = []
    bar = tqdm(total=total, initial=already, unit="frame", desc=req.input.name, disable=req.quiet,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    if already:
        bar.set_postfix_str(f"{already} resumed", refresh=True)

    def on_result(r: dict[str, Any]) -> None:
        nonlocal dreamt
        if r.get("skipped"):
            return
        layouts.saw(r["layout"])
        seconds.append(r["seconds"])
        flow_s.append(r["flow_s"])
        dream_s.append(r["dream_s"])
        if r["keep"]:
            dreamt += 1
            bar.update(1)

    try:
        if chains:
            with dask_client(req.workers, req.scheduler, job["numerics"]["threads"]) as client:
                if req.scheduler:
                    check_shared_paths(client, req.input.resolve(), work.path)
                run_chains(client, chains, on_result, guard=DeathGuard(str(work.sub("attempts"))))
    finally:
        bar.close()
    return {"resumed": already, "dreamt": dreamt, "task_seconds": seconds, "flow_seconds": flow_s,
            "dream_seconds": dream_s}


def _encode(req: VideoRequest, work: WorkFolder, job: dict[str, Any], info: media.SourceInfo) -> None:
    from fractions import Fraction

    dec = job["decoded"]
    dream_dir = work.sub("dream")
    missing = [i for i in range(dec["frames"]) if not (dream_dir / media.frame_name(i)).exists()]
    if missing:
        raise PipelineError(f"{len(missing)} dreamt frames are missing (first: {missing[0]}); run again to redo them")
    tmp = req.output.parent / f".{req.output.name}.part{req.output.suffix}"
    rate = Fraction(dec["frame_rate"]) if dec["frame_rate"] else None
    audio_span = req.duration
    if req.frames:  # the audio of exactly the frames dreamt
        audio_span = dec["times"][-1] + (dec["last_duration"] or (1 / float(rate) if rate else 0.04))
    try:
        how = media.encode(dream_dir, dec["frames"], dec["times"], rate, dec["constant_rate"],
                           dec["last_duration"], tmp, req.input if info.has_audio else None, req.start,
                           audio_span)
        os.replace(tmp, req.output)
    finally:
        if tmp.exists():
            tmp.unlink()
    job["audio"] = how
