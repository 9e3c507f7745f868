"""ffmpeg, and the only module that knows it: probe, stream frames, encode chunks, join and mux.

Commands are built as data with ffmpeg-python (unmaintained since 2022: it stays confined here)
and run in one place, :func:`_run`, always as an argument list, never through a shell. Paths go to
ffmpeg as absolute ``file:`` URLs, so a name with a ``:`` or a leading ``-`` can't be misread as a
protocol or an option. The ffmpeg binary is the one on PATH, else the static one that the PyPI
package imageio-ffmpeg ships. There may be no ffprobe: probing reads ffmpeg's own stream header.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, PipelineError, UsageError, printed_write_fault
from pipeline.io.fsutil import check_input_file, check_output_file
from pipeline.runtime import usable_cores

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv"}
# H.264 settings of every chunk (and so of the output): visually lossless for dreams, any player.
X264 = {"c:v": "libx264", "pix_fmt": "yuv420p", "crf": 18, "preset": "medium"}


class FFmpegError(PipelineError):
    """ffmpeg failed; the message carries the line of its stderr that says why. ``fault``: 'disk
    full', 'read-only filesystem', ... when it could not write its output."""

    def __init__(self, message: str, fault: str | None = None):
        super().__init__(message)
        self.fault = fault


def write_fault(stderr: str) -> str | None:
    """What kept ffmpeg from writing, read from its stderr (None: something else)."""
    return printed_write_fault(stderr)


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
    proc = subprocess.run(
        [ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace"
    )
    if check and proc.returncode != 0:
        raise FFmpegError(f"ffmpeg failed: {_last_error(proc.stderr)}", write_fault(proc.stderr))
    return proc


# Lines ffmpeg prints that never say what went wrong: progress, and x264's statistics at the end (a
# failed join once reported "Qavg: 59212.957" for a full disk).
_NOISE = re.compile(
    r"^(frame=|size=|video:|Press \[q\]|\[out#|.*Last message repeated|"
    r"\[libx264 @ [^\]]+\] (frame [IPB]|mb [IPB]|coded|ref [PB]|kb/s|i16|i8|8x8|Weighted|direct|"
    r"consecutive|final ratefactor|using|profile|SSIM|PSNR)|.*Qavg)"
)
_FAULT = re.compile(r"error|failed|invalid|no such|denied|no space|not found|cannot|unable|could not", re.I)


def _last_error(stderr: str) -> str:
    """The line of ffmpeg's stderr that best says why it failed: one naming a fault (the last such),
    else the last line that is not progress or statistics."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _NOISE.match(ln) and "Conversion failed" not in ln]
    for ln in reversed(useful):
        if printed_write_fault(ln):
            return re.sub(r"^\[[^\]]+\] ", "", ln)[:300]
    for ln in reversed(useful):
        if _FAULT.search(ln) and not ln.startswith(("Error closing file", "Task finished", "Terminating thread")):
            return re.sub(r"^\[[^\]]+\] ", "", ln)[:300]
    if useful:
        return re.sub(r"^\[[^\]]+\] ", "", useful[-1])[:300]
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


_STREAM = re.compile(r"^\s*Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")


def probe(path: str | os.PathLike[str]) -> SourceInfo:
    p = Path(path)
    check_input_file(p, "not a video")
    proc = _run(["-hide_banner", "-nostdin", "-i", _url(p)], check=False)
    return parse_header(p, proc.stderr)


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether ffmpeg reads an audio stream in the file (any file: a song, a clip)."""
    p = Path(path)
    check_input_file(p, "not an audio file")
    text = _run(["-hide_banner", "-nostdin", "-i", _url(p)], check=False).stderr
    return any((m := _STREAM.match(line)) and m.group(1) == "Audio" for line in text.splitlines())


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


# --- frames through pipes ---------------------------------------------------------------------

_SHOWINFO = re.compile(r"n:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:(-?[\d.e+-]+)(?:.*?duration_time:([\d.]+))?")
_RATE = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")
_DECODE_ERROR = re.compile(r"error|corrupt|invalid|concealing|missing", re.I)


class FramePipe:
    """ffmpeg decoding to raw RGB frames on its stdout, each frame paired with its timestamp from
    showinfo on its stderr (read by a thread, so neither pipe can fill up and stall the other)."""

    def __init__(self, args: list[str], width: int, height: int):
        self.width, self.height = width, height
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.times: dict[int, float] = {}  # showinfo's frame number n -> timestamp
        self.durations: dict[int, float | None] = {}
        self.rate: Fraction | None = None
        self.errors = 0
        self.tail: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._thread.start()
        self.count = 0

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            m = _SHOWINFO.search(line)
            with self._cond:
                if m:
                    n = int(m.group(1))
                    self.times[n] = float(m.group(3))
                    self.durations[n] = float(m.group(4)) if m.group(4) else None
                    self._cond.notify_all()
                    continue
                rate = _RATE.search(line)
                if rate and int(rate.group(4)) > 0 and self.rate is None:
                    self.rate = Fraction(int(rate.group(3)), int(rate.group(4)))
                elif _DECODE_ERROR.search(line) and "showinfo" not in line and not line.startswith("  "):
                    self.errors += 1
                self.tail = (self.tail + [line])[-40:]
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def read(self) -> tuple[float, Any] | None:
        """The next frame as (timestamp in seconds, uint8 RGB array), or None at the end."""
        import numpy as np

        assert self.proc.stdout is not None
        size = self.width * self.height * 3
        buf = self.proc.stdout.read(size)
        if not buf or len(buf) < size:
            return None
        k = self.count
        with self._cond:
            # showinfo numbers the frames it sees (n), which are the frames on stdout, in order
            if not self._cond.wait_for(
                lambda: k in self.times or max(self.times, default=-1) > k or self._done, timeout=60
            ):
                raise FFmpegError("ffmpeg gave a frame but not its timestamp")
            if k not in self.times:
                raise PipelineError(
                    f"ffmpeg reported no timestamp for frame {k}; cannot keep the clip's timing "
                    "(DREAMREEL_DEBUG=1 and report it, with the file)"
                )
            pts = self.times[k]
        self.count += 1
        return pts, np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)

    def read_on(self, pts: float, got: tuple[float, Any] | None = None) -> tuple[float, Any] | None:
        """The first frame at or after timestamp ``pts`` (``got``: one read already, the first to
        look at), the frames before it dropped; None at the end."""
        if got is None:
            got = self.read()
        while got is not None and got[0] < pts - 1e-4:
            got = self.read()
        return got

    def finish(self) -> int:
        """Wait for ffmpeg to end; its exit code."""
        code = self.proc.wait()
        self._thread.join(timeout=10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._thread.join(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def last_error(self) -> str:
        return _last_error("\n".join(self.tail))


@dataclass
class Scan:
    """The frames of a clip's chosen range: their timestamps (seconds as the file has them) and the
    stream's rate, from one decoding pass."""

    pts: list[float]
    frame_rate: Fraction | None
    errors: int  # decoder errors ffmpeg reported and got past (a damaged file)
    last_duration: float | None

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def times(self) -> list[float]:
        """Timestamps from the first frame, which is at 0."""
        return [t - self.pts[0] for t in self.pts] if self.pts else []

    def is_constant_rate(self) -> bool:
        if self.frame_rate is None or self.frame_rate <= 0:
            return False
        step = 1 / float(self.frame_rate)
        return all(abs((b - a) - step) < 0.25 * step for a, b in zip(self.pts, self.pts[1:], strict=False))


def scan(
    src: str | os.PathLike[str],
    size: tuple[int, int],
    start: float | None = None,
    duration: float | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[int, Any], None] | None = None,
) -> Scan:
    """Decode the range once, scaled to ``size`` (w, h) while decoding, rotation applied; every
    frame goes to ``on_frame(index, rgb)``. Timestamps are the file's own (``-copyts``), so a
    worker can seek to any frame later."""
    import ffmpeg

    in_opts: dict[str, Any] = {"copyts": None}
    if start:
        in_opts["ss"] = f"{start:.6f}"
    if duration:
        in_opts["t"] = f"{duration:.6f}"
    w, h = size
    stream = ffmpeg.input(_url(src), **in_opts).video.filter("showinfo").filter("scale", w, h, flags="area")
    out_opts: dict[str, Any] = {"f": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"}
    if max_frames:
        out_opts["frames:v"] = max_frames
    args = ffmpeg.output(stream, "pipe:", **out_opts).global_args("-hide_banner", "-nostdin").get_args()
    pipe = FramePipe(args, w, h)
    pts: list[float] = []
    try:
        while (frame := pipe.read()) is not None:
            if on_frame is not None:
                on_frame(len(pts), frame[1])
            pts.append(frame[0])
        code = pipe.finish()
    finally:
        pipe.close()
    if not pts:
        if code != 0:
            raise InputError(f"{src}: cannot decode any frame ({pipe.last_error()})")
        raise InputError(f"{src}: no video frames (nothing in the chosen range?)")
    last = pipe.durations.get(len(pts) - 1)
    return Scan(pts=pts, frame_rate=pipe.rate, errors=pipe.errors, last_duration=last)


def open_frames(src: str | os.PathLike[str], pts: float | None, size: tuple[int, int]) -> FramePipe:
    """Full-size frames (rotation applied) from the keyframe at or before timestamp ``pts`` (None:
    from the first frame); :func:`frames_at` reads on to ``pts`` itself."""
    import ffmpeg

    in_opts: dict[str, Any] = {"copyts": None}
    if pts is not None:
        in_opts.update(ss=f"{pts + 1e-4:.6f}", seek_timestamp=1, noaccurate_seek=None)
    stream = ffmpeg.input(_url(src), **in_opts).video.filter("showinfo")
    args = (
        ffmpeg.output(stream, "pipe:", f="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
        .global_args("-hide_banner", "-nostdin")
        .get_args()
    )
    return FramePipe(args, *size)


SEEK_BACK_S = 2.0  # where a seek lands after the frame sought, the next try starts this much before it


def frames_at(
    src: str | os.PathLike[str], pts: float | None, size: tuple[int, int]
) -> tuple[FramePipe, tuple[float, Any] | None]:
    """A decoder of ``src`` standing at the frame whose timestamp is ``pts`` (None: the first), and
    that frame: the first one at or after ``pts``, None at the end (the caller checks the time).

    The seek goes to the keyframe at or before ``pts``, and the frames before ``pts`` are read and
    dropped here, by the timestamps the light pass found. (ffmpeg's exact seek drops frames by
    their time from the stream's start, so in a file that does not start at 0, such as the
    trailer, which starts a frame in, it dropped the frame sought as well, and every segment but
    the first decoded the clip again from its start.) Where the seek lands after ``pts`` (an index
    that is off), it tries again SEEK_BACK_S before, and then from the first frame."""
    starts: list[float | None] = []
    if pts is not None:
        starts.append(pts)
        if pts - SEEK_BACK_S > 0:
            starts.append(pts - SEEK_BACK_S)
    starts.append(None)
    for start in starts:
        pipe = open_frames(src, start, size)
        try:
            got = pipe.read() if pts is None else pipe.read_on(pts)
        except BaseException:
            pipe.close()
            raise
        if start is None or pts is None or (got is not None and got[0] <= pts + 1e-4):
            return pipe, got
        pipe.close()
    raise AssertionError("unreachable: the last try reads from the first frame")


# --- encode ------------------------------------------------------------------------------------


def check_video_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        allowed = ", ".join(sorted(VIDEO_EXTENSIONS))
        raise UsageError(f"{p}: H.264 output goes in {allowed}, not {ext or 'no extension'!r}")
    return check_output_file(p, overwrite)


def _even(video: Any, w: int, h: int) -> Any:
    """yuv420p needs even sides: an odd side grows by one pixel, a copy of the edge."""
    if w % 2 or h % 2:
        video = video.filter("pad", w + w % 2, h + h % 2).filter("fillborders", right=w % 2, bottom=h % 2, mode="smear")
    return video


def encoder_threads() -> int:
    """x264's thread count for a job begun on this machine: x264's own choice, 1.5 a core. x264's
    pixels depend on its thread count (measured: 48 frames at 1080p decode differently for 10 of 11
    counts from 1 to 36), so a job records this when it begins and encodes every chunk with it, on
    any machine: a job resumed or spread on machines with other core counts gives the same film.
    (2 or 4 threads against 3 on 2 cores, beside the dream: no difference above the noise,
    `python -m benchmarks.serial --modes none --encoder-threads 3,2,4 --rounds 3`.)"""

    return max(1, usable_cores() * 3 // 2)


class ChunkEncoder:
    """H.264 of one run of frames, fed as raw RGB through a pipe: at the clip's constant ``rate``,
    or, for irregular timing, each frame lasting ``durations[i]`` (an ffconcat list of raw frames
    written beside ``out``). Ends with :meth:`finish`. ``threads``: x264's thread count (its pixels
    depend on it; None: x264 chooses, by this machine's cores)."""

    def __init__(
        self,
        out: Path,
        width: int,
        height: int,
        rate: Fraction | None,
        durations: list[float] | None,
        threads: int | None = None,
    ):
        import ffmpeg

        self.out, self.size = out, (width, height)
        self._x264 = X264 if threads is None else {**X264, "threads": threads}
        self._files: list[Path] = []
        self._durations = durations
        self.proc: subprocess.Popen[bytes] | None = None
        # Even sides go through the pipe as yuv420p, converted by OpenCV: the same BT.601 studio-range
        # values as ffmpeg's own conversion (luma to 1 level in 200; chroma a plain 2x2 mean, like
        # swscale's accurate mode), half the bytes, and 1.0 of x264's 9.4 CPU seconds at 1080p gone
        # (measured on 96 frames). Odd sides need ffmpeg's padding, so they go as RGB.
        self._i420 = durations is None and width % 2 == 0 and height % 2 == 0
        if durations is None:
            assert rate
            video = ffmpeg.input(
                "pipe:",
                f="rawvideo",
                pix_fmt="yuv420p" if self._i420 else "rgb24",
                s=f"{width}x{height}",
                framerate=str(rate),
            ).video
            # The track's timescale is the rate's own numerator, so each frame lasts a whole number of
            # ticks and players read back the exact rate (with the muxer's default, 4 x 2997 for
            # 2997/125, ffmpeg reads back 24000/1001).
            args = (
                ffmpeg.output(
                    _even(video, width, height), _url(out), f="mp4", video_track_timescale=rate.numerator, **self._x264
                )
                .global_args("-hide_banner", "-nostdin", "-y", "-loglevel", "error")
                .get_args()
            )
            self.proc = subprocess.Popen(
                [ffmpeg_exe(), *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )

    def write(self, rgb: Any) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            if self._i420:
                import cv2

                rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
            try:
                self.proc.stdin.write(rgb.tobytes())
            except BrokenPipeError:
                self.finish()
            return
        raw = self.out.with_name(f"{self.out.stem}-{len(self._files):06d}.rgb")
        raw.write_bytes(rgb.tobytes())
        self._files.append(raw)

    def finish(self) -> None:
        if self.proc is None:
            self._encode_listing()
            return
        assert self.proc.stdin is not None and self.proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        err = self.proc.stderr.read().decode("utf-8", "replace")
        if self.proc.wait() != 0:
            raise FFmpegError(f"encoding failed: {_last_error(err)}")

    def _encode_listing(self) -> None:
        import ffmpeg

        assert self._durations is not None and len(self._durations) == len(self._files)
        w, h = self.size
        listing = self.out.with_suffix(".ffconcat")
        lines = ["ffconcat version 1.0"]
        for f, d in zip(self._files, self._durations, strict=True):
            lines += [
                f"file {f.name}",
                "option f rawvideo",
                "option pixel_format rgb24",
                "option framerate 90000",
                f"option video_size {w}x{h}",
                f"duration {max(d, 1e-4):.6f}",
            ]
        listing.write_text("\n".join(lines) + "\n")
        video = ffmpeg.input(_url(listing), f="concat", safe=0).video
        args = (
            ffmpeg.output(_even(video, w, h), _url(self.out), f="mp4", fps_mode="passthrough", **self._x264)
            .global_args("-hide_banner", "-nostdin", "-y")
            .get_args()
        )
        try:
            _run(args)
        finally:
            for f in self._files:
                f.unlink(missing_ok=True)
            listing.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in self._files:
            f.unlink(missing_ok=True)


# What a film may be written as (video and zoom outputs).
VIDEO_OUTPUT_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv")


@dataclass(frozen=True)
class Film:
    """The timing of a film joined from chunks. ``rate``: the constant frame rate (None: irregular
    timing, kept as the chunks have it). ``spans``: each chunk's length in seconds (its frames'
    durations): the next chunk starts exactly there. ``last``: for irregular timing, the time of
    the film's last frame from its first and how long it shows: x264 gives a chunk's last frame no
    duration of its own, so it is set here (otherwise the film ends that long early, or late).
    ``times``: every frame's presentation time (the film is checked against them)."""

    rate: Fraction | None
    spans: tuple[float, ...]
    times: tuple[float, ...]
    last: tuple[float, float] | None = None

    @property
    def frames(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Sound:
    """The audio a film gets: ``source``'s, from ``start`` for ``duration`` seconds (None: all)."""

    source: Path | None = None
    start: float | None = None
    duration: float | None = None


def join(chunks: list[Path], out: Path, film: Film, sound: Sound, work: Path) -> str:
    """The chunks, one after another, by stream copy, with the audio; write ``out`` (a temporary
    name: the caller renames it). ``work``: a temporary folder for the concat list, which names each
    chunk through a link with a plain name (a path with a quote or a newline in it cannot be written
    in that list). Returns how the audio went."""
    rate, spans, last, frames = film.rate, film.spans, film.last, film.frames
    audio_from, start, duration = sound.source, sound.start, sound.duration
    import ffmpeg

    lines = ["ffconcat version 1.0"]
    for i, (chunk, span) in enumerate(zip(chunks, spans, strict=True)):
        link = work / f"join-{i:05d}.mp4"
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(chunk.resolve())
        except OSError:
            shutil.copyfile(chunk, link)
        lines += [f"file {link.name}", f"duration {span:.6f}"]
    listing = work / "join.ffconcat"
    listing.write_text("\n".join(lines) + "\n")
    video = ffmpeg.input(_url(listing), f="concat", safe=0).video
    vopts: dict[str, Any] = {"c:v": "copy"}
    if rate is None:
        vopts["fps_mode"] = "passthrough"
        if last is not None and frames:
            t, d = last
            # MP4 gives each sample the time to the next in decoding order, and the last its own
            # duration: that one makes the film end where the source's range ends (t + d after the
            # first frame), its frames reordered or not.
            end = f"{t + d:.6f}/TB"
            vopts["bsf:v"] = (
                f"setts=pts=PTS:dts=DTS:duration=if(eq(N\\,{frames - 1})\\,{end}-(DTS-STARTDTS)\\,"
                f"if(gte(PTS*TB\\,{t - 5e-4:.6f})\\,{end}-(PTS-STARTPTS)\\,DURATION))"
            )
    if out.suffix.lower() in (".mp4", ".m4v", ".mov"):
        vopts["movflags"] = "+faststart"
        if rate is not None:  # as the chunks have it (ChunkEncoder): the exact rate reads back
            vopts["video_track_timescale"] = rate.numerator

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
        args = (
            ffmpeg.output(*streams, _url(out), f=_muxer(out), **opts)
            .global_args("-hide_banner", "-nostdin", "-y")
            .get_args()
        )
        return _run(args, check=False)

    if audio_from is None:
        proc = attempt(None)
        how = "no audio"
    else:
        trimmed = bool(start or duration)
        how = "audio re-encoded to AAC" if trimmed else "audio copied"
        proc = attempt("aac" if trimmed else "copy")
        if proc.returncode != 0 and not trimmed and not write_fault(proc.stderr):
            how = "audio re-encoded to AAC (the container does not take the source's codec)"
            proc = attempt("aac")
    if proc.returncode != 0:
        raise FFmpegError(f"joining the chunks failed: {_last_error(proc.stderr)}", write_fault(proc.stderr))
    return how


def packet_times(path: str | os.PathLike[str]) -> list[float]:
    """The presentation times of a file's video packets, in seconds, in order: read from its index
    by stream copy (nothing is decoded), to check a film against its plan."""
    proc = _run(
        [
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            _url(path),
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "framecrc",
            "-",
        ]
    )
    tb = Fraction(1, 1)
    pts = []
    for line in proc.stdout.splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            cols = line.split(",")
            if len(cols) >= 3 and cols[0].strip() == "0":
                pts.append(int(cols[2]))
    return [float(p * tb) for p in sorted(pts)]


def _muxer(out: Path) -> str:
    return {".mkv": "matroska", ".mov": "mov"}.get(out.suffix.lower(), "mp4")
