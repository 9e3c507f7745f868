"""`python -m benchmarks.serial`: how much work besides dreaming the video path does.

A 1080p clip (96 frames of ../shared/media/Megamind.avi scaled up, else a generated pan) goes through
the whole `dreamreel video` path with the cheapest dream there is (1 octave, 1 step, dreamt at 64 px,
no coherence), and, in the same run, through a plain ``ffmpeg -i clip -c:v libx264 -crf 18``
transcode. With a dream this cheap, what is left is the pipeline itself: the plan's light pass,
decoding, storing each frame for resume, encoding, scheduling, joining. Start-up (imports,
TensorFlow, the network, the cluster) is excluded: a small job runs first, untimed.

``--integrity on,off``: each run once as shipped and once with the checks switched off in this
process (no checksums written or checked, no fsync, no check of the joined film), alternating, to
measure what they cost; ``nosync`` keeps the checksums and the film check, without fsync.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .common import REPO, scaled_copy

CHEAP = {
    "model": "inception_v3",
    "weights": "untrained",
    "layers": {"mixed2": 1.0},
    "octaves": 1,
    "iterations": 1,
    "max_side": 64,
}


def make_clip(folder: Path, frames: int, size: tuple[int, int]) -> Path:
    megamind = REPO.parent / "shared" / "media" / "Megamind.avi"
    if megamind.exists():
        return scaled_copy(megamind, folder / "clip.mp4", *size, None, frames)
    from tests.clips import make_pan

    return scaled_copy(make_pan(folder / "pan.mp4", frames=frames, size=(320, 180)), folder / "clip.mp4", *size)


def run(clip: Path, out: Path, coherence: str, workers: int | None) -> dict:
    from dreamcore.config import DreamConfig, VideoConfig
    from pipeline.video.job import VideoRequest, run_video

    req = VideoRequest(
        input=str(clip),
        output=str(out),
        config=DreamConfig(**CHEAP),
        video=VideoConfig(coherence=coherence),
        quiet=True,
        workers=workers,
        overwrite=True,
    )  # each round replaces its own output
    t0 = time.perf_counter()
    stats = run_video(req).details
    stats["wall"] = time.perf_counter() - t0
    return stats


def timed_transcode(src: Path, out: Path) -> float:
    """Seconds of ``ffmpeg -i src -c:v libx264 -crf 18 out``."""
    from pipeline.io.media import ffmpeg_exe

    t0 = time.perf_counter()
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-c:v", "libx264", "-crf", "18", str(out)],
        check=True,
    )
    return time.perf_counter() - t0


def _size(path: Path) -> int:
    return path.stat().st_size


def main(argv: list[str] | None = None) -> None:
    from pipeline.runtime import load_tensorflow

    p = argparse.ArgumentParser(prog="python -m benchmarks.serial", description=__doc__)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--modes", default="none,flow", help="coherence modes to run (default none,flow)")
    p.add_argument(
        "--encoder-threads",
        default="",
        help="x264 thread counts to compare, e.g. 2,3,4, each run of a mode once with each, in turn "
        "(default: the job's own, x264's choice of 1.5 a core)",
    )
    p.add_argument("--rounds", type=int, default=1, help="run it all this many times, the transcode included")
    p.add_argument(
        "--timeline",
        action="store_true",
        help="print the cores busy every 0.25 s of each run: in all, this process, its ffmpeg children",
    )
    p.add_argument(
        "--integrity",
        default="on",
        help="on (as shipped), off (no checksums, fsyncs or film check), nosync (no fsyncs): each "
        "run once per value given, in turn, e.g. on,off",
    )
    args = p.parse_args(argv)
    counts = [int(n) for n in args.encoder_threads.split(",") if n] or [None]
    load_tensorflow()
    with tempfile.TemporaryDirectory(prefix="dreamreel-serial-") as tmp:
        folder = Path(tmp)
        clip = make_clip(folder, args.frames, (1920, 1080))
        run(scaled_copy(clip, folder / "warm.mp4", 1920, 1080, None, 2), folder / "warm-out.mp4", "flow", None)
        print(f"# {args.frames} frames of 1920x1080; cheapest dream {CHEAP}")
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                for count in counts:
                    for checks in args.integrity.split(","):
                        with integrity(checks):
                            report(clip, folder, args.frames, mode, count, args.timeline, checks)


@contextlib.contextmanager
def integrity(checks: str) -> Iterator[None]:
    """The job's checks as shipped ("on"), or switched off in this process: "off" writes and reads
    stored files without checksums, syncs nothing and does not check the joined film; "nosync" only
    syncs nothing. For measuring what they cost, never for a job anyone keeps."""
    import os

    from pipeline.job import store
    from pipeline.video import job as video

    if checks == "on":
        yield
        return
    if checks not in ("off", "nosync"):
        raise SystemExit(f"--integrity: {checks!r}: on, off or nosync")
    saved = (
        os.fsync,
        store.Store.write_sealed,
        store.Store.read_sealed,
        store.Store.get_sealed,
        store.seal_file,
        video.check_film,
    )
    os.fsync = lambda fd: None
    if checks == "off":
        store.Store.write_sealed = lambda self, rel, data, durable=False: self.write_bytes(rel, [data], durable)
        store.Store.read_sealed = lambda self, rel: (lambda d: None if d is None else memoryview(d))(
            self.read_bytes(rel)
        )
        store.Store.get_sealed = store.Store.get_file
        store.seal_file = lambda path: None
        video.check_film = lambda *a: None
    try:
        yield
    finally:
        (
            os.fsync,
            store.Store.write_sealed,
            store.Store.read_sealed,
            store.Store.get_sealed,
            store.seal_file,
            video.check_film,
        ) = saved


def report(
    clip: Path, folder: Path, frames: int, mode: str, count: int | None, timeline: bool = False, checks: str = "on"
) -> None:
    """One run of the pipeline beside a transcode measured just before it; ``count``: x264's
    threads (None: the job's own choice)."""
    from pipeline.io import media

    transcode = timed_transcode(clip, folder / "transcode.mp4")
    print(f"ffmpeg -i clip -c:v libx264 -crf 18: {transcode:.2f} s ({transcode / frames * 1000:.0f} ms/frame)")
    chosen = media.encoder_threads
    if count is not None:
        media.encoder_threads = lambda: count
    sampler = CoreSampler() if timeline else None
    try:
        stats = run(clip, folder / f"{mode}.mp4", mode, None)
    finally:
        media.encoder_threads = chosen
        if sampler is not None:
            sampler.stop()
    t = stats["timings"]
    parts = {"plan (light pass)": t.get("plan", 0.0)}
    for part in ("decode", "flow", "dream", "store"):
        parts[part] = sum(stats[f"{part}_seconds"])
    parts["encode chunks"] = sum(stats["chunk_seconds"])
    parts["join"] = t["join"]
    parts["the rest"] = stats["wall"] - sum(parts.values())
    split = ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
    streamed = stats["chunks_streamed"]
    threads = f", x264 with {count} threads" if count is not None else ""
    threads += f", checks {checks}" if checks != "on" else ""
    print(
        f"dreamreel video, coherence {mode}{threads}: {stats['wall']:.2f} s = {stats['wall'] / transcode:.2f}x the "
        f"transcode ({sum(streamed)} of {len(streamed)} chunks encoded as their frames were dreamt); {split}"
    )
    # The dreamt frames are harder to encode than the source (a pattern that changes every
    # frame): the same transcode of the output shows what x264 alone costs on them.
    own = timed_transcode(folder / f"{mode}.mp4", folder / f"{mode}-again.mp4")
    print(
        f"  the same transcode of this output: {own:.2f} s ({own / transcode:.2f}x the clip's; "
        f"{_size(folder / f'{mode}-again.mp4') / _size(folder / 'transcode.mp4'):.2f}x its bytes): the "
        f"pipeline is {stats['wall'] / own:.2f}x x264's own work on what it encodes"
    )
    if sampler is not None:
        print("  cores busy (all / this process / its ffmpeg children), every 0.25 s:")
        for t, busy, ours, children in sampler.samples:
            print(f"  {t:5.2f} s  {busy:.2f}  {ours:.2f}  {children:.2f}")


class CoreSampler:
    """Cores busy, read from /proc every 0.25 s in a thread (Linux): the machine's, this process's,
    and its child processes' (ffmpeg), each child's CPU time counted while it runs."""

    def __init__(self, every: float = 0.25):
        import os
        import threading

        self.samples: list[tuple[float, float, float, float]] = []
        self._pid, self._every = os.getpid(), every
        self._children: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ticks(self) -> tuple[int, int, int, int]:
        import os

        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = _proc_stat(int(name))
                if stat is not None and stat[0] == self._pid:
                    self._children[int(name)] = stat[1]
        own = _proc_stat(self._pid)
        return sum(v) - v[3] - v[4], sum(v), own[1] if own else 0, sum(self._children.values())

    def _run(self) -> None:
        import os

        cores = len(os.sched_getaffinity(0))
        t0 = time.perf_counter()
        before = self._ticks()
        while not self._done.wait(self._every):
            now = self._ticks()
            total = max(1, now[1] - before[1]) / cores  # ticks of one core in this interval
            self.samples.append(
                (
                    time.perf_counter() - t0,
                    (now[0] - before[0]) / total,
                    (now[2] - before[2]) / total,
                    (now[3] - before[3]) / total,
                )
            )
            before = now

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, user + system ticks) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


if __name__ == "__main__":
    main()
