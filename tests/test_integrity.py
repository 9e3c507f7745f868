"""Nothing trusted blindly: every stored frame, chunk and job record is checked when read. Fault
injection on a job stopped half way: each kind of stored file is corrupted, cut short, emptied or
deleted in turn, and every re-run ends with the uninterrupted film, frame for frame, or with one
line naming the file; never exit 0 with another film."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.job import integrity
from tests.clips import make_clip, read_frames
from tests.test_video import FAST

ARGS = [*FAST, "--set", "iterations=3", "--set", "video.chunk_frames=8", "--set", "video.overlap_frames=2"]


def test_a_sealed_file_is_checked_to_the_byte() -> None:
    data = bytes(range(256)) * 40
    sealed = data + integrity.trailer([data])
    assert bytes(integrity.payload(sealed, "x", "x")) == data
    for bad, why in [
        (sealed[:-1], "no checksum"),
        (b"", "empty or cut short"),
        (sealed[:100], "no checksum"),
        (sealed[:500] + bytes([sealed[500] ^ 1]) + sealed[501:], "does not match"),
    ]:
        with pytest.raises(integrity.Damaged, match=why):
            integrity.payload(bad, "frames/0000/000001.rgb", "/w/frames/0000/000001.rgb")


_STOP = {"at": 0, "seen": 0}


def _stopping_frame_task(*args, **kwargs):
    """frame_task, stopped (failed) at its ``_STOP["at"]``-th call. At module level, so that Dask's
    in-process worker calls this very function (a closure would be pickled into a copy per task)."""
    from pipeline.video.tasks import frame_task

    _STOP["seen"] += 1
    if _STOP["seen"] == _STOP["at"]:
        raise RuntimeError("stopped here by the test")
    return frame_task(*args, **kwargs)


def stop_at(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """The job stops (fails) at its ``calls``-th frame task: some chunks encoded, frames in flight."""
    from pipeline.video import graph

    _STOP.update(at=calls, seen=0)
    monkeypatch.setattr(graph, "frame_task", _stopping_frame_task)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, Path, list[bytes]]:
    """A clip, the work folder of its job stopped half way, and the uninterrupted film's frames."""
    tmp = tmp_path_factory.mktemp("faults")
    clip = make_clip(tmp / "clip.mp4", cut_at=0.6, seconds=1.4)
    assert main(["video", str(clip), "-o", str(tmp / "ref.mp4"), *ARGS]) == 0
    reference = [f.tobytes() for f in read_frames(tmp / "ref.mp4")]
    with pytest.MonkeyPatch.context() as m:
        stop_at(m, 20)
        assert main(["video", str(clip), "-o", str(tmp / "x.mp4"), "--workdir", str(tmp / "stopped"), *ARGS]) == 1
    return clip, tmp / "stopped", reference


def stored_frames(work: Path) -> list[Path]:
    return sorted(work.glob("frames/*/*.rgb"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "corrupt":  # the right size, other bytes: bit rot, a torn write
        path.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x5A]) + data[len(data) // 2 + 1 :])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


def pick(work: Path, kind: str) -> Path:
    in_flight = max((sorted(d.glob("*.rgb")) for d in (work / "frames").iterdir()), key=len)  # the stopped chain's
    if kind == "last frame":  # the frame the chain goes on from
        return in_flight[-1]
    if kind == "first frame":  # one the chunk is encoded from, with later ones stored after it ([0] may be the
        return in_flight[1]  # warm frame before them, which nothing reads once they are stored)
    if kind == "chunk":
        return sorted((work / "chunks").iterdir())[0]
    return work / "job.json"


CASES = [
    (kind, how) for kind in ("last frame", "chunk", "job record") for how in ("corrupt", "truncate", "empty", "delete")
] + [("first frame", "corrupt")]


@pytest.mark.parametrize("kind, how", CASES)
def test_each_stored_file_damaged_in_turn_the_rerun_makes_the_same_film(
    kind: str, how: str, stopped, tmp_path: Path, capsys
) -> None:
    clip, snapshot, reference = stopped
    work = tmp_path / "work"
    shutil.copytree(snapshot, work)
    assert len(stored_frames(work)) >= 2 and len(list((work / "chunks").iterdir())) >= 1
    target = pick(work, kind)
    damage(target, how)
    capsys.readouterr()
    code = main(["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--workdir", str(work), "--keep-work", *ARGS])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [f.tobytes() for f in read_frames(tmp_path / "out.mp4")] == reference
    if how != "delete" or kind == "job record":  # a damaged file is named, once, with what is done about it
        assert err.count(target.name) >= 1, err
    if kind == "job record":
        assert "restored from its copy" in err


def test_a_chunk_whose_chain_is_gone_is_made_again_by_replaying_its_segment(tmp_path: Path, capsys) -> None:
    """The second chunk of a shot, damaged after the job ended: the frame its chain went on from was
    dropped long ago, so the shot is dreamt again from its start to reach it (kept nowhere), and
    the chunk encoded again: the same film."""
    clip = make_clip(tmp_path / "one-shot.mp4", seconds=2.2, audio=False)
    work = tmp_path / "work"
    argv = ["video", str(clip), "-o", str(tmp_path / "ref.mp4"), "--workdir", str(work), "--keep-work", *FAST]
    assert main(argv) == 0
    reference = [f.tobytes() for f in read_frames(tmp_path / "ref.mp4")]
    chunks = sorted((work / "chunks").iterdir())
    assert [c.name for c in chunks] == ["000000-000048.mp4", "000048-000053.mp4"] and not stored_frames(work)
    damage(chunks[1], "corrupt")
    capsys.readouterr()
    argv[3] = str(tmp_path / "out.mp4")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "000048-000053.mp4: damaged (its checksum does not match its bytes): making it again" in err, err
    assert [f.tobytes() for f in read_frames(tmp_path / "out.mp4")] == reference
    events = (work / "events.log").read_text().splitlines()
    # results reach the command as they finish, not necessarily in the chain's order: the set counts
    replayed = [e for e in events if e.startswith("replayed")]
    assert sorted(replayed) == sorted(f"replayed 0 {i}" for i in range(48)) and len(replayed) == 48
    assert chunks[0].read_bytes() == (work / "chunks" / chunks[0].name).read_bytes()


def test_a_job_record_lost_with_its_copy_is_one_line_naming_it(stopped, tmp_path: Path, capsys) -> None:
    clip, snapshot, _ = stopped
    work = tmp_path / "work"
    shutil.copytree(snapshot, work)
    damage(work / "job.json", "truncate")
    damage(work / "job.copy.json", "delete")
    code = main(["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--workdir", str(work), *ARGS])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"{work / 'job.json'}: damaged" in err and "--restart" in err
    assert not (tmp_path / "out.mp4").exists() and stored_frames(work)  # nothing removed


def test_a_short_film_is_never_reported_whole(tmp_path: Path) -> None:
    """The joined film is checked against the plan: frames missing, or frames at other times."""
    from pipeline.errors import PipelineError
    from pipeline.job.assemble import check_film
    from tests.jobs import scanned

    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, rate="24", audio=False)
    pts = scanned(clip).pts
    check_film(clip, list(pts), "c.mp4")
    with pytest.raises(PipelineError, match="has 12 frames where the job dreamt 24"):
        check_film(clip, [i / 24 for i in range(24)], "c.mp4")
    with pytest.raises(PipelineError, match="frame 6 is at 0.250000 s where it belongs at 0.650000 s"):
        check_film(clip, [i / 24 + (0.4 if i >= 6 else 0) for i in range(12)], "c.mp4")


def test_zoom_remakes_a_damaged_frame_and_chunk_from_the_last_good_state(tmp_path: Path, capsys) -> None:
    import cv2

    from tests.media import synthetic_image

    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(48, 64))
    args = [
        "--frames",
        "8",
        "--chunk-frames",
        "3",
        "--model",
        "inception_v3",
        "--weights",
        "untrained",
        "--layers",
        "mixed2=1",
        "--set",
        "octaves=1",
        "--max-side",
        "64",
        "-q",
    ]
    assert main(["zoom", str(pic), "-o", str(tmp_path / "ref.mp4"), *args]) == 0
    reference = [f.tobytes() for f in read_frames(tmp_path / "ref.mp4")]
    from pipeline import zoom

    real = zoom.media.ChunkEncoder.finish
    calls = []

    def stop(self):  # stop after the second chunk's frames are stored, before it is encoded
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped here by the test")
        real(self)

    for fault in ("frame", "chunk"):
        work = tmp_path / f"work-{fault}"
        with pytest.MonkeyPatch.context() as m:
            m.setattr(zoom.media.ChunkEncoder, "finish", stop)
            calls.clear()
            assert main(["zoom", str(pic), "-o", str(tmp_path / "z.mp4"), "--workdir", str(work), *args]) == 1
        frames = sorted(work.glob("frames/*.rgb"))
        assert [f.name for f in frames] == ["000002.rgb", "000003.rgb", "000004.rgb", "000005.rgb"]
        damage(frames[0] if fault == "frame" else work / "chunks" / "000000-000003.mp4", "corrupt")
        capsys.readouterr()
        out = tmp_path / f"{fault}.mp4"
        assert main(["zoom", str(pic), "-o", str(out), "--workdir", str(work), *args]) == 0
        assert "damaged" in capsys.readouterr().err
        assert [f.tobytes() for f in read_frames(out)] == reference, fault
        assert not work.exists()


def test_a_stored_frame_with_the_right_size_and_other_bytes_is_not_used(tmp_path: Path) -> None:
    """The old check (size only) took such a frame as it was; the checksum does not."""
    from pipeline.job.framestore import FrameStore
    from pipeline.job.store import Store

    frames = FrameStore(Store(tmp_path), (4, 2))
    frames.write(0, 1, np.full((2, 4, 3), 7, np.uint8))
    assert frames.read(0, 1).sum() == 7 * 24
    path = tmp_path / "frames" / "0000" / "000001.rgb"
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(integrity.Damaged, match="000001.rgb: damaged"):
        frames.read(0, 1)


def test_a_join_that_stops_early_is_never_written_as_the_film(tmp_path: Path, capsys, monkeypatch) -> None:
    """ffmpeg's concat stops at a chunk it cannot read and still exits 0: the film it made is
    shorter than the plan, and the command says so instead of writing it."""
    from pipeline.io import media

    clip = make_clip(tmp_path / "clip.mp4", cut_at=0.3, seconds=0.6)
    real = media.join

    def short(chunks, out, film, sound, work):
        return real(chunks[:-1], out, replace(film, spans=film.spans[:-1]), sound, work)

    monkeypatch.setattr(media, "join", short)
    code = main(["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--workdir", str(tmp_path / "w"), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "not written: the joined film has" in err, err
    assert not (tmp_path / "out.mp4").exists() and (tmp_path / "w" / "chunks").is_dir()


def test_a_chain_dreams_again_only_what_it_must_and_keeps_only_what_a_chunk_takes() -> None:
    from pipeline.job.framestore import frame_indexes
    from pipeline.video.graph import _chain
    from pipeline.video.plan import Segment

    s = Segment(0, 0, 0, 30)
    # resumed: frames 10..14 stored, chunk [10, 20) still to encode: go on from 15
    assert _chain(s, set(range(10, 20)), set(range(9, 15))) == (list(range(15, 20)), [])
    # everything a chunk takes is stored: nothing to dream (the chunk encodes from the store)
    assert _chain(s, set(range(10, 20)), set(range(9, 20))) == ([], [])
    # chunk [0, 10) damaged while [10, 20) is encoded and [20, 30) in flight (frames 19..24 stored):
    # 0..9 dreamt and kept, 10..18 dreamt again only to reach 19 (kept nowhere), 19..24 read back
    chain, replay = _chain(s, set(range(0, 10)) | set(range(20, 30)), set(range(19, 25)))
    assert chain == list(range(0, 30)) and replay == list(range(10, 19))
    # the frame the chain goes on from is lost: from the last stored one before it
    assert _chain(s, set(range(20, 30)), {12}) == (list(range(13, 30)), list(range(13, 20)))
    assert frame_indexes(["000012.rgb", "000013.png", "notes.rgb", "12.rgb", "000014.rgb"], "rgb") == [12, 14]


def test_zoom_stops_dreaming_again_after_the_last_chunk_it_remakes(tmp_path: Path, capsys) -> None:
    import cv2

    from tests.media import synthetic_image

    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(48, 64))
    work = tmp_path / "work"
    argv = [
        "zoom",
        str(pic),
        "-o",
        str(tmp_path / "z.mp4"),
        "--frames",
        "8",
        "--chunk-frames",
        "3",
        "--workdir",
        str(work),
        "--keep-work",
        "--model",
        "inception_v3",
        "--weights",
        "untrained",
        "--layers",
        "mixed2=1",
        "--set",
        "octaves=1",
        "--max-side",
        "64",
        "-q",
    ]
    assert main(argv) == 0
    reference = [f.tobytes() for f in read_frames(tmp_path / "z.mp4")]
    damage(work / "chunks" / "000003-000006.mp4", "corrupt")
    capsys.readouterr()
    argv[3] = str(tmp_path / "again.mp4")
    assert main(argv) == 0
    err = capsys.readouterr().err
    # frames 0..2 dreamt again to reach the damaged chunk's start; 3..5 dreamt and encoded; 6..7 not touched
    assert "3 dreamt now" in err and "3 dreamt again to reach what was damaged" in err, err
    assert [f.tobytes() for f in read_frames(tmp_path / "again.mp4")] == reference


def test_two_joins_of_one_output_never_share_a_temporary_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from pipeline.io.fsutil import temp_beside

    final = tmp_path / "out.mp4"
    a, b = temp_beside(final), temp_beside(final)
    assert a != b and a.parent == b.parent == tmp_path and a.name.startswith(".out.mp4.")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    left = tmp_path / a.name.replace(f"-{os.getpid()}-", f"-{dead}-")  # a killed run's
    left.write_bytes(b"half a film")
    mine = tmp_path / a.name
    mine.write_bytes(b"this run's")
    temp_beside(final)
    assert not left.exists() and mine.exists()
