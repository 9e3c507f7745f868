"""What several benchmarks share: scaled copies of clips, the engine options, sizes."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "fruits.jpg"


def ffmpeg(*args: str) -> None:
    from pipeline.io.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def scaled_copy(
    src: Path, dst: Path, width: int, height: int, start: float | None = None, frames: int | None = None
) -> Path:
    """A copy of ``src`` at ``width`` x ``height`` (H.264 CRF 16, no audio), for runs at a fixed size."""
    args = ["-ss", f"{start:.6f}"] if start else []
    args += [
        "-i",
        str(src),
        "-vf",
        f"scale={width}:{height}",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        "-pix_fmt",
        "yuv420p",
        "-an",
    ]
    if frames:
        args += ["-frames:v", str(frames)]
    ffmpeg(*args, str(dst))
    return dst


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); even sides from 16 to 8192 (what H.264 yuv420p takes)."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (WxH, e.g. 640x360)")
    dims = int(w), int(h)
    if not all(16 <= v <= 8192 and v % 2 == 0 for v in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be even, from 16 to 8192")
    return dims
