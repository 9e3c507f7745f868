"""ffmpeg, and the only module that knows it: probe, decode to frames, encode and mux.

Commands are built as data with ffmpeg-python (unmaintained since 2022: it stays confined here)
and run in one place, :func:`_run`, always as an argument list, never through a shell. Paths go to
ffmpeg as absolute ``file:`` URLs, so a name with a ``:`` or a leading ``-`` can't be misread as a
protocol or an option. The ffmpeg binary is the one on PATH, else the static one that the PyPI
package imageio-ffmpeg ships. There may be no ffprobe: probing reads ffmpeg's own stream header.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import InputError, PipelineError, UsageError
from .fsutil import check_input_file, check_output_file

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv"}
FRAME_PATTERN = "%06d.png"


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


class FFmpegError(PipelineError):
    """ffmpeg failed; the message carries the last meaningful line of its stderr."""


def ffmpeg_exe() -> str:
    override = os.environ.get("DREAMREEL_FFMPEG")
    if override:
        return override
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _url(path: str | os.PathLike[str]) -> str:
    return "file:" + str(Path(path).resolve())


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The one place ffmpeg runs."""
    proc = subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace")
    if check and proc.returncode != 0:
        raise FFmpegError(f"ffmpeg failed: {_last_error(proc.stderr)}")
    return proc


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("frame=", "size=", "video:", "Press [q]", "[out#")) and "Conversion failed" not in ln:
            return re.sub(r"^\[[^\]]+\] ", "", ln)[:300]
    return lines[-1][:300] if lines else "no output"


# --- probe -------------------------------------------------------------------------------------

@dataclass
class SourceInfo:
    """What ffmpeg's header says about a clip (before decoding it)."""

    width: int
    height: int
    fps: Fraction | None
    duration: float | None
    rotation: int  # degrees the player turns the picture; decoding applies it
    video_codec: str
    pix_fmt: str
    audio_codec: str | None
    streams: list[str] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def display_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)

    def estimated_frames(self) -> int | None:
        """Frames from the header's duration and rate; None when the header lacks either."""
        if self.duration and self.fps:
            return max(1, round(self.duration * float(self.fps)))
        return None


_STREAM = re.compile(r"^\s*Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")


def probe(path: str | os.PathLike[str]) -> SourceInfo:
    p = Path(path)
    check_input_file(p, "not a video")
    proc = _run(["-hide_banner", "-nostdin", "-i", _url(p)], check=False)
    return parse_header(p, proc.stderr)


def parse_header(p: Path, text: str) -> SourceInfo:
    low = text.lower()
    if "moov atom not found" in low:
        # ffmpeg guesses MP4 from the name too: only a file that starts like one is a broken one.
        with open(p, "rb") as f:
            head = f.read(12)
        if head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip"):
            raise InputError(f"{p}: truncated or damaged MP4 (its index, the moov atom, is missing)")
        raise InputError(f"{p}: not a video ffmpeg can read (no known container inside)")
    if "invalid data found when processing input" in low or "Input #0" not in text:
        raise InputError(f"{p}: not a video ffmpeg can read ({_last_error(text)})")
    video = audio = None
    streams = []
    for line in text.splitlines():
        m = _STREAM.match(line)
        if not m:
            continue
        streams.append(m.group(1))
        if m.group(1) == "Video" and video is None and "attached pic" not in line:
            video = m.group(2)
        elif m.group(1) == "Audio" and audio is None:
            audio = m.group(2)
    if video is None:
        what = "audio only" if audio else "no streams"
        raise InputError(f"{p}: has no video stream ({what})")
    size = re.search(r"(?:^|[ ,])(\d{1,5})x(\d{1,5})(?:[ ,\[]|$)", video)
    if not size:
        raise InputError(f"{p}: ffmpeg reports no frame size for its video stream")
    fps = None
    m = re.search(r"([\d.]+)(k?) fps", video)
    if m:
        fps = Fraction(m.group(1)) * (1000 if m.group(2) else 1)
    duration = None
    m = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rotation = 0
    m = re.search(r"rotation of (-?[\d.]+) degrees", text)
    if m:
        rotation = round(-float(m.group(1))) % 360
    codec = video.split(",")[0].split()[0]
    pix = video.split(",")[1].strip().split("(")[0].strip() if "," in video else "?"
    return SourceInfo(
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=fps,
        duration=duration,
        rotation=rotation,
        video_codec=codec,
        pix_fmt=pix,
        audio_codec=audio.split(",")[0].split()[0] if audio else None,
        streams=streams,
    )


def count_frames(path: str | os.PathLike[str]) -> int:
    """Frames of the first video stream, counted from its packets (read, not decoded): for a clip
    whose header gives no duration or rate."""
    proc = _run(["-hide_banner", "-nostdin", "-i", _url(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                check=False)
    counts = re.findall(r"frame=\s*(\d+)", proc.stderr)
    if not counts:
        raise InputError(f"{path}: cannot count its video frames ({_last_error(proc.stderr)})")
    return int(counts[-1])


# --- decode ------------------------------------------------------------------------------------

@dataclass
class Decoded:
    """The decoded frames: count, each frame's timestamp (s, first at 0) and the stream's rate."""

    frames: int
    times: list[float]
    frame_rate: Fraction | None
    errors: int  # decoder errors ffmpeg reported and got past (a damaged file)
    last_duration: float | None

    def is_constant_rate(self) -> bool:
        if self.frame_rate is None or self.frame_rate <= 0:
            return False
        step = 1 / float(self.frame_rate)
        return all(abs((b - a) - step) < 0.25 * step for a, b in zip(self.times, self.times[1:], strict=False))


_SHOWINFO = re.compile(r"n:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:(-?[\d.e+-]+)(?:.*?duration_time:([\d.]+))?")
_RATE = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")
_DECODE_ERROR = re.compile(r"error|corrupt|invalid|concealing|missing", re.I)


def decode(src: str | os.PathLike[str], out_dir: Path, start: float | None = None, duration: float | None = None,
           max_frames: int | None = None) -> Decoded:
    """Decode every frame once, in order, as RGB PNGs ``000000.png``..., rotation applied, no frame
    duplicated or dropped (the timestamps are kept aside, for the encoder)."""
    import ffmpeg

    in_opts: dict[str, Any] = {}
    if start:
        in_opts["ss"] = f"{start:.6f}"
    if duration:
        in_opts["t"] = f"{duration:.6f}"
    out_opts: dict[str, Any] = {"fps_mode": "passthrough", "pix_fmt": "rgb24", "start_number": 0}
    if max_frames:
        out_opts["frames:v"] = max_frames
    stream = ffmpeg.input(_url(src), **in_opts).video.filter("showinfo")
    args = (ffmpeg.output(stream, _url(out_dir / FRAME_PATTERN), **out_opts)
            .global_args("-hide_banner", "-nostdin", "-y").get_args())
    proc = _run(args, check=False)
    times = []
    durations = []
    for m in _SHOWINFO.finditer(proc.stderr):
        times.append(float(m.group(3)))
        durations.append(float(m.group(4)) if m.group(4) else None)
    written = len(list(out_dir.glob("*.png")))
    if proc.returncode != 0 and written == 0:
        raise InputError(f"{src}: cannot decode any frame ({_last_error(proc.stderr)})")
    if written == 0:
        raise InputError(f"{src}: no video frames (nothing in the chosen range?)")
    times = times[:written]
    rate = None
    m = _RATE.search(proc.stderr)
    if m and int(m.group(4)) > 0:
        rate = Fraction(int(m.group(3)), int(m.group(4)))
    if len(times) < written:
        # ffmpeg printed fewer timestamps than it wrote frames: never guess a timing silently.
        raise PipelineError(f"{src}: ffmpeg reported the timestamps of {len(times)} of {written} decoded frames; "
                            "cannot keep the clip's timing (DREAMREEL_DEBUG=1 and report it, with the file)")
    t0 = times[0]
    errors = sum(1 for ln in proc.stderr.splitlines()
                 if _DECODE_ERROR.search(ln) and "showinfo" not in ln and not ln.startswith("  "))
    return Decoded(frames=written, times=[t - t0 for t in times], frame_rate=rate, errors=errors,
                   last_duration=durations[written - 1] if durations and len(durations) >= written else None)


# --- encode ------------------------------------------------------------------------------------

def check_video_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        allowed = ", ".join(sorted(VIDEO_EXTENSIONS))
        raise UsageError(f"{p}: H.264 output goes in {allowed}, not {ext or 'no extension'!r}")
    return check_output_file(p, overwrite)


def encode(
    frames_dir: Path,
    count: int,
    times: list[float],
    frame_rate: Fraction | None,
    constant_rate: bool,
    last_duration: float | None,
    out: Path,
    audio_from: Path | None,
    start: float | None,
    duration: float | None,
) -> str:
    """Encode frames ``000000.png``.. as H.264 yuv420p at the source's timing, with the source's
    audio; write ``out`` (a temporary name: the caller renames it). Returns how audio went."""
    import ffmpeg

    if constant_rate and frame_rate:
        video = ffmpeg.input(_url(frames_dir / FRAME_PATTERN), framerate=str(frame_rate), start_number=0).video
    else:
        # Irregular timing: each frame lasts until the next one's timestamp (ffconcat durations).
        listing = frames_dir / "frames.ffconcat"
        step = last_duration or (1 / float(frame_rate) if frame_rate else 0.04)
        lines = ["ffconcat version 1.0"]
        for i in range(count):
            dur = (times[i + 1] - times[i]) if i + 1 < count else step
            lines += [f"file {frame_name(i)}", f"duration {max(dur, 1e-4):.6f}"]
        listing.write_text("\n".join(lines) + "\n")
        video = ffmpeg.input(_url(listing), f="concat", safe=0).video
    # yuv420p needs even sides: an odd side grows by one pixel, a copy of the edge.
    from PIL import Image

    with Image.open(frames_dir / frame_name(0)) as first:
        w, h = first.size
    if w % 2 or h % 2:
        video = video.filter("pad", w + w % 2, h + h % 2).filter("fillborders", right=w % 2, bottom=h % 2,
                                                                  mode="smear")
    vopts: dict[str, Any] = {"c:v": "libx264", "pix_fmt": "yuv420p", "crf": 18, "preset": "medium"}
    if not constant_rate:
        vopts["fps_mode"] = "passthrough"
    if out.suffix.lower() in (".mp4", ".m4v", ".mov"):
        vopts["movflags"] = "+faststart"

    def attempt(audio_codec: str | None) -> subprocess.CompletedProcess[str]:
        streams = [video]
        opts = dict(vopts)
        if audio_codec is not None and audio_from is not None:
            in_opts: dict[str, Any] = {}
            if start:
                in_opts["ss"] = f"{start:.6f}"
            if duration:
                in_opts["t"] = f"{duration:.6f}"
            streams.append(ffmpeg.input(_url(audio_from), **in_opts).audio)
            opts["c:a"] = audio_codec
            if audio_codec == "aac":
                opts["b:a"] = "192k"
        args = ffmpeg.output(*streams, _url(out), f=_muxer(out), **opts).global_args(
            "-hide_banner", "-nostdin", "-y").get_args()
        return _run(args, check=False)

    if audio_from is None:
        proc = attempt(None)
        how = "no audio"
    else:
        trimmed = bool(start or duration)
        how = "audio re-encoded to AAC" if trimmed else "audio copied"
        proc = attempt("aac" if trimmed else "copy")
        if proc.returncode != 0 and not trimmed:
            how = "audio re-encoded to AAC (the container does not take the source's codec)"
            proc = attempt("aac")
    if proc.returncode != 0:
        raise FFmpegError(f"encoding failed: {_last_error(proc.stderr)}")
    return how


def _muxer(out: Path) -> str:
    return {".mkv": "matroska", ".mov": "mov"}.get(out.suffix.lower(), "mp4")
