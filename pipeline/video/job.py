"""`dreamreel video`: a clip in, a dreamt clip out, on one machine or a Dask cluster, resumable.

The command's process plans (video/plan.py: one light pass over the clip, no frame written), then
Dask runs the job's tasks (video/graph.py orders them, video/tasks.py runs them: every frame is
decoded, dreamt and stored by the worker that runs its chain; every chunk is encoded where its
frames are), then the chunks and the source's audio are joined by stream copy (job/assemble.py).
The job's record, its frames in flight and its chunks live in its store (job/store.py), a local
folder or a URL: the only place workers and command share. The job's life in its work folder
(claim, record, repairs, removal) is job/session.py's, as for every command.

Resume: the store says what is done. Every chain continues from its last stored frame (or begins
again where nothing of it is stored: the same pixels), and every chunk not yet encoded is encoded.
Everything stored is checked when read (job/integrity.py): a damaged or missing frame or chunk is
made again from the last good state, which may mean dreaming part of a segment again without
keeping it, only to carry its chain (``replay``); the joined film is checked against the plan,
frame count and times, before it is put in place.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.keyframes import Schedule
from dreamcore.sequence import Sequence
from pipeline import guide as guide_mod
from pipeline.cluster.client import announce_dashboard, dask_client, job_threads
from pipeline.cluster.schedule import DeathGuard, run_graph
from pipeline.cluster.workers import (
    abort_local,
    check_store_shared,
    config_for_workers,
    file_for_workers,
    release_job,
)
from pipeline.errors import Unwritable, UsageError
from pipeline.io import media
from pipeline.job.assemble import assemble
from pipeline.job.locations import default_workdir, local_path
from pipeline.job.record import file_fingerprint, until_whole
from pipeline.job.session import Session, job_session
from pipeline.job.store import Store, is_url, redact
from pipeline.progress import Reporter
from pipeline.settings import check_keyframed_layers, identity_extras, pinned
from pipeline.video.graph import build_graph, stored_of
from pipeline.video.plan import Plan, plan_chunks, plan_segments, scan, store_bound
from pipeline.video.tasks import ChunkResult, FrameResult, JobSpec

log = logging.getLogger("dreamcore")


@dataclass
class VideoRequest:
    """A video job: the clip, the film to write, how to dream it, and where the work is kept."""

    input: str  # a path, or a URL fsspec reads
    output: str  # a path, or a URL
    config: DreamConfig = field(default_factory=DreamConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    workdir: str | None = None  # the job's store (default: a hidden folder beside the output)
    restart: bool = False  # discard the work of an earlier run of the job
    keep_work: bool = False  # keep the work folder after success
    keep_frames: bool = False  # keep every dreamt frame (as PNG) in the work folder
    start: float | None = None  # seconds into the clip
    duration: float | None = None  # seconds of the clip
    frames: int | None = None  # frames of the clip
    workers: int | None = None  # local worker processes
    scheduler: str | None = None  # an existing Dask cluster's scheduler (tcp://HOST:PORT)
    quiet: bool = False
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    guide: str | None = None  # --guide: an image, or a clip whose frame at time t guides output time t
    guide_end: str = "loop"  # a guide clip shorter than the output: "loop" or "hold" its last frame
    overwrite: bool = False  # replace OUT when it exists (checked again before it is put in place)


@dataclass(frozen=True)
class VideoResult:
    """What a finished video job did."""

    output: str
    frames: int  # in the film
    shots: tuple[int, ...]  # the first frame of every shot
    segments: int  # chains the frames were dreamt in
    dreamt: int  # frames dreamt by this run
    resumed: int  # frames found done when it began
    replayed: int  # frames dreamt again, kept nowhere, only to reach what was damaged
    audio: str  # how the audio went ("audio copied", "no audio", ...)
    seconds: float
    timings: dict[str, float]  # plan, frames, join
    details: dict[str, Any]  # per-task seconds and counts (benchmarks.video, benchmarks.serial)


def _identity(req: VideoRequest, src: Path, cfg: DreamConfig, guide: tuple[Any, Path | None]) -> dict[str, Any]:
    """What the job is: another identity in the same work folder is another job."""
    identity: dict[str, Any] = {
        "input": file_fingerprint(src),
        "range": {"start": req.start, "duration": req.duration, "frames": req.frames},
        "config": cfg.to_dict(),
        "video": req.video.to_dict(),
        "keep_frames": req.keep_frames,  # how frames are stored: a resume must read them the same way
        **identity_extras(cfg),
    }
    if req.keyframes:
        identity["keyframes"] = req.keyframes.to_dict()
    still, clip = guide
    if still is not None:
        identity["guide"] = {"image": still.digest}
    elif clip is not None:
        identity["guide"] = {"clip": file_fingerprint(clip), "end": req.guide_end}
    identity["input"]["path"] = redact(req.input)  # a job record may sit in a shared bucket
    return identity


def run_video(req: VideoRequest, report: Reporter | None = None) -> VideoResult:
    """Dream the clip (resuming the job in its work folder), join the film, remove the work folder
    unless it is kept. ``report`` gets the job's progress."""
    t_start = time.perf_counter()
    report = report or Reporter("video", None, Path(req.input).name)
    with local_path(req.input) as src:
        info = media.probe(src)
        if req.start and info.duration and req.start >= info.duration:
            raise UsageError(f"--start {req.start:g}: past the end of {redact(req.input)} ({info.duration:.2f} s long)")
        cfg = pinned(req.config)
        check_keyframed_layers(req.keyframes, cfg)
        store = Store(req.workdir or default_workdir(req.output))
        guide = guide_mod.open_guide(req.guide) if req.guide else (None, None)
        identity = _identity(req, src, cfg, guide)
        timings: dict[str, float] = {}
        with job_session(
            store,
            identity,
            restart=req.restart,
            output=req.output,
            threads=job_threads(req.workers, req.scheduler),
            encodes=True,
            keep_work=req.keep_work,
        ) as session:

            def attempt() -> tuple[dict[str, Any], str]:
                still, clip = guide
                if still is not None:
                    guide_mod.store_still(store, still)
                elif clip is not None:
                    guide_mod.store_clip_times(store, clip)
                stats = _dream(req, session, src, info, timings, clip, report)
                t0 = time.perf_counter()
                report.stage("join")
                how = _assemble(req, session, src if info.has_audio else None)
                timings["join"] = time.perf_counter() - t0
                return stats, how

            stats, how = until_whole(store, attempt)
        assert session.record.plan is not None
        plan = Plan.from_dict(session.record.plan)
    report.stage("done")
    return VideoResult(
        output=req.output,
        frames=plan.frames,
        shots=plan.shots,
        segments=len(plan.segments),
        dreamt=stats["dreamt"],
        resumed=stats["resumed"],
        replayed=stats["replayed"],
        audio=how,
        seconds=time.perf_counter() - t_start,
        timings=timings,
        details={**stats, "timings": timings},
    )


def check_keyframe_times(req: VideoRequest, plan: Plan) -> None:
    if req.keyframes:
        req.keyframes.check(req.config, req.video, plan.frames, plan.span, plan.nominal_fps)


def _probe_dict(info: media.SourceInfo) -> dict[str, Any]:
    d = asdict(info)
    d["fps"] = str(info.fps) if info.fps else None
    return d


def _plan(req: VideoRequest, src: Path, info: media.SourceInfo, workers: int) -> Plan:
    result, shots = scan(src, info, req.video, req.start, req.duration, req.frames)
    segments = plan_segments(result.frames, shots, workers, req.video.chunk_frames, req.video.overlap_frames)
    return Plan.from_scan(result, shots, segments, plan_chunks(segments))


def check_store_space(store: Store, plan: Plan, size: tuple[int, int], workers: int, keep_frames: bool) -> None:
    if not store.local:
        return  # an object store: no disk of ours fills up
    in_flight = max(1, min(len(plan.segments), workers))
    overlap = max((s.first - s.warm_from for s in plan.segments), default=0)
    need = store_bound(plan.frames, *size, in_flight, overlap, keep_frames)
    probe_dir = Path(store.url)
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    free = shutil.disk_usage(probe_dir).free
    if free < need:
        raise Unwritable(
            f"{probe_dir}: not enough disk space for the work folder: needs about "
            f"{need / 1e9:.2f} GB ({plan.frames} frames of {size[0]}x{size[1]}, {in_flight} "
            f"segments at a time), {free / 1e9:.2f} GB free (free some, or give --workdir "
            "on a bigger disk)"
        )


PARTS = ("task", "decode", "flow", "dream", "steps", "store")


class _Tally:
    """The results of a run's tasks as they come: progress, the events log, the record's layouts."""

    def __init__(self, session: Session, report: Reporter, done: set[int], kept: set[tuple[int, int]]):
        self.session, self.report, self.done, self.kept = session, report, done, kept
        self.layouts = session.layouts()
        self.stats: dict[str, Any] = {
            "dreamt": 0,
            "resumed": len(done),
            "replayed": 0,
            "ahead": 0,
            "chunk_seconds": [],
            "chunks_streamed": [],
            "followups": [],
            "steps": [],
            **{f"{part}_seconds": [] for part in PARTS},
        }

    def __call__(self, r: FrameResult | ChunkResult) -> None:
        store, stats = self.session.store, self.stats
        if isinstance(r, ChunkResult):
            stats["chunk_seconds"].append(r.seconds)
            stats["chunks_streamed"].append(r.streamed)
            store.log(f"encoded {r.chunk}")
            return
        for note in r.notes:
            self.report.note(f"dreamreel: warning: {note}")
        if not r.skipped and r.replay:
            store.log(f"replayed {r.seg} {r.index}")
            stats["replayed"] += 1
        elif not r.skipped:
            self._dreamt(r)
        if (r.seg, r.index) in self.kept and r.index not in self.done:
            self.done.add(r.index)
            self.report.advance()

    def _dreamt(self, r: FrameResult) -> None:
        stats = self.stats
        self.session.store.log(f"dreamt {r.seg} {r.index}")
        self.layouts.saw(r.layout)
        stats["task_seconds"].append(r.seconds)
        stats["steps"].append(r.steps)
        for part in PARTS[1:]:  # the task's own seconds are "seconds"
            stats[f"{part}_seconds"].append(getattr(r, f"{part}_s"))
        if not r.fresh:
            stats["followups"].append((r.seconds, r.steps_s, r.store_s))
            stats["ahead"] += r.ahead
        stats["dreamt"] += (r.seg, r.index) in self.kept


def _job_spec(
    req: VideoRequest, session: Session, client: Any, src: Path, info: media.SourceInfo, clip: Path | None
) -> JobSpec:
    """What every task of this run carries: the files made visible to the cluster's workers."""
    record, store = session.record, session.store
    assert record.plan is not None
    plan = Plan.from_dict(record.plan)
    identity = record.identity
    remote = req.scheduler is not None
    config = DreamConfig.from_mapping(identity["config"])
    if remote:
        config = DreamConfig.from_mapping(config_for_workers(client, store, identity["config"]))
    guide = identity.get("guide", {})
    guide_clip = None
    if clip is not None:
        where = file_for_workers(client, store, clip, "guide") if remote else str(clip.resolve())
        guide_clip = guide_mod.GuideClip(
            path=where, key=guide["clip"]["sha256_ends"][:16], size=media.probe(clip).display_size, end=guide["end"]
        )
    return JobSpec(
        id=session.id,
        store=store,
        token=record.token,
        input=(req.input if is_url(req.input) else file_for_workers(client, store, src, "input"))
        if remote
        else str(src),
        input_key=identity["input"]["sha256_ends"][:16],
        size=info.display_size,
        sequence=Sequence(
            config,
            VideoConfig.from_mapping(identity["video"]),
            Schedule.from_dict(identity.get("keyframes", {})),
            plan.nominal_fps,
        ),
        rate=plan.frame_rate if plan.constant_rate else None,
        keep_frames=req.keep_frames,
        t0=plan.pts[0],
        guide=guide.get("image"),
        guide_clip=guide_clip,
        encoder_threads=record.numerics.encoder_threads,
    )


def _dream(
    req: VideoRequest,
    session: Session,
    src: Path,
    info: media.SourceInfo,
    timings: dict[str, float],
    clip: Path | None,
    report: Reporter,
) -> dict[str, Any]:
    store = session.store
    with dask_client(req.workers, req.scheduler, session.record.numerics.threads) as client:
        workers = len(client.scheduler_info().get("workers", {})) or 1
        if req.scheduler:
            announce_dashboard(client)
        if session.record.plan is None:
            t0 = time.perf_counter()
            report.stage("plan")
            new_plan = _plan(req, src, info, workers)
            check_keyframe_times(req, new_plan)
            timings["plan"] = time.perf_counter() - t0
            check_store_space(store, new_plan, info.display_size, workers, req.keep_frames)
            session.save(replace(session.record, probe=_probe_dict(info), plan=new_plan.to_dict()))
        assert session.record.plan is not None
        plan = Plan.from_dict(session.record.plan)
        if plan.errors:
            log.warning(
                "%s: %d decode errors (a damaged file?): dreaming the %d frames that decode",
                redact(req.input),
                plan.errors,
                plan.frames,
            )
        if req.scheduler:
            check_store_shared(client, store, session.record.token)
        spec = _job_spec(req, session, client, src, info, clip)
        graph = build_graph(
            spec, plan, stored_of(spec.frames, plan), uuid.uuid4().hex[:6], None if req.scheduler else workers
        )
        tally = _Tally(session, report, graph.done, graph.kept)
        report.stage("dream", plan.frames, len(graph.done))
        t0 = time.perf_counter()
        session.dreaming()
        try:
            if graph.tasks:
                run_graph(client, graph.tasks, tally, guard=DeathGuard(store, "attempts"))
        except KeyboardInterrupt:
            abort_local()  # the in-process worker's encoders and decoders (a local cluster's stop with it)
            raise
        except BaseException:
            _release(client, spec.id, req.scheduler is None)  # a failed job's encoders and their partial chunks
            raise
        timings["frames"] = time.perf_counter() - t0
    warning = tally.layouts.warning()
    if warning:
        log.warning(warning)
    return tally.stats


def _release(client: Any, name: str, local: bool) -> None:
    """End a failed job's encoders and decoders, here and on a local cluster's workers (bounded)."""
    release_job(name)
    if local:
        with contextlib.suppress(Exception):
            client.run(release_job, name, wait=True, on_error="ignore")


def _assemble(req: VideoRequest, session: Session, audio_from: Path | None) -> str:
    """Join the chunks and the audio into the output, checked against the plan (frame count and
    times) before it is put in place."""
    assert session.record.plan is not None
    plan = Plan.from_dict(session.record.plan)
    chunks = sorted(plan.chunks, key=lambda c: c.first)
    dur = plan.durations()
    pts = plan.pts
    span = req.duration
    if req.frames:  # the audio of exactly the frames dreamt
        span = plan.span
    film = media.Film(
        rate=plan.rate,
        spans=tuple(sum(dur[c.first : c.end]) for c in chunks),
        times=tuple(pts),
        last=(pts[-1] - pts[0], dur[-1]),
    )
    sound = media.Sound(audio_from, req.start, span)
    return assemble(session.store, [c.name for c in chunks], req.output, film, sound, req.overwrite)
