"""A work folder is dreamreel's alone: it deletes only what it created, never a user's folder, files,
prefix or bucket; a job that failed before dreaming leaves nothing behind; OUT is never replaced
without --overwrite, even when it appears while the job runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.job.store import MARKER, ForeignFolder, Store
from tests.clips import make_clip, read_frames
from tests.media import image_folder
from tests.test_video import FAST, run

ZOOM_FAST = [
    "--model",
    "inception_v3",
    "--weights",
    "untrained",
    "--layers",
    "mixed2=1",
    "--set",
    "iterations=1",
    "--set",
    "octaves=1",
    "--max-side",
    "64",
    "-q",
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("workdir") / "clip.mp4", seconds=0.3)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_the_users_files_is_refused_and_kept_whole(clip: Path, tmp_path: Path, capsys) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "a.txt").write_text("precious\n")
    (keep / "clip.mp4").write_bytes(clip.read_bytes())
    before = tree(keep)
    code, err = run(
        ["video", str(keep / "clip.mp4"), "-o", str(tmp_path / "d.mp4"), "--workdir", str(keep), *FAST], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds files dreamreel did not write" in err and "a.txt" in err
    assert tree(keep) == before and not (tmp_path / "d.mp4").exists()
    # --restart does not make it dreamreel's either
    code, err = run(
        ["video", str(keep / "clip.mp4"), "-o", str(tmp_path / "d.mp4"), "--workdir", str(keep), "--restart", *FAST],
        capsys,
    )
    assert code == 2 and tree(keep) == before


def test_the_current_folder_as_work_folder_is_refused(clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("clip.mp4").write_bytes(clip.read_bytes())
    code, err = run(["video", "clip.mp4", "-o", "d.mp4", "--workdir", ".", *FAST], capsys)
    assert code == 2 and "holds files dreamreel did not write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_an_empty_folder_of_the_users_is_used_and_left_in_place(clip: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(empty), *FAST], capsys)
    assert code == 0, err
    assert empty.is_dir() and list(empty.iterdir()) == []  # dreamreel's files gone, the folder kept
    code, err = run(
        ["video", str(clip), "-o", str(tmp_path / "e.mp4"), "--workdir", str(tmp_path / "new"), *FAST], capsys
    )
    assert code == 0, err
    assert not (tmp_path / "new").exists()  # created by dreamreel: removed


def test_files_put_in_a_work_folder_are_kept_with_it(clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST]
    assert run([*argv, "--keep-work"], capsys)[0] == 0
    assert json.loads((work / MARKER).read_text())["created"] is True
    (work / "notes.txt").write_text("mine\n")
    (work / "chunks" / "mine.txt").write_text("mine too\n")  # inside one of dreamreel's own folders: its own
    code, err = run([*argv, "--overwrite", "--restart"], capsys)
    assert code == 0, err
    assert "kept: it also holds notes.txt" in err
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_images_with_its_input_folder_as_work_folder_is_refused_then_restart_too(tmp_path: Path, capsys) -> None:
    photos = image_folder(tmp_path / "photos", 2, 32, 48)
    before = tree(photos)
    for extra in ([], ["--restart"]):
        code = main(["images", str(photos), "-o", str(tmp_path / "out"), "--workdir", str(photos), *ZOOM_FAST, *extra])
        err = capsys.readouterr().err
        assert code == 2 and "work folder may not be or hold the input folder" in err, err
        assert tree(photos) == before
    # a parent of IN_DIR that holds anything else is refused for that reason too
    code = main(["images", str(photos), "-o", str(tmp_path / "out"), "--workdir", str(tmp_path), *ZOOM_FAST])
    assert code == 2 and tree(photos) == before


def test_a_store_is_claimed_only_when_it_holds_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "frames").mkdir()  # a user's folder that happens to share a name dreamreel uses
    (folder / "frames" / "0001.png").write_bytes(b"x")
    with pytest.raises(ForeignFolder):
        Store(folder).claim()
    assert (folder / "frames" / "0001.png").exists()
    store = Store(tmp_path / "mine")
    assert store.claim() is True and store.claim() is True  # the marker says so on later runs too
    store.write_json("job.json", {"version": 3, "identity": {}})
    (tmp_path / "mine" / "yours.txt").write_text("x")
    assert store.remove() == ["yours.txt"] and (tmp_path / "mine" / "yours.txt").exists()
    with pytest.raises(ValueError):
        store.delete_tree("")  # never the store itself


def test_a_failed_plan_leaves_no_work_folder_and_the_fixed_command_runs(clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    base = ["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST]
    code, err = run([*base, "--set", "step=0:0.01,100:0.02"], capsys)  # a keyframe past the end: found in planning
    assert code == 2 and "past the end" in err, err
    assert not work.exists()
    code, err = run([*base, "--start", "100"], capsys)
    assert code == 2 and "--start 100: past the end" in err and not work.exists()
    code, err = run(base, capsys)
    assert code == 0, err


def test_a_job_that_dreamt_nothing_is_replaced_by_another(clip: Path, tmp_path: Path, capsys) -> None:
    """A record of a job with no frame or chunk done (one that failed at once, say) is no work to
    lose: another command takes the folder without --restart. One with work is refused."""
    work = tmp_path / "work"
    store = Store(work)
    store.claim()
    from pipeline.job.record import write_record

    write_record(store, {"version": 3, "identity": {"input": "another"}})
    code, err = run(
        ["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), "--keep-work", *FAST], capsys
    )
    assert code == 0, err
    code, err = run(
        ["video", str(clip), "-o", str(tmp_path / "e.mp4"), "--workdir", str(work), *FAST, "--set", "iterations=3"],
        capsys,
    )
    assert code == 2 and "belongs to another job (changed: config.iterations)" in err


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "1:nan"])
def test_times_that_are_not_finite_are_refused(bad: str, clip: Path, tmp_path: Path, capsys) -> None:
    for flag in ("--start", "--duration"):
        with pytest.raises(SystemExit) as exc:
            main(["video", str(clip), "-o", str(tmp_path / "d.mp4"), flag, bad, *FAST])
        assert exc.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_duration_too_short_for_ffmpeg_is_refused_not_taken_as_no_limit(clip: Path, tmp_path: Path, capsys) -> None:
    code, err = run(["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--duration", "1e-9", *FAST], capsys)
    assert code == 2 and "at least 0.000001 s" in err
    code = main(["zoom", str(tmp_path / "x.png"), "-o", str(tmp_path / "z.mp4"), "--duration", "0.0000001"])
    assert code == 2 and "at least 0.000001 s" in capsys.readouterr().err


def _appear_at_join(monkeypatch, target: Path) -> None:
    """OUT appears while the job runs (another run with another work folder, the user's own file)."""
    from pipeline.io import media

    real = media.join

    def join(*args, **kwargs):
        how = real(*args, **kwargs)
        target.write_bytes(b"the user's own file")
        return how

    monkeypatch.setattr(media, "join", join)


def test_an_output_that_appears_while_the_job_runs_is_kept(clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out, work = tmp_path / "d.mp4", tmp_path / "work"
    with monkeypatch.context() as m:
        _appear_at_join(m, out)
        code, err = run(["video", str(clip), "-o", str(out), "--workdir", str(work), *FAST], capsys)
    assert code == 2 and "appeared while the job ran" in err and f"--workdir {work}" in err, err
    assert out.read_bytes() == b"the user's own file"
    assert (work / "chunks").is_dir() and not list(tmp_path.glob(".d.mp4*"))  # the work kept, no temporary left
    code, err = run(["video", str(clip), "-o", str(tmp_path / "other.mp4"), "--workdir", str(work), *FAST], capsys)
    assert code == 0 and "0 dreamt now" in err, err  # only the join is left to do
    assert len(read_frames(tmp_path / "other.mp4")) == len(read_frames(clip))


def test_zoom_and_image_never_replace_a_file_that_appeared(tmp_path: Path, capsys, monkeypatch) -> None:
    from tests.media import synthetic_image

    pic = tmp_path / "p.png"
    import cv2

    cv2.imwrite(str(pic), synthetic_image(48, 64))
    out = tmp_path / "z.mp4"
    with monkeypatch.context() as m:
        _appear_at_join(m, out)
        code = main(["zoom", str(pic), "-o", str(out), "--frames", "3", "--workdir", str(tmp_path / "zw"), *ZOOM_FAST])
    assert code == 2 and "appeared while the job ran" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's own file"

    from pipeline.io import imagefile

    real = imagefile.encode_image

    def encode(*args, **kwargs):
        (tmp_path / "d.png").write_bytes(b"mine")
        return real(*args, **kwargs)

    monkeypatch.setattr(imagefile, "encode_image", encode)
    code = main(["image", str(pic), "-o", str(tmp_path / "d.png"), *ZOOM_FAST])
    assert code == 2 and "appeared while the image was dreamt" in capsys.readouterr().err
    assert (tmp_path / "d.png").read_bytes() == b"mine"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("name", ["it's here", "new\nline"])
def test_a_quote_or_a_newline_in_the_paths_does_not_break_the_join(
    name: str, clip: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / name
    folder.mkdir()
    out = folder / f"{name}.mp4"
    code, err = run(["video", str(clip), "-o", str(out), "--workdir", str(folder / f"work {name}"), *FAST], capsys)
    assert code == 0, err
    assert len(read_frames(out)) == len(read_frames(clip))
    assert sorted(p.name for p in folder.iterdir()) == [out.name]  # no list or temporary left beside OUT


def test_a_full_disk_at_the_join_is_said_and_the_chunks_kept(clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    out, work = tmp_path / "d.mp4", tmp_path / "work"
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    with monkeypatch.context() as m:
        m.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 1 << 40, 1000) if Path(p) == tmp_path else real(p))
        code, err = run(["video", str(clip), "-o", str(out), "--workdir", str(work), *FAST], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path}: not enough space for the film" in err and f"kept in {work}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no half-written film, no list beside OUT
    code, err = run(["video", str(clip), "-o", str(out), "--workdir", str(work), *FAST], capsys)
    assert code == 0 and "0 dreamt now" in err, err


def test_ffmpegs_own_words_for_a_full_disk_win_over_its_statistics() -> None:
    from pipeline.io.media import _last_error, write_fault

    stderr = (
        "[mp4 @ 0x1] Error writing trailer of out.mp4: No space left on device\n"
        "[out#0/mp4 @ 0x2] Error closing file: No space left on device\n"
        "frame=   24 fps=0.0 q=-1.0 Lsize=       0KiB time=00:00:01.00 bitrate=   0.0kbits/s\n"
        "[libx264 @ 0x3] kb/s:1234.56\n"
        "Qavg: 59212.957\n"
    )
    assert _last_error(stderr) == "Error writing trailer of out.mp4: No space left on device"
    assert write_fault(stderr) == "disk full"


def test_images_stops_at_a_full_output_disk(tmp_path: Path, capsys, monkeypatch) -> None:
    import errno

    from pipeline import images

    photos = image_folder(tmp_path / "photos", 4, 32, 48)
    real = images.write_atomic
    written = []

    def full(path, data, durable=True, overwrite=True):
        if Path(path).parent == tmp_path / "out" and written:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, durable, overwrite)
        written.append(path)

    monkeypatch.setattr(images, "write_atomic", full)
    code = main(["images", str(photos), "-o", str(tmp_path / "out"), *ZOOM_FAST])
    err = capsys.readouterr().err
    assert code == 2 and "disk full" in err and "run the same command again" in err, err
    assert sum(1 for ln in err.splitlines() if "skipped" in ln) == 0  # not one "failed" item per image
    monkeypatch.setattr(images, "write_atomic", real)
    assert main(["images", str(photos), "-o", str(tmp_path / "out"), *ZOOM_FAST]) == 0
    assert "1 already done" in capsys.readouterr().err


def test_a_job_record_that_is_not_one_is_a_one_line_error(clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST]
    assert run([*argv, "--keep-work", "--keep-frames"], capsys)[0] == 0
    for name in ("job.json", "job.copy.json"):
        (work / name).write_text("[1, 2, 3]\n")
    code, err = run([*argv, "--overwrite"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{work / 'job.json'}: not a dreamreel job record (a JSON list)" in err and "--restart" in err
    assert (work / "chunks").is_dir()  # nothing removed


def test_a_job_record_is_never_written_with_nan(tmp_path: Path) -> None:
    from pipeline.job.record import write_record

    store = Store(tmp_path)
    with pytest.raises(ValueError):
        write_record(store, {"version": 3, "identity": {"range": {"start": float("nan")}}})
    assert not (tmp_path / "job.json").exists()


def test_a_frame_is_identical_after_its_bytes_are_checked(tmp_path: Path) -> None:
    """The checked read gives back exactly the pixels written (no copy changes them)."""
    store = Store(tmp_path)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    store.write_sealed("frames/0000/000001.rgb", memoryview(rgb).cast("B"))
    assert bytes(store.read_sealed("frames/0000/000001.rgb")) == rgb.tobytes()


def test_a_work_folder_that_fills_up_is_one_line_and_exit_2(clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import errno

    from pipeline.job import store as store_mod

    real = store_mod.write_atomic

    def full(path, data, durable=True, overwrite=True):
        if "frames" in Path(path).parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, durable, overwrite)

    monkeypatch.setattr(store_mod, "write_atomic", full)
    work = tmp_path / "work"
    code, err = run(["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"{work}/frames/" in lines[0] and "cannot write (disk full)" in lines[0]
    assert "run the same command again" in lines[0]
    monkeypatch.setattr(store_mod, "write_atomic", real)
    code, err = run(["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST], capsys)
    assert code == 0, err


def test_images_that_failed_before_dreaming_leaves_no_job_behind(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["images", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), *ZOOM_FAST])
    assert code == 2 and "no files in it" in capsys.readouterr().err
    assert not (tmp_path / "out" / ".dreamreel-work").exists()
    photos = image_folder(tmp_path / "photos", 1, 32, 48)
    code = main(["images", str(photos), "-o", str(tmp_path / "out"), *ZOOM_FAST])  # another input: not refused
    assert code == 0, capsys.readouterr().err


def test_the_work_folder_may_not_be_out_itself(clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "d.mp4"
    code, err = run(["video", str(clip), "-o", str(out), "--workdir", str(out), *FAST], capsys)
    assert code == 2 and "may not be OUT itself" in err and not out.exists()


def test_images_sweeps_only_its_own_cut_short_writes(tmp_path: Path, capsys) -> None:
    photos = image_folder(tmp_path / "photos", 1, 32, 48)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".0.png.abcd1234.part").write_bytes(b"a write of 0.png a kill cut short")
    (out / ".notes.txt.abcd1234.part").write_bytes(b"someone else's")
    code = main(["images", str(photos), "-o", str(out), *ZOOM_FAST])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".dreamreel-work", ".notes.txt.abcd1234.part", "0.png"]


def test_a_stray_file_among_the_frames_is_not_taken_for_one(clip: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["video", str(clip), "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), *FAST]
    assert run([*argv, "--keep-work"], capsys)[0] == 0
    (work / "frames" / "0000").mkdir(parents=True, exist_ok=True)
    (work / "frames" / "0000" / "notes.rgb").write_text("not a frame")
    (work / "frames" / "0000" / "12.rgb").write_text("nor this")
    code, err = run([*argv, "--overwrite"], capsys)
    assert code == 0 and "0 dreamt now" in err, err


def test_images_refuses_its_output_folder_or_one_holding_it_as_work_folder(tmp_path: Path, capsys) -> None:
    photos = image_folder(tmp_path / "photos", 1, 32, 48)
    (photos / "frames").mkdir()  # mirrored as OUT_DIR/frames: a name dreamreel also uses in a work folder
    image_folder(photos / "frames", 1, 32, 48)
    out = tmp_path / "out"
    for work in (out, tmp_path):
        code = main(["images", str(photos), "-o", str(out), "--workdir", str(work), *ZOOM_FAST])
        err = capsys.readouterr().err
        assert code == 2 and "may not be or hold the" in err, err
    code = main(["images", str(photos), "-o", str(out), "--workdir", str(out / "frames"), *ZOOM_FAST])
    assert code == 2 and "some dreams would be written in the work folder" in capsys.readouterr().err
