"""`python -m benchmarks.simulate`: the video task graph of a long film on N workers, on paper.

The film: an hour at 24 fps (86,400 frames), shots of log-normal length (median 3 s, like feature
films' cutting; seeded, so the same film every run). The plan is the product's own (plan.plan_segments
and plan.plan_chunks for N workers: shots split where workers would wait, overlaps re-dreamt). Every
task costs what its stages cost, measured on this machine at the chosen size (``--measure``; or the
figures given): a frame task decodes its frame, dreams it (a chain's first frame the whole dream, a
follow-up the follow-up steps and optical flow), stores it, and pays the scheduling overhead; a chunk
task encodes its frames. The command's light pass before and the join after are serial.

The simulation is event-driven list scheduling: a free worker takes the ready task submitted first,
as Dask does with the job's priorities (segments in the job's own start order: longest first).
Speedup = time on 1 worker / time on N.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import REPO


@dataclass
class Costs:
    """Seconds per unit, at one frame size."""

    dream_first: float  # a chain's first frame: the whole dream
    dream_followup: float  # a follow-up frame: its steps
    flow: float  # optical flow for a follow-up frame
    decode: float  # per frame, on the worker
    store: float  # per frame: the raw frame into the job store
    encode: float  # per frame, x264 in its chunk
    scheduling: float  # per task
    scan: float  # per frame: the command's light pass
    join: float  # per chunk: the command's stream-copy join


def measure(size: tuple[int, int]) -> Costs:
    """Each stage at ``size`` (w, h), with the default settings on untrained InceptionV3 (ImageNet's
    weights cannot be had here; the same network and FLOPs)."""
    import subprocess
    import tempfile

    from dreamcore.coherence import optical_flow
    from dreamcore.config import DreamConfig, VideoConfig
    from dreamcore.engine import Engine
    from pipeline.io import media
    from pipeline.runtime import load_tensorflow

    from .common import scaled_copy
    from .scheduling import bench_dask

    load_tensorflow()
    w, h = size
    rng = np.random.default_rng(0)
    frame = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    engine = Engine(DreamConfig(model="inception_v3", weights="untrained", max_loss=None))
    engine.dream_rgb(frame[:200, :200])

    def timed(fn, n: int = 3) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    first = timed(lambda: engine.dream_rgb(frame), 1)
    followup = timed(lambda: engine.dream_rgb(frame, iterations=VideoConfig().followup_iterations), 2)
    flow = timed(lambda: optical_flow(frame, frame, VideoConfig().flow_side), 3)
    with tempfile.TemporaryDirectory() as tmp:
        clip = scaled_copy(REPO / "samples" / "fruits-pan.mp4", Path(tmp) / "c.mp4", w, h)
        n = media.scan(clip, size).frames
        decode = timed(lambda: media.scan(clip, size), 2) / n
        scan = timed(lambda: media.scan(clip, (256, max(2, round(h * 256 / w / 2) * 2))), 2) / n
        raw = (rng.uniform(0, 255, (h, w, 3))).astype(np.uint8).tobytes()
        store = timed(lambda: Path(tmp, "f.rgb").write_bytes(raw), 10)
        t0 = time.perf_counter()
        subprocess.run(
            [
                media.ffmpeg_exe(),
                "-y",
                "-loglevel",
                "error",
                "-i",
                str(clip),
                "-c:v",
                "libx264",
                "-crf",
                "18",
                str(Path(tmp) / "t.mp4"),
            ],
            check=True,
        )
        encode = (time.perf_counter() - t0) / n - decode
    ms = float(bench_dask(200, (1,)).splitlines()[1].split()[-1])  # chained tasks, in-process
    return Costs(first, followup, flow, decode, store, max(encode, 0.0), ms / 1000, scan, 0.002)


def film(hours: float = 1.0, fps: int = 24, seed: int = 0) -> tuple[int, list[int]]:
    """Frames and shot starts of a film with log-normal shot lengths (median 3 s, sigma 0.9)."""
    rng = np.random.default_rng(seed)
    frames = int(hours * 3600 * fps)
    starts, at = [], 0
    while at < frames:
        starts.append(at)
        at += max(1, int(rng.lognormal(math.log(3 * fps), 0.9)))
    return frames, starts


def simulate(frames: int, shots: list[int], workers: int, costs: Costs, overlap: int = 12) -> dict:
    from pipeline.video.plan import Segment, plan_chunks, plan_segments, start_order

    segments = plan_segments(frames, shots, workers, 0, overlap)
    chunks = plan_chunks(segments)
    # Tasks in the order the job submits them: each segment's frames, each chunk after its last frame.
    cost: list[float] = []
    deps: list[list[int]] = []
    frame_task: dict[tuple[int, int], int] = {}
    chunk_after: dict[tuple[int, int], list] = {}
    for c in chunks:
        chunk_after.setdefault((c.seg, c.end - 1), []).append(c)
    waiting: dict[tuple[int, int], list] = {}

    def add(c_cost: float, d: list[int]) -> int:
        cost.append(c_cost + costs.scheduling)
        deps.append(d)
        return len(cost) - 1

    def add_chunk(c, seg: Segment) -> None:  # noqa: ANN001
        d = [frame_task[(c.seg, c.end - 1)]]
        if c.blend is not None:
            key = (c.blend, segments[c.blend].first - 1)
            if key not in frame_task:
                waiting.setdefault(key, []).append(c)
                return
            d.append(frame_task[key])
        add((c.end - c.first) * costs.encode, d)

    for s in start_order(segments):
        for i in range(s.warm_from, s.end):
            fresh = i == s.warm_from
            work = costs.decode + costs.store + (costs.dream_first if fresh else costs.dream_followup + costs.flow)
            frame_task[(s.id, i)] = add(work, [] if fresh else [frame_task[(s.id, i - 1)]])
            for c in waiting.pop((s.id, i), []):
                add_chunk(c, segments[c.seg])
            for c in chunk_after.get((s.id, i), []):
                add_chunk(c, s)
    n = len(cost)
    dependents: list[list[int]] = [[] for _ in range(n)]
    missing = [len(d) for d in deps]
    for t, d in enumerate(deps):
        for x in d:
            dependents[x].append(t)
    ready = [t for t in range(n) if not missing[t]]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    free, now, busy = workers, 0.0, 0.0
    while ready or running:
        while free and ready:
            t = heapq.heappop(ready)
            heapq.heappush(running, (now + cost[t], t))
            busy += cost[t]
            free -= 1
        now, t = heapq.heappop(running)
        free += 1
        for x in dependents[t]:
            missing[x] -= 1
            if not missing[x]:
                heapq.heappush(ready, x)
    serial = frames * costs.scan + len(chunks) * costs.join
    return {
        "workers": workers,
        "segments": len(segments),
        "tasks": n,
        "dream_hours": sum(cost) / 3600,
        "hours": (now + serial) / 3600,
        "utilisation": busy / (now * workers),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.simulate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--measure", metavar="WxH", help="measure the stage costs here at this size (e.g. 1280x720)")
    p.add_argument("--costs", metavar="JSON", help="stage costs in seconds, as --measure prints them")
    p.add_argument("--workers", default="1,8,32,128")
    p.add_argument("--hours", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.measure:
        w, _, h = args.measure.partition("x")
        costs = measure((int(w), int(h)))
    elif args.costs:
        costs = Costs(**json.loads(args.costs))
    else:
        raise SystemExit("give --measure WxH or --costs JSON")
    print(f"# stage costs (s): {json.dumps({k: round(v, 5) for k, v in asdict(costs).items()})}")
    frames, shots = film(args.hours)
    print(f"# film: {frames} frames, {len(shots)} shots (median 3 s, longest {max(np.diff([*shots, frames]))} frames)")
    rows = [simulate(frames, shots, int(n), costs) for n in args.workers.split(",")]
    base = rows[0]["hours"] * rows[0]["workers"]
    print(f"{'workers':>7} {'segments':>8} {'tasks':>7} {'hours':>8} {'speedup':>8} {'/ N':>6} {'busy':>6}")
    for r in rows:
        speedup = base / r["hours"]
        print(
            f"{r['workers']:>7} {r['segments']:>8} {r['tasks']:>7} {r['hours']:>8.2f} {speedup:>8.1f} "
            f"{speedup / r['workers']:>6.2f} {r['utilisation']:>6.1%}"
        )


if __name__ == "__main__":
    main()
