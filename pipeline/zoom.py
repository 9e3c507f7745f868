"""`dreamreel zoom`: an endless zoom grown from one image, the classic deep-dream film.

Frame 0 is the image dreamt with the whole config. Every later frame is the previous dreamt frame
moved a little (zoomed in about the centre, optionally rotated and panned; sub-pixel sampling, so
slow motions don't stutter), then dreamt again with a few steps: the dream feeds on itself.

The chain's only state is the last dreamt frame, so the job keeps in its store (a work folder, or a
URL as for `video`): the frames of the chunk being encoded and the frame before them (raw 8-bit
RGB), and the chunks encoded so far (H.264, :data:`CHUNK_FRAMES` frames each). Killed at any
moment, the same command picks up the chain from the last stored frame; the frames depend only on
the frame before and their index (the jitter's seed), so the result equals an uninterrupted run's.
Stored frames and chunks carry checksums: a damaged one is made again from the last good frame
(from the first frame if need be: the chain is dreamt again without keeping it, to reach it).
At the end the chunks are joined by stream copy, with ``--audio`` cut to the clip's length, and the
film is checked against the frame count and rate before it is renamed into place.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.keyframes import Schedule
from pipeline.errors import UsageError
from pipeline.io import media
from pipeline.io.fsutil import temp_beside, temp_dir
from pipeline.job.integrity import Damaged
from pipeline.job.record import (
    JOB_VERSION,
    checked_copies,
    claim_apart,
    file_fingerprint,
    open_job,
    remove_work,
    undone_unless_dreamt,
    until_whole,
    write_record,
)
from pipeline.job.store import Store, is_url, redact
from pipeline.settings import check_keyframed_layers, identity_extras, pinned
from pipeline.video.job import default_workdir

CHUNK_FRAMES = 48

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
    input: str
    output: str
    config: DreamConfig
    frames: int
    fps: Fraction
    motion: Motion
    steps: int = 1  # gradient steps per octave for every frame after the first
    octaves: int = 1  # the largest octaves those frames dream (the first frame dreams all)
    chunk_frames: int = CHUNK_FRAMES
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    audio: str | None = None
    workdir: str | None = None
    restart: bool = False
    keep_work: bool = False
    quiet: bool = False
    overwrite: bool = False  # replace OUT when it exists (checked again before it is put in place)


def frame_rel(index: int) -> str:
    return f"frames/{index:06d}.rgb"


def chunk_name(first: int, end: int) -> str:
    return f"{first:06d}-{end:06d}.mp4"


def chunk_bounds(frames: int, chunk: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, frames)) for a in range(0, frames, chunk)]


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


def run_zoom(req: ZoomRequest) -> dict[str, Any]:
    from pipeline.io.imagefile import read_image, rgb8

    rgb = rgb8(read_image(req.input).pixels)  # the film is 8-bit
    h, w = rgb.shape[:2]
    check_request(req, w, h)
    audio = Path(req.audio) if req.audio else None
    if audio is not None:
        if not audio.is_file():
            raise UsageError(f"--audio {audio}: no such file")
        if not media.has_audio(audio):
            raise UsageError(f"--audio {audio}: no audio stream in it")
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
    claim_apart(store, req.output)
    with store.locked():
        job = open_job(store, identity, req.restart)
        with undone_unless_dreamt(store, job is None) as begun:
            store.sweep_partials()  # a kill mid-write left a temporary file
            if job is None or "encoder_threads" not in job:  # x264's threads: recorded, kept (media.encoder_threads)
                job = {
                    "version": JOB_VERSION,
                    "identity": identity,
                    **(job or {}),
                    "encoder_threads": media.encoder_threads(),
                }
                write_record(store, job)

            def attempt() -> dict[str, Any]:
                begun["dreaming"] = True
                stats = _dream_chain(req, store, rgb, job["encoder_threads"])
                t0 = time.perf_counter()
                _join(req, store, audio)
                stats["join_s"] = time.perf_counter() - t0
                return stats

            stats = until_whole(store, attempt)
        if not req.keep_work:
            remove_work(store)
    return stats


def _stored(store: Store, index: int, size: tuple[int, int]) -> np.ndarray | None:
    """A stored frame, checked (None when it is not there); :class:`Damaged` when it is damaged."""
    rel = frame_rel(index)
    data = store.read_sealed(rel)
    if data is None:
        return None
    w, h = size
    if len(data) != w * h * 3:
        raise Damaged(rel, redact(store.path(rel)), f"damaged ({len(data)} bytes of pixels for a {w}x{h} frame)")
    return np.frombuffer(data, np.uint8).reshape(h, w, 3)


def _last_good(store: Store, below: int, size: tuple[int, int]) -> tuple[int, np.ndarray | None]:
    """The last stored frame that is whole, before frame ``below`` (its index and pixels), damaged
    ones removed on the way; (-1, None) when there is none: the chain starts from the image."""
    from pipeline.video.job import frame_indexes

    stored = frame_indexes(store.names("frames"), "rgb")[::-1]
    for i in (i for i in stored if i < below):
        try:
            frame = _stored(store, i, size)
        except Damaged as exc:
            store.delete(exc.rel)
            log.warning("%s: removed", exc)
            continue
        if frame is not None:
            return i, frame
    return -1, None


def _dream_chain(req: ZoomRequest, store: Store, source: np.ndarray, encoder_threads: int) -> dict[str, Any]:
    """Dream the frames not yet stored or encoded, encoding each chunk as its last frame is done."""
    from tqdm import tqdm

    from dreamcore.engine import Engine
    from pipeline.runtime import load_tensorflow

    h, w = source.shape[:2]
    size = (w, h)
    bounds = chunk_bounds(req.frames, req.chunk_frames)
    encoded = {n for n in store.names("chunks")}
    todo = [(a, b) for a, b in bounds if chunk_name(a, b) not in encoded]
    stats: dict[str, Any] = {"frames": req.frames, "dreamt": 0, "resumed": 0, "seconds": []}
    if not todo:
        stats["resumed"] = req.frames
        return stats
    first_todo = todo[0][0]
    # The chain goes on from the last stored frame of the first chunk still to encode (or, with none
    # stored, from the frame before that chunk, kept for this).
    nxt = first_todo
    while store.exists(frame_rel(nxt)):
        nxt += 1
    load_tensorflow()
    fps = float(req.fps)

    def engine(i: int) -> Engine:  # frame i's settings: a function of its index only
        return Engine(req.keyframes.apply(req.config, VideoConfig(), i, i / fps, fps)[0])

    def dream(i: int, prev: np.ndarray | None) -> np.ndarray:
        if i == 0:
            return engine(0).dream_rgb(source, seed_key=(0,), uint8=True)
        assert prev is not None
        return engine(i).dream_rgb(
            move(prev, req.motion), iterations=req.steps, octaves=req.octaves, seed_key=(i,), uint8=True
        )

    prev: np.ndarray | None = None
    if first_todo > 0:
        # The frame the chain continues from; when it is lost or damaged, the chain is dreamt again from
        # the last good frame before it (or from the image), kept nowhere: the same pixels again.
        good, prev = _last_good(store, first_todo, size)
        if good < first_todo - 1:
            log.warning(
                "%s: the frame the film goes on from (%d) is missing or damaged: dreaming frames %d to %d "
                "again to reach it",
                redact(store.url),
                first_todo - 1,
                good + 1,
                first_todo - 1,
            )
            for i in range(good + 1, first_todo):
                prev = dream(i, prev)
                stats["replayed"] = stats.get("replayed", 0) + 1
    stats["resumed"] = nxt
    bar = tqdm(
        total=req.frames,
        initial=nxt,
        unit="frame",
        desc=Path(req.input).name,
        disable=req.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    todo_set = set(todo)
    try:
        for a, b in bounds:
            if b <= first_todo:
                continue
            if a >= todo[-1][1]:
                break  # the rest is encoded: nothing after the last chunk to make needs the chain
            if (a, b) not in todo_set:
                # Encoded already, between chunks to make again (one was damaged): its frames are
                # dreamt again only to carry the chain on.
                for i in range(a, b):
                    prev = dream(i, prev)
                    stats["replayed"] = stats.get("replayed", 0) + 1
                continue
            with temp_dir("dreamreel-zoom") as tmp:
                out = Path(tmp) / chunk_name(a, b)
                encoder = media.ChunkEncoder(out, w, h, req.fps, None, encoder_threads)
                try:
                    for i in range(a, b):
                        try:  # stored before a kill: into the encoder again, the same bytes
                            frame = _stored(store, i, size)
                        except Damaged as exc:
                            store.delete(exc.rel)
                            bar.write(f"dreamreel: warning: {exc}: dreamt it again", file=sys.stderr)
                            frame = None
                        if frame is None:
                            t0 = time.perf_counter()
                            frame = dream(i, prev)
                            store.write_sealed(frame_rel(i), memoryview(np.ascontiguousarray(frame)).cast("B"))
                            store.log(f"dreamt {i}")
                            stats["seconds"].append(time.perf_counter() - t0)
                            stats["dreamt"] += 1
                            if i >= nxt:
                                bar.update(1)
                        encoder.write(frame)
                        prev = frame
                    encoder.finish()
                except BaseException:
                    encoder.abort()
                    raise
                store.put_file(out, f"chunks/{chunk_name(a, b)}", sealed=True)
            # The chain needs only the chunk's last frame from here on.
            for i in range(max(a - 1, 0), b - 1):
                store.delete(frame_rel(i))
    finally:
        bar.close()
    return stats


def _join(req: ZoomRequest, store: Store, audio: Path | None) -> None:
    from pipeline.video.job import join_film

    bounds = chunk_bounds(req.frames, req.chunk_frames)
    fps = float(req.fps)
    with temp_dir("dreamreel-join") as tmp:
        files = checked_copies(store, [f"chunks/{chunk_name(a, b)}" for a, b in bounds], Path(tmp))
        part = temp_beside(Path(req.output))
        try:
            join_film(
                files,
                part,
                req.output,
                store,
                {"pts": [float(i / req.fps) for i in range(req.frames)]},
                req.overwrite,
                audio,
                None,
                req.frames / fps if audio else None,
                req.fps,
                [float((b - a) / req.fps) for a, b in bounds],
                None,
                Path(tmp),
            )
        finally:
            part.unlink(missing_ok=True)


def check_zoom_output(output: str, overwrite: bool) -> str:
    if is_url(output):
        raise UsageError(f"{output}: zoom writes a local file (give a path)")
    return str(media.check_video_output(output, overwrite))
