"""`dreamreel preview`: a quick look before hours, and what the full job would cost here.

For a clip: one light pass (the plan's own: timestamps and shots, at 256 px wide) keeps a handful of
frames spread over the chosen range; each is dreamt at that reduced size with the settings the
full job would give it (keyframes included), and a contact sheet shows them (sources above,
dreams below, with their times). For a folder (or one image): a handful of its images, the same way.

The estimate comes from measuring, at the job's real frame size, one gradient step per octave
(and the optical flow between two frames): a shot's first frame costs ``iterations`` of those
steps per octave (times the share of steps ``max_loss`` let the preview's dreams run), a follow-up
frame ``video.followup_iterations`` plus the flow; the plan's shot count says how many of each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.ascent import step_seconds
from dreamcore.coherence import CutDetector, flow_size, optical_flow
from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.engine import Engine
from dreamcore.keyframes import Schedule
from dreamcore.sequence import Sequence
from pipeline.errors import PipelineError, UsageError
from pipeline.guide import clip_times, frame_at, guide_index
from pipeline.images import walk
from pipeline.io import media
from pipeline.io.imagefile import check_output_path, read_image, rgb8, write_image
from pipeline.runtime import load_tensorflow
from pipeline.settings import check_keyframed_layers, pinned
from pipeline.video.plan import scan_size

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm", ".jp2"}
KEEP = 64  # frames the light pass keeps at most (every k-th, k doubling), out of which the picks come


@dataclass
class PreviewRequest:
    input: str
    output: str
    config: DreamConfig
    video: VideoConfig = field(default_factory=VideoConfig)
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    count: int = 6
    start: float | None = None
    duration: float | None = None
    frames: int | None = None
    overwrite: bool = False
    guide_clip: str | None = None  # a clip's frame t is guided by this clip's frame at time t, as in `video`
    guide_end: str = "loop"


@dataclass
class Estimate:
    seconds: float
    lines: list[str]


def is_still_input(path: str) -> bool:
    """A folder of images or one image (else a clip)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES


def run_preview(req: PreviewRequest) -> tuple[Path, Estimate]:

    out = check_output_path(req.output, req.overwrite)
    src = Path(req.input)
    if is_still_input(req.input):
        samples, estimate = _images(req, src)
    else:
        samples, estimate = _clip(req, src)
    sheet = contact_sheet(samples)

    write_image(out, sheet, overwrite=req.overwrite)  # never over a file that appeared while it dreamt
    return out, estimate


# --- a clip ----------------------------------------------------------------------------------------


def _clip(req: PreviewRequest, src: Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], Estimate]:

    info = media.probe(src)
    cfg = pinned(req.config)
    check_keyframed_layers(req.keyframes, cfg)
    vcfg = req.video
    detector = CutDetector(vcfg.scene_detector, vcfg.scene_threshold, vcfg.adaptive_threshold, vcfg.min_scene_frames)
    kept: dict[int, np.ndarray] = {}
    stride = [1]

    def on_frame(i: int, rgb: np.ndarray) -> None:
        detector.feed(i, rgb)
        if i % stride[0] == 0:
            kept[i] = rgb.copy()
            if len(kept) > KEEP:
                stride[0] *= 2
                for k in [k for k in kept if k % stride[0]]:
                    del kept[k]

    t0 = time.perf_counter()
    scan = media.scan(src, scan_size(*info.display_size), req.start, req.duration, req.frames, on_frame=on_frame)
    scan_s = time.perf_counter() - t0
    shots = detector.shots()
    times = scan.times
    fps = float(scan.frame_rate) if scan.frame_rate else (scan.frames / max(times[-1], 1e-9) if times else 24.0)
    if req.keyframes:
        span = times[-1] + (scan.last_duration or 1 / fps)
        req.keyframes.check(cfg, vcfg, scan.frames, span, fps)
    order = sorted(kept)
    picks = [order[round((k + 0.5) * len(order) / req.count - 0.5)] for k in range(min(req.count, len(order)))]
    picks = sorted(set(picks))
    load_tensorflow()
    samples = []
    steps_run, steps_max = 0, 0
    guided = _guide_frames(req, [times[i] - times[0] for i in picks])
    sequence = Sequence(cfg, vcfg, req.keyframes, fps)
    for n, i in enumerate(picks):
        c = sequence.frame(i, times[i], guided[n] if guided else None).config
        ran: dict[int, int] = {}

        def count(octave: int, octaves: int, it: int, its: int, loss: float, ran: dict[int, int] = ran) -> None:
            ran[octave] = it

        dream = Engine(c).dream_rgb(kept[i], progress=count, seed_key=(i,), uint8=True)
        steps_run += sum(ran.values())
        steps_max += len(ran) * c.iterations
        samples.append((f"frame {i}, {_clock(times[i])}", kept[i], dream))
    # The cost at the job's real size: one step per octave, and the flow between two frames.
    w, h = info.display_size
    pipe, first = media.frames_at(src, scan.pts[picks[0]], (w, h))
    try:
        second = pipe.read()
    finally:
        pipe.close()
    if first is None:
        raise PipelineError(f"{src}: cannot decode a frame at full size")
    full = first[1]
    if guided:  # the guided step's cost: its guide features are part of it
        cfg = cfg.replace(guide=guided[0])
    engine = Engine(cfg)
    engine.dream_rgb(full[:64, :64] if min(h, w) > 200 else full, iterations=1)  # warm: trace, set up

    t0, s0 = time.perf_counter(), step_seconds()
    engine.dream_rgb(full, iterations=1, uint8=True)
    one_wall = time.perf_counter() - t0
    one_steps = step_seconds() - s0
    fixed = one_wall - one_steps
    flow_s = 0.0
    if vcfg.coherence == "flow" and second is not None:
        t0 = time.perf_counter()
        optical_flow(full, second[1], flow_size(vcfg.flow_side, cfg.max_side))
        flow_s = time.perf_counter() - t0
    share = steps_run / steps_max if steps_max else 1.0
    first_s = fixed + one_steps * cfg.iterations * share
    follow_s = fixed + one_steps * vcfg.followup_iterations + flow_s
    n = scan.frames
    n_first = n if vcfg.coherence == "none" else len(shots)
    total = n_first * first_s + (n - n_first) * follow_s + scan_s
    spent = "" if share >= 0.999 else f", {share:.0%} of them run before max_loss"
    plural = "s" if len(shots) != 1 else ""
    lines = [
        f"{n} frames of {w}x{h}, {len(shots)} shot{plural}; here a shot's first frame takes about {first_s:.1f} s "
        f"(every octave at {cfg.iterations} steps{spent}), a following frame {follow_s:.2f} s "
        f"({vcfg.followup_iterations} step per octave{f', flow {flow_s:.2f} s' if flow_s else ''})"
    ]
    return samples, Estimate(total, lines)


def _guide_frames(req: PreviewRequest, times: list[float]) -> list[Any]:
    """For each output time (seconds from the range's start), the guide clip's frame that guides it in
    the full job (the same rule: dreamreel video --guide CLIP --guide-end)."""
    if not req.guide_clip:
        return []

    clip = Path(req.guide_clip)
    gtimes = clip_times(clip)
    picked = [guide_index(gtimes, t, req.guide_end) for t in times]
    frames = {i: frame_at(clip, gtimes, i) for i in sorted(set(picked))}
    return [frames[i] for i in picked]


# --- images ----------------------------------------------------------------------------------------


def _images(req: PreviewRequest, src: Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], Estimate]:

    if req.keyframes:
        raise UsageError("keyframes change settings over time: preview a clip to see them")
    if src.is_dir():
        files = [f for f in walk(src)[0] if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [src]
    if not files:
        raise UsageError(f"{src}: no images in it")
    picks = [files[round((k + 0.5) * len(files) / req.count - 0.5)] for k in range(min(req.count, len(files)))]
    cfg = pinned(req.config)
    load_tensorflow()
    engine = Engine(cfg)
    samples = []
    full_s = []
    for f in dict.fromkeys(picks):
        rgb = rgb8(read_image(f).pixels)
        small = _shrink(rgb, 256)
        samples.append((f.name, small, engine.dream_rgb(small, uint8=True)))
        t0, s0 = time.perf_counter(), step_seconds()
        engine.dream_rgb(rgb, iterations=1, uint8=True)
        wall, steps = time.perf_counter() - t0, step_seconds() - s0
        full_s.append(wall - steps + steps * cfg.iterations)
    per = float(np.mean(full_s))
    lines = [
        f"{len(files)} images; here one takes about {per:.1f} s (measured at full size on {len(full_s)}: one step "
        f"per octave, times {cfg.iterations} steps)"
    ]
    return samples, Estimate(per * len(files), lines)


def _shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    k = side / max(h, w)
    if k >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


# --- the sheet -------------------------------------------------------------------------------------


def contact_sheet(samples: list[tuple[str, np.ndarray, np.ndarray]], cell: int = 256) -> np.ndarray:
    """Columns of (label, source, dream): the source above, the dream below, the label under both."""
    import cv2

    pad, text_h = 8, 22
    cols = []
    for label, source, dream in samples:
        s, d = _shrink(source, cell), _shrink(dream, cell)
        h, w = s.shape[:2]
        col = np.full((2 * h + text_h + pad, max(w, 1), 3), 24, np.uint8)
        col[:h] = s
        col[h + pad // 2 : 2 * h + pad // 2] = d
        cv2.putText(col, label, (4, 2 * h + pad + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
        cols.append(col)
    height = max(c.shape[0] for c in cols)
    cols = [np.pad(c, ((0, height - c.shape[0]), (0, pad), (0, 0)), constant_values=24) for c in cols]
    return np.concatenate(cols, axis=1)


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:05.2f}"


def human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
