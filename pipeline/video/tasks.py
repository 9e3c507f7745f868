"""What runs on the Dask workers for `dreamreel video`: dream a frame, encode a chunk.

Workers reach a job only through what its tasks carry (:class:`JobSpec`) and its store: never
through the command's own paths. A frame task decodes its source frame itself (each worker keeps a
decoder open per segment, reading on in order; a frame out of order seeks), dreams it from the
previous frame's dream, which it receives in memory as the previous task's result, saves it to the
store (so a killed job resumes from it), and returns it for the next frame. A chunk task encodes a
run of stored frames into H.264, cross-fading the overlap where a shot was split, puts the chunk in
the store and drops the frames it no longer needs.

Everything a frame depends on is the job's (its :class:`~dreamcore.sequence.Sequence`, the plan,
the frame's index and time, the previous dream as stored bytes), so a resumed job, or a frame dreamt
again after its worker died, gives the same pixels. What the frame's settings, start and effort are
is dreamcore.sequence's to say; this module only moves pixels between the decoder, the engine, the
store and the encoder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore import coherence
from dreamcore.ascent import step_count, step_seconds
from dreamcore.coherence import Flow
from dreamcore.guide import Guide
from dreamcore.sequence import Frame, Sequence
from pipeline import guide as guide_mod
from pipeline.cluster.schedule import check_stop
from pipeline.cluster.workers import check_job, engine, on_release, release_job
from pipeline.io import decoders, media
from pipeline.io.fsutil import make_temp_dir, temp_dir
from pipeline.job.framestore import FrameStore, chunk_rel
from pipeline.job.integrity import Damaged
from pipeline.job.locations import worker_copy
from pipeline.job.store import Store
from pipeline.runtime import load_tensorflow, numerics
from pipeline.video.plan import Chunk, Segment, crossfade_weight

log = logging.getLogger("dreamcore")


@dataclass(frozen=True)
class JobSpec:
    """What every task of a job carries: small, picklable, the same for all its tasks."""

    id: str  # the job's identity (input, range, config), so tasks of two jobs never mix
    store: Store
    token: str  # written into the store by the command; a worker that reads another is not in this job
    input: str  # where workers read the clip: the command's path, or a copy in the store
    input_key: str  # the clip's fingerprint: names a worker's local copy of a remote input
    size: tuple[int, int]  # (width, height) of the frames, upright
    sequence: Sequence  # every frame's settings: the config parsed once, with its keyframes
    rate: str | None  # the constant frame rate, or None for irregular timing
    keep_frames: bool = False  # keep every dreamt frame in the store (--keep-frames), not only those in flight
    t0: float = 0.0  # the first frame's timestamp: a frame's time in the keyframes is its pts - t0
    guide: str | None = None  # a still guide's digest (the image is in the store)
    guide_clip: guide_mod.GuideClip | None = None  # frame t guided by the clip's frame at time t
    encoder_threads: int | None = None  # x264's thread count, recorded when the job began (media.encoder_threads)

    @property
    def frames(self) -> FrameStore:
        """The job's dreamt frames: raw RGB, or PNG with --keep-frames (kept for people)."""
        return FrameStore(self.store, self.size, "png" if self.keep_frames else "rgb")


@dataclass(frozen=True)
class FrameWork:
    """One frame task's own part: which frame, where it sits in its chain, where its pixels go."""

    seg: int
    index: int
    pts: float
    fresh: bool  # a chain's first frame: the whole dream, from its source
    prev_pts: float | None = None  # the previous frame's time (a chain going on from a stored frame)
    last: bool = False  # the chain's last frame: its decoder closes
    chunk: Chunk | None = None  # streamed to this chunk's encoder here (None: a frame a cross-fade mixes)
    durations: tuple[float, ...] = ()  # that chunk's frame durations
    encoded_in: str | None = None  # the chunk that holds this frame's pixels once encoded
    next_pts: float | None = None  # the next frame's time when it follows in this chain (prefetched)
    replay: bool = False  # dreamt again only to carry the chain: neither stored nor encoded


@dataclass(frozen=True)
class FrameResult:
    """A frame task's result: its pixels for the next frame of the chain (none in the summary the
    command gets), and what the command reports and records."""

    seg: int
    index: int
    src: np.ndarray | None = None
    dream: np.ndarray | None = None
    skipped: bool = False  # not dreamt here: read back from the store, or its chunk is encoded already
    notes: tuple[str, ...] = ()  # warnings for the user (a damaged frame dreamt again)
    fresh: bool = False
    replay: bool = False
    ahead: bool = False  # its decode and flow were prepared while the frame before dreamt
    seconds: float = 0.0
    decode_s: float = 0.0
    flow_s: float = 0.0
    dream_s: float = 0.0
    steps_s: float = 0.0
    steps: int = 0
    store_s: float = 0.0
    layout: dict[str, Any] = field(default_factory=dict)  # the numerics it was dreamt under

    def summary(self) -> FrameResult:
        """What the command needs (not the pixels): runs where the result is."""
        return replace(self, src=None, dream=None)


@dataclass(frozen=True)
class ChunkResult:
    chunk: str
    frames: int
    seconds: float
    streamed: bool
    again: bool = False


def source_frame(job: JobSpec, seg: int, index: int, pts: float) -> np.ndarray:
    """Source frame ``index`` (RGB uint8), from this worker's decoder for the segment when it is
    at that frame, else from a new one that seeks to it (the job's clip, or this machine's copy)."""
    return decoders.decoded_frame(
        (job.id, seg), lambda: worker_copy(job.input, job.input_key, "input"), index, pts, job.size
    )


def crossfade(frame: np.ndarray, other: np.ndarray, k: float) -> np.ndarray:
    """An output frame in an overlap: ``other``'s share ``k``. Both are dreams of the same source
    frame, so this cross-fades their dream residuals."""
    return np.round((1 - k) * frame.astype(np.float32) + k * other.astype(np.float32)).astype(np.uint8)


_lock = threading.Lock()


# --- chunks encoded as their frames are dreamt -------------------------------------------------


class _Stream:
    """A chunk's encoder on this worker, fed by the frame tasks of its chain as they finish, so that
    x264 runs beside the dreaming and no frame is read back; the chunk task then only finishes it.
    Anything out of order (a chain resumed or moved to another worker) drops it, and the chunk task
    encodes from the stored frames instead: the same frames, the same encoder, the same bytes."""

    def __init__(self, job: JobSpec, chunk: Chunk, durations: tuple[float, ...]):
        self.dir = make_temp_dir("dreamreel-stream")
        self.out = self.dir / chunk.name
        rate = Fraction(job.rate) if job.rate else None
        self.encoder = media.ChunkEncoder(
            self.out, *job.size, rate, None if rate else list(durations), job.encoder_threads
        )
        self.seg = chunk.seg
        self.next = chunk.first
        self.end = chunk.end

    def abort(self) -> None:
        self.encoder.abort()
        shutil.rmtree(self.dir, ignore_errors=True)


_streams: dict[tuple[str, str], _Stream] = {}  # least recently fed first
# Open encoders per worker. One whose chunk task ran on another worker is never taken: a newer
# chunk of its segment drops it when still unfinished, and this bound drops the oldest.
MAX_STREAMS = 8


def stream_frame(job: JobSpec, chunk: Chunk | None, durations: tuple[float, ...], index: int, rgb: np.ndarray) -> None:
    """Give frame ``index`` to its chunk's encoder on this worker (opened at the chunk's first)."""
    if chunk is None:
        return
    key = (job.id, chunk.name[:-4])
    with _lock:
        stream = _streams.pop(key, None)
    if index == chunk.first:
        if stream is not None:
            stream.abort()
        with _lock:
            stale = [k for k, s in _streams.items() if k[0] == job.id and s.seg == chunk.seg and s.next != s.end]
            stale += list(_streams)[: max(0, len(_streams) - MAX_STREAMS + 1)]
            dropped = [_streams.pop(k) for k in dict.fromkeys(stale)]
        for old in dropped:
            old.abort()
        stream = _Stream(job, chunk, durations)
    if stream is None or stream.next != index:
        if stream is not None:
            stream.abort()
        return
    try:
        stream.encoder.write(rgb)
    except BaseException:
        stream.abort()
        raise
    stream.next += 1
    with _lock:
        _streams[key] = stream


def take_stream(job: JobSpec, name: str) -> _Stream | None:
    with _lock:
        return _streams.pop((job.id, name[:-4]), None)


# --- the next frame's decode and flow, beside this frame's dream -----------------------------------

MAX_AHEAD = 4  # prefetches kept at most: one per chain in flight (a chain moved to another worker leaves one)
# A prepared next frame: (its source, the flow from the frame before, that frame's source, the flow's side).
Ahead = tuple[np.ndarray, Flow, np.ndarray, int | None]
_ahead: OrderedDict[tuple[str, int, int], Future[Ahead]] = OrderedDict()
_ahead_pool: ThreadPoolExecutor | None = None


def _start_ahead(job: JobSpec, seg: int, index: int, pts: float, prev_src: np.ndarray, side: int | None) -> None:
    """Decode frame ``index`` and its flow from ``prev_src`` in this worker's helper thread, while the
    frame before it dreams; the frame's task takes them (:func:`_take_ahead`) if it runs here. Off
    the frame's path, mostly, not away: at 640x360 --max-side 360 a follow-up frame's task takes
    about the same time (0-4% less), its steps 7-10% more, as the helper competes for the cores
    (docs/benchmarks.md). Lowering the helper's priority measured the same, and a starved helper would
    stall the next frame, so it runs as it is."""
    global _ahead_pool

    def work() -> Ahead:
        src = source_frame(job, seg, index, pts)
        return src, coherence.optical_flow(prev_src, src, side), prev_src, side

    with _lock:
        if _ahead_pool is None:
            _ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="dreamreel-ahead")
        _ahead[(job.id, seg, index)] = _ahead_pool.submit(work)
        while len(_ahead) > MAX_AHEAD:
            _ahead.popitem(last=False)


def _take_ahead(job: JobSpec, seg: int, index: int) -> Ahead | None:
    """What :func:`_start_ahead` prepared for this frame (waiting for it), or None."""
    with _lock:
        fut = _ahead.pop((job.id, seg, index), None)
    return None if fut is None else fut.result()


def _steer(job: JobSpec, seg: int, seconds: float) -> Guide | None:
    """The guide of the frame at ``seconds``: the job's still, or the guide clip's frame then."""
    if job.guide is not None:
        return guide_mod.still(job.store, job.guide)
    if job.guide_clip is not None:
        return guide_mod.clip_frame(job.store, job.id, job.guide_clip, seg, seconds)
    return None


def _resumed(job: JobSpec, w: FrameWork, prev: FrameResult | None, notes: list[str]) -> tuple[np.ndarray | None, bool]:
    """(the frame's stored dream or None, whether its chunk is encoded so nothing is needed of it).
    A damaged stored frame is removed and dreamt again when the state it needs is at hand."""
    if w.replay:
        return None, False
    try:
        done = job.frames.read(w.seg, w.index)  # dreamt before: a resumed job, or a result lost with its worker
    except Damaged as exc:
        if not (w.fresh or (prev is not None and prev.dream is not None)):
            raise
        job.store.delete(exc.rel)
        notes.append(f"{exc}: dreamt it again")
        done = None
    encoded = done is None and w.encoded_in is not None and job.store.exists(chunk_rel(w.encoded_in))
    return done, encoded


def frame_task(job: JobSpec, w: FrameWork, prev: FrameResult | None, after: Any = None) -> FrameResult:
    """Dream frame ``w.index`` of segment ``w.seg``. ``prev``: the previous task's result (its
    source and dream frames), or None when the chain continues from a stored frame (a resumed job).
    ``after``: what a chain's first frame waits for (the end of an earlier chain: see
    video.graph); unused.

    Dask computes a task again when its result died with a worker, and with it every task before it
    in the chain whose result is gone too: a lost result's whole lineage. So a frame whose chunk is
    encoded, and which the store dropped as no longer needed, is not dreamt again: the task answers
    with no pixels. (A frame is dropped only once the frame after it is stored or encoded too, so no
    task needs those pixels; one that does reads the stored frame.) A stored frame that is damaged
    is dreamt again here when the previous dream is at hand; otherwise the task fails with
    :class:`~pipeline.job.integrity.Damaged` and the command plans again from the last good state."""
    t0 = time.perf_counter()
    check_job(job)
    notes: list[str] = []
    done, encoded = _resumed(job, w, prev, notes)
    if encoded:
        return FrameResult(w.seg, w.index, skipped=True, notes=tuple(notes))
    prev_src, prev_dream = (None, None) if prev is None else (prev.src, prev.dream)
    if w.fresh or done is not None:
        prev_src = prev_dream = None
    elif prev_dream is None:  # continue from the stored previous frame: its source first
        assert w.prev_pts is not None
        prev_src = source_frame(job, w.seg, w.index - 1, w.prev_pts)
        prev_dream = job.frames.needed(w.seg, w.index - 1)
    ahead = _take_ahead(job, w.seg, w.index)  # decoded (and its flow computed) while the frame before dreamt
    src = ahead[0] if ahead is not None else source_frame(job, w.seg, w.index, w.pts)
    if w.last:
        decoders.close((job.id, w.seg))
    decode_s = time.perf_counter() - t0
    if done is not None:
        stream_frame(job, w.chunk, w.durations, w.index, done)
        return FrameResult(w.seg, w.index, src=src, dream=done, skipped=True, notes=tuple(notes))
    load_tensorflow()
    frame = job.sequence.frame(w.index, w.pts - job.t0, _steer(job, w.seg, w.pts - job.t0))
    start, flow_s = src, 0.0
    if not w.fresh:
        assert prev_src is not None
        tf0 = time.perf_counter()
        flow = _flow(frame, ahead, prev_src, src)
        flow_s = time.perf_counter() - tf0
        start = frame.start(src, prev_src, prev_dream, flow)
    if w.next_pts is not None and not w.last and frame.uses_flow:
        _start_ahead(job, w.seg, w.index + 1, w.next_pts, src, frame.flow_side)
    iterations, octaves = frame.effort(w.fresh)
    td0, steps0, count0 = time.perf_counter(), step_seconds(), step_count()
    dream = engine(frame.config).dream_rgb(
        start, progress=check_stop, iterations=iterations, octaves=octaves, seed_key=(w.index,), uint8=True
    )
    dream_s, steps_s, steps = time.perf_counter() - td0, step_seconds() - steps0, step_count() - count0
    ts0 = time.perf_counter()
    if not w.replay:
        job.frames.write(w.seg, w.index, dream)
        stream_frame(job, w.chunk, w.durations, w.index, dream)
    return FrameResult(
        w.seg,
        w.index,
        src=src,
        dream=dream,
        notes=tuple(notes),
        fresh=w.fresh,
        replay=w.replay,
        ahead=ahead is not None,
        seconds=time.perf_counter() - t0,
        decode_s=decode_s,
        flow_s=flow_s,
        dream_s=dream_s,
        steps_s=steps_s,
        steps=steps,
        store_s=time.perf_counter() - ts0,
        layout=numerics(),
    )


def _flow(frame: Frame, ahead: Ahead | None, prev_src: np.ndarray, src: np.ndarray) -> Flow | None:
    """The flow from the previous source frame: the one prepared ahead when it is for these frames
    at this side, else computed now (None without flow coherence)."""
    if not frame.uses_flow:
        return None
    if ahead is not None and ahead[2] is prev_src and ahead[3] == frame.flow_side:
        return ahead[1]
    return frame.flow(prev_src, src)


def chunk_task(
    job: JobSpec,
    chunk: Chunk,
    segment: Segment,
    blend: Segment | None,
    durations: tuple[float, ...],
    after: Any = None,
) -> ChunkResult:
    """Encode output frames [first, end) of a segment into ``chunks/<name>``; ``blend``: the next
    segment of the shot, whose warm frames cross-fade into this chunk's last ones. Then drop the
    stored frames no chain needs any more: this chunk's, but for its last one while its segment goes
    on (the next frame continues from it); the next segment's warm frames once blended, but for
    their last (that chain may still continue from it; one frame a split)."""
    t0 = time.perf_counter()
    check_job(job)
    c = chunk
    n = c.end - c.first
    stream = take_stream(job, c.name) if blend is None else None
    if job.store.exists(chunk_rel(c.name)):  # run again after a lost result (see frame_task): done already
        if stream is not None:
            stream.abort()
        _drop_encoded(job, c, segment, blend)
        return ChunkResult(c.name, n, time.perf_counter() - t0, streamed=False, again=True)
    if stream is not None and stream.next == c.end:
        _leave_thread_pool()
        try:
            stream.encoder.finish()
            job.store.put_file(stream.out, chunk_rel(c.name), sealed=True)
        finally:
            stream.abort()
        _drop_encoded(job, c, segment, blend)
        return ChunkResult(c.name, n, time.perf_counter() - t0, streamed=True)
    if stream is not None:
        stream.abort()
    with temp_dir("dreamreel-chunk") as tmp:
        out = Path(tmp) / c.name
        rate = Fraction(job.rate) if job.rate else None
        enc = media.ChunkEncoder(out, *job.size, rate, None if rate else list(durations), job.encoder_threads)
        try:
            for i in range(c.first, c.end):
                frame = job.frames.needed(c.seg, i)
                if blend is not None and i >= blend.warm_from:
                    other = job.frames.needed(blend.id, i)
                    frame = crossfade(frame, other, crossfade_weight(i, blend.warm_from, blend.first))
                enc.write(frame)
            enc.finish()
        except BaseException:
            enc.abort()
            raise
        job.store.put_file(out, chunk_rel(c.name), sealed=True)
    _drop_encoded(job, c, segment, blend)
    return ChunkResult(c.name, n, time.perf_counter() - t0, streamed=False)


def _leave_thread_pool() -> None:
    """Give this task's worker thread back to Dask while it waits for x264 to drain its look-ahead
    (about 40 frames: seconds at 1080p) and copies the chunk to the store. A worker has few
    threads (a local one, two: a dream and a chunk beside it); a shot's last chunks waiting on both
    stalled the next shot's dream while x264 drained alone (`python -m benchmarks.serial --frames
    240`: 4 shots, the command's process idle for 6 s at a time). A chunk that encodes from stored
    frames keeps its thread: it feeds its encoder itself, and a resumed job may have many ready."""
    from distributed import secede

    with contextlib.suppress(ValueError):  # not in a Dask worker (a test calling the task itself)
        secede()


def _drop_encoded(job: JobSpec, c: Chunk, segment: Segment, blend: Segment | None) -> None:
    if job.keep_frames:
        return
    last = c.end if c.end == segment.end else c.end - 1
    for i in range(max(c.first - 1, segment.first), last):
        job.frames.drop(c.seg, i)
    if blend is not None:  # its last warm frame stays: that chain may continue from it
        for i in range(blend.warm_from, blend.first - 1):
            job.frames.drop(blend.id, i)


def _release(job_id: str | None) -> None:
    """End this process's encoders and prefetches of one job (None: of every job), and remove
    their temporary folders: a failed job's partial chunks are not left behind."""
    with _lock:
        streams = [_streams.pop(k) for k in [k for k in _streams if job_id in (None, k[0])]]
        for k in [k for k in _ahead if job_id in (None, k[0])]:
            _ahead.pop(k)
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.abort()


on_release(_release)
__all__ = ["JobSpec", "FrameWork", "FrameResult", "ChunkResult", "frame_task", "chunk_task", "release_job"]
