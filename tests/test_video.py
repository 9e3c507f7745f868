"""`dreamreel video` end to end on clips the tests generate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.io import media
from pipeline.video.plan import Chunk, Segment, crossfade_weight, plan_chunks, plan_segments
from tests.clips import ffmpeg, make_clip, make_pan, read_frames, stream_durations
from tests.jobs import dreamt, dreamt_all, plan, scanned
from tests.media import SHARED_MEDIA

FAST = [
    "--model",
    "inception_v3",
    "--weights",
    "untrained",
    "--layers",
    "mixed2=1",
    "--set",
    "iterations=2",
    "--set",
    "octaves=1",
    "--set",
    "video.followup_iterations=1",
    "-q",
]


def decoded(path: Path, tmp: Path) -> media.Scan:
    return scanned(path)


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "cut.mp4", cut_at=0.5, seconds=1.5)


def test_one_worker_never_splits_a_shot() -> None:
    assert [(s.warm_from, s.first, s.end) for s in plan_segments(3000, [0, 100], 1, 0, 12)] == [
        (0, 0, 100),
        (100, 100, 3000),
    ]


def test_shots_split_only_where_workers_would_wait_and_overlap_where_split() -> None:
    segs = plan_segments(400, [0, 100], workers=4, chunk=0, overlap=12)
    # 2 shots for 4 workers: the longest piece is halved until there are 4 and none is longer than a
    # worker's share (100 frames)
    assert [(s.warm_from, s.first, s.end) for s in segs] == [
        (0, 0, 100),
        (100, 100, 175),
        (163, 175, 250),
        (238, 250, 325),
        (313, 325, 400),
    ]
    # enough shots for the workers, and none longer than a share: nothing splits
    assert len(plan_segments(400, [0, 100, 200, 300], workers=4, chunk=0, overlap=12)) == 4
    starts = {0, 100}
    for s in segs:
        assert (s.warm_from == s.first) == (s.first in starts)  # a shot's start is fresh, a split overlaps
        if s.first not in starts:
            assert s.first - s.warm_from == 12
    assert len(plan_segments(60, [0], workers=8, chunk=0, overlap=12)) == 1  # too short to split


def test_a_segment_decoder_seeks_to_its_frame_in_a_clip_that_does_not_start_at_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip whose first frame is at 0.5 s (cut from a broadcast, or the trailer: a frame in): a
    segment's decoder gets to its first frame by a seek and reads on from there; it never decodes
    the clip again from its start. (ffmpeg's exact seek drops frames by their time from the stream's
    start: it dropped the frame sought too, and every segment but the first read from frame 0.)"""
    from pipeline.io import decoders as frames

    clip = make_clip(tmp_path / "late.mp4", seconds=2, audio=False, extra=("-output_ts_offset", "0.5"))
    scan = media.scan(clip, (96, 64))
    assert scan.pts[0] == pytest.approx(0.5) and len(scan.pts) == 48
    every = read_frames(clip)
    starts: list[float | None] = []
    real = media.open_frames
    monkeypatch.setattr(media, "open_frames", lambda src, pts, size: starts.append(pts) or real(src, pts, size))
    try:
        for i in (10, 30, 47):
            got = frames.decoded_frame(("late", i), lambda: str(clip), i, scan.pts[i], (96, 64))
            assert np.array_equal(got, every[i])
        assert np.array_equal(
            frames.decoded_frame(("late", 10), lambda: str(clip), 11, scan.pts[11], (96, 64)), every[11]
        )  # the same decoder reads on
    finally:
        for i in (10, 30, 47):
            dec = frames._decoders.pop(("late", i), None)
            if dec is not None:
                dec.close()
    assert starts == [pytest.approx(scan.pts[i]) for i in (10, 30, 47)]


def test_forced_chunks_and_encode_chunks_cover_every_frame_once() -> None:
    segs = plan_segments(96, [0], workers=1, chunk=24, overlap=6)
    assert [(s.warm_from, s.first, s.end) for s in segs] == [(0, 0, 24), (18, 24, 48), (42, 48, 72), (66, 72, 96)]
    chunks = plan_chunks(segs, 20)
    covered = [i for c in chunks for i in range(c.first, c.end)]
    assert covered == list(range(96))
    for c in chunks:  # a segment's last chunk holds its whole overlap with the next, and blends it
        seg = segs[c.seg]
        if c.end == seg.end and c.seg + 1 < len(segs):
            assert c.blend == c.seg + 1 and c.first <= segs[c.seg + 1].warm_from
        else:
            assert c.blend is None
    assert Chunk(0, 0, 24).name == "000000-000024.mp4" and Segment(0, 0, 0, 1).end == 1


def test_crossfade_weights_rise_without_a_jump_at_either_end() -> None:
    weights = [crossfade_weight(i, 10, 16) for i in range(10, 16)]
    assert weights == pytest.approx([1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7])


def test_cut_clip_keeps_frames_rate_and_audio(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    code, err = run(["video", str(cut_clip), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    src, dst = decoded(cut_clip, tmp_path), decoded(out, tmp_path)
    assert dst.frames == src.frames == 36
    assert dst.frame_rate == src.frame_rate == Fraction(24000, 1001)
    d_src, d_dst = stream_durations(cut_clip), stream_durations(out)
    assert abs(d_dst["audio"] - d_src["audio"]) <= 0.1
    assert not (tmp_path / ".out.mp4.dreamreel-work").exists()  # removed after success
    assert "2 shots" in err


def test_one_local_worker_dreams_one_shot_after_the_other(
    cut_clip: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One local worker, two shots: the second shot's first frame waits for the first shot's last
    (a dependency in the graph), so the frames of the two never take turns (which kept two encoders
    filling their look-ahead at once, then draining at once while the dream waited). A chunk task
    waiting for its encoder gives its worker thread back to Dask (two such waits took both threads
    of a local worker and stalled the next shot's dream)."""
    import itertools

    import distributed

    from pipeline.cluster import schedule
    from pipeline.job.framestore import FrameStore
    from pipeline.video import job as video_job
    from pipeline.video import tasks as frames

    seceded: list[str] = []
    real_secede = distributed.secede
    monkeypatch.setattr(distributed, "secede", lambda: seceded.append("x") or real_secede())

    order: list[int] = []
    real_store = FrameStore.write
    monkeypatch.setattr(
        FrameStore, "write", lambda self, seg, i, rgb: order.append(seg) or real_store(self, seg, i, rgb)
    )
    sent: list = []
    real_run = schedule.run_graph
    monkeypatch.setattr(
        video_job, "run_graph", lambda client, tasks, *a, **k: sent.extend(tasks) or real_run(client, tasks, *a, **k)
    )
    code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "out.mp4"), *FAST], capsys)
    assert code == 0, err
    frame_tasks = [t for t in sent if t.fn is frames.frame_task]
    waiting = [t for t in frame_tasks if t.kwargs.get("after") is not None]
    assert len(frame_tasks) == 36 and len(waiting) == 1
    first_shot_end = frame_tasks[frame_tasks.index(waiting[0]) - 1]
    assert waiting[0].kwargs["after"] == schedule.Ref(f"{first_shot_end.key}-summary")
    assert waiting[0].args[1].seg != first_shot_end.args[1].seg  # another segment's first frame
    assert len(order) == 36 and [seg for seg, _ in itertools.groupby(order)] == [1, 0]  # the longer shot first
    assert len(seceded) == 2  # each shot's one chunk, streamed


def test_first_frame_after_a_cut_holds_nothing_of_the_shot_before(cut_clip: Path, tmp_path: Path, capsys) -> None:
    """The frame that starts shot 2 is dreamt from its source alone: it equals the same frame of a
    run where no frame sees another (coherence none), while the frame after it does not."""
    runs = {}
    for mode in ("flow", "none"):
        work = tmp_path / f"work-{mode}"
        code, err = run(
            [
                "video",
                str(cut_clip),
                "-o",
                str(tmp_path / f"{mode}.mp4"),
                *FAST,
                "--coherence",
                mode,
                "--workdir",
                str(work),
                "--keep-frames",
            ],
            capsys,
        )
        assert code == 0, err
        runs[mode] = work
    cut = plan(runs["flow"])["shots"][1]
    assert cut == 12
    assert np.array_equal(dreamt(runs["flow"], cut), dreamt(runs["none"], cut))
    assert not np.array_equal(dreamt(runs["flow"], cut + 1), dreamt(runs["none"], cut + 1))
    assert np.array_equal(dreamt(runs["flow"], 0), dreamt(runs["none"], 0))


def test_existing_output_refused_and_bad_extension(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    code, err = run(["video", str(cut_clip), "-o", str(out), *FAST], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"keep me"
    code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.webm"), *FAST], capsys)
    assert code == 2 and ".webm" in err


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    audio = tmp / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio))
    good = make_clip(tmp / "good.mp4", seconds=1.0)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {
        "text": (text, "not a video"),
        "empty": (empty, "empty file"),
        "audio": (audio, "no video stream"),
        "truncated": (truncated, "truncated"),
    }


@pytest.mark.parametrize("kind", ["text", "empty", "audio", "truncated"])
def test_bad_inputs_exit_2_one_line_nothing_written(kind: str, tmp_path: Path, capsys) -> None:
    src, words = _bad_inputs(tmp_path)[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = run(["video", str(src), "-o", str(out_dir / "o.mp4"), *FAST], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    "kind",
    ["odd", "rotated", "10bit", "vfr", "one-frame"],
)
def test_awkward_clips_are_dreamt_with_their_frame_count(kind: str, tmp_path: Path, capsys) -> None:
    if kind == "odd":
        src = make_clip(
            tmp_path / "odd.mkv", vcodec="ffv1", pix_fmt="yuv444p", audio=False, extra=("-vf", "scale=97:63")
        )
    elif kind == "rotated":
        plain = make_clip(tmp_path / "plain.mp4", size="96x64", audio=False)
        src = tmp_path / "rotated.mp4"
        ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(src))
    elif kind == "10bit":
        src = make_clip(tmp_path / "ten.mkv", vcodec="ffv1", pix_fmt="yuv420p10le", audio=False)
    elif kind == "vfr":
        src = make_clip(
            tmp_path / "vfr.mkv",
            rate="25",
            audio=True,
            extra=("-vf", "setpts='N/25/TB+if(gte(N,10),0.3/TB,0)+if(gte(N,17),0.5/TB,0)'", "-fps_mode", "passthrough"),
        )
    else:
        src = make_clip(tmp_path / "one.mp4", seconds=0.04, rate="25", audio=False)
    out = tmp_path / f"out-{kind}.mp4"
    code, err = run(["video", str(src), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    s, d = decoded(src, tmp_path), decoded(out, tmp_path)
    assert d.frames == s.frames
    first_src = read_frames(src)[0]
    first_out = read_frames(out)[0]
    if kind == "odd":
        assert first_out.shape[:2] == (64, 98)  # yuv420p: one pixel of edge added per odd side
    else:
        assert first_out.shape == first_src.shape
    if kind == "rotated":
        assert first_out.shape[:2] == (96, 64)  # upright: the rotation is applied, not left as metadata
    if kind == "vfr":
        assert not s.is_constant_rate()
        np.testing.assert_allclose(d.times, s.times, atol=0.002)
        total = stream_durations(out)
        assert abs(total["audio"] - stream_durations(src)["audio"]) <= 0.1


def test_damaged_avi_dreams_what_decodes(tmp_path: Path, capsys) -> None:
    good = make_clip(tmp_path / "good.avi", seconds=1.0, vcodec="mpeg4", audio=False)
    data = good.read_bytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: int(len(data) * 0.7)])  # the index (idx1) and the last frames are gone
    out = tmp_path / "o.mp4"
    code, err = run(["video", str(damaged), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    frames = decoded(out, tmp_path).frames
    assert 0 < frames == decoded(damaged, tmp_path).frames < decoded(good, tmp_path).frames


def test_changed_config_on_same_workdir_is_refused_unless_restart(cut_clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    base = ["video", str(cut_clip), "--workdir", str(work), "--frames", "3", *FAST]
    assert run([*base, "-o", str(tmp_path / "a.mp4"), "--keep-work"], capsys)[0] == 0
    code, err = run([*base, "-o", str(tmp_path / "b.mp4"), "--set", "step=0.02"], capsys)
    assert code == 2 and "config.step" in err and "--restart" in err
    code, err = run([*base, "-o", str(tmp_path / "b.mp4"), "--set", "step=0.02", "--restart"], capsys)
    assert code == 0, err
    assert not work.exists()


def test_locked_work_folder_is_refused(cut_clip: Path, tmp_path: Path, capsys) -> None:
    from pipeline.job.store import Store

    work = Store(tmp_path / "work")
    work.claim()  # as another dreamreel run does, before it locks the folder
    with work.locked():
        code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.mp4"), "--workdir", work.url, *FAST], capsys)
    assert code == 2 and "in use" in err
    assert not (tmp_path / "o.mp4").exists()


def test_disk_check_refuses_one_byte_short_and_passes_at_the_bound(
    cut_clip: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The bound: the frames one segment holds at a time (a chunk, its overlap, the frame it continues
    from, raw) and every encoded chunk; one byte less free fails before any dreaming."""
    import shutil
    from collections import namedtuple

    from pipeline.video.plan import CHUNK_BYTES_PER_PIXEL, CHUNK_FRAMES

    need = int(1 * (CHUNK_FRAMES + 0 + 2) * 96 * 64 * 3 + 36 * 96 * 64 * CHUNK_BYTES_PER_PIXEL) + (16 << 20)
    usage = namedtuple("usage", "total used free")
    for free, code in ((need - 1, 2), (need, 0)):  # a disk too small is bad input: exit 2
        monkeypatch.setattr(shutil, "disk_usage", lambda p, free=free: usage(10**12, 10**12 - free, free))
        out = tmp_path / f"o{code}.mp4"
        got, err = run(["video", str(cut_clip), "-o", str(out), *FAST, "--workdir", str(tmp_path / f"w{code}")], capsys)
        assert got == code, err
        assert ("not enough disk space" in err and "36 frames of 96x64" in err) == (code == 2)
        assert out.exists() == (code == 0)


def test_a_clip_without_duration_in_its_header_is_counted(tmp_path: Path, capsys) -> None:
    """A raw H.264 stream has no duration in its header: the plan counts its frames as it reads them."""
    raw = tmp_path / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=1.6", "-c:v", "libx264", "-f", "h264", str(raw))
    assert media.probe(raw).duration is None
    work = tmp_path / "work"
    code, err = run(
        ["video", str(raw), "-o", str(tmp_path / "o.mp4"), *FAST, "--workdir", str(work), "--keep-work"], capsys
    )
    assert code == 0, err
    assert plan(work)["frames"] == 40 and "40 frames" in err


def test_flow_is_far_steadier_than_dreaming_each_frame_alone(tmp_path: Path, capsys) -> None:
    """The headline: on a camera pan, each frame's dream moves with the picture (flow) instead of
    jumping to a new pattern (none), and the carried dream does not fade."""
    from dreamcore.coherence import frame_instability

    clip = make_pan(tmp_path / "pan.mp4", frames=12)
    src = [f.astype(np.float32) / 255 for f in read_frames(clip)]
    series = {}
    for mode in ("none", "flow"):
        work = tmp_path / f"work-{mode}"
        code, err = run(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / f"{mode}.mp4"),
                *FAST,
                "--coherence",
                mode,
                "--workdir",
                str(work),
                "--keep-frames",
            ],
            capsys,
        )
        assert code == 0 and "1 shot," in err, err
        out = [f.astype(np.float32) / 255 for f in dreamt_all(work)]
        series[mode] = [frame_instability(src[i - 1], out[i - 1], src[i], out[i]) for i in range(1, 12)]
        strength = [float(np.mean(np.abs(o - s))) for o, s in zip(out, src, strict=True)]
        assert min(strength) > 0.004, strength  # a dream, not the source
        if mode == "flow":
            assert np.mean(strength[-3:]) >= np.mean(strength[:3])  # carried, not fading
    assert np.mean(series["none"]) > 1.0  # alone, every frame is a new pattern
    assert np.mean(series["flow"]) < 0.25 * np.mean(series["none"]), series


def test_flow_at_a_working_size_is_as_steady(tmp_path: Path, capsys, monkeypatch) -> None:
    """video.flow_side reaches every follow-up frame's flow, capped by the dream's max_side, and a
    flow computed at half size still carries the dream with the picture (the pan's flow instability
    stays far below `none`'s, which the test above puts over 1.0)."""
    from dreamcore import coherence
    from dreamcore.coherence import frame_instability

    sides: list[int | None] = []
    real = coherence.optical_flow

    def spy(prev, cur, max_side=None):
        sides.append(max_side)
        return real(prev, cur, max_side)

    clip = make_pan(tmp_path / "pan.mp4", frames=8)
    monkeypatch.setattr(coherence, "optical_flow", spy)
    work = tmp_path / "work"
    code, err = run(
        [
            "video",
            str(clip),
            "-o",
            str(tmp_path / "out.mp4"),
            *FAST,
            "--set",
            "video.flow_side=64",
            "--workdir",
            str(work),
            "--keep-frames",
        ],
        capsys,
    )
    assert code == 0, err
    assert sides == [64] * 7
    sides.clear()  # a dream at most 72 px: the flow no finer (100 capped to 72)
    code, err = run(
        [
            "video",
            str(clip),
            "-o",
            str(tmp_path / "capped.mp4"),
            *FAST,
            "--set",
            "video.flow_side=100",
            "--set",
            "max_side=72",
            "--frames",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    assert sides == [72] * 2
    monkeypatch.undo()
    src = [f.astype(np.float32) / 255 for f in read_frames(clip)]
    out = [f.astype(np.float32) / 255 for f in dreamt_all(work)]
    series = [frame_instability(src[i - 1], out[i - 1], src[i], out[i]) for i in range(1, 8)]
    assert np.mean(series) < 0.25, series


def test_followup_octaves_reach_follow_up_frames_only(tmp_path: Path, capsys, monkeypatch) -> None:
    from dreamcore.engine import Engine

    asked: list[tuple[int | None, int | None]] = []
    real = Engine.dream_rgb

    def spy(self, rgb, progress=None, *, iterations=None, octaves=None, **kwargs):
        asked.append((iterations, octaves))
        return real(self, rgb, progress, iterations=iterations, octaves=octaves, **kwargs)

    monkeypatch.setattr(Engine, "dream_rgb", spy)
    clip = make_pan(tmp_path / "pan.mp4", frames=5)
    code, err = run(
        [
            "video",
            str(clip),
            "-o",
            str(tmp_path / "out.mp4"),
            *FAST,
            "--set",
            "octaves=2",
            "--set",
            "video.followup_octaves=1",
        ],
        capsys,
    )
    assert code == 0, err
    assert asked == [(2, None)] + [(1, 1)] * 4  # the shot's first frame in full, then the top octave


def test_start_selects_the_frames_from_that_time(tmp_path: Path, capsys) -> None:
    """--start 0.5 at 24000/1001 fps begins at frame 12: each dreamt frame is nearest to source
    frame 12 + k among all the clip's frames."""
    clip = make_clip(tmp_path / "count.mp4", seconds=1.5, audio=False, extra=("-vf", "hue=h=t*240"))
    src = read_frames(clip)
    out = tmp_path / "o.mp4"
    code, err = run(["video", str(clip), "-o", str(out), "--start", "0.5", "--frames", "4", *FAST], capsys)
    assert code == 0, err
    for k, frame in enumerate(read_frames(out)):
        distances = [np.abs(frame.astype(np.float32) - s).mean() for s in src]
        assert int(np.argmin(distances)) == 12 + k, np.round(distances, 1)


@pytest.mark.parametrize("name", ["with space ünï.mp4", "-dash.mp4", "colon:name.mp4"])
def test_awkward_file_names(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = make_clip(tmp_path / "src.mp4", seconds=0.2)
    awkward = Path(name)
    awkward.write_bytes(src.read_bytes())
    out = Path("out " + name.replace("-", "_"))
    code, err = run(["video", "--frames", "2", *FAST, "-o", str(out), "--", str(awkward)], capsys)
    assert code == 0, err
    assert decoded(out, tmp_path).frames == 2


def test_start_and_frames_select_a_range(cut_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.mp4"
    code, err = run(["video", str(cut_clip), "-o", str(out), "--start", "0.5", "--frames", "4", *FAST], capsys)
    assert code == 0, err
    assert decoded(out, tmp_path).frames == 4
    assert stream_durations(out)["audio"] == pytest.approx(4 / (24000 / 1001), abs=0.1)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_MEDIA / "Megamind.avi").exists(), reason="../shared/media not here")
def test_megamind_frames_rate_audio(tmp_path: Path, capsys) -> None:
    src = SHARED_MEDIA / "Megamind.avi"
    out = tmp_path / "megamind.mp4"
    code, err = run(["video", str(src), "-o", str(out), *FAST, "--max-side", "128"], capsys)
    assert code == 0, err
    s, d = decoded(src, tmp_path), decoded(out, tmp_path)
    assert d.frames == s.frames == 270
    # every frame where it was (the AVI's 2997/125: 125 ticks of 1/2997 s each); the rate ffmpeg reads
    # back from the MP4 is the standard one nearest to it, 24000/1001
    np.testing.assert_allclose(d.times, s.times, atol=1e-6)
    assert abs(float(d.frame_rate) - float(s.frame_rate)) < 1e-4
    assert abs(stream_durations(out)["audio"] - stream_durations(src)["audio"]) <= 0.1


def test_lost_frame_timestamps_are_an_error_not_a_guessed_rate(tmp_path: Path, monkeypatch) -> None:
    """If ffmpeg's report lacks a frame's timestamp, reading stops with a message instead of
    inventing one or shifting the others."""
    import re

    from pipeline.errors import PipelineError

    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, audio=False)
    # the report of frame 5 goes missing
    monkeypatch.setattr(
        media,
        "_SHOWINFO",
        re.compile(
            r"n:\s*(\d*[0-46-9]|\d\d+)\s+pts:\s*(-?\d+)\s+pts_time:"
            r"(-?[\d.e+-]+)(?:.*?duration_time:([\d.]+))?"
        ),
    )
    with pytest.raises(PipelineError, match="no timestamp for frame 5"):
        scanned(clip)


def test_peak_store_use_stays_within_the_bound(tmp_path: Path, capsys) -> None:
    """150 frames in forced segments of 24 (overlaps of 6), one worker: frames are dropped as their
    chunks are encoded, so the store never holds more than the bound the disk check uses (a chunk,
    an overlap and a frame or two per segment in flight, and the chunks), measured while it runs."""
    import contextlib
    import os
    import threading
    import time

    from pipeline.video.plan import CHUNK_FRAMES, store_bound

    clip = make_clip(tmp_path / "long.mp4", seconds=6, rate="25", audio=False)
    work = tmp_path / "work"
    peak = {"frames": 0, "bytes": 0}
    stop = threading.Event()

    def sizes() -> list[tuple[Path, int]]:
        found = []
        for root, _, names in os.walk(work):  # files come and go while it looks: take what stays
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    found.append((Path(root) / name, os.stat(os.path.join(root, name)).st_size))
        return found

    def watch() -> None:
        while not stop.is_set():
            files = sizes()
            peak["frames"] = max(peak["frames"], sum(1 for p, _ in files if p.parent.parent.name == "frames"))
            peak["bytes"] = max(peak["bytes"], sum(n for _, n in files))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, err = run(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / "o.mp4"),
                *FAST,
                "--workdir",
                str(work),
                "--keep-work",
                "--set",
                "video.chunk_frames=24",
                "--set",
                "video.overlap_frames=6",
            ],
            capsys,
        )
    finally:
        stop.set()
        watcher.join()
    assert code == 0, err
    assert len(plan(work)["segments"]) == 6
    assert 0 < peak["frames"] <= CHUNK_FRAMES + 6 + 2 < 150
    assert peak["bytes"] <= store_bound(150, 96, 64, 1, 6)
    print(f"peak store: {peak['frames']} frames, {peak['bytes']} bytes; bound {store_bound(150, 96, 64, 1, 6)}")


def test_longest_shot_starts_first_and_a_split_shots_pieces_keep_their_order() -> None:
    from pipeline.video.plan import start_order

    segs = plan_segments(400, [0, 50, 300], workers=4, chunk=0, overlap=12)
    shots = [(s.warm_from == s.first, s.first) for s in start_order(segs)]
    # the 250-frame shot (split in 4 pieces that overlap: a share is 100 frames) first, its pieces in
    # order; then the 100-frame shot; then the 50-frame one
    assert [first for _, first in shots] == [50, 112, 175, 237, 300, 0]
    assert [fresh for fresh, _ in shots] == [True, False, False, False, True, True]


def test_next_frames_flow_is_made_while_this_frame_dreams_with_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    """With flow coherence each follow-up frame finds its source frame decoded and its flow computed
    beside the frame before's dream (a helper thread), and the frames come out the same as without."""
    from dreamcore.config import DreamConfig, VideoConfig
    from pipeline.video import tasks as frames
    from pipeline.video.job import VideoRequest, run_video

    clip = make_pan(tmp_path / "pan.mp4", frames=8)
    cfg = DreamConfig(model="inception_v3", weights="untrained", layers={"mixed2": 1.0}, iterations=2, octaves=1)
    outs, aheads = [], []
    for name in ("ahead", "alone"):
        if name == "alone":
            monkeypatch.setattr(frames, "_start_ahead", lambda *a, **k: None)
        work = tmp_path / f"work-{name}"
        stats = run_video(
            VideoRequest(
                input=str(clip),
                output=str(tmp_path / f"{name}.mp4"),
                config=cfg,
                video=VideoConfig(),
                workdir=str(work),
                keep_work=True,
                keep_frames=True,
                quiet=True,
            )
        )
        aheads.append(stats.details["ahead"])
        outs.append(dreamt_all(work))
    assert aheads == [7, 0]
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


def test_irregular_timing_keeps_every_frames_time_and_the_last_ones_duration(tmp_path: Path, capsys) -> None:
    """Frames at irregular times, over several chunks: each output frame at its source time, and the
    film as long as the source (its last frame lasting what it lasted there), not shifted at a join."""
    src = make_clip(
        tmp_path / "vfr.mkv",
        rate="25",
        seconds=1.2,
        audio=False,
        extra=("-vf", "setpts='N/25/TB+if(gte(N,5),0.3/TB,0)+if(gte(N,13),0.4/TB,0)'", "-fps_mode", "passthrough"),
    )
    s = decoded(src, tmp_path)
    assert not s.is_constant_rate() and s.frames == 30
    out = tmp_path / "out.mp4"
    code, err = run(
        ["video", str(src), "-o", str(out), *FAST, "--set", "video.chunk_frames=8", "--set", "video.overlap_frames=2"],
        capsys,
    )
    assert code == 0, err
    d = decoded(out, tmp_path)
    np.testing.assert_allclose(d.times, s.times, atol=0.002)
    source_end = s.pts[-1] - s.pts[0] + (s.last_duration or 0.04)
    assert media.probe(out).duration == pytest.approx(source_end, abs=0.011)


def test_a_job_that_fails_leaves_no_encoder_or_partial_chunk_behind(
    cut_clip: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from tests.test_integrity import stop_at

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    stop_at(monkeypatch, 5)  # mid-chunk: its encoder has frames, a partial chunk in its temporary folder
    code, err = run(["video", str(cut_clip), "-o", str(tmp_path / "o.mp4"), *FAST], capsys)
    assert code == 1 and "stopped here by the test" in err
    assert not list(temp.glob("dreamreel-*")), list(temp.iterdir())
