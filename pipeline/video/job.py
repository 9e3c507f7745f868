"""`dreamreel video`: a clip in, a dreamt clip out, on one machine or a Dask cluster, resumable.

The command's process plans (plan.py: one light pass over the clip, no frame written), then Dask
runs the job's tasks (frames.py: every frame is decoded, dreamt and stored by the worker that runs
its chain; every chunk is encoded where its frames are), then the command joins the chunks and the
source's audio by stream copy (media.join). The job's record, its frames in flight and its chunks
live in its store (store.py), a local folder or a URL: the only place workers and command share.

Resume: the store says what is done. Every chain continues from its last stored frame (or begins
again where nothing of it is stored: the same pixels), and every chunk not yet encoded is encoded.
Everything stored is checked when read (pipeline.job.integrity): a damaged or missing frame or chunk
is made again from the last good state, which may mean dreaming part of a segment again without
keeping it, only to carry its chain (``replay``); the joined film is checked against the plan,
frame count and times, before it is put in place.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.keyframes import Schedule
from pipeline import guide as guide_mod
from pipeline.cluster.schedule import Ref, Task, announce_dashboard
from pipeline.errors import PipelineError, Unwritable, UsageError
from pipeline.io import media
from pipeline.io.fsutil import publish, sync_file, temp_beside, temp_dir
from pipeline.job.record import (
    JOB_VERSION,
    LayoutLog,
    checked_copies,
    claim_apart,
    file_fingerprint,
    job_id,
    open_job,
    remove_work,
    undone_unless_dreamt,
    until_whole,
    write_record,
)
from pipeline.job.store import Store, is_url, redact
from pipeline.settings import check_keyframed_layers, identity_extras, pinned
from pipeline.video.plan import Chunk, Segment
from pipeline.video.tasks import (
    JobSpec,
    abort_local,
    check_store_shared,
    chunk_rel,
    chunk_task,
    config_for_workers,
    file_for_workers,
    frame_ext,
    frame_task,
    release_job,
)

log = logging.getLogger("dreamcore")


@dataclass
class VideoRequest:
    input: str  # a path, or a URL fsspec reads
    output: str  # a path, or a URL
    config: DreamConfig
    video: VideoConfig
    workdir: str | None = None
    restart: bool = False
    keep_work: bool = False
    keep_frames: bool = False
    start: float | None = None
    duration: float | None = None
    frames: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    quiet: bool = False
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    guide: str | None = None  # --guide: an image, or a clip whose frame at time t guides output time t
    guide_end: str = "loop"  # a guide clip shorter than the output: "loop" or "hold" its last frame
    overwrite: bool = False  # replace OUT when it exists (checked again before it is put in place)


def default_workdir(output: str) -> str:
    if is_url(output):
        parent, _, name = output.rstrip("/").rpartition("/")
        return f"{parent}/.{name}.dreamreel-work"
    p = Path(output)
    return str(p.parent / f".{p.name}.dreamreel-work")


def frame_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the command needs of a frame's result (not its pixels): runs where the result is."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local path of the input: itself, or a temporary download of a URL."""
    if not is_url(location):
        yield Path(location)
        return
    import fsspec

    with temp_dir("dreamreel-input") as tmp:
        target = Path(tmp) / (Path(location.rstrip("/")).name or "input")
        try:
            with fsspec.open(location, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        except FileNotFoundError:
            raise UsageError(f"{location}: no such file") from None
        except (OSError, ImportError, ValueError) as exc:
            raise UsageError(f"{location}: cannot read ({exc})") from None
        yield target


def run_video(req: VideoRequest) -> dict[str, Any]:
    with local_copy(req.input) as src:
        info = media.probe(src)
        if req.start and info.duration and req.start >= info.duration:
            raise UsageError(f"--start {req.start:g}: past the end of {redact(req.input)} ({info.duration:.2f} s long)")
        cfg = pinned(req.config)
        check_keyframed_layers(req.keyframes, cfg)
        store = Store(req.workdir or default_workdir(req.output))
        identity = {
            "input": file_fingerprint(src),
            "range": {"start": req.start, "duration": req.duration, "frames": req.frames},
            "config": cfg.to_dict(),
            "video": req.video.to_dict(),
            "keep_frames": req.keep_frames,  # how frames are stored: a resume must read them the same way
            **identity_extras(cfg),
        }
        if req.keyframes:
            identity["keyframes"] = req.keyframes.to_dict()
        still, clip = guide_mod.open_guide(req.guide) if req.guide else (None, None)
        if still is not None:
            identity["guide"] = {"image": still.digest}
        elif clip is not None:
            identity["guide"] = {"clip": file_fingerprint(clip), "end": req.guide_end}
        identity["input"]["path"] = redact(req.input)  # a job record may sit in a shared bucket
        claim_apart(store, req.output)
        with store.locked():
            job = open_job(store, identity, req.restart)
            with undone_unless_dreamt(store, job is None) as begun:
                store.sweep_partials()  # a kill mid-write (a chunk's copy, a frame) left a temporary file
                if job is None:
                    from pipeline.cluster.schedule import job_threads

                    job = {
                        "version": JOB_VERSION,
                        "identity": identity,
                        "probe": _probe_dict(info),
                        "numerics": {"threads": job_threads(req.workers, req.scheduler)},
                        "token": uuid.uuid4().hex,
                    }
                if "encoder_threads" not in job["numerics"]:  # a new job, or one begun before jobs recorded it
                    job["numerics"]["encoder_threads"] = media.encoder_threads()
                    write_record(store, job)
                store.write_bytes("token", job["token"].encode())
                timings: dict[str, float] = {}

                def attempt() -> tuple[dict[str, Any], str]:
                    if still is not None:
                        guide_mod.store_still(store, still)
                    elif clip is not None:
                        guide_mod.store_clip_times(store, clip)
                    stats = _dream(req, store, job, job_id(identity, store), src, info, timings, clip, begun)
                    t0 = time.perf_counter()
                    how = _assemble(req, store, job, src if info.has_audio else None)
                    timings["join"] = time.perf_counter() - t0
                    return stats, how

                stats, how = until_whole(store, attempt)
            if not req.keep_work:
                remove_work(store)
    plan = job["plan"]
    return {
        "frames": plan["frames"],
        "cuts": plan["shots"],
        "segments": len(plan["segments"]),
        "audio": how,
        "timings": timings,
        **stats,
    }


def nominal_fps(plan: dict[str, Any]) -> float:
    """Frames a second: the stream's rate, else the frames over their span (keyframes given in
    frame numbers read as times at this rate when mixed with keyframes in seconds)."""
    if plan.get("frame_rate"):
        return float(Fraction(plan["frame_rate"]))
    span = plan["pts"][-1] - plan["pts"][0]
    return (len(plan["pts"]) - 1) / span if span > 0 else 24.0


def check_keyframe_times(req: VideoRequest, plan: dict[str, Any]) -> None:
    if not req.keyframes:
        return
    from pipeline.video.plan import durations

    duration = plan["pts"][-1] - plan["pts"][0] + durations(plan)[-1]
    req.keyframes.check(req.config, req.video, plan["frames"], duration, nominal_fps(plan))


def _probe_dict(info: media.SourceInfo) -> dict[str, Any]:
    d = asdict(info)
    d["fps"] = str(info.fps) if info.fps else None
    return d


def _plan(req: VideoRequest, src: Path, info: media.SourceInfo, workers: int) -> dict[str, Any]:
    from pipeline.video import plan as p

    result, shots = p.scan(src, info, req.video, req.start, req.duration, req.frames)
    segments = p.plan_segments(result.frames, shots, workers, req.video.chunk_frames, req.video.overlap_frames)
    return p.plan_dict(result, shots, segments, p.plan_chunks(segments))


def check_store_space(
    store: Store, plan: dict[str, Any], size: tuple[int, int], workers: int, keep_frames: bool
) -> None:
    from pipeline.video.plan import store_bound

    if not store.local:
        return  # an object store: no disk of ours fills up
    in_flight = max(1, min(len(plan["segments"]), workers))
    overlap = max((s["first"] - s["warm_from"] for s in plan["segments"]), default=0)
    need = store_bound(plan["frames"], *size, in_flight, overlap, keep_frames)
    probe_dir = Path(store.url)
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    free = shutil.disk_usage(probe_dir).free
    if free < need:
        raise Unwritable(
            f"{probe_dir}: not enough disk space for the work folder: needs about "
            f"{need / 1e9:.2f} GB ({plan['frames']} frames of {size[0]}x{size[1]}, {in_flight} "
            f"segments at a time), {free / 1e9:.2f} GB free (free some, or give --workdir "
            "on a bigger disk)"
        )


def _dream(
    req: VideoRequest,
    store: Store,
    job: dict[str, Any],
    name: str,
    src: Path,
    info: media.SourceInfo,
    timings: dict[str, float],
    clip: Path | None = None,
    begun: dict[str, bool] | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    from pipeline.cluster.schedule import DeathGuard, dask_client, run_graph

    layouts = LayoutLog(lambda j: write_record(store, j), job)
    parts = ("task", "decode", "flow", "dream", "steps", "store")
    stats: dict[str, Any] = {
        "dreamt": 0,
        "resumed": 0,
        "ahead": 0,
        "chunk_seconds": [],
        "chunks_streamed": [],
        "followups": [],
        "steps": [],
        **{f"{part}_seconds": [] for part in parts},
    }
    with dask_client(req.workers, req.scheduler, job["numerics"]["threads"]) as client:
        workers = len(client.scheduler_info().get("workers", {})) or 1
        if req.scheduler:
            announce_dashboard(client)
        if "plan" not in job:
            t0 = time.perf_counter()
            plan = _plan(req, src, info, workers)
            check_keyframe_times(req, plan)
            job["plan"] = plan
            timings["plan"] = time.perf_counter() - t0
            check_store_space(store, job["plan"], info.display_size, workers, req.keep_frames)
            write_record(store, job)
        plan = job["plan"]
        if plan["errors"]:
            log.warning(
                "%s: %d decode errors (a damaged file?): dreaming the %d frames that decode",
                redact(req.input),
                plan["errors"],
                plan["frames"],
            )
        if req.scheduler:
            check_store_shared(client, store, job["token"])
        workers_input = _input_for_workers(client, req, store, src) if req.scheduler else str(src)
        guide = job["identity"].get("guide", {})
        guide_clip = None
        if clip is not None:
            where = file_for_workers(client, store, clip, "guide") if req.scheduler else str(clip.resolve())
            guide_clip = guide_mod.GuideClip(
                path=where, key=guide["clip"]["sha256_ends"][:16], size=media.probe(clip).display_size, end=guide["end"]
            )
        spec = JobSpec(
            id=name,
            store=store,
            token=job["token"],
            input=workers_input,
            input_key=job["identity"]["input"]["sha256_ends"][:16],
            size=info.display_size,
            config=config_for_workers(client, store, job["identity"]["config"])
            if req.scheduler
            else job["identity"]["config"],
            video=job["identity"]["video"],
            rate=plan["frame_rate"] if plan["constant_rate"] else None,
            keep_frames=req.keep_frames,
            keyframes=job["identity"].get("keyframes", {}),
            t0=plan["pts"][0],
            fps=nominal_fps(plan),
            guide=guide.get("image"),
            guide_clip=guide_clip,
            encoder_threads=job["numerics"]["encoder_threads"],
        )
        tasks, done, kept = _graph(spec, store, plan, uuid.uuid4().hex[:6], None if req.scheduler else workers)
        stats["resumed"] = len(done)
        stats["replayed"] = 0
        bar = tqdm(
            total=plan["frames"],
            initial=len(done),
            unit="frame",
            desc=Path(req.input).name,
            disable=req.quiet,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        if done:
            bar.set_postfix_str(f"{len(done)} resumed", refresh=True)

        def on_result(r: dict[str, Any]) -> None:
            if "chunk" in r:
                stats["chunk_seconds"].append(r["seconds"])
                stats["chunks_streamed"].append(r["streamed"])
                store.log(f"encoded {r['chunk']}")
                return
            for note in r.get("notes", []):
                bar.write(f"dreamreel: warning: {note}", file=sys.stderr)
            if not r["skipped"] and r["replay"]:
                store.log(f"replayed {r['seg']} {r['index']}")
                stats["replayed"] += 1
            elif not r["skipped"]:
                store.log(f"dreamt {r['seg']} {r['index']}")
                layouts.saw(r["layout"])
                stats["task_seconds"].append(r["seconds"])
                stats["steps"].append(r["steps"])
                for part in parts[1:]:  # the task's own seconds are "seconds"
                    stats[f"{part}_seconds"].append(r[f"{part}_s"])
                if not r["fresh"]:
                    stats["followups"].append((r["seconds"], r["steps_s"], r["store_s"]))
                    stats["ahead"] += r["ahead"]
                stats["dreamt"] += (r["seg"], r["index"]) in kept
            if (r["seg"], r["index"]) in kept and r["index"] not in done:
                done.add(r["index"])
                bar.update(1)

        t0 = time.perf_counter()
        if begun is not None:
            begun["dreaming"] = True
        try:
            if tasks:
                run_graph(client, tasks, on_result, guard=DeathGuard(store, "attempts"))
        except KeyboardInterrupt:
            abort_local()  # the in-process worker's encoders and decoders (a local cluster's stop with it)
            raise
        except BaseException:
            _release(client, name, req.scheduler is None)  # a failed job's encoders and their partial chunks
            raise
        finally:
            bar.close()
        timings["frames"] = time.perf_counter() - t0
    if layouts.warning():
        log.warning(layouts.warning())
    return stats


def _release(client: Any, name: str, local: bool) -> None:
    """End a failed job's encoders and decoders, here and on a local cluster's workers (bounded)."""
    release_job(name)
    if local:
        with contextlib.suppress(Exception):
            client.run(release_job, name, wait=True, on_error="ignore")


def _input_for_workers(client: Any, req: VideoRequest, store: Store, src: Path) -> str:
    """Where the cluster's workers read the clip: its URL, or :func:`file_for_workers`."""
    if is_url(req.input):
        return req.input
    return file_for_workers(client, store, src, "input")


def _graph(
    spec: JobSpec, store: Store, plan: dict[str, Any], run: str, in_flight: int | None = None
) -> tuple[list[Task], set[int], set[tuple[int, int]]]:
    """The tasks still to run, in the order Dask should prefer them; the output frames already done;
    and every output frame as (segment, index). Segments come in their start order, each one's frame
    tasks in order, each chunk's task right after its last frame (so chunks are encoded, and their
    frames dropped, as the chain goes); a chunk that cross-fades into the next segment comes after
    that segment's last warm frame.

    ``in_flight``: chains dreamt at once (a local cluster: one a worker, its one dream slot), each
    chain's first frame waiting for the end of the chain that many before it; None: no limit (a
    cluster the command did not start). Without it a local worker took the next chain's frame
    whenever its chain's next frame was not ready yet, so two chains took turns, frame by frame:
    two x264 encoders filling their look-ahead at once and draining at once, the dream starved
    while they drain (`python -m benchmarks.serial --frames 240`, 4 shots)."""
    from pipeline.video.plan import durations, start_order

    segments = [Segment(**s) for s in plan["segments"]]
    chunks = [Chunk(**c) for c in plan["chunks"]]
    pts = plan["pts"]
    dur = durations(plan)
    chunks_done = set(store.names("chunks"))
    done: set[int] = set()
    kept = {(s.id, i) for s in segments for i in range(s.first, s.end)}
    for c in chunks:
        if c.name in chunks_done:
            done.update(range(c.first, c.end))
    ext = frame_ext(spec)
    stored = {s.id: frame_indexes(store.names(f"frames/{s.id:04d}"), ext) for s in segments}
    for s in segments:
        done.update(i for i in stored[s.id] if i >= s.first)
    fresh_always = spec.video["coherence"] == "none"

    def key(kind: str, seg: int, i: int) -> str:
        return f"dreamreel-{spec.id}-{run}-{kind}{seg}-{i}"

    # The frames whose pixels a chunk not yet encoded takes: its own, and the warm frames of the
    # next segment that it cross-fades. A chain runs to the last of them (need).
    wanted: dict[int, set[int]] = {s.id: set() for s in segments}
    for c in chunks:
        if c.name not in chunks_done:
            wanted[c.seg].update(range(c.first, c.end))
            if c.blend is not None:
                nxt = segments[c.blend]
                wanted[nxt.id].update(range(nxt.warm_from, nxt.first))
    need = {s.id: max(wanted[s.id], default=s.warm_from - 1) + 1 for s in segments}
    submitted: set[str] = set()
    tasks: list[Task] = []
    deferred: dict[str, list[Task]] = {}  # blend chunks, waiting for the next segment's warm frame

    def add(task: Task) -> None:
        tasks.append(task)
        submitted.add(task.key)
        for later in deferred.pop(task.key, []):
            add(later)

    def add_chunk(c: Chunk) -> None:
        seg = segments[c.seg]
        deps = [key("f", c.seg, c.end - 1)]
        blend = None
        if c.blend is not None:
            nxt = segments[c.blend]
            blend = asdict(nxt)
            deps.append(key("f", nxt.id, nxt.first - 1))
        refs = [Ref(k) for k in deps if k in planned]
        task = Task(
            key("c", c.seg, c.first),
            chunk_task,
            (spec, asdict(c), asdict(seg), blend, dur[c.first : c.end]),
            {"after": refs},
            light=True,
        )
        waiting = next((k for k in deps if k in planned and k not in submitted), None)
        if waiting:  # after the task it waits for, which is not in the list yet
            deferred.setdefault(waiting, []).append(task)
        else:
            add(task)

    planned: set[str] = set()
    chains: dict[int, list[int]] = {}
    replay: set[tuple[int, int]] = set()
    for s in segments:
        chains[s.id], again = _chain(s, wanted[s.id], set(stored[s.id]))
        replay.update((s.id, i) for i in again)
        planned.update(key("f", s.id, i) for i in chains[s.id])
    chunk_by_end = {}
    chunk_of = {}  # (segment, frame) -> the chunk still to encode that the frame ends up in
    for c in chunks:
        if c.name not in chunks_done:
            chunk_by_end.setdefault((c.seg, c.end - 1), []).append(c)
            chunk_of.update({(c.seg, i): c for i in range(c.first, c.end)})
            if c.blend is not None:  # the next segment's warm frames end up in this chunk too
                nxt = segments[c.blend]
                chunk_of.update({(nxt.id, i): c for i in range(nxt.warm_from, nxt.first)})
    ends: list[str] = []  # each chain's last frame task, in start order
    for s in start_order(segments):
        # Chunks whose frames are all stored already can be encoded at once.
        for c in chunks:
            if c.seg == s.id and c.name not in chunks_done and key("f", s.id, c.end - 1) not in planned:
                add_chunk(c)
        for i in chains[s.id]:
            fresh = fresh_always or i == s.warm_from
            prev_key = key("f", s.id, i - 1)
            # Every mode chains (a chunk waits for its last frame; frames decode in order); a fresh
            # frame ignores what it is given.
            prev = Ref(prev_key) if prev_key in planned else None
            c = chunk_of.get((s.id, i))
            out = c is not None and c.seg == s.id  # an output frame of this segment (not a warm frame)
            streamed = (asdict(c), dur[c.first : c.end]) if out and c.blend is None else (None, None)
            after = None
            if i == chains[s.id][0] and in_flight is not None and len(ends) >= in_flight:
                after = Ref(f"{ends[-in_flight]}-summary")
            add(
                Task(
                    key("f", s.id, i),
                    frame_task,
                    (
                        spec,
                        s.id,
                        i,
                        pts[i],
                        fresh,
                        prev,
                        None if fresh else pts[i - 1],
                        i == need[s.id] - 1,
                        *streamed,
                        c.name if c is not None else None,
                    ),
                    {
                        "next_pts": pts[i + 1] if (i + 1 < need[s.id] and not fresh_always) else None,
                        "after": after,
                        "replay": (s.id, i) in replay,
                    },
                    summary=frame_summary,
                )
            )
            for c in chunk_by_end.get((s.id, i), []):
                add_chunk(c)
        if chains[s.id]:
            ends.append(key("f", s.id, chains[s.id][-1]))
    leftover = [t.key for ts in deferred.values() for t in ts]
    if leftover:
        raise PipelineError(f"internal: tasks never scheduled: {leftover[:3]}")
    return tasks, done, kept


def frame_indexes(names: list[str], ext: str) -> list[int]:
    """The indexes of the stored frames among a folder's names (``000012.rgb`` for ``ext`` rgb);
    any other name is not a frame of the job's, whoever put it there."""
    import re

    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(rf"(\d{{6}})\.{ext}", n)))


def _chain(s: Segment, wanted: set[int], stored: set[int]) -> tuple[list[int], list[int]]:
    """The frames segment ``s`` must dream, in order, so that every frame in ``wanted`` (those a
    chunk still to encode takes) is stored or dreamt, given the frames ``stored``; and which of them
    are dreamt only to carry the chain (a replay: no chunk still takes them, so they are kept
    nowhere).

    The chain starts at the first wanted frame that is not stored, going on from the stored frame
    before it; stored frames after it (after a damaged one removed, say) are read back on the way,
    not dreamt again. When the frame before it is gone too (a damaged chunk encoded again, or the
    frame a chain goes on from lost), the chain starts again from the last stored frame before it,
    or from the segment's fresh start: every frame is a function of the one before, so that gives
    the same pixels."""
    missing = sorted(wanted - stored)
    if not missing:
        return [], []
    begin, need = missing[0], max(wanted) + 1
    start = begin
    if begin > s.warm_from and begin - 1 not in stored:
        below = [i for i in stored if s.warm_from <= i < begin - 1]
        start = max(below) + 1 if below else s.warm_from
    chain = list(range(start, need))
    return chain, [i for i in chain if i not in wanted and i not in stored]


def _assemble(req: VideoRequest, store: Store, job: dict[str, Any], audio_from: Path | None) -> str:
    """Join the chunks and the audio into the output, checked against the plan (frame count and
    times) before it is renamed into place. A damaged or missing chunk raises
    :class:`~pipeline.job.integrity.Damaged` (the job encodes it again); an OUT that appeared while the
    job ran is kept unless ``--overwrite``."""
    from fractions import Fraction

    from pipeline.video.plan import durations

    plan = job["plan"]
    chunks = sorted((Chunk(**c) for c in plan["chunks"]), key=lambda c: c.first)
    dur = durations(plan)
    pts = plan["pts"]
    span = req.duration
    if req.frames:  # the audio of exactly the frames dreamt
        span = pts[-1] - pts[0] + dur[-1]
    rate = Fraction(plan["frame_rate"]) if plan["constant_rate"] else None
    spans = [sum(dur[c.first : c.end]) for c in chunks]
    last = (pts[-1] - pts[0], dur[-1])
    with temp_dir("dreamreel-join") as tmp:
        files = checked_copies(store, [chunk_rel(c.name) for c in chunks], Path(tmp))
        if is_url(req.output):
            out = Path(tmp) / f"out{Path(req.output).suffix}"
        else:
            out = temp_beside(Path(req.output))
        try:
            how = join_film(
                files,
                out,
                req.output,
                store,
                plan,
                req.overwrite,
                audio_from,
                req.start,
                span,
                rate,
                spans,
                last,
                Path(tmp),
            )
        finally:
            out.unlink(missing_ok=True)
    return how


def join_film(
    files: list[Path],
    out: Path,
    output: str,
    store: Store,
    plan: dict[str, Any],
    overwrite: bool,
    audio_from: Path | None,
    start: float | None,
    span: float | None,
    rate: Any,
    spans: list[float],
    last: tuple[float, float] | None,
    work: Path,
) -> str:
    """Join the chunks into ``out`` (a temporary name), check the film against the plan, and put it
    in place at ``output`` (a path, renamed into place durably and never over a file that appeared
    there without ``overwrite``; or a URL, uploaded). Returns how the audio went."""
    if not is_url(output):
        _check_room(out.parent, sum(f.stat().st_size for f in files), store)
    try:
        how = media.join(files, out, audio_from, start, span, rate, spans, last, work, len(plan["pts"]))
    except media.FFmpegError as exc:
        if exc.fault:
            raise Unwritable(
                f"{redact(output)}: cannot write the film ({exc.fault}): free some space and run the "
                f"same command again: the dreamt chunks are kept in {redact(store.url)}"
            ) from None
        raise
    check_film(out, plan, output)
    if is_url(output):
        _upload(out, output, overwrite, store)
        return how
    sync_file(out)
    try:
        publish(out, Path(output), overwrite)
    except FileExistsError:
        raise UsageError(
            f"{output}: appeared while the job ran, and is kept (pass --overwrite to replace it, or "
            f"give another -o with --workdir {redact(store.url)}: the dreamt chunks are kept "
            "there)"
        ) from None
    return how


def check_film(path: Path, plan: dict[str, Any], name: str) -> None:
    """The joined film holds the plan's frames, each at its time (within a quarter of the shortest
    frame): a missing or cut-short chunk can't pass for a whole film."""
    times = media.packet_times(path)
    want = [t - plan["pts"][0] for t in plan["pts"]]
    if len(times) != len(want):
        raise PipelineError(
            f"{redact(name)}: not written: the joined film has {len(times)} frames where the job "
            f"dreamt {len(want)} (run the same command again; DREAMREEL_DEBUG=1 and report it if "
            "it happens again)"
        )
    gaps = [b - a for a, b in zip(want, want[1:], strict=False) if b > a]
    tol = max(0.25 * min(gaps, default=0.04), 1e-4)
    off = next((i for i in range(len(want)) if abs(times[i] - (times[0] + want[i])) > tol), None)
    if off is not None:
        raise PipelineError(
            f"{redact(name)}: not written: in the joined film frame {off} is at "
            f"{times[off] - times[0]:.6f} s where it belongs at {want[off]:.6f} s (DREAMREEL_DEBUG=1 "
            "and report it)"
        )


def _check_room(folder: Path, need: int, store: Store) -> None:
    """Refuse a join that can't fit in OUT's folder, before ffmpeg half-writes it."""
    free = shutil.disk_usage(folder).free
    need = int(need * 1.02) + (4 << 20)  # the chunks, plus the audio and the container's index
    if free < need:
        raise Unwritable(
            f"{folder}: not enough space for the film (about {need / 1e6:.0f} MB, {free / 1e6:.0f} MB "
            f"free): free some and run the same command again: the dreamt chunks are kept in "
            f"{redact(store.url)}"
        )


def _upload(local: Path, url: str, overwrite: bool, store: Store) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if not overwrite and fs.exists(path):
        raise UsageError(
            f"{redact(url)}: appeared while the job ran, and is kept (pass --overwrite to replace it, "
            f"or give another -o with --workdir {redact(store.url)}: the dreamt chunks are kept there)"
        )
    fs.put_file(str(local), path)
