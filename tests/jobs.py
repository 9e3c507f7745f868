"""Reading what a video job left in its work folder (run with --keep-frames), and clips' frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.io import media
from pipeline.job.framestore import decode_png, frame_rel
from pipeline.video.tasks import crossfade


def stored_pixels(path: Path) -> np.ndarray:
    """A raw frame a job stored (checked: it carries a checksum), as a flat uint8 array."""
    from pipeline.job.integrity import payload

    return np.frombuffer(payload(path.read_bytes(), path.name, str(path)), np.uint8)


def plan(work: Path) -> dict:
    return json.loads((work / "job.json").read_text())["plan"]


def dreamt(work: Path, index: int) -> np.ndarray:
    """Output frame ``index`` as its segment dreamt it (before any cross-fade), RGB uint8."""
    seg = next(s for s in plan(work)["segments"] if s["first"] <= index < s["end"])
    return decode_png((work / frame_rel(seg["id"], index, "png")).read_bytes())


def dreamt_all(work: Path) -> list[np.ndarray]:
    return [dreamt(work, i) for i in range(plan(work)["frames"])]


def scanned(path: Path) -> media.Scan:
    """Frame count, rate and timestamps of a clip, as the product reads them."""
    return media.scan(path, media.probe(path).display_size)


def frames_of(path: Path) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    media.scan(path, media.probe(path).display_size, on_frame=lambda i, f: frames.append(f.copy()))
    return frames


def output_frames(work: Path) -> list[np.ndarray]:
    """The job's output frames before encoding: each segment's own, cross-faded where a shot was
    split, as the chunk tasks mixed them (from the frames a --keep-frames run kept)."""
    from pipeline.video.plan import crossfade_weight

    p = plan(work)
    segments = p["segments"]
    out = []
    for i in range(p["frames"]):
        frame = dreamt(work, i)
        nxt = next((s for s in segments if s["warm_from"] <= i < s["first"]), None)
        if nxt is not None:
            other = decode_png((work / frame_rel(nxt["id"], i, "png")).read_bytes())
            frame = crossfade(frame, other, crossfade_weight(i, nxt["warm_from"], nxt["first"]))
        out.append(frame)
    return out


def encoder_threads_spy(monkeypatch) -> list[int | None]:
    """The x264 thread count each ChunkEncoder is made with from now on, in order."""
    made: list[int | None] = []
    real = media.ChunkEncoder.__init__

    def spy(self, *args, **kwargs):
        made.append(args[5] if len(args) > 5 else kwargs.get("threads"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(media.ChunkEncoder, "__init__", spy)
    return made
