"""What runs on the Dask workers for `dreamreel video`: dream a frame, encode a chunk.

Workers reach a job only through what its tasks carry (:class:`JobSpec`) and its store: never
through the command's own paths. A frame task decodes its source frame itself (each worker keeps a
decoder open per segment, reading on in order; a frame out of order seeks), dreams it from the
previous frame's dream, which it receives in memory as the previous task's result, saves it to the
store (so a killed job resumes from it), and returns it for the next frame. A chunk task encodes a
run of stored frames into H.264, cross-fading the overlap where a shot was split, puts the chunk in
the store and drops the frames it no longer needs.

Everything a frame depends on is the job's (config, plan, index, the previous dream as stored
bytes), so a resumed job, or a frame dreamt again after its worker died, gives the same pixels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import EXIT_USAGE, PipelineError
from pipeline.io.fsutil import make_temp_dir, temp_dir
from pipeline.job.integrity import Damaged
from pipeline.job.store import Store, StoreUnavailable, redact

log = logging.getLogger("dreamcore")


class StoreNotShared(StoreUnavailable):
    """A worker does not see the job's store (a path local to another machine): the user must give
    one every worker shares, so it is bad usage."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class JobSpec:
    """What every task of a job carries: small, picklable, the same for all its tasks."""

    id: str  # the job's identity (input, range, config), so tasks of two jobs never mix
    store: Store
    token: str  # written into the store by the command; a worker that reads another is not in this job
    input: str  # where workers read the clip: the command's path, or a copy in the store
    input_key: str  # the clip's fingerprint: names a worker's local copy of a remote input
    size: tuple[int, int]  # (width, height) of the frames, upright
    config: dict[str, Any]  # the DreamConfig, with the network as the command resolved it
    video: dict[str, Any]  # the VideoConfig
    rate: str | None  # the constant frame rate, or None for irregular timing
    keep_frames: bool = False  # keep every dreamt frame in the store (--keep-frames), not only those in flight
    keyframes: dict[str, Any] = field(default_factory=dict)  # a Schedule's dict: settings that change over time
    t0: float = 0.0  # the first frame's timestamp: a frame's time in the keyframes is its pts - t0
    fps: float = 24.0  # the clip's nominal rate (frame-numbered keyframes mixed with timed ones)
    guide: str | None = None  # a still guide's digest (the image is in the store)
    guide_clip: Any = None  # a guide clip (pipeline.guide.GuideClip): frame t guided by its frame at time t
    encoder_threads: int | None = None  # x264's thread count, recorded when the job began (media.encoder_threads)


def frame_ext(job: JobSpec) -> str:
    """Stored frames are raw RGB: writing one costs a tenth of encoding it (measured at 1080p: 5.6 ms
    against x264's ~48 ms; PNG's fastest level took 61 ms). --keep-frames keeps PNGs, for people."""
    return "png" if job.keep_frames else "rgb"


def frame_rel(seg: int, index: int, ext: str = "png") -> str:
    return f"frames/{seg:04d}/{index:06d}.{ext}"


def chunk_rel(name: str) -> str:
    return f"chunks/{name}"


# --- per-worker state ---------------------------------------------------------------------------

_lock = threading.Lock()
_verified: set[tuple[str, str]] = set()
_inputs: dict[str, str] = {}
_decoders: OrderedDict[tuple[str, int], _Decoder] = OrderedDict()
MAX_DECODERS = 8  # open ffmpeg decoders per worker (one per segment it is dreaming, one per guide clip it reads)


def check_job(job: JobSpec) -> None:
    """This worker sees the job's store: the token the command wrote there is the job's. Once per
    job and worker, for workers that join later too."""
    import socket

    if (job.id, job.token) in _verified:
        return
    try:
        found = job.store.read_bytes("token")
    except StoreUnavailable as exc:
        raise StoreNotShared(f"worker {socket.gethostname()} cannot read the job store ({exc})") from None
    if found is None or found.decode().strip() != job.token:
        raise StoreNotShared(
            f"worker {socket.gethostname()} does not see this job's store at {job.store.url} "
            f"({'no job there' if found is None else 'another job there'}): a folder local to "
            "another machine? give --workdir a path or URL that every worker shares"
        )
    _verified.add((job.id, job.token))


def _reads_token(store: Store, token: str) -> str | None:
    """Run on a worker: None when it reads this token from the store, else why not."""
    import socket

    try:
        found = store.read_bytes("token")
    except StoreUnavailable as exc:
        return f"worker {socket.gethostname()} cannot read the job store ({exc})"
    if found is None or found.decode().strip() != token:
        return f"worker {socket.gethostname()} does not see this job's store at {store.url}"
    return None


def check_store_shared(client: Any, store: Store, token: str) -> None:
    """Every worker of the cluster now sees the job's store (the command wrote ``token`` there):
    checked before any work; workers that join later check in their first task."""
    from pipeline.cluster.schedule import SchedulerError

    answers = client.run(_reads_token, store, token)
    if not answers:
        raise SchedulerError("the Dask cluster has no workers")
    bad = [why for why in answers.values() if why]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise StoreNotShared(
            f"{bad[0]}{more}: a folder local to another machine? give --workdir a path or URL that every worker shares"
        )


def local_input(job: JobSpec) -> str:
    """A path ffmpeg can read the clip from on this worker: the job's own path, or a copy of a URL
    made once per worker machine."""
    return local_copy(job.input, job.input_key, "input")


def local_copy(location: str, key: str, what: str = "input") -> str:
    """A local path of a file a job reads (its input, a guide clip, a model file): ``location``
    itself, or a copy of a URL made once per worker machine, named by ``key`` (the file's
    fingerprint), so jobs on the same file share it. Every use marks the copy used; copies unused
    for :data:`COPY_DAYS` are removed when a new one is made, so a long-lived worker's disk does not
    keep every file it was ever given."""
    from pipeline.job.store import is_url

    if not is_url(location):
        if not os.path.exists(location):
            import socket

            raise StoreNotShared(f"worker {socket.gethostname()} cannot read the {what} {location}")
        return location
    with _lock:
        known = _inputs.get(key)
        if known is not None and _used(known):
            return known
        import fsspec

        cache = Path(tempfile.gettempdir()) / "dreamreel-inputs"
        cache.mkdir(exist_ok=True)
        _remove_unused(cache)
        target = cache / f"{key}{Path(location).suffix}"
        if not _used(target):
            part = target.with_name(f".{target.name}.{os.getpid()}.part")
            with fsspec.open(location, "rb") as src, open(part, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
            if ends_digest(part)[:16] != key.rsplit("-", 1)[-1]:
                part.unlink(missing_ok=True)
                raise PipelineError(
                    f"the {what} at {redact(location)} is not the file the job began with (changed or "
                    "damaged): run the same command again (a copy in the job store is uploaded anew)"
                )
            os.replace(part, target)
        _inputs[key] = str(target)
        return str(target)


def ends_digest(path: str | Path) -> str:
    """The hash of a file's first and last MiB (jobs.file_fingerprint's ``sha256_ends``)."""
    from pipeline.job.record import file_fingerprint

    return str(file_fingerprint(Path(path))["sha256_ends"])


# A worker machine's copy of a job's file (local_copy) that no task used for this long is removed.
COPY_DAYS = 1.0


def _used(path: str | Path) -> bool:
    """Mark a copy used now (its time); False when it is gone (removed as unused by another process)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except PermissionError:  # another user's copy: readable, not ours to mark
        pass
    return True


def _remove_unused(cache: Path) -> None:
    """Remove the copies (and downloads a killed worker left half done) unused for COPY_DAYS."""
    cutoff = time.time() - COPY_DAYS * 86400
    for f in cache.iterdir():
        with contextlib.suppress(OSError):
            if f.stat().st_mtime < cutoff:
                f.unlink()


def file_for_workers(client: Any, store: Store, src: Path, folder: str) -> str:
    """Where the cluster's workers read a local file: its path when every worker sees the same
    file there; else a copy in the store (``folder/NAME``), uploaded once."""
    from pipeline.cluster.schedule import SchedulerError, sees_file

    st = src.stat()
    answers = client.run(sees_file, str(src.resolve()), st.st_size, st.st_mtime_ns)
    if not answers:
        raise SchedulerError("the Dask cluster has no workers")
    if all(answers.values()):
        return str(src.resolve())
    rel = f"{folder}/{src.name}"
    if store.size(rel) != st.st_size or stored_ends_digest(store, rel, st.st_size) != ends_digest(src):
        log.warning("the cluster's workers do not see %s: uploading it to the job store once", src)
        store.put_file(src, rel)
    return store.path(rel)


def stored_ends_digest(store: Store, rel: str, size: int) -> str:
    """:func:`ends_digest` of a file in the store, from its first and last MiB only."""
    from pipeline.job.record import ends_hash

    return ends_hash(size, lambda start, end: store.fs.cat_file(store.path(rel), start=start, end=end))


def config_for_workers(client: Any, store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The job's config as the cluster's workers load it: a model file they do not see is uploaded to
    the store once (``model/FINGERPRINT/NAME``) and named there; each worker copies it locally."""
    from pipeline.job.record import file_fingerprint
    from pipeline.settings import model_path

    path = model_path(config.get("model", "auto"))
    if path is None or not path.is_file():  # a built-in, or a SavedModel folder (not uploaded)
        return config
    folder = f"model/{file_fingerprint(path)['sha256_ends'][:16]}"
    return {**config, "model": file_for_workers(client, store, path, folder)}


class _Decoder:
    """Source frames of one segment, read on in order from one ffmpeg process that starts with a
    seek to the segment's first frame (media.frames_at)."""

    def __init__(self, src: str, pts: float, index: int, size: tuple[int, int]):
        from pipeline.io import media

        self.pipe, self.pending = media.frames_at(src, pts, size)
        self.next = index

    def frame(self, index: int, pts: float) -> np.ndarray:
        got = self.pipe.read_on(pts, self.pending)
        self.pending = None
        if got is None or abs(got[0] - pts) > 1e-4:
            found = "the end of the clip" if got is None else f"a frame at {got[0]:.6f} s"
            raise PipelineError(f"decoding frame {index} (at {pts:.6f} s) found {found}: the input changed?")
        self.next = index + 1
        return got[1]

    def close(self) -> None:
        self.pipe.close()


def source_frame(job: JobSpec, seg: int, index: int, pts: float) -> np.ndarray:
    """Source frame ``index`` (RGB uint8), from this worker's decoder for the segment when it is
    at that frame, else from a new one that seeks to it."""
    return decoded_frame((job.id, seg), lambda: local_input(job), index, pts, job.size)


def decoded_frame(
    key: tuple[str, int],
    path: Callable[[], str],
    index: int,
    pts: float,
    size: tuple[int, int],
    skip_ahead: bool = False,
) -> np.ndarray:
    """Frame ``index`` (at ``pts``) of a clip, from this worker's decoder ``key`` when it is at that
    frame (with ``skip_ahead``: at it or before it, reading on), else from a new one that seeks to it
    in the clip at ``path()``."""
    with _lock:
        dec = _decoders.pop(key, None)
    if dec is None or dec.next > index or (dec.next != index and not skip_ahead):
        if dec is not None:
            dec.close()
        dec = _Decoder(path(), pts, index, size)
    try:
        frame = dec.frame(index, pts)
    except BaseException:
        dec.close()
        raise
    with _lock:
        _decoders[key] = dec
        while len(_decoders) > MAX_DECODERS:
            _decoders.popitem(last=False)[1].close()
    return frame


def abort_local() -> None:
    """Ctrl-C: end this process's encoders and decoders now, and wait for them. Sent SIGINT with the
    terminal's process group, ffmpeg would finish its file first and could outlive the command."""
    release_job(None)


def release_job(job_id: str | None) -> None:
    """End this process's encoders, decoders and prefetches of one job (None: of every job), and
    remove their temporary folders: a failed job's partial chunks are not left behind."""
    with _lock:
        streams = [_streams.pop(k) for k in [k for k in _streams if job_id in (None, k[0])]]
        decoders = [_decoders.pop(k) for k in [k for k in _decoders if job_id in (None, k[0])]]
        for k in [k for k in _ahead if job_id in (None, k[0])]:
            _ahead.pop(k)
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.abort()
    for dec in decoders:
        with contextlib.suppress(Exception):
            dec.close()


def close_decoder(job: JobSpec, seg: int) -> None:
    with _lock:
        dec = _decoders.pop((job.id, seg), None)
    if dec is not None:
        dec.close()


def encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise PipelineError("cannot encode a frame as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PipelineError("a stored frame does not decode")
    return np.ascontiguousarray(bgr[..., ::-1])


def crossfade(frame: np.ndarray, other: np.ndarray, k: float) -> np.ndarray:
    """An output frame in an overlap: ``other``'s share ``k``. Both are dreams of the same source
    frame, so this cross-fades their dream residuals."""
    return np.round((1 - k) * frame.astype(np.float32) + k * other.astype(np.float32)).astype(np.uint8)


def stored_frame(job: JobSpec, seg: int, index: int) -> np.ndarray | None:
    """A dreamt frame from the store, checked (None when it is not there); a damaged one raises
    :class:`~pipeline.job.integrity.Damaged`."""
    ext = frame_ext(job)
    rel = frame_rel(seg, index, ext)
    data = job.store.read_sealed(rel)
    if data is None:
        return None
    if ext == "png":
        return decode_png(data)
    w, h = job.size
    if len(data) != w * h * 3:
        raise Damaged(rel, redact(job.store.path(rel)), f"damaged ({len(data)} bytes of pixels for a {w}x{h} frame)")
    return np.frombuffer(data, np.uint8).reshape(h, w, 3)


def needed_frame(job: JobSpec, seg: int, index: int) -> np.ndarray:
    """A stored frame that work depends on: missing is :class:`~pipeline.job.integrity.Damaged` too, so
    the command makes it again from the last good state (video._graph)."""
    frame = stored_frame(job, seg, index)
    if frame is None:
        rel = frame_rel(seg, index, frame_ext(job))
        raise Damaged(rel, redact(job.store.path(rel)), "missing")
    return frame


def store_frame(job: JobSpec, seg: int, index: int, rgb: np.ndarray) -> None:
    ext = frame_ext(job)
    job.store.write_sealed(
        frame_rel(seg, index, ext), encode_png(rgb) if ext == "png" else memoryview(np.ascontiguousarray(rgb)).cast("B")
    )


def drop_frame(job: JobSpec, seg: int, index: int) -> None:
    job.store.delete(frame_rel(seg, index, frame_ext(job)))


# --- chunks encoded as their frames are dreamt -------------------------------------------------


class _Stream:
    """A chunk's encoder on this worker, fed by the frame tasks of its chain as they finish, so that
    x264 runs beside the dreaming and no frame is read back; the chunk task then only finishes it.
    Anything out of order (a chain resumed or moved to another worker) drops it, and the chunk task
    encodes from the stored frames instead: the same frames, the same encoder, the same bytes."""

    def __init__(self, job: JobSpec, chunk: dict[str, Any], durations: list[float]):
        from pipeline.io import media

        self.dir = make_temp_dir("dreamreel-stream")
        self.out = self.dir / f"{chunk['first']:06d}-{chunk['end']:06d}.mp4"
        rate = Fraction(job.rate) if job.rate else None
        self.encoder = media.ChunkEncoder(self.out, *job.size, rate, None if rate else durations, job.encoder_threads)
        self.seg = chunk["seg"]
        self.next = chunk["first"]
        self.end = chunk["end"]

    def abort(self) -> None:
        import shutil

        self.encoder.abort()
        shutil.rmtree(self.dir, ignore_errors=True)


_streams: dict[tuple[str, str], _Stream] = {}  # least recently fed first
# Open encoders per worker. One whose chunk task ran on another worker is never taken: a newer
# chunk of its segment drops it when still unfinished, and this bound drops the oldest.
MAX_STREAMS = 8


def stream_frame(
    job: JobSpec, chunk: dict[str, Any] | None, durations: list[float], index: int, rgb: np.ndarray
) -> None:
    """Give frame ``index`` to its chunk's encoder on this worker (opened at the chunk's first)."""
    if chunk is None:
        return
    key = (job.id, f"{chunk['first']:06d}-{chunk['end']:06d}")
    with _lock:
        stream = _streams.pop(key, None)
    if index == chunk["first"]:
        if stream is not None:
            stream.abort()
        with _lock:
            stale = [k for k, s in _streams.items() if k[0] == job.id and s.seg == chunk["seg"] and s.next != s.end]
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


# --- the tasks ---------------------------------------------------------------------------------


def engine(cfg: Any) -> Any:
    """The network the command resolved, built once per worker; a worker that cannot load it fails
    the job, naming itself (it never falls back to another network)."""
    import socket

    from dreamcore.engine import Engine
    from dreamcore.errors import WeightsError
    from pipeline.job.store import is_url

    if is_url(cfg.model):  # a model file uploaded to the job store: a local copy, once per machine
        key = "model-" + cfg.model.rstrip("/").split("/")[-2]
        cfg = cfg.replace(model=local_copy(cfg.model, key, "model file"))
    try:
        return Engine(cfg)
    except WeightsError as exc:
        raise WeightsError(f"worker {socket.gethostname()}: {exc}") from None


# --- the next frame's decode and flow, beside this frame's dream -----------------------------------

MAX_AHEAD = 4  # prefetches kept at most: one per chain in flight (a chain moved to another worker leaves one)
_ahead: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
_ahead_pool: Any = None


def _start_ahead(job: JobSpec, seg: int, index: int, pts: float, prev_src: np.ndarray, side: int | None) -> None:
    """Decode frame ``index`` and its flow from ``prev_src`` in this worker's helper thread, while the
    frame before it dreams; the frame's task takes them (:func:`_take_ahead`) if it runs here. Off
    the frame's path, mostly, not away: at 640x360 --max-side 360 a follow-up frame's task takes
    about the same time (0-4% less), its steps 7-10% more, as the helper competes for the cores
    (README "Speed"). Lowering the helper's priority measured the same, and a starved helper would
    stall the next frame, so it runs as it is."""
    global _ahead_pool
    from concurrent.futures import ThreadPoolExecutor

    from dreamcore.coherence import optical_flow

    def work() -> tuple[np.ndarray, Any, np.ndarray, int | None]:
        src = source_frame(job, seg, index, pts)
        return src, optical_flow(prev_src, src, side), prev_src, side

    with _lock:
        if _ahead_pool is None:
            _ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="dreamreel-ahead")
        _ahead[(job.id, seg, index)] = _ahead_pool.submit(work)
        while len(_ahead) > MAX_AHEAD:
            _ahead.popitem(last=False)


def _take_ahead(job: JobSpec, seg: int, index: int) -> Any:
    """What :func:`_start_ahead` prepared for this frame (waiting for it), or None."""
    with _lock:
        fut = _ahead.pop((job.id, seg, index), None)
    return None if fut is None else fut.result()


def frame_task(
    job: JobSpec,
    seg: int,
    index: int,
    pts: float,
    fresh: bool,
    prev: dict[str, Any] | None,
    prev_pts: float | None,
    last: bool,
    chunk: dict[str, Any] | None = None,
    durations: list[float] | None = None,
    encoded_in: str | None = None,
    next_pts: float | None = None,
    after: Any = None,
    replay: bool = False,
) -> dict[str, Any]:
    """Dream frame ``index`` of segment ``seg``. ``fresh``: a chain's first frame (the whole dream).
    ``prev``: the previous task's result (its source and dream frames), or None when the chain
    continues from a stored frame (a resumed job); ``prev_pts`` is then that frame's time.
    ``chunk``: the output chunk the frame goes to, streamed to its encoder here (None for frames
    that a cross-fade still has to mix); ``durations``: that chunk's frame durations.
    ``encoded_in``: the chunk that holds this frame's pixels once encoded (for a warm frame, the
    chunk it cross-fades into). ``next_pts``: the next frame's time when it follows in this chain
    (flow coherence decodes it and computes its flow while this frame dreams). ``after``: what a
    chain's first frame waits for (the end of an earlier chain: see video._graph); unused.
    ``replay``: a frame whose chunk is encoded, dreamt again only to carry the chain to a later
    frame whose stored state was lost or damaged (video._graph); it is neither stored nor encoded.

    Dask computes a task again when its result died with a worker, and with it every task before it
    in the chain whose result is gone too: a lost result's whole lineage. So a frame whose chunk is
    encoded, and which the store dropped as no longer needed, is not dreamt again: the task answers
    with no pixels. (A frame is dropped only once the frame after it is stored or encoded too, so no
    task needs those pixels; one that does reads the stored frame.) A stored frame that is damaged
    is dreamt again here when the previous dream is at hand; otherwise the task fails with
    :class:`~pipeline.job.integrity.Damaged` and the command plans again from the last good state."""
    from dreamcore.ascent import step_count, step_seconds
    from dreamcore.coherence import flow_size, optical_flow, start_frame
    from dreamcore.config import DreamConfig, VideoConfig
    from pipeline.cluster.schedule import check_stop
    from pipeline.runtime import load_tensorflow, numerics

    t0 = time.perf_counter()
    check_job(job)
    notes: list[str] = []
    done = None
    if not replay:
        try:
            done = stored_frame(job, seg, index)  # dreamt before: a resumed job, or a result lost with its worker
        except Damaged as exc:
            if fresh or (prev is not None and prev["dream"] is not None):  # the state it needs is at hand
                job.store.delete(exc.rel)
                notes.append(f"{exc}: dreamt it again")
            else:
                raise
        if done is None and encoded_in is not None and job.store.exists(chunk_rel(encoded_in)):
            return {"seg": seg, "index": index, "src": None, "dream": None, "skipped": True, "notes": notes}
    if fresh or done is not None:
        prev = None
    elif prev is None or prev["dream"] is None:  # continue from the stored previous frame: its source first
        assert prev_pts is not None
        prev_src = source_frame(job, seg, index - 1, prev_pts)
        prev = {"src": prev_src, "dream": needed_frame(job, seg, index - 1)}
    ahead = _take_ahead(job, seg, index)  # decoded (and its flow computed) while the frame before dreamt
    src = ahead[0] if ahead is not None else source_frame(job, seg, index, pts)
    if last:
        close_decoder(job, seg)
    decode_s = time.perf_counter() - t0
    result: dict[str, Any] = {"seg": seg, "index": index, "src": src, "skipped": False, "notes": notes}
    if done is not None:
        stream_frame(job, chunk, durations or [], index, done)
        return {**result, "dream": done, "skipped": True}
    load_tensorflow()
    cfg, vcfg = DreamConfig.from_mapping(job.config), VideoConfig.from_mapping(job.video)
    if job.keyframes:  # this frame's settings: a function of its index and time only
        from dreamcore.keyframes import Schedule

        cfg, vcfg = Schedule.from_dict(job.keyframes).apply(cfg, vcfg, index, pts - job.t0, job.fps)
    if job.guide is not None or job.guide_clip is not None:
        from pipeline import guide

        steer = guide.still(job.store, job.guide) if job.guide is not None else guide.clip_frame(job, seg, pts - job.t0)
        cfg = cfg.replace(guide=steer)
    flow_s = 0.0
    octaves = None
    if fresh:
        start, iterations = src, cfg.iterations
    else:
        assert prev is not None
        tf0 = time.perf_counter()
        side = flow_size(vcfg.flow_side, cfg.max_side)
        flow = None
        if vcfg.coherence == "flow":
            ready = ahead is not None and ahead[2] is prev["src"] and ahead[3] == side
            flow = ahead[1] if ready else optical_flow(prev["src"], src, side)
        flow_s = time.perf_counter() - tf0
        start = start_frame(vcfg.coherence, src, prev["src"], prev["dream"], vcfg.blend, vcfg.carry, flow)
        iterations, octaves = vcfg.followup_iterations, vcfg.followup_octaves or None
    if next_pts is not None and not last and vcfg.coherence == "flow":
        _start_ahead(job, seg, index + 1, next_pts, src, flow_size(vcfg.flow_side, cfg.max_side))
    td0, steps0, count0 = time.perf_counter(), step_seconds(), step_count()
    dream = engine(cfg).dream_rgb(
        start, progress=check_stop, iterations=iterations, octaves=octaves, seed_key=(index,), uint8=True
    )
    dream_s, steps_s, steps = time.perf_counter() - td0, step_seconds() - steps0, step_count() - count0
    ts0 = time.perf_counter()
    if not replay:
        store_frame(job, seg, index, dream)
        stream_frame(job, chunk, durations or [], index, dream)
    store_s = time.perf_counter() - ts0
    return {
        **result,
        "dream": dream,
        "seconds": time.perf_counter() - t0,
        "decode_s": decode_s,
        "flow_s": flow_s,
        "dream_s": dream_s,
        "steps_s": steps_s,
        "steps": steps,
        "store_s": store_s,
        "fresh": fresh,
        "ahead": ahead is not None,
        "replay": replay,
        "layout": numerics(),
    }


def chunk_task(
    job: JobSpec,
    chunk: dict[str, Any],
    segment: dict[str, Any],
    blend: dict[str, Any] | None,
    durations: list[float],
    after: Any = None,
) -> dict[str, Any]:
    """Encode output frames [first, end) of a segment into ``chunks/<name>``; ``blend``: the next
    segment of the shot (a Segment as a dict), whose warm frames cross-fade into this chunk's last
    ones. Then drop the stored frames no chain needs any more: this chunk's, but for its last one
    while its segment goes on (the next frame continues from it); the next segment's warm frames
    once blended, but for their last (that chain may still continue from it; one frame a split)."""
    from pipeline.io import media
    from pipeline.video.plan import Chunk, crossfade_weight

    t0 = time.perf_counter()
    check_job(job)
    c = Chunk(**chunk)
    w, h = job.size
    rate = Fraction(job.rate) if job.rate else None
    stream = take_stream(job, c.name) if blend is None else None
    if job.store.exists(chunk_rel(c.name)):  # run again after a lost result (see frame_task): done already
        if stream is not None:
            stream.abort()
        _drop_encoded(job, c, segment, blend)
        return {
            "chunk": c.name,
            "frames": c.end - c.first,
            "seconds": time.perf_counter() - t0,
            "streamed": False,
            "again": True,
        }
    if stream is not None and stream.next == c.end:
        _leave_thread_pool()
        try:
            stream.encoder.finish()
            job.store.put_file(stream.out, chunk_rel(c.name), sealed=True)
        finally:
            stream.abort()
        _drop_encoded(job, c, segment, blend)
        return {"chunk": c.name, "frames": c.end - c.first, "seconds": time.perf_counter() - t0, "streamed": True}
    if stream is not None:
        stream.abort()
    with temp_dir("dreamreel-chunk") as tmp:
        out = Path(tmp) / c.name
        enc = media.ChunkEncoder(out, w, h, rate, None if rate else durations, job.encoder_threads)
        try:
            for i in range(c.first, c.end):
                frame = needed_frame(job, c.seg, i)
                if blend is not None and i >= blend["warm_from"]:
                    other = needed_frame(job, blend["id"], i)
                    frame = crossfade(frame, other, crossfade_weight(i, blend["warm_from"], blend["first"]))
                enc.write(frame)
            enc.finish()
        except BaseException:
            enc.abort()
            raise
        job.store.put_file(out, chunk_rel(c.name), sealed=True)
    _drop_encoded(job, c, segment, blend)
    return {"chunk": c.name, "frames": c.end - c.first, "seconds": time.perf_counter() - t0, "streamed": False}


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


def _drop_encoded(job: JobSpec, c: Any, segment: dict[str, Any], blend: dict[str, Any] | None) -> None:
    if job.keep_frames:
        return
    last = c.end if c.end == segment["end"] else c.end - 1
    for i in range(max(c.first - 1, segment["first"]), last):
        drop_frame(job, c.seg, i)
    if blend is not None:  # its last warm frame stays: that chain may continue from it
        for i in range(blend["warm_from"], blend["first"] - 1):
            drop_frame(job, blend["id"], i)
