"""`dreamreel zoom`: an endless zoom grown from one image, the classic deep-dream film.

Frame 0 is the image dreamt with the whole config. Every later frame is the previous dreamt frame
moved a little (zoomed in about the centre, optionally rotated and panned; sub-pixel sampling, so
slow motions don't stutter), then dreamt again with a few steps: the dream feeds on itself.

The chain's only state is the last dreamt frame, so the job keeps in its store (a work folder, or a
URL as for `video`), in the layout every job shares (job/framestore.py): the frames of the chunk
being encoded and the frame before them (raw 8-bit RGB), and the chunks encoded so far (H.264,
CHUNK_FRAMES frames each). A frame's settings, start and effort come from dreamcore.sequence, as a
video frame's do; the job's life in its work folder is job/session.py's. Killed at any
moment, the same command picks up the chain from the last stored frame; the frames depend only on
the frame before and their index (the jitter's seed), so the result equals an uninterrupted run's.
Stored frames and chunks carry checksums: a damaged one is made again from the last good frame
(from the first frame if need be: the chain is dreamt again without keeping it, to reach it).
At the end the chunks are joined by stream copy, with ``--audio`` cut to the clip's length, and the
film is checked against the frame count and rate before it is put in place (a path or a URL), by
job/assemble.py as for `video`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.engine import Engine
from dreamcore.keyframes import Schedule
from dreamcore.sequence import Sequence
from pipeline.cluster.schedule import INTERRUPTED
from pipeline.errors import UsageError
from pipeline.io import media
from pipeline.io.fsutil import temp_dir
from pipeline.io.imagefile import read_image, rgb8
from pipeline.job.assemble import assemble
from pipeline.job.framestore import CHUNK_FRAMES, FrameStore, chunk_bounds, chunk_name, chunk_rel
from pipeline.job.integrity import Damaged
from pipeline.job.locations import default_workdir
from pipeline.job.record import file_fingerprint, until_whole
from pipeline.job.session import job_session
from pipeline.job.store import Store, redact
from pipeline.progress import Reporter
from pipeline.runtime import load_tensorflow
from pipeline.settings import check_keyframed_layers, identity_extras, pinned

log = logging.getLogger("dreamcore")


@dataclass(frozen=True)
class Motion:
    """How each frame moves from the one before: ``zoom`` (scale per frame, 1 = none, above 1 zooms
    in), ``rotate`` (degrees per frame, counter-clockwise) and ``pan`` (the view's move per frame in
    output pixels, x right and y down)."""

    zoom: float = 1.01
    rotate: float = 0.0
    pan_x: float = 0.0
    pan_y: float = 0.0

    def matrix(self, width: int, height: int, zoom: float | None = None) -> np.ndarray:
        """The 2x3 map from a new frame's pixel to where it samples the previous frame."""
        z = self.zoom if zoom is None else zoom
        a = math.radians(self.rotate)
        c, s = math.cos(a) / z, math.sin(a) / z
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # p_prev = centre + pan + R (p_new - centre) / zoom, R turning by the angle in image axes (y
        # down): the picture turns the other way, counter-clockwise on screen.
        m = np.array([[c, -s, 0.0], [s, c, 0.0]])
        m[:, 2] = [cx + self.pan_x - c * cx + s * cy, cy + self.pan_y - s * cx - c * cy]
        return m

    def fits(self, width: int, height: int, zoom: float | None = None) -> bool:
        """Whether every pixel of a new frame samples inside the previous one (no edge enters)."""
        m = self.matrix(width, height, zoom)
        corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
        x, y = (corners @ m.T).T
        eps = 1e-6
        return bool(x.min() >= -eps and y.min() >= -eps and x.max() <= width - 1 + eps and y.max() <= height - 1 + eps)

    def least_zoom(self, width: int, height: int) -> float | None:
        """The smallest zoom per frame at which this rotation and pan keep the edge out (None: none
        up to 2x per frame)."""
        if not self.fits(width, height, 2.0):
            return None
        lo, hi = 1.0, 2.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.fits(width, height, mid) else (mid, hi)
        return hi


def move(frame: np.ndarray, motion: Motion) -> np.ndarray:
    """The next frame's start: ``frame`` (uint8) moved by ``motion``, bilinear at sub-pixel positions
    (the classic zoom's order-1 resampling; the dream restores what it softens), in float so that a
    slow zoom moves the picture by its exact fraction of a pixel (OpenCV's 8-bit path rounds its
    weights: 0.19 px for 0.20, and bicubic 0.24). The edge is never sampled (:meth:`Motion.fits`)."""
    import cv2

    h, w = frame.shape[:2]
    moved = cv2.warpAffine(
        np.asarray(frame, np.float32),
        motion.matrix(w, h),
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return cv2.convertScaleAbs(moved)  # rounded; bilinear never leaves [0, 255], so abs changes nothing


@dataclass
class ZoomRequest:
    """A zoom job: the image, the film to write, its length and motion, and where the work is kept."""

    input: str
    output: str  # a path, or a URL
    config: DreamConfig
    frames: int
    fps: Fraction
    motion: Motion
    steps: int = 1  # gradient steps per octave for every frame after the first
    octaves: int = 1  # the largest octaves those frames dream (the first frame dreams all)
    chunk_frames: int = CHUNK_FRAMES
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    audio: str | None = None
    workdir: str | None = None  # the job's store: a path or a URL (default: beside the output)
    restart: bool = False
    keep_work: bool = False
    quiet: bool = False
    overwrite: bool = False  # replace OUT when it exists (checked again before it is put in place)


@dataclass(frozen=True)
class ZoomResult:
    """What a finished zoom job did."""

    output: str
    frames: int
    dreamt: int  # frames dreamt by this run
    resumed: int  # frames found done when it began
    replayed: int  # frames dreamt again, kept nowhere, only to reach what was damaged
    seconds: float
    frame_seconds: tuple[float, ...]  # each frame dreamt by this run
    join_s: float


def check_request(req: ZoomRequest, width: int, height: int) -> None:
    if req.frames < 1:
        raise UsageError(f"{req.frames} frames: give at least 1 (--frames, or --duration times --fps)")
    m = req.motion
    if not m.fits(width, height):
        need = m.least_zoom(width, height)
        hint = f"at least --zoom {need:.4f}" if need else "less rotation or pan"
        raise UsageError(
            f"--zoom {m.zoom:g} --rotate {m.rotate:g} --pan {m.pan_x:g},{m.pan_y:g}: the image's edge "
            f"would enter the frame ({width}x{height}); give {hint}"
        )


def _check_audio(audio: Path | None) -> None:
    if audio is None:
        return
    if not audio.is_file():
        raise UsageError(f"--audio {audio}: no such file")
    if not media.has_audio(audio):
        raise UsageError(f"--audio {audio}: no audio stream in it")


def run_zoom(req: ZoomRequest, report: Reporter | None = None) -> ZoomResult:
    """Dream the zoom (resuming the job in its work folder), join the film, remove the work folder
    unless it is kept. ``report`` gets the job's progress."""
    t_start = time.perf_counter()
    report = report or Reporter("zoom", None, Path(req.input).name)
    rgb = rgb8(read_image(req.input).pixels)  # the film is 8-bit
    h, w = rgb.shape[:2]
    check_request(req, w, h)
    audio = Path(req.audio) if req.audio else None
    _check_audio(audio)
    if req.keyframes:
        req.keyframes.check(req.config, VideoConfig(), req.frames, req.frames / float(req.fps), float(req.fps))
    req = replace(req, config=pinned(req.config))  # the network resolved once, its notes shown once
    check_keyframed_layers(req.keyframes, req.config)
    store = Store(req.workdir or default_workdir(req.output))
    identity = {
        "kind": "zoom",
        "input": file_fingerprint(Path(req.input)),
        "config": req.config.to_dict(),
        "frames": req.frames,
        "fps": str(req.fps),
        "motion": asdict(req.motion),
        "steps": req.steps,
        "octaves": req.octaves,
        "chunk_frames": req.chunk_frames,
        "keyframes": req.keyframes.to_dict(),
        "size": [w, h],
        **identity_extras(req.config),
    }
    with job_session(
        store, identity, restart=req.restart, output=req.output, encodes=True, keep_work=req.keep_work
    ) as session:
        encoder_threads = session.record.numerics.encoder_threads

        def attempt() -> tuple[_Chain, float]:
            session.dreaming()
            chain = _Chain(req, FrameStore(store, (w, h)), rgb, encoder_threads, report)
            chain.run()
            t0 = time.perf_counter()
            report.stage("join")
            _join(req, store, audio)
            return chain, time.perf_counter() - t0

        chain, join_s = until_whole(store, attempt)
    report.stage("done")
    return ZoomResult(
        output=req.output,
        frames=req.frames,
        dreamt=chain.dreamt,
        resumed=chain.resumed,
        replayed=chain.replayed,
        seconds=time.perf_counter() - t_start,
        frame_seconds=tuple(chain.seconds),
        join_s=join_s,
    )


class _Chain:
    """The zoom's one chain of frames: every frame the previous one moved and dreamt again."""

    def __init__(
        self, req: ZoomRequest, frames: FrameStore, source: np.ndarray, encoder_threads: int | None, report: Reporter
    ):
        self.req, self.frames, self.source, self.encoder_threads, self.report = (
            req,
            frames,
            source,
            encoder_threads,
            report,
        )
        fps = float(req.fps)
        self.sequence = Sequence(req.config, VideoConfig(), req.keyframes, fps, followup=(req.steps, req.octaves))
        self.fps = fps
        self.prev: np.ndarray | None = None
        self.dreamt = self.resumed = self.replayed = 0
        self.seconds: list[float] = []

    def dream(self, i: int) -> np.ndarray:
        """Frame ``i`` from the chain's previous frame (frame 0: from the image, with the whole
        config): its settings are a function of its index only."""
        if INTERRUPTED.is_set():  # cancelled (pipeline.progress.Cancel): between frames
            raise KeyboardInterrupt
        frame = self.sequence.frame(i, i / self.fps)
        fresh = i == 0
        start = self.source if fresh else move(self._prev(), self.req.motion)
        iterations, octaves = frame.effort(fresh)
        return Engine(frame.config).dream_rgb(start, iterations=iterations, octaves=octaves, seed_key=(i,), uint8=True)

    def _prev(self) -> np.ndarray:
        assert self.prev is not None
        return self.prev

    def replay(self, first: int, end: int) -> None:
        """Dream frames [first, end) again only to carry the chain on (kept nowhere)."""
        for i in range(first, end):
            self.prev = self.dream(i)
            self.replayed += 1

    def run(self) -> None:
        """Dream the frames not yet stored or encoded, encoding each chunk as its last frame is done."""
        req, store = self.req, self.frames.store
        bounds = chunk_bounds(req.frames, req.chunk_frames)
        encoded = set(store.names("chunks"))
        todo = [(a, b) for a, b in bounds if chunk_name(a, b) not in encoded]
        if not todo:
            self.resumed = req.frames
            return
        first_todo = todo[0][0]
        # The chain goes on from the last stored frame of the first chunk still to encode (or, with
        # none stored, from the frame before that chunk, kept for this).
        nxt = first_todo
        while self.frames.exists(None, nxt):
            nxt += 1
        load_tensorflow()
        if first_todo > 0:
            self._reach(first_todo)
        self.resumed = nxt
        self.report.stage("dream", req.frames, nxt)
        todo_set = set(todo)
        for a, b in bounds:
            if b <= first_todo:
                continue
            if a >= todo[-1][1]:
                break  # the rest is encoded: nothing after the last chunk to make needs the chain
            if (a, b) not in todo_set:
                # Encoded already, between chunks to make again (one was damaged): its frames are
                # dreamt again only to carry the chain on.
                self.replay(a, b)
                continue
            self._chunk(a, b, nxt)
            # The chain needs only the chunk's last frame from here on.
            for i in range(max(a - 1, 0), b - 1):
                self.frames.drop(None, i)

    def _reach(self, first_todo: int) -> None:
        """The frame the chain continues from; when it is lost or damaged, the chain is dreamt again
        from the last good frame before it (or from the image), kept nowhere: the same pixels again."""
        good, self.prev = _last_good(self.frames, first_todo)
        if good < first_todo - 1:
            log.warning(
                "%s: the frame the film goes on from (%d) is missing or damaged: dreaming frames %d to %d "
                "again to reach it",
                redact(self.frames.store.url),
                first_todo - 1,
                good + 1,
                first_todo - 1,
            )
            self.replay(good + 1, first_todo)

    def _chunk(self, a: int, b: int, nxt: int) -> None:
        """Frames [a, b): stored ones read back, the others dreamt and stored; encoded as they come."""
        w, h = self.frames.size
        store = self.frames.store
        with temp_dir("dreamreel-zoom") as tmp:
            out = Path(tmp) / chunk_name(a, b)
            encoder = media.ChunkEncoder(out, w, h, self.req.fps, None, self.encoder_threads)
            try:
                for i in range(a, b):
                    frame = self._stored(i)
                    if frame is None:
                        t0 = time.perf_counter()
                        frame = self.dream(i)
                        self.frames.write(None, i, frame)
                        store.log(f"dreamt {i}")
                        self.seconds.append(time.perf_counter() - t0)
                        self.dreamt += 1
                        if i >= nxt:
                            self.report.advance()
                    encoder.write(frame)
                    self.prev = frame
                encoder.finish()
            except BaseException:
                encoder.abort()
                raise
            store.put_file(out, chunk_rel(chunk_name(a, b)), sealed=True)

    def _stored(self, i: int) -> np.ndarray | None:
        """Frame ``i`` stored before a kill (into the encoder again: the same bytes), or None; a
        damaged one is removed, to be dreamt again."""
        try:
            return self.frames.read(None, i)
        except Damaged as exc:
            self.frames.store.delete(exc.rel)
            self.report.note(f"dreamreel: warning: {exc}: dreamt it again")
            return None


def _last_good(frames: FrameStore, below: int) -> tuple[int, np.ndarray | None]:
    """The last stored frame that is whole, before frame ``below`` (its index and pixels), damaged
    ones removed on the way; (-1, None) when there is none: the chain starts from the image."""
    for i in (i for i in frames.indexes(None)[::-1] if i < below):
        try:
            frame = frames.read(None, i)
        except Damaged as exc:
            frames.store.delete(exc.rel)
            log.warning("%s: removed", exc)
            continue
        if frame is not None:
            return i, frame
    return -1, None


def _join(req: ZoomRequest, store: Store, audio: Path | None) -> None:
    bounds = chunk_bounds(req.frames, req.chunk_frames)
    film = media.Film(
        rate=req.fps,
        spans=tuple(float((b - a) / req.fps) for a, b in bounds),
        times=tuple(float(i / req.fps) for i in range(req.frames)),
    )
    sound = media.Sound(audio, None, req.frames / float(req.fps) if audio else None)
    assemble(store, [chunk_name(a, b) for a, b in bounds], req.output, film, sound, req.overwrite)
