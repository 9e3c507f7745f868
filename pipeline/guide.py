"""``--guide FILE``: an image that steers every dream towards its features, or (for ``video``) a
clip whose frame at time t steers the output frame at time t.

The command reads the guide and records what identifies it in the job (a still's pixel digest, a
clip's fingerprint), so a resumed job with another guide is refused like another config. Workers get
a still guide from the job store (written once, as PNG) and a guide clip as they get the input: its
path where they see it, else a copy uploaded to the store; the guide clip's frame times are stored
too, so the frame that guides output time t is a function of t alone (resume equals an uninterrupted
run).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.guide import Guide
from pipeline.errors import InputError, PipelineError, UsageError
from pipeline.io import media
from pipeline.io.decoders import decoded_frame
from pipeline.io.imagefile import read_image, rgb8
from pipeline.job.framestore import decode_png, encode_png
from pipeline.job.integrity import Damaged
from pipeline.job.locations import worker_copy
from pipeline.job.store import Store

# A guide is kept (and stored) at most this long on its long side: the engine looks at it at most
# 512 px long (dreamcore.ascent.GUIDE_SIDE), and some room stays for fixed-size models' tiles.
KEEP_SIDE = 1024
GUIDE_PNG = "guide.png"
GUIDE_PTS = "guide-pts.json"
GUIDE_ENDS = ("loop", "hold")


def shrink(pixels: np.ndarray) -> np.ndarray:
    """8-bit RGB at most KEEP_SIDE long (area-averaged)."""
    import cv2

    rgb = rgb8(pixels)
    h, w = rgb.shape[:2]
    if max(h, w) <= KEEP_SIDE:
        return np.ascontiguousarray(rgb)
    k = KEEP_SIDE / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class GuideClip:
    """A guide clip, as workers find it."""

    path: str  # where workers read it (a path they see, or a URL)
    key: str  # its fingerprint: names a worker's local copy and the job's record
    size: tuple[int, int]  # its frames' (width, height), upright
    end: str  # "loop" or "hold" when the output runs longer than the guide


def read_still(path: str) -> Any:
    """The guide image as a dreamcore Guide; a clip or a bad file is a one-line error."""

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--guide {path}: no such file")
    try:
        picture = read_image(p)
    except InputError as exc:
        if _is_clip(p):
            raise UsageError(f"--guide {path}: a video guides only `dreamreel video`; give an image here") from None
        raise UsageError(f"--guide {exc}") from None
    return Guide(shrink(picture.pixels))


def _is_clip(p: Path) -> bool:

    try:
        return media.probe(p).width > 0
    except Exception:
        return False


def open_guide(path: str) -> tuple[Any | None, Path | None]:
    """(a still Guide, None) or (None, the clip's path): what ``--guide`` names, for `video`."""

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--guide {path}: no such file")
    try:
        read_image(p)
        return read_still(path), None
    except (InputError, UsageError):
        pass
    if not _is_clip(p):
        raise UsageError(f"--guide {path}: neither an image nor a video that can be decoded")
    return None, p


def first_frame(path: Path) -> Any:
    """The guide clip's first frame, as a Guide."""
    return _frame(path, None, "no video frames decode")


def frame_at(path: Path, times: list[float], index: int) -> Any:
    """The guide clip's frame ``index`` (its time ``times[index]``), as a Guide: one seek and a
    short decode, for a few frames far apart (a preview's)."""
    return _frame(path, times[index] if index else None, f"its frame at {times[index]:.3f} s does not decode")


def _frame(path: Path, pts: float | None, missing: str) -> Any:
    """The frame at ``pts`` (None: the first) of the guide clip, as a Guide."""

    pipe, got = media.frames_at(path, pts, media.probe(path).display_size)
    pipe.close()
    if got is None or (pts is not None and abs(got[0] - pts) > 1e-4):
        raise UsageError(f"--guide {path}: {missing}")
    return Guide(shrink(got[1]))


def clip_times(path: Path) -> list[float]:
    """The guide clip's frame times, from its start (one light decode pass)."""

    info = media.probe(path)
    w, h = info.width, info.height
    k = min(1.0, 64 / max(w, h))
    try:
        sc = media.scan(path, (max(2, round(w * k) // 2 * 2), max(2, round(h * k) // 2 * 2)))
    except InputError as exc:
        raise UsageError(f"--guide {exc}") from None
    return [float(t) for t in sc.pts]


def store_still(store: Store, guide: Any) -> None:
    """The still guide into the job's store, where workers read it (written by every run)."""

    store.write_sealed(GUIDE_PNG, encode_png(guide.pixels), durable=True)


def store_clip_times(store: Store, clip: Path) -> None:
    """The guide clip's frame times into the job's store, once: kept from the job's first run (a
    function of the clip alone); made again when missing or damaged."""

    try:
        if store.read_sealed(GUIDE_PTS) is not None:
            return
    except Damaged:
        pass
    store.write_sealed(GUIDE_PTS, json.dumps(clip_times(clip)).encode(), durable=True)


# --- on a worker --------------------------------------------------------------------------------

_lock = threading.Lock()
_stills: dict[tuple[str, str], Any] = {}
_times: dict[tuple[str, str], list[float]] = {}
_last: OrderedDict[tuple[str, int], tuple[int, Any]] = OrderedDict()  # (job, segment) -> (frame, Guide)


def still(store: Store, digest: str) -> Guide:
    """The job's still guide, read from its store once per worker."""

    key = (store.url, digest)
    with _lock:
        if key in _stills:
            return _stills[key]
    data = store.read_sealed(GUIDE_PNG)
    if data is None:
        raise PipelineError(
            f"the guide is missing from the job store {store.url}: run the same command again "
            "(it writes the guide there)"
        )
    guide = Guide(decode_png(data))
    if guide.digest != digest:
        raise PipelineError(
            f"the guide in the job store {store.url} is not this job's: run the same command again "
            "(it writes the guide there)"
        )
    with _lock:
        _stills[key] = guide
    return guide


def guide_index(times: list[float], t: float, end: str) -> int:
    """The guide frame that guides output time ``t`` (seconds from the output's start): the last one
    shown by then; past the guide's end, its frames again from the start (loop) or its last (hold)."""
    t0 = times[0]
    span = times[-1] - t0 + (times[-1] - times[-2] if len(times) > 1 else 0.0)
    t += 1e-4  # timestamps are this precise (a frame at 0.333333 s is the one at 1/3 s)
    if end == "loop" and span > 0:
        t = t % span
    return max(0, bisect.bisect_right(times, t0 + t) - 1)


def clip_frame(store: Store, job_id: str, clip: GuideClip, seg: int, t: float) -> Guide:
    """The Guide for output time ``t`` of segment ``seg``: decoded on in order from this worker's
    decoder for the segment, the frame before kept (a slower guide repeats it)."""

    with _lock:
        times = _times.get((job_id, clip.key))
    if times is None:
        raw = store.read_sealed(GUIDE_PTS)
        if raw is None:
            raise PipelineError(
                f"the guide's frame times are missing from the job store {store.url}: run the "
                "same command again (it writes them there)"
            )
        times = json.loads(bytes(raw))
        with _lock:
            _times[(job_id, clip.key)] = times
    i = guide_index(times, t, clip.end)
    key = (job_id, seg)
    with _lock:
        last = _last.get(key)
    if last is not None and last[0] == i:
        return last[1]
    pixels = decoded_frame(
        (f"guide-{job_id}", seg),
        lambda: worker_copy(clip.path, clip.key, "guide"),
        i,
        times[i],
        clip.size,
        skip_ahead=True,
    )
    guide = Guide(shrink(pixels))
    with _lock:
        _last[key] = (i, guide)
        while len(_last) > 16:
            _last.popitem(last=False)
    return guide
