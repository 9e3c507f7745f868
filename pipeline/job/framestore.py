"""The one layout of a job's frames and chunks in its store, and their codec.

A frame is ``frames/SSSS/IIIIII.EXT`` (a video job's segment SSSS) or ``frames/IIIIII.EXT`` (a
zoom, one chain); EXT is ``rgb`` (raw 8-bit RGB: a tenth of the cost of encoding it) or ``png``
(``--keep-frames``, for people). A chunk is ``chunks/FFFFFF-EEEEEE.mp4``: output frames [F, E).
Everything is written sealed (pipeline.job.integrity) and checked when read: a damaged frame
raises :class:`~pipeline.job.integrity.Damaged`, and so does a missing one that work needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.job.integrity import Damaged
from pipeline.job.store import Store, redact

CHUNK_FRAMES = 48  # output frames per chunk, video and zoom alike


def chunk_name(first: int, end: int) -> str:
    return f"{first:06d}-{end:06d}.mp4"


def chunk_rel(name: str) -> str:
    return f"chunks/{name}"


def chunk_bounds(frames: int, chunk: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """A single chain's chunks: [first, end) for every ``chunk`` frames (a zoom's)."""
    return [(a, min(a + chunk, frames)) for a in range(0, frames, chunk)]


def frame_rel(seg: int | None, index: int, ext: str = "rgb") -> str:
    return f"frames/{index:06d}.{ext}" if seg is None else f"frames/{seg:04d}/{index:06d}.{ext}"


def frame_indexes(names: list[str], ext: str) -> list[int]:
    """The indexes of the stored frames among a folder's names (``000012.rgb`` for ``ext`` rgb);
    any other name is not a frame of the job's, whoever put it there."""
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(rf"(\d{{6}})\.{ext}", n)))


def encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise PipelineError("cannot encode a frame as PNG")
    return buf.tobytes()


def decode_png(data: bytes | memoryview) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PipelineError("a stored frame does not decode")
    return np.ascontiguousarray(bgr[..., ::-1])


@dataclass(frozen=True)
class FrameStore:
    """A job's dreamt frames in its store: ``seg`` None for a single chain (zoom)."""

    store: Store
    size: tuple[int, int]  # (width, height)
    ext: str = "rgb"

    def rel(self, seg: int | None, index: int) -> str:
        return frame_rel(seg, index, self.ext)

    def indexes(self, seg: int | None) -> list[int]:
        """The frames stored for a segment (or the chain), whole or not."""
        return frame_indexes(self.store.names("frames" if seg is None else f"frames/{seg:04d}"), self.ext)

    def exists(self, seg: int | None, index: int) -> bool:
        return self.store.exists(self.rel(seg, index))

    def read(self, seg: int | None, index: int) -> np.ndarray | None:
        """A dreamt frame, checked (None when it is not there); a damaged one raises
        :class:`~pipeline.job.integrity.Damaged`."""
        rel = self.rel(seg, index)
        data = self.store.read_sealed(rel)
        if data is None:
            return None
        if self.ext == "png":
            return decode_png(data)
        w, h = self.size
        if len(data) != w * h * 3:
            raise Damaged(
                rel, redact(self.store.path(rel)), f"damaged ({len(data)} bytes of pixels for a {w}x{h} frame)"
            )
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)

    def needed(self, seg: int | None, index: int) -> np.ndarray:
        """A stored frame that work depends on: missing is :class:`~pipeline.job.integrity.Damaged`
        too, so the command makes it again from the last good state."""
        frame = self.read(seg, index)
        if frame is None:
            rel = self.rel(seg, index)
            raise Damaged(rel, redact(self.store.path(rel)), "missing")
        return frame

    def write(self, seg: int | None, index: int, rgb: np.ndarray) -> None:
        data = encode_png(rgb) if self.ext == "png" else memoryview(np.ascontiguousarray(rgb).data).cast("B")
        self.store.write_sealed(self.rel(seg, index), data)

    def drop(self, seg: int | None, index: int) -> None:
        self.store.delete(self.rel(seg, index))
