"""Video clips the tests generate with ffmpeg's lavfi sources (no ../shared needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.media import ffmpeg_exe


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *, size: str = "96x64", rate: str = "24000/1001", seconds: float = 1.0,
              audio: bool = True, cut_at: float | None = None, vcodec: str = "libx264",
              pix_fmt: str = "yuv420p", extra: tuple[str, ...] = ()) -> Path:
    """testsrc2 (+ a sine tone); with ``cut_at``, a hard cut to a different picture at that time."""
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    filters = []
    if cut_at is not None:
        inputs += ["-f", "lavfi", "-i", f"mandelbrot=size={size}:rate={rate}:end_scale=0.05"]
        filters = ["-filter_complex",
                   f"[0:v]trim=0:{cut_at},setpts=PTS-STARTPTS[a];"
                   f"[1:v]trim=0:{seconds - cut_at},setpts=PTS-STARTPTS,hue=h=120[b];"
                   "[a][b]concat=n=2:v=1:a=0[v]", "-map", "[v]"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
        audio_index = 2 if cut_at is not None else 1
        maps = (["-map", f"{audio_index}:a"] if filters else ["-map", "0:v", "-map", "1:a"])
    else:
        maps = [] if filters else ["-map", "0:v"]
    codec = ["-c:v", vcodec, "-pix_fmt", pix_fmt]
    if audio:
        codec += ["-c:a", "aac"]
    ffmpeg(*inputs, *filters, *maps, *codec, *extra, str(path))
    return path
