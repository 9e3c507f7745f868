"""`python -m benchmarks.video CLIP`: seconds per frame, instability and strength of each coherence mode.

All modes run in one process on the same frames with the same settings, so their ratios are
comparable. Instability is the warping error of the dream's residual (out - src) between
consecutive frames of a shot (flow computed on the source frames, occluded pixels masked), divided
by the residual's mean power; strength is mean |out - src| on the 0..1 scale.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamcore.config import DreamConfig, VideoConfig
from pipeline.io import media
from pipeline.video.job import VideoRequest, run_video
from tests.jobs import frames_of, plan

from .common import parse_size, scaled_copy


@dataclass
class ModeResult:
    mode: str
    frames: int
    seconds: float
    dream_seconds: float
    instability: float
    strength: float
    split: dict[str, float] | None = None
    series: list[float | None] | None = None
    seams: list[tuple[int, int]] | None = None  # (warm_from, first) of every split of a shot
    followups: list[tuple[float, float, float]] | None = None  # (task wall, its gradient steps, its store)
    encode_per_frame: float = 0.0  # chunk tasks' seconds per frame (x264 itself runs beside the frame tasks)
    raw_store: float = 0.0  # one frame stored raw, as a job does (this benchmark keeps PNGs to measure them)
    strengths: list[float] | None = None  # per output frame
    steps: list[int] | None = None  # gradient steps each dreamt frame really ran (max_loss may end octaves early)

    @property
    def per_frame(self) -> float:
        return self.seconds / self.frames


def measure(clip: Path, work: Path) -> tuple[list[float | None], list[float]]:
    """Per output frame of a job run with --keep-frames: instability against the frame before (None
    at a shot's first frame) and strength, on the frames as dreamt and, in a cross-fade, as mixed."""
    from dreamcore.coherence import frame_instability
    from tests.jobs import output_frames, plan

    starts = set(plan(work)["shots"])
    sources = frames_of(clip)
    series: list[float | None] = []
    strength: list[float] = []
    prev = None
    for i, out in enumerate(output_frames(work)):
        src, dream = sources[i].astype(np.float32) / 255, out.astype(np.float32) / 255
        strength.append(float(np.mean(np.abs(dream - src))))
        series.append(None if prev is None or i in starts else frame_instability(*prev, src, dream))
        prev = (src, dream)
    return series, strength


def bench_video(
    clip: Path,
    config: DreamConfig,
    video: VideoConfig,
    frames: int | None,
    modes: tuple[str, ...] = ("none", "blend", "flow"),
    start: float | None = None,
    size: tuple[int, int] | None = None,
    reference_frames: int = 3,
    workers: int | None = None,
) -> list[ModeResult]:
    """Each mode through the whole `dreamreel video` path; then, on the first ``reference_frames``
    source frames, the keras.io reference dreaming every frame in full at equal settings (its
    step traced on a frame beforehand: every frame of a clip has one size)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamreel-bench-") as tmp:
        scaled = Path(tmp) / "clip.mp4"
        scaled_copy(clip, scaled, *(size or media.probe(clip).display_size), start, frames)
        clip = scaled
        for mode in modes:
            out = Path(tmp) / f"{mode}.mp4"
            work = Path(tmp) / f"work-{mode}"
            req = VideoRequest(
                input=str(clip),
                output=str(out),
                config=config,
                video=_with(video, coherence=mode),
                workdir=str(work),
                keep_work=True,
                keep_frames=True,
                quiet=True,
                workers=workers,
            )
            t0 = time.perf_counter()
            stats = run_video(req).details
            seconds = time.perf_counter() - t0
            series, strengths = measure(clip, work)
            defined = [v for v in series if v is not None]
            instability = float(np.mean(defined)) if defined else float("nan")
            t = stats["timings"]
            parts = {p: sum(stats[f"{p}_seconds"]) for p in ("decode", "flow", "dream", "store")}
            tasks = sum(stats["task_seconds"]) + sum(stats["chunk_seconds"])
            split = {
                "plan": t.get("plan", 0.0),
                **parts,
                "encode chunks": sum(stats["chunk_seconds"]),
                "rest of the tasks": sum(stats["task_seconds"]) - sum(parts.values()),
                "join": t["join"],
            }
            if not workers or workers == 1:  # one worker: the rest of the frames phase is scheduling
                split["scheduling"] = t["frames"] - tasks
                split["other"] = seconds - sum(split.values())
            seams = [(sg["warm_from"], sg["first"]) for sg in plan(work)["segments"] if sg["warm_from"] < sg["first"]]
            results.append(
                ModeResult(
                    mode,
                    len(strengths),
                    seconds,
                    tasks,
                    instability,
                    float(np.mean(strengths)),
                    split,
                    series,
                    seams,
                    stats["followups"],
                    sum(stats["chunk_seconds"]) / max(1, len(strengths)),
                    raw_store_time(work),
                    strengths,
                    stats["steps"],
                )
            )
        if reference_frames > 0:
            results.append(_reference_frames(clip, config, reference_frames))
    return results


def raw_store_time(work: Path) -> float:
    """Seconds to store one of the job's frames raw, with its checksum, as a job without --keep-frames does."""
    from pipeline.job.store import Store
    from tests.jobs import output_frames

    frame = output_frames(work)[0]
    store = Store(str(work / "raw-probe"))
    t0 = time.perf_counter()
    for i in range(10):
        store.write_sealed(f"frames/0000/{i:06d}.rgb", memoryview(np.ascontiguousarray(frame)).cast("B"))
    return (time.perf_counter() - t0) / 10


def _reference_frames(clip: Path, config: DreamConfig, count: int) -> ModeResult:
    from dreamcore.ascent import octave_shapes, resize
    from dreamcore.engine import Engine

    from .engine import as_built, make_reference

    engine = Engine(config)
    ref = make_reference(as_built(engine), list(engine.resolved.layers.values()))
    sources = frames_of(clip)[: count + 1]

    def frame(rgb: np.ndarray) -> np.ndarray:
        """A source frame at the size the engine dreams it (its largest octave), in [-1, 1]."""
        img = rgb.astype(np.float32) / 127.5 - 1
        shape = octave_shapes(*img.shape[:2], 1, config.octave_scale, 1, config.max_side)[-1]
        return resize(img, shape)

    ref(frame(sources[0]), config)  # traces the step at the clip's octave shapes
    picked = [frame(f) for f in (sources[1:] or sources[:1])]
    steps = []
    t0 = time.perf_counter()
    for f in picked:
        before = ref.steps
        ref(f, config)
        steps.append(ref.steps - before)
    seconds = time.perf_counter() - t0
    return ModeResult("reference", len(picked), seconds, seconds, float("nan"), float("nan"), steps=steps)


def _with(video: VideoConfig, **changes: Any) -> VideoConfig:
    import dataclasses

    return dataclasses.replace(video, **changes)


def report(results: list[ModeResult]) -> str:
    modes = [r for r in results if r.mode != "reference"]
    base = next((r for r in modes if r.mode == "none"), modes[0])
    ref = next((r for r in results if r.mode == "reference"), None)
    lines = [
        f"{'mode':<9} {'frames':>6} {'s/frame':>8} {'vs none':>8} {'vs ref':>7} {'instability':>11} "
        f"{'vs none':>8} {'strength':>9} {'vs none':>8}"
    ]
    for r in results:
        vs_ref = f"{r.per_frame / ref.per_frame:>7.2f}" if ref else f"{'-':>7}"
        if r.mode == "reference":
            lines.append(
                f"{r.mode:<9} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} "
                f"{vs_ref}   (the keras.io loop dreaming every frame in full)"
            )
            continue
        lines.append(
            f"{r.mode:<9} {r.frames:>6} {r.per_frame:>8.2f} {r.per_frame / base.per_frame:>8.2f} {vs_ref} "
            f"{r.instability:>11.3f} {r.instability / base.instability:>8.2f} {r.strength:>9.4f} "
            f"{r.strength / base.strength:>8.2f}"
        )
    for r in modes:
        if r.series:
            shown = " ".join("cut" if v is None else f"{v:.3f}" for v in r.series)
            lines.append(f"  {r.mode} instability per frame: {shown}")
        if r.series and r.seams:
            median = float(np.median([v for v in r.series if v is not None]))
            worst = [max(v for v in r.series[a : b + 2] if v is not None) for a, b in r.seams]
            lines.append(
                f"  {r.mode} seams (splits at {', '.join(str(b) for _, b in r.seams)}): the largest "
                f"instability over each overlap and the frame after it: "
                f"{', '.join(f'{w:.3f}' for w in worst)}; median over the clip {median:.3f}; "
                f"worst / median {max(worst) / median:.2f}"
            )
    for r in modes:
        if r.strengths and len(r.strengths) >= 20:
            first, last = float(np.mean(r.strengths[:10])), float(np.mean(r.strengths[-10:]))
            lines.append(
                f"  {r.mode} strength of the first 10 frames {first:.4f}, of the last 10 {last:.4f}: "
                f"{last / first:.2f}x"
            )
        if r.followups:
            wall, steps, png = (sum(v) / len(r.followups) for v in zip(*r.followups, strict=True))
            job = wall - png + r.raw_store  # as a job stores frames: raw, not the PNGs kept here
            lines.append(
                f"  {r.mode} follow-up frames ({len(r.followups)}): task wall {job:.3f} s = "
                f"{job / steps:.3f}x their own gradient steps ({steps:.3f} s), fixed work "
                f"{(job - steps) / steps:.1%} of the steps (frames stored raw as in a job, "
                f"{r.raw_store * 1000:.1f} ms, not as this benchmark's PNGs, {png * 1000:.1f} ms); "
                f"chunk encoding besides: {r.encode_per_frame * 1000:.1f} ms a frame"
            )
    for r in results:
        if r.steps:
            lines.append(
                f"  {r.mode} gradient steps per dreamt frame: {np.mean(r.steps):.2f} (min {min(r.steps)}, max "
                f"{max(r.steps)}; {sum(r.steps)} over {len(r.steps)} frames)"
            )
    lines.append("where the time goes (seconds, share of all; with several workers, task seconds summed):")
    for r in modes:
        if r.split:
            total = sum(r.split.values())
            parts = ", ".join(f"{k} {v:.1f} ({v / total:.1%})" for k, v in r.split.items())
            io = sum(v for k, v in r.split.items() if k not in ("dream", "flow"))
            lines.append(f"  {r.mode}: {parts}; all but dream and flow: {io / total:.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from dreamcore.engine import resolve_config
    from pipeline.commands import engine_flags, engine_options, parse_time
    from pipeline.runtime import load_tensorflow
    from pipeline.settings import build_settings

    p = argparse.ArgumentParser(prog="python -m benchmarks.video", description=__doc__)
    p.add_argument("clip", metavar="CLIP")
    p.add_argument("--frames", type=int, default=24, metavar="N", help="frames to dream per mode (default 24)")
    p.add_argument("--start", metavar="T", type=parse_time, help="start at T")
    p.add_argument("--modes", default="none,blend,flow", help="comma-separated modes (default none,blend,flow)")
    p.add_argument("--blend", type=float, metavar="B")
    p.add_argument("--size", metavar="WxH", type=parse_size, help="scale the clip to WxH first (e.g. 640x360)")
    p.add_argument(
        "--reference-frames",
        type=int,
        default=3,
        metavar="N",
        help="frames the keras.io reference dreams in full, for its s/frame (default 3; 0: skip)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: 1, in-process)")
    engine_options(p)
    args = p.parse_args(argv)
    cfg, vcfg = build_settings(args.preset, args.config, args.sets, engine_flags(args), {"blend": args.blend})
    load_tensorflow()
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    results = bench_video(
        Path(args.clip),
        cfg,
        vcfg,
        args.frames,
        modes,
        args.start,
        args.size,
        max(0, args.reference_frames),
        args.workers,
    )
    res = resolve_config(cfg)
    print(
        f"# {args.clip}: {results[0].frames} frames; {res.backbone.name}/{res.backbone.weights_name(res.weights)} "
        f"layers {res.layers}; config {cfg.to_dict()}; video {vcfg.to_dict()}"
    )
    print(report(results))


if __name__ == "__main__":
    main()
