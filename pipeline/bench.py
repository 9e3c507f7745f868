"""`dreamreel bench video CLIP`: seconds per frame, instability and strength of each coherence mode.

All modes run in one process on the same frames with the same settings, so their ratios are
comparable. Instability is the warping error of the dream's residual (out - src) between
consecutive frames of a shot (flow computed on the source frames, occluded pixels masked), divided
by the residual's mean power; strength is mean |out - src| on the 0..1 scale.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig

from . import media
from .video import VideoRequest, read_rgb, run_video


@dataclass
class ModeResult:
    mode: str
    frames: int
    seconds: float
    dream_seconds: float
    instability: float
    strength: float

    @property
    def per_frame(self) -> float:
        return self.seconds / self.frames


def measure(work: Path) -> tuple[float, float, int]:
    """(instability, strength, frames) from a kept work folder."""
    from dreamcore.coherence import optical_flow, warping_error

    job = json.loads((work / "job.json").read_text())
    n = job["decoded"]["frames"]
    starts = set(job["plan"]["shots"])
    ratios, strength = [], []
    prev = None
    for i in range(n):
        src = read_rgb(work / "src" / media.frame_name(i))
        out = read_rgb(work / "dream" / media.frame_name(i))
        res = out - src
        strength.append(float(np.mean(np.abs(res))))
        if prev is not None and i not in starts:
            prev_src, prev_res = prev
            err, power = warping_error(prev_res, res, optical_flow(prev_src, src))
            ratios.append(err / max(power, 1e-12))
        prev = (src, res)
    return (float(np.mean(ratios)) if ratios else float("nan")), float(np.mean(strength)), n


def bench_video(clip: Path, config: DreamConfig, video: VideoConfig, frames: int | None,
                modes: tuple[str, ...] = ("none", "blend", "flow"), start: float | None = None) -> list[ModeResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamreel-bench-") as tmp:
        for mode in modes:
            out = Path(tmp) / f"{mode}.mp4"
            work = Path(tmp) / f"work-{mode}"
            req = VideoRequest(input=clip, output=out, config=config, video=_with(video, coherence=mode),
                               workdir=work, keep_work=True, frames=frames, start=start, quiet=True)
            t0 = time.perf_counter()
            stats = run_video(req)
            seconds = time.perf_counter() - t0
            instability, strength, n = measure(work)
            results.append(ModeResult(mode, n, seconds, sum(stats["task_seconds"]), instability, strength))
    return results


def _with(video: VideoConfig, **changes: Any) -> VideoConfig:
    import dataclasses

    return dataclasses.replace(video, **changes)


def report(results: list[ModeResult]) -> str:
    base = next((r for r in results if r.mode == "none"), results[0])
    lines = [f"{'mode':<6} {'frames':>6} {'s/frame':>8} {'vs none':>8} {'instability':>11} {'vs none':>8} "
             f"{'strength':>9} {'vs none':>8}"]
    for r in results:
        lines.append(f"{r.mode:<6} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} "
                     f"{r.instability:>11.3f} {r.instability / base.instability:>8.2f} {r.strength:>9.4f} "
                     f"{r.strength / base.strength:>8.2f}")
    return "\n".join(lines)
