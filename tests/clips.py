"""Video clips the tests generate with ffmpeg's lavfi sources (no ../shared needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from pipeline.io.media import ffmpeg_exe


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(
    path: Path,
    *,
    size: str = "96x64",
    rate: str = "24000/1001",
    seconds: float = 1.0,
    audio: bool = True,
    cut_at: float | None = None,
    vcodec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra: tuple[str, ...] = (),
) -> Path:
    """testsrc2 (+ a sine tone); with ``cut_at``, a hard cut to a different picture at that time."""
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    filters = []
    if cut_at is not None:
        inputs += ["-f", "lavfi", "-i", f"mandelbrot=size={size}:rate={rate}:end_scale=0.05"]
        filters = [
            "-filter_complex",
            f"[0:v]trim=0:{cut_at},setpts=PTS-STARTPTS[a];"
            f"[1:v]trim=0:{seconds - cut_at},setpts=PTS-STARTPTS,hue=h=120[b];"
            "[a][b]concat=n=2:v=1:a=0[v]",
            "-map",
            "[v]",
        ]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
        audio_index = 2 if cut_at is not None else 1
        maps = ["-map", f"{audio_index}:a"] if filters else ["-map", "0:v", "-map", "1:a"]
    else:
        maps = [] if filters else ["-map", "0:v"]
    codec = ["-c:v", vcodec, "-pix_fmt", pix_fmt]
    if audio:
        codec += ["-c:a", "aac"]
    ffmpeg(*inputs, *filters, *maps, *codec, *extra, str(path))
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a clip as an RGB uint8 array, decoded by the product's own reader."""
    from tests.jobs import frames_of

    return frames_of(path)


def stream_durations(path: Path) -> dict[str, float]:
    """Seconds of video and of audio in a file, measured by decoding both to the end."""
    out: dict[str, float] = {}
    for kind, sel in (("video", "v:0"), ("audio", "a:0")):
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{sel}", "-f", "null", "-"],
            capture_output=True,
            text=True,
        )
        times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", proc.stderr)
        if proc.returncode == 0 and times:
            h, m, s = times[-1]
            out[kind] = int(h) * 3600 + int(m) * 60 + float(s)
    return out


def make_pan(path: Path, *, frames: int = 16, size: tuple[int, int] = (128, 96), speed: int = 2, seed: int = 0) -> Path:
    """A camera pan: a window of ``size`` sliding ``speed`` pixels per frame to the right across a
    smooth random texture (lossless H.264 at 24 fps, no audio)."""
    import tempfile

    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    width = w + speed * frames + 8
    small = rng.uniform(0, 255, (h // 24 + 2, width // 24 + 2, 3)).astype(np.float32)
    texture = np.clip(cv2.resize(small, (width, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "texture.png"
        cv2.imwrite(str(still), texture)
        ffmpeg(
            "-loop",
            "1",
            "-framerate",
            "24",
            "-i",
            str(still),
            "-vf",
            f"crop={w}:{h}:'{speed}*n':0",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv444p",
            str(path),
        )
    return path
