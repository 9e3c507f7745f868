"""dreamreel studio through its API (gradio_client), against a real `dreamreel studio` process:
each result is the dream its command line gives, bad input is said in the command line's words
with nothing written, jobs run in their own processes, queue, cancel and resume."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio_client")

from pipeline.cli import main  # noqa: E402
from pipeline.errors import InputError  # noqa: E402
from pipeline.studio.commands import Folder, Look  # noqa: E402
from tests.clips import make_clip, read_frames  # noqa: E402
from tests.studio import Served, pixels, settings, studio_folder, wait_jobs  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = studio_folder(tmp_path_factory.mktemp("studio") / "work")
    (folder.parent / "outside.png").write_bytes((folder / "photo.png").read_bytes())
    make_clip(folder / "slow.mp4", size="160x120", rate="24", seconds=0.5)
    # A folder named like dreamreel's own package: the studio's job processes must not import it.
    (folder / "pipeline").mkdir()
    (folder / "pipeline" / "__init__.py").write_text("raise SystemExit('the studio folder was imported')\n")
    studio = Served(folder)
    yield studio
    studio.stop()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def cli_line(argv: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def test_quick_dream_is_what_its_command_line_gives(served, capsys, monkeypatch):
    message, (before, after), output, command = served.client().predict(
        None, "photo.png", *settings(), api_name="/quick"
    )
    assert "Quick dream in" in message
    source = pixels(served.folder / "photo.png")
    assert np.array_equal(pixels(before), source)
    assert pixels(after).shape == source.shape
    assert np.abs(pixels(after).astype(int) - source).mean() > 2  # it dreamt
    assert command.startswith("dreamreel image photo.png -o .dreamreel-studio/quick/photo.png")
    assert "--max-side 320" in command and "--weights untrained" in command
    studio_made = Path(output).read_bytes()
    # The command line shown, run in the studio's folder, writes the very same file.
    argv = shlex.split(command)[1:]
    assert cli_line(argv, served.folder, capsys, monkeypatch)[0] == 0
    assert (served.folder / ".dreamreel-studio/quick/photo.png").read_bytes() == studio_made


def test_full_size_dreams_never_overwrite(served):
    client = served.client()
    first = client.predict(None, "photo.png", *settings(seed="4"), api_name="/full")
    second = client.predict(None, "photo.png", *settings(seed="4"), api_name="/full")
    assert "-o dreams/photo-dream.png" in first[3] and "--seed 4" in first[3]
    assert "-o dreams/photo-dream-2.png" in second[3]
    a, b = served.folder / "dreams/photo-dream.png", served.folder / "dreams/photo-dream-2.png"
    assert np.array_equal(pixels(a), pixels(b))  # the same settings, the same dream, two files


def test_explore_three_layers_gives_three_different_dreams(served):
    message, gallery = served.client().predict(
        None, "photo.png", "layers", 6, *settings(layers="mixed0=1,mixed1=1,mixed2=1"), api_name="/explore"
    )
    assert "3 of 3" in message
    assert [item["caption"] for item in gallery] == ["mixed0", "mixed1", "mixed2"]
    tiles = [pixels(item["image"]) for item in gallery]
    assert not np.array_equal(tiles[0], tiles[1]) and not np.array_equal(tiles[1], tiles[2])


def test_bad_input_is_said_as_the_command_line_says_it_and_nothing_is_written(served, capsys, monkeypatch):
    from gradio_client import handle_file

    client = served.client()
    before = listing(served.folder)
    # A text file as an image, typed and uploaded: the CLI's own line.
    said = client.predict(None, "notes.png", *settings(), api_name="/quick")[0]
    code, line = cli_line(["image", "notes.png", "-o", "x.png"], served.folder, capsys, monkeypatch)
    assert code == 2 and line in said and "dr-error" in said
    said = client.predict(handle_file(str(served.folder / "notes.png")), "", *settings(), api_name="/quick")[0]
    assert "notes.png: not an image" in said
    # A clip with no video stream.
    said = client.predict(None, "sound.m4a", "12", "", "", "", *settings(), api_name="/run_video")[0]
    code, line = cli_line(["video", "sound.m4a", "-o", "x.mp4"], served.folder, capsys, monkeypatch)
    assert code == 2 and "no video stream" in line and line in said
    # Paths outside the folder, however they are spelt.
    for path in ("../outside.png", str(served.folder.parent / "outside.png")):
        said = client.predict(None, path, *settings(), api_name="/quick")[0]
        assert "outside the studio's folder" in said, said
    said = client.predict(None, "../outside.png", "12", "", "", "", *settings(), api_name="/run_video")[0]
    assert "outside the studio's folder" in said
    # A bad setting: the flag it came from.
    said = client.predict(None, "photo.png", *settings(octaves="many"), api_name="/quick")[0]
    assert "--set octaves=many" in said or "octaves" in said
    # An uploaded clip with no video stream: refused, and its copy not kept.
    said = client.predict(
        handle_file(str(served.folder / "sound.m4a")), "", "12", "", "", "", *settings(), api_name="/run_video"
    )[0]
    assert "no video stream" in said
    # Nothing written: no dream, no job, no copy of a refused upload.
    assert listing(served.folder) == before
    assert all(
        row[1] not in ("sound.m4a", "outside.png", "notes.png") for row in client.predict(None, api_name="/jobs")
    )
    assert served.proc.poll() is None  # the studio keeps running


def test_jobs_queue_one_at_a_time_cancel_and_resume(served):
    client = served.client()
    slow = settings(octaves="3", iterations="6")
    # Every frame dreamt in full (no carried dream), so that the cancel lands mid-job.
    first = client.predict(None, "slow.mp4", "", "", "", "none", *slow, api_name="/run_video")
    second = client.predict(None, "photo.png", "10", "24", "1.02", "-0.5", *settings(), api_name="/run_zoom")
    a, b = first[-1], second[-1]
    assert "dreamreel zoom photo.png -o dreams/photo-zoom.mp4 --frames 10" in second[1]
    assert "--rotate=-0.5" in second[1]  # a negative value is not taken for a flag
    rows = {row[0]: row for row in client.predict(None, api_name="/jobs")}
    assert rows[a][2] == "running" and rows[b][2] == "queued"
    # Cancel the running one once it has frames: it stops keeping its work, and the queued one starts.
    wait_jobs(client, lambda rows: {r[0]: r[3] for r in rows}.get(a, "").split("/")[0] not in ("", "0", "1"))
    assert "cancelling" in client.predict(a, api_name="/cancel")
    rows = wait_jobs(client, lambda rows: {r[0]: r[2] for r in rows}.get(a) == "stopped")
    assert "kept" in {r[0]: r for r in rows}[a][5]
    wait_jobs(client, lambda rows: {r[0]: r[2] for r in rows}.get(b) in ("running", "done"))
    assert "not running" in client.predict(a, api_name="/cancel")
    assert "resuming" in client.predict(a, api_name="/resume")
    assert "only a stopped job resumes" in client.predict(a, api_name="/resume")  # a second click
    rows = wait_jobs(client, lambda rows: all(r[2] == "done" for r in rows if r[0] in (a, b)))
    done = {r[0]: r for r in rows}
    assert done[a][3] == "12/12" and done[b][3] == "10/10"
    resumed = int(done[a][5].split(" resumed")[0].rsplit(", ", 1)[1])
    assert resumed >= 2, done[a]  # it went on from the frames it had
    assert len(read_frames(served.folder / "dreams/slow-dream.mp4")) == 12
    assert len(read_frames(served.folder / "dreams/photo-zoom.mp4")) == 10
    assert not (served.folder / "dreams/.photo-zoom.mp4.dreamreel-work").exists()  # removed after success


def test_two_jobs_asked_at_once_never_share_an_output(served):
    client = served.client()
    made = [client.predict(None, "clip.mp4", "2", "", "", "", *settings(), api_name="/run_video") for _ in range(2)]
    # Neither has made its output nor its work folder yet (the second is queued): still, two names.
    outputs = [said[1].split(" -o ")[1].split()[0] for said in made]
    assert len(set(outputs)) == 2, outputs
    for said in reversed(made):
        client.predict(said[-1], api_name="/cancel")
    wait_jobs(client, lambda rows: all(r[2] == "stopped" for r in rows if r[0] in (made[0][-1], made[1][-1])))


def test_paths_are_confined_to_the_folder(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    folder = Folder(root)
    assert folder.inside("sub/../a.png") == "a.png"
    assert folder.inside(str(root / "sub" / "b.png")) == "sub/b.png"
    for bad in ("../secret.png", str(tmp_path / "secret.png"), "link.png", "sub/../../secret.png", "/etc/passwd"):
        with pytest.raises(InputError, match="outside the studio's folder"):
            folder.inside(bad)


def test_settings_become_the_command_lines_flags():
    look = Look(model="vgg16_hed", preset="quick", layers="block4_conv1 = 1, block5_conv1:3=2", step="0.02", seed="7")
    assert look.argv() == [
        "--preset",
        "quick",
        "--set",
        "step=0.02",
        "--layers",
        "block4_conv1=1,block5_conv1:3=2",
        "--model",
        "vgg16_hed",
        "--seed",
        "7",
    ]
    assert Look().argv() == []


def test_new_outputs_never_take_a_name_in_use(tmp_path):
    folder = Folder(tmp_path)
    (tmp_path / "dreams").mkdir()
    (tmp_path / "dreams/a-dream.mp4").write_bytes(b"user's")
    (tmp_path / "dreams/.a-dream-2.mp4.dreamreel-work").mkdir()  # an unfinished job's
    assert folder.new_output("a-dream", ".mp4") == "dreams/a-dream-3.mp4"


def test_studio_without_gradio_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["studio", "."]) == 2
    assert 'pip install "dreamreel[studio]"' in capsys.readouterr().err


def test_listening_beyond_this_machine_warns_and_a_password_and_upload_limit_hold(tmp_path):
    from gradio_client import Client, handle_file

    folder = studio_folder(tmp_path / "work")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 300_000)
    studio = Served(
        folder,
        "--host",
        "0.0.0.0",
        "--password",
        "--max-upload",
        "100kb",
        env={"DREAMREEL_STUDIO_PASSWORD": "s3cret"},
    )
    try:
        assert "warning: the studio listens on 0.0.0.0" in studio.output()
        with pytest.raises(Exception):  # noqa: B017 - refused at login, whatever the client raises
            Client(studio.url, verbose=False, auth=("me", "wrong"))
        import httpx

        assert httpx.post(f"{studio.url}gradio_api/call/jobs", json={"data": [None]}).status_code in (401, 403)
        client = Client(studio.url, verbose=False, auth=("me", "s3cret"))
        with pytest.raises(Exception, match="(?i)too large|size|exceed"):
            client.predict(handle_file(str(big)), "", *settings(), api_name="/quick")
        assert not any((folder / ".dreamreel-studio" / "uploads").iterdir())
        assert client.predict(None, api_name="/jobs") == []
    finally:
        studio.stop()


@pytest.mark.slow  # 40 s: the queue test covers cancel and resume in the default run
def test_a_studio_killed_mid_job_lists_it_again_and_its_resumed_film_equals_the_command_lines(
    tmp_path, capsys, monkeypatch
):
    import json
    import time

    import psutil

    folder = studio_folder(tmp_path / "work", clip_size="160x120", seconds=1.0)  # 24 frames
    slow = settings(octaves="3", iterations="6")
    studio = Served(folder)
    try:
        client = studio.client()
        # Every frame dreamt in full (no carried dream), so that the kill lands mid-job.
        said, command, job = client.predict(None, "clip.mp4", "", "", "", "none", *slow, api_name="/run_video")
        wait_jobs(client, lambda rows: rows and rows[0][3] and 3 <= int(rows[0][3].split("/")[0]) < 20, every_s=0.2)
        runner = json.loads((folder / ".dreamreel-studio/jobs" / job / "runner.json").read_text())["pid"]
        studio.kill()
    finally:
        studio.stop()
    # The runner notices its studio is gone and stops as a cancel does, keeping its work (bounded wait).
    deadline = time.monotonic() + 60
    while psutil.pid_exists(runner) and psutil.Process(runner).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the job ran on after its studio was killed"
        time.sleep(0.2)
    assert (folder / "dreams/.clip-dream.mp4.dreamreel-work").is_dir()
    assert not (folder / "dreams/clip-dream.mp4").exists()

    again = Served(folder)
    try:
        client = again.client()
        (row,) = client.predict(None, api_name="/jobs")
        assert row[0] == job and row[2] == "stopped" and int(row[3].split("/")[0]) >= 3, row
        assert "resuming" in client.predict(job, api_name="/resume")
        (row,) = wait_jobs(client, lambda rows: rows[0][2] == "done")
    finally:
        again.stop()
    resumed = int(row[5].split(" resumed")[0].rsplit(", ", 1)[1])
    assert resumed >= 3, row  # it went on from what was done, not from the start
    # The command line the studio showed, run in a terminal to another file: the same film.
    argv = shlex.split(command)[1:]
    argv[argv.index("-o") + 1] = "cli.mp4"
    monkeypatch.chdir(folder)
    assert main(argv) == 0
    studio_frames = read_frames(folder / "dreams/clip-dream.mp4")
    assert len(studio_frames) == 24
    assert [f.tobytes() for f in studio_frames] == [f.tobytes() for f in read_frames(folder / "cli.mp4")]
    assert (folder / "dreams/clip-dream.mp4").read_bytes() == (folder / "cli.mp4").read_bytes()


def test_a_second_studio_on_the_same_folder_is_refused(served):
    import subprocess
    import sys

    from tests.media import REPO

    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "studio", str(served.folder), "--no-browser"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("another dreamreel studio serves this folder"), done.stderr


def test_a_server_path_passed_as_an_upload_is_not_read(served):
    """A caller of the HTTP API naming a file of the server as its 'upload' (not uploading it, as
    gradio_client would) gets an error, and nothing from outside the folder is read or kept."""
    import httpx

    secret = served.folder.parent / "outside.png"
    upload = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    call = httpx.post(f"{served.url}gradio_api/call/quick", json={"data": [upload, "", *settings()]}, timeout=30)
    event = call.json()["event_id"]
    with httpx.stream("GET", f"{served.url}gradio_api/call/quick/{event}", timeout=120) as stream:
        said = "\n".join(stream.iter_lines())
    assert "event: error" in said and "Quick dream" not in said, said
    assert not list((served.folder / ".dreamreel-studio" / "uploads").rglob("outside.png"))
