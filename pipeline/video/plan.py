"""Planning a video job, in the command's process, from one light pass over the clip.

ffmpeg decodes the chosen range once, scaled to 256 px wide while decoding: that gives every
frame's timestamp (the file's own, so workers can seek to any frame) and feeds the cut detector.
Nothing else heavy happens here: no frame is written anywhere.

The plan cuts the frames into *segments*, each dreamt by one chain of tasks: a segment is a shot.
A shot is split only where workers would otherwise wait: while there are fewer segments than workers,
or one is longer than a worker's share of all frames (or when ``video.chunk_frames`` forces it);
one local worker never splits a shot. A piece after the first then starts ``video.overlap_frames``
early, and over those frames the output cross-fades from the earlier piece's dream to this one's, so
the pattern morphs instead of jumping. Each segment's frames are encoded in *chunks* of at most
:data:`CHUNK_FRAMES`, on the workers, as soon as they are dreamt; the dreamt frames are then dropped
from the store, which so holds about (segments in flight x a chunk) frames at any time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from dreamcore.coherence import CutDetector
from dreamcore.config import VideoConfig
from pipeline.io import media
from pipeline.job.framestore import CHUNK_FRAMES, chunk_name

SCAN_WIDTH = 256
# A shot is split for idle workers only into pieces at least this long (a split costs a fresh start).
MIN_SPLIT_FRAMES = 48
# Frames kept with --keep-frames are PNG: at most this share of raw RGB (measured on dreams at
# 1080p: 0.18; a dream adds detail, so it compresses less than its source). Chunks (H.264 at CRF 18)
# take about this many bytes per pixel and frame, with room to spare (measured: 0.02 at 1080p).
PNG_RATIO = 0.75
CHUNK_BYTES_PER_PIXEL = 0.1


@dataclass(frozen=True)
class Segment:
    """Frames [warm_from, end) are dreamt in one chain, starting fresh at ``warm_from``; frames
    [first, end) are this segment's in the output. Frames [warm_from, first) overlap the segment
    before it in the same shot and are cross-faded with that one's last frames."""

    id: int
    warm_from: int
    first: int
    end: int


@dataclass(frozen=True)
class Chunk:
    """Output frames [first, end) of segment ``seg``, encoded together; ``blend`` is the next
    segment of the same shot whose warm frames cross-fade into this chunk's last ones."""

    seg: int
    first: int
    end: int
    blend: int | None = None

    @property
    def name(self) -> str:
        return chunk_name(self.first, self.end)


def scan_size(width: int, height: int) -> tuple[int, int]:
    w = min(SCAN_WIDTH, width)
    return w, max(2, round(height * w / width / 2) * 2)


def scan(
    src: Path,
    info: media.SourceInfo,
    vcfg: VideoConfig,
    start: float | None,
    duration: float | None,
    frames: int | None,
) -> tuple[media.Scan, list[int]]:
    """The light pass: timestamps of the chosen range and where its shots begin."""
    detector = CutDetector(vcfg.scene_detector, vcfg.scene_threshold, vcfg.adaptive_threshold, vcfg.min_scene_frames)
    result = media.scan(src, scan_size(*info.display_size), start, duration, frames, on_frame=detector.feed)
    return result, detector.shots()


def plan_segments(frames: int, shot_starts: list[int], workers: int, chunk: int, overlap: int) -> list[Segment]:
    """Shots, split only where workers would otherwise wait (or every ``chunk`` frames if given)."""
    bounds = [*shot_starts, frames]
    pieces: list[list[int]] = [[s, e] for s, e in zip(bounds[:-1], bounds[1:], strict=True)]  # [first, end)
    shot_of = {s: s for s in shot_starts}
    if chunk:
        forced = []
        for s, e in pieces:
            first = s
            while first < e:
                end = e if e - first <= chunk + chunk // 4 else first + chunk
                forced.append([first, end])
                shot_of[first] = s
                first = end
        pieces = forced
    else:
        # Workers would wait when there are fewer segments than workers, and at the end of a job
        # while one long segment still runs: split the longest while either holds (a segment longer
        # than a worker's share of all frames). One worker's share is everything: never a split.
        share = math.ceil(frames / max(1, workers))
        while True:
            longest = max(pieces, key=lambda p: p[1] - p[0])
            s, e = longest
            if e - s < 2 * MIN_SPLIT_FRAMES or (len(pieces) >= workers and e - s <= share):
                break
            mid = s + (e - s) // 2
            pieces[pieces.index(longest) : pieces.index(longest) + 1] = [[s, mid], [mid, e]]
            shot_of[mid] = shot_of[s]
    segments = []
    for i, (s, e) in enumerate(pieces):
        split = shot_of[s] != s  # not a shot's start: it overlaps the piece before it
        prev_len = pieces[i - 1][1] - pieces[i - 1][0] if split else 0
        segments.append(Segment(i, s - min(overlap, prev_len) if split else s, s, e))
    return segments


def start_order(segments: list[Segment]) -> list[Segment]:
    """The order in which the job hands segments to workers: the longest shot first (a long shot
    started last leaves every other worker idle while it runs; measured by benchmarks.simulate), and
    the pieces of a split shot in order (a piece's warm frames wait in the store until the piece
    before it cross-fades them, so that one must not start last)."""
    shots: list[list[Segment]] = []
    for seg in segments:
        if seg.warm_from == seg.first or not shots:  # a shot's first piece starts fresh, no overlap
            shots.append([seg])
        else:
            shots[-1].append(seg)
    shots.sort(key=lambda shot: -(shot[-1].end - shot[0].first))  # stable: equal shots in film order
    return [seg for shot in shots for seg in shot]


def plan_chunks(segments: list[Segment], size: int = CHUNK_FRAMES) -> list[Chunk]:
    """Each segment's output frames in runs of at most ``size``; a segment's last chunk holds the
    whole overlap with the next piece of its shot, so one chunk does the whole cross-fade."""
    chunks = []
    for seg, nxt in zip(segments, [*segments[1:], None], strict=True):
        blend = nxt.id if nxt is not None and nxt.warm_from < nxt.first else None
        overlap = seg.end - nxt.warm_from if nxt is not None and blend is not None else 0
        cuts = list(range(seg.first, seg.end, size)) + [seg.end]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] < overlap:
            del cuts[-2]  # a last chunk shorter than the overlap joins the one before it
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            chunks.append(Chunk(seg.id, a, b, blend if b == seg.end else None))
    return chunks


def crossfade_weight(index: int, warm_from: int, first: int) -> float:
    """The next segment's share of output frame ``index`` in an overlap [warm_from, first): rises
    from 1/(n+1) to n/(n+1), so neither end of the overlap is a jump."""
    n = first - warm_from
    return (index - warm_from + 1) / (n + 1)


def store_bound(frames: int, width: int, height: int, in_flight: int, overlap: int, keep_frames: bool = False) -> int:
    """Bytes the store holds at most: the dreamt frames (raw RGB) of the chains in flight, a chunk
    each with its overlap and the frame a chain continues from, and every encoded chunk. With
    --keep-frames: every frame, as PNG."""
    if keep_frames:
        held = frames * width * height * 3 * PNG_RATIO
    else:
        held = in_flight * (CHUNK_FRAMES + overlap + 2) * width * height * 3
    return int(held + frames * width * height * CHUNK_BYTES_PER_PIXEL) + (16 << 20)


@dataclass(frozen=True)
class Plan:
    """A video job's plan, fixed when the job begins and kept in its record: every frame's time, the
    shots, the segments their chains dream and the chunks the output is encoded in."""

    frames: int
    pts: tuple[float, ...]  # every frame's timestamp in the file (workers seek to it)
    frame_rate: str | None  # the stream's rate as a fraction ("24000/1001"), when it has one
    constant_rate: bool  # every frame one rate apart: chunks are encoded at that rate, else with times
    errors: int  # frames ffmpeg could not decode (skipped)
    last_duration: float | None  # the last frame's own duration, as ffmpeg gave it
    shots: tuple[int, ...]  # the first frame of every shot
    segments: tuple[Segment, ...]
    chunks: tuple[Chunk, ...]

    @classmethod
    def from_scan(cls, result: media.Scan, shots: list[int], segments: list[Segment], chunks: list[Chunk]) -> Plan:
        return cls(
            frames=result.frames,
            pts=tuple(result.pts),
            frame_rate=str(result.frame_rate) if result.frame_rate else None,
            constant_rate=result.is_constant_rate(),
            errors=result.errors,
            last_duration=result.last_duration,
            shots=tuple(shots),
            segments=tuple(segments),
            chunks=tuple(chunks),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as the job record keeps it (JSON)."""
        return {
            "frames": self.frames,
            "pts": list(self.pts),
            "frame_rate": self.frame_rate,
            "constant_rate": self.constant_rate,
            "errors": self.errors,
            "last_duration": self.last_duration,
            "shots": list(self.shots),
            "segments": [asdict(s) for s in self.segments],
            "chunks": [asdict(c) for c in self.chunks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(
            frames=d["frames"],
            pts=tuple(d["pts"]),
            frame_rate=d["frame_rate"],
            constant_rate=d["constant_rate"],
            errors=d["errors"],
            last_duration=d["last_duration"],
            shots=tuple(d["shots"]),
            segments=tuple(Segment(**s) for s in d["segments"]),
            chunks=tuple(Chunk(**c) for c in d["chunks"]),
        )

    @property
    def rate(self) -> Fraction | None:
        """The rate chunks are encoded at, or None for irregular timing (each frame its duration)."""
        return Fraction(self.frame_rate) if self.constant_rate and self.frame_rate else None

    def durations(self) -> list[float]:
        """How long each frame shows: until the next one; the last, its own duration as ffmpeg gave
        it (else one frame at the stream's rate)."""
        pts = self.pts
        rate = self.frame_rate
        last = self.last_duration or (1 / float(Fraction(rate)) if rate else 1 / 24)
        return [b - a for a, b in zip(pts, pts[1:], strict=False)] + [last]

    @property
    def span(self) -> float:
        """From the first frame's start to the last frame's end, in seconds."""
        return self.pts[-1] - self.pts[0] + self.durations()[-1]

    @property
    def nominal_fps(self) -> float:
        """Frames a second: the stream's rate, else the frames over their span (keyframes given in
        frame numbers read as times at this rate when mixed with keyframes in seconds)."""
        if self.frame_rate:
            return float(Fraction(self.frame_rate))
        span = self.pts[-1] - self.pts[0]
        return (len(self.pts) - 1) / span if span > 0 else 24.0
