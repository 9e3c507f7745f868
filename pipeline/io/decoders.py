"""Source frames read on in order: this process keeps one ffmpeg decoder open per key (a job's
segment, a guide clip), so a chain's next frame is read on, not sought; a frame out of order seeks.
Bounded (:data:`MAX_DECODERS`); a job's decoders end with it (:func:`release`)."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io import media

_lock = threading.Lock()
MAX_DECODERS = 8  # open ffmpeg decoders per worker (one per segment it is dreaming, one per guide clip it reads)


_decoders: OrderedDict[tuple[str, int], Decoder] = OrderedDict()


class Decoder:
    """Source frames of one segment, read on in order from one ffmpeg process that starts with a
    seek to the segment's first frame (media.frames_at)."""

    def __init__(self, src: str, pts: float, index: int, size: tuple[int, int]):

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
        dec = Decoder(path(), pts, index, size)
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


def close(key: tuple[str, int]) -> None:
    """End decoder ``key`` (a segment's last frame is read)."""
    with _lock:
        dec = _decoders.pop(key, None)
    if dec is not None:
        dec.close()


def release(job_id: str | None) -> None:
    """End this process's decoders of one job (None: of every job)."""
    with _lock:
        gone = [_decoders.pop(k) for k in [k for k in _decoders if job_id in (None, k[0])]]
    for dec in gone:
        with contextlib.suppress(Exception):
            dec.close()
