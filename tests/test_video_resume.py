"""Kill `dreamreel video` for real (SIGKILL, SIGINT) and resume: the result must equal an
uninterrupted run's, and finished frames must not be dreamt again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.clips import make_clip, read_frames
from tests.jobs import dreamt_all, encoder_threads_spy
from tests.test_video import FAST

# Small forced segments and overlaps: kills land in chains, in chunk encoding and in cross-fades.
ARGS = [*FAST, "--set", "iterations=3", "--set", "video.chunk_frames=8", "--set", "video.overlap_frames=2"]


def default_sigint() -> None:
    """In the child: SIGINT back to its default. A runner started in the background (a CI script,
    `cmd &`) ignores SIGINT, children inherit that, and Python then never raises KeyboardInterrupt:
    the tests that press Ctrl-C must not depend on how they were started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(clip: Path, out: Path, work: Path, keep: str = "--keep-work") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "video", str(clip), "-o", str(out), "--workdir", str(work), keep, *ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


def events(work: Path) -> list[str]:
    try:
        return (work / "events.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for_events(work: Path, more_than: int, proc: subprocess.Popen[str], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(events(work)) > more_than:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("resume") / "clip.mp4", cut_at=0.6, seconds=1.4)


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"  # the commands' temporary folder: a killed one leaves a partial chunk there
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    ref_work = tmp_path / "ref-work"
    ref = start(clip, tmp_path / "ref.mp4", ref_work, "--keep-frames")
    assert ref.wait(timeout=600) == 0, ref.stderr.read() if ref.stderr else ""

    rng = random.Random(20261125)
    work = tmp_path / "work"
    out = tmp_path / "out.mp4"
    kills = 0
    # First kill: anywhere in start-up (imports, probe, decode) or early dreaming.
    proc = start(clip, out, work)
    time.sleep(rng.uniform(0.5, 4.0))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    # Then kills while frames are being dreamt, each at a random delay after some progress.
    while kills < 4:
        seen = len(events(work))
        proc = start(clip, out, work)
        if not wait_for_events(work, seen, proc):
            break  # it finished before we could kill it
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not out.exists()
    assert kills >= 3
    final = start(clip, out, work)
    assert final.wait(timeout=600) == 0, final.stderr.read() if final.stderr else ""
    resumed_line = final.stderr.read() if final.stderr else ""
    assert "resumed" in resumed_line

    source = read_frames(clip)
    for i, frame in enumerate(dreamt_all(ref_work)):
        assert np.abs(frame.astype(np.float32) - source[i]).mean() > 1.0, i  # a dream, not a copy
    # The killed and resumed job (its frames dropped as they were encoded) made the same chunks, byte
    # for byte, and so the same output.
    chunks = sorted(p.name for p in (ref_work / "chunks").iterdir())
    assert chunks == sorted(p.name for p in (work / "chunks").iterdir())
    for name in chunks:
        assert (work / "chunks" / name).read_bytes() == (ref_work / "chunks" / name).read_bytes(), name
    assert [f.tobytes() for f in read_frames(out)] == [f.tobytes() for f in read_frames(tmp_path / "ref.mp4")]
    # Nothing finished was dreamt twice: every frame's "dreamt" event appears at most once.
    counts = Counter(line for line in events(work))
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    # What the killed commands left in the temporary folder, the last one removed.
    assert not [p.name for p in temp.glob("dreamreel-*")]


def test_ctrl_c_exits_130_with_a_resume_hint_then_resumes(clip: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = tmp_path / "out.mp4"
    proc = start(clip, out, work)
    assert wait_for_events(work, 0, proc)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 130, err
    assert "Run the same command again to resume" in err and "Traceback" not in err
    assert not out.exists()
    done_before = set(events(work))
    again = start(clip, out, work)
    assert again.wait(timeout=600) == 0
    after = Counter(line for line in events(work))
    assert all(after[line] == 1 for line in done_before)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_to_the_process_group_stops_within_seconds_even_mid_frame(workers: int, tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches every process of the group, the workers' too. Frames here take
    seconds each, so one is always being dreamt when it comes: the command still exits 130 at once,
    with one line and no worker's traceback, and leaves no process behind."""
    clip = make_clip(tmp_path / "big.mp4", size="320x240", seconds=0.5, audio=False)
    work = tmp_path / "work"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "video",
        str(clip),
        "-o",
        str(tmp_path / "o.mp4"),
        "--workdir",
        str(work),
        "--model",
        "inception_v3",
        "--weights",
        "untrained",
        "--set",
        "iterations=40",
        "-q",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    assert wait_for_events(work, 0, proc, timeout=300)
    time.sleep(0.5)  # well inside the next frame
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=60)
    elapsed = time.monotonic() - t0
    err = proc.stderr.read() if proc.stderr else ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and len(lines) == 1 and "Run the same command again to resume" in lines[0], err
    assert elapsed < 4.0, f"took {elapsed:.1f} s to stop"
    survivors = subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split("\n")
    survivors = [s for s in survivors if s and "<defunct>" not in s]  # dead, not yet reaped by init
    assert not survivors


def test_tasks_computed_again_after_a_lost_worker_dream_nothing_twice(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker lost holding results: Dask computes each lost result again, and with it the lost
    result's whole lineage (every earlier task of its chain), in order, while the job has moved on
    (chunks encoded, their frames dropped). Every such task must succeed, dream nothing, and change
    nothing: here, after every few tasks, each chunk task so far runs again alone, then the whole
    graph so far runs again in order."""
    from pipeline.cli import main
    from pipeline.cluster import schedule
    from pipeline.video import job as video_job
    from pipeline.video.tasks import ChunkResult, FrameResult

    assert main(["video", str(clip), "-o", str(tmp_path / "plain.mp4"), *ARGS]) == 0
    again: list = []

    def inline(client, tasks, on_result, on_error=None, guard=None):
        results: dict[str, object] = {}
        for n, task in enumerate(tasks):
            results[task.key] = task.fn(*schedule._bind(task.args, results), **schedule._bind(task.kwargs, results))
            if task.summary:
                results[f"{task.key}-summary"] = task.summary(results[task.key])
            on_result(results[f"{task.key}-summary"] if task.summary else results[task.key])
            if n % 4 == 3 or n == len(tasks) - 1:
                for t in tasks[: n + 1]:  # a chunk's own result lost: the chunk task alone, again
                    if t.fn.__name__ == "chunk_task":
                        again.append(t.fn(*schedule._bind(t.args, results), **schedule._bind(t.kwargs, results)))
                redone: dict[str, object] = {}  # a frame's result lost: its lineage, again
                for t in tasks[: n + 1]:
                    redone[t.key] = t.fn(*schedule._bind(t.args, redone), **schedule._bind(t.kwargs, redone))
                    if t.summary:
                        redone[f"{t.key}-summary"] = t.summary(redone[t.key])
                    again.append(redone[t.key])

    monkeypatch.setattr(video_job, "run_graph", inline)
    assert main(["video", str(clip), "-o", str(tmp_path / "again.mp4"), *ARGS]) == 0
    frames = [r for r in again if isinstance(r, FrameResult)]
    chunks = [r for r in again if isinstance(r, ChunkResult)]
    assert len(frames) > 100 and len(chunks) > 10
    assert all(r.skipped and not r.layout for r in frames)  # nothing dreamt again
    assert all(r.again for r in chunks)  # nothing encoded again
    source = read_frames(clip)
    out = read_frames(tmp_path / "again.mp4")
    assert [f.tobytes() for f in out] == [f.tobytes() for f in read_frames(tmp_path / "plain.mp4")]
    assert np.abs(out[5].astype(np.float32) - source[5]).mean() > 1.0  # a dream, not a copy


def test_a_worker_keeps_no_encoder_its_chunk_task_never_takes(tmp_path: Path) -> None:
    """A chain that moved to another worker leaves this worker's encoder for its chunk unfinished
    (or finished, with the chunk task run elsewhere): the next chunk of that segment drops an
    unfinished one, and no worker holds more than MAX_STREAMS, whatever the job's length."""
    from dreamcore.config import DreamConfig
    from dreamcore.sequence import Sequence
    from pipeline.job.store import Store
    from pipeline.video import tasks as frames
    from pipeline.video.plan import Chunk

    job = frames.JobSpec(
        id="j",
        store=Store(str(tmp_path / "store")),
        token="t",
        input="",
        input_key="",
        size=(32, 16),
        sequence=Sequence(DreamConfig()),
        rate="24",
    )
    rgb = np.zeros((16, 32, 3), np.uint8)

    def chunk(seg: int, first: int) -> Chunk:
        return Chunk(seg, first, first + 4)

    try:
        frames.stream_frame(job, chunk(0, 0), (1 / 24,) * 4, 0, rgb)
        frames.stream_frame(job, chunk(0, 0), (1 / 24,) * 4, 1, rgb)  # then the chain moves away
        moved = frames._streams[("j", "000000-000004")]
        frames.stream_frame(job, chunk(0, 4), (1 / 24,) * 4, 4, rgb)  # it comes back for the next chunk
        assert ("j", "000000-000004") not in frames._streams and not moved.dir.exists()
        for seg in range(1, 2 * frames.MAX_STREAMS):  # chunks whose tasks run elsewhere, one per segment
            for i in range(4):
                frames.stream_frame(job, chunk(seg, 8 * seg), (1 / 24,) * 4, 8 * seg + i, rgb)
        assert len(frames._streams) == frames.MAX_STREAMS
        assert (
            "j",
            f"{8 * (2 * frames.MAX_STREAMS - 1):06d}-{8 * (2 * frames.MAX_STREAMS - 1) + 4:06d}",
        ) in frames._streams
    finally:
        for key in list(frames._streams):
            frames._streams.pop(key).abort()


def test_a_resumed_job_sweeps_what_a_kill_left_half_written(tmp_path: Path) -> None:
    """A SIGKILL during a chunk's copy into the store (or a frame's write) leaves a hidden temporary
    file; the next run removes those, and only those."""
    from pipeline.job.store import Store

    store = Store(tmp_path / "work")
    store.write_bytes("chunks/000000-000008.mp4", b"whole")
    store.write_bytes("frames/0001/000009.rgb", b"whole")
    for rel in ("chunks/.000008-000016.mp4.8a8e53f5.part", "frames/0001/.000010.rgb.x1y2.part"):
        (tmp_path / "work" / rel).write_bytes(b"half")
    assert store.sweep_partials() == 2
    left = sorted(str(p.relative_to(tmp_path / "work")) for p in (tmp_path / "work").rglob("*") if p.is_file())
    assert left == ["chunks/000000-000008.mp4", "frames/0001/000009.rgb"]


def test_chunks_keep_the_encoder_thread_count_the_job_began_with(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x264's pixels depend on its thread count, which it takes from the machine's cores: a job
    resumed on a machine with other cores (here: x264's count for it faked) must still encode with
    the count recorded when it began, and so give the same film."""
    from pipeline.cli import main
    from pipeline.io import media

    made = encoder_threads_spy(monkeypatch)
    work, out = tmp_path / "work", tmp_path / "out.mp4"
    cmd = ["video", str(clip), "-o", str(out), "--workdir", str(work), "--keep-work", "--keep-frames", *ARGS]
    monkeypatch.setattr(media, "encoder_threads", lambda: 5)
    assert main(cmd) == 0
    assert json.loads((work / "job.json").read_text())["numerics"]["encoder_threads"] == 5
    assert made and set(made) == {5}
    first = out.read_bytes()
    # Another machine: every chunk encoded again there, from the frames the job kept.
    monkeypatch.setattr(media, "encoder_threads", lambda: 2)
    out.unlink()
    for chunk in (work / "chunks").iterdir():
        chunk.unlink()
    made.clear()
    assert main(cmd) == 0
    assert made and set(made) == {5}
    assert out.read_bytes() == first
