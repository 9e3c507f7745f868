"""No shared filesystem, for real: the job store on an S3 server (moto in server mode, a real HTTP
endpoint on 127.0.0.1), a Dask scheduler, and two workers that cannot see the command's folders.

Each worker runs in its own mount namespace in which the command's folder is an empty tmpfs, with
its own private working directory: the input and output paths given to the command do not exist
for it (the test proves it). Everything the workers read or write goes through the store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.io.imagefile import read_image
from tests.clips import make_clip, read_frames
from tests.media import REPO, image_folder
from tests.test_cluster import free_port
from tests.test_video import FAST as VIDEO_FAST

BIN = Path(sys.executable).parent
BUCKET = "dreamreel-test"


def can_hide_folders() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


hides_folders = pytest.mark.skipif(not can_hide_folders(), reason="needs unshare -m (root) to hide folders")


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


class World:
    """An S3 server, a scheduler and hidden-folder workers; ``env`` reaches the store."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.cmd_root = tmp / "cmd"  # the command's folder: the workers see an empty tmpfs here
        self.cmd_root.mkdir()
        self.s3_port = free_port()
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "PYTHONPATH": str(REPO),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.s3 = self._start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)])
        wait_for_port(self.s3_port)
        self.fs.mkdir(BUCKET)
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self._start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        wait_for_port(port)
        self.workers = [self.add_worker(n) for n in range(2)]
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)

    @property
    def fs(self):  # noqa: ANN201
        import s3fs

        return s3fs.S3FileSystem(
            key="testing", secret="testing", use_listings_cache=False, endpoint_url=f"http://127.0.0.1:{self.s3_port}"
        )

    def _start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def add_worker(self, n: int) -> subprocess.Popen[bytes]:
        private = self.tmp / f"worker{n}"
        private.mkdir()
        script = (
            f"mount -t tmpfs tmpfs '{self.cmd_root}' && cd '{private}' && exec '{BIN / 'dask'}' worker "
            f"{self.address} --nthreads 1 --no-nanny --no-dashboard --local-directory '{private}'"
        )
        return self._start(["unshare", "-m", "--propagation", "private", "sh", "-c", script])

    def dreamreel(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *argv],
            env=self.env,
            cwd=self.cmd_root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stored(self, prefix: str) -> int:
        try:
            return len(self.fs.find(f"{BUCKET}/{prefix}"))
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def wait_until(ready, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.1)
    assert proc.poll() is None, "finished before the kill: " + (proc.stderr.read() if proc.stderr else "")
    raise AssertionError("no progress")


@hides_folders
def test_video_and_images_with_the_store_on_s3_and_hidden_folders(world: World, tmp_path: Path) -> None:
    from distributed import Client

    clip = make_clip(world.cmd_root / "clip.mp4", cut_at=0.5, seconds=1.4)
    photos = image_folder(world.cmd_root / "photos", 8, 96, 128)
    with Client(world.address, timeout="10s") as client:  # the workers really cannot see them
        for path in (clip, photos, world.cmd_root / "out"):
            assert not any(client.run(os.path.exists, str(path)).values()), path
        assert all(client.run(os.path.exists, str(tmp_path)).values())

    args = [*VIDEO_FAST, "--set", "iterations=3", "--set", "video.chunk_frames=8", "--set", "video.overlap_frames=3"]
    assert main(["video", str(clip), "-o", str(tmp_path / "local.mp4"), *args]) == 0
    local = read_frames(tmp_path / "local.mp4")

    # 1. On the cluster, one worker killed mid-job: the job goes on on the other.
    run = world.dreamreel(
        "video", "clip.mp4", "-o", "out.mp4", *args, "--workdir", f"s3://{BUCKET}/video1", "--scheduler", world.address
    )
    wait_until(lambda: world.stored("video1/chunks") >= 1, run)
    world.workers[0].send_signal(signal.SIGKILL)
    assert run.wait(timeout=600) == 0, run.stderr.read() if run.stderr else ""
    assert "uploading it to the job store once" in (run.stderr.read() if run.stderr else "")
    assert [f.tobytes() for f in read_frames(world.cmd_root / "out.mp4")] == [f.tobytes() for f in local]
    assert world.stored("video1") == 0  # the store is cleared after success
    world.workers[0] = world.add_worker(2)
    with Client(world.address, timeout="10s") as c:
        c.wait_for_workers(2, timeout=120)

    # 2. The command itself killed mid-job, then the same command again: it resumes, identical.
    argv = [
        "video",
        "clip.mp4",
        "-o",
        "again.mp4",
        *args,
        "--workdir",
        f"s3://{BUCKET}/video2",
        "--scheduler",
        world.address,
    ]
    first = world.dreamreel(*argv)
    wait_until(lambda: world.stored("video2/chunks") >= 2, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = world.stored("video2/chunks")
    again = world.dreamreel(*argv)
    assert again.wait(timeout=600) == 0, again.stderr.read() if again.stderr else ""
    err = again.stderr.read() if again.stderr else ""
    assert done_before >= 2 and " resumed" in err and not err.count(" 0 resumed"), err
    assert [f.tobytes() for f in read_frames(world.cmd_root / "again.mp4")] == [f.tobytes() for f in local]

    # 3. A folder of images the same way: inputs uploaded once, dreams brought home; a worker killed.
    fast = [
        "--model",
        "inception_v3",
        "--weights",
        "untrained",
        "--layers",
        "mixed2=1",
        "--set",
        "iterations=4",
        "--set",
        "octaves=1",
        "-q",
    ]
    assert main(["images", str(photos), "-o", str(tmp_path / "photos-local"), *fast]) == 0
    batch = world.dreamreel(
        "images", "photos", "-o", "dreams", *fast, "--workdir", f"s3://{BUCKET}/images", "--scheduler", world.address
    )
    wait_until(
        lambda: (world.cmd_root / "dreams").exists() and len(list((world.cmd_root / "dreams").glob("*.png"))) >= 2,
        batch,
    )
    world.workers[1].send_signal(signal.SIGKILL)
    assert batch.wait(timeout=600) == 0, batch.stderr.read() if batch.stderr else ""
    for i in range(8):
        a = read_image(world.cmd_root / "dreams" / f"{i}.png").pixels
        assert np.array_equal(a, read_image(tmp_path / "photos-local" / f"{i}.png").pixels), i
        assert np.abs(a.astype(np.float32) - read_image(photos / f"{i}.png").pixels).mean() > 1.0


@hides_folders
def test_a_model_file_and_a_guide_clip_reach_workers_that_cannot_see_them(world: World, tmp_path: Path) -> None:
    """--model FILE and --guide CLIP in the command's folder, which the workers cannot see: both are
    uploaded to the job store once and the cluster's dream equals a local run's, frame for frame."""
    from distributed import Client

    from tests.models import trained_cnn

    clip = make_clip(world.cmd_root / "clip.mp4", seconds=0.5)
    guide = make_clip(world.cmd_root / "guide.mp4", size="64x48", seconds=0.25, audio=False)
    model = trained_cnn(world.cmd_root / "shapes.keras")
    photos = image_folder(world.cmd_root / "photos", 2, 64, 96)
    with Client(world.address, timeout="10s") as client:
        for path in (clip, guide, model):
            assert not any(client.run(os.path.exists, str(path)).values()), path
    args = [
        "--model",
        str(model),
        "--layers",
        "conv1=1,conv2=1",
        "--set",
        "iterations=3",
        "--set",
        "octaves=1",
        "--set",
        "video.chunk_frames=8",
        "-q",
    ]
    assert main(["video", str(clip), "-o", str(tmp_path / "local.mp4"), *args, "--guide", str(guide)]) == 0
    run = world.dreamreel(
        "video",
        "clip.mp4",
        "-o",
        "out.mp4",
        *args,
        "--guide",
        "guide.mp4",
        "--workdir",
        f"s3://{BUCKET}/custom",
        "--scheduler",
        world.address,
    )
    assert run.wait(timeout=600) == 0, run.stderr.read() if run.stderr else ""
    err = run.stderr.read() if run.stderr else ""
    assert "shapes.keras: uploading it" in err and "guide.mp4: uploading it" in err, err
    local = read_frames(tmp_path / "local.mp4")
    assert [f.tobytes() for f in read_frames(world.cmd_root / "out.mp4")] == [f.tobytes() for f in local]
    assert np.abs(local[3].astype(np.float32) - read_frames(clip)[3]).mean() > 1.0  # a dream, not a copy
    # images: the model file too
    fast = ["--model", str(model), "--layers", "conv2=1", "--set", "iterations=3", "--set", "octaves=1", "-q"]
    assert main(["images", str(photos), "-o", str(tmp_path / "photos-local"), *fast]) == 0
    batch = world.dreamreel(
        "images",
        "photos",
        "-o",
        "dreams",
        *fast,
        "--workdir",
        f"s3://{BUCKET}/custom-images",
        "--scheduler",
        world.address,
    )
    assert batch.wait(timeout=600) == 0, batch.stderr.read() if batch.stderr else ""
    for i in range(2):
        a = read_image(world.cmd_root / "dreams" / f"{i}.png").pixels
        assert np.array_equal(a, read_image(tmp_path / "photos-local" / f"{i}.png").pixels), i


@pytest.fixture()
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Only an S3 server (no cluster): the environment that reaches it."""
    import s3fs

    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=f"http://127.0.0.1:{port}").mkdir(BUCKET)
        yield env
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def test_input_output_and_work_folder_as_urls(s3: dict[str, str], tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3["FSSPEC_S3_ENDPOINT_URL"])
    clip = make_clip(tmp_path / "clip.mp4", cut_at=0.5, seconds=1.0)
    fs.put_file(str(clip), f"{BUCKET}/in/clip.mp4")

    def dreamreel(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "video", *argv, *VIDEO_FAST],
            env=s3,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )

    done = dreamreel(
        f"s3://{BUCKET}/in/clip.mp4", "-o", f"s3://{BUCKET}/out/dream.mp4", "--workdir", f"s3://{BUCKET}/jobs/one"
    )
    assert done.returncode == 0, done.stderr
    fs.get_file(f"{BUCKET}/out/dream.mp4", str(tmp_path / "dream.mp4"))
    assert main(["video", str(clip), "-o", str(tmp_path / "local.mp4"), *VIDEO_FAST]) == 0
    assert [f.tobytes() for f in read_frames(tmp_path / "dream.mp4")] == [
        f.tobytes() for f in read_frames(tmp_path / "local.mp4")
    ]
    assert not fs.exists(f"{BUCKET}/jobs/one")  # the work folder is cleared after success
    again = dreamreel(f"s3://{BUCKET}/in/clip.mp4", "-o", f"s3://{BUCKET}/out/dream.mp4")
    assert again.returncode == 2 and "already exists" in again.stderr
    missing = dreamreel(f"s3://{BUCKET}/in/nothere.mp4", "-o", f"s3://{BUCKET}/out/x.mp4")
    lines = [ln for ln in missing.stderr.splitlines() if ln.strip()]
    assert missing.returncode == 2 and lines == [f"dreamreel: error: s3://{BUCKET}/in/nothere.mp4: no such file"]


def test_zoom_writes_its_work_folder_and_its_film_at_urls(s3: dict[str, str], tmp_path: Path) -> None:
    """zoom's work folder and output as URLs (the shared job layer's): stopped half way, resumed from
    the bucket, and the film equal to a local run's."""
    import cv2
    import s3fs

    from tests.media import synthetic_image

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3["FSSPEC_S3_ENDPOINT_URL"])
    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(48, 64))
    fast = [*VIDEO_FAST[:10], "--frames", "8", "--chunk-frames", "4", "-q"]
    assert main(["zoom", str(pic), "-o", str(tmp_path / "local.mp4"), *fast]) == 0

    def dreamreel(*argv: str, env: dict[str, str] = s3) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "zoom", str(pic), *argv, *fast],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )

    url, work = f"s3://{BUCKET}/out/zoom.mp4", f"s3://{BUCKET}/jobs/zoom"
    kept = dreamreel("-o", f"s3://{BUCKET}/out/first.mp4", "--workdir", work, "--keep-work")
    assert kept.returncode == 0, kept.stderr
    assert fs.exists(f"{work}/chunks/000000-000004.mp4") and fs.exists(f"{work}/job.json")
    fs.rm(f"{work}/chunks/000004-000008.mp4")  # as if stopped before its last chunk
    done = dreamreel("-o", url, "--workdir", work, env={**s3, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "4 resumed" in done.stderr, done.stderr
    assert fs.exists(f"{BUCKET}/out/zoom.mp4") and not fs.exists(work)
    for name in ("zoom.mp4", "first.mp4"):
        fs.get_file(f"{BUCKET}/out/{name}", str(tmp_path / name))
        assert [f.tobytes() for f in read_frames(tmp_path / name)] == [
            f.tobytes() for f in read_frames(tmp_path / "local.mp4")
        ]
    again = dreamreel("-o", url)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_bucket_or_prefix_holding_other_objects_is_never_a_work_folder(s3: dict[str, str], tmp_path: Path) -> None:
    """--workdir s3://bucket with other objects in it is refused, and nothing in it touched; an empty
    bucket is used and left in place (emptied of what dreamreel wrote), never removed."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=s3["FSSPEC_S3_ENDPOINT_URL"], use_listings_cache=False
    )
    clip = make_clip(tmp_path / "clip.mp4", seconds=0.3)
    fs.pipe_file(f"{BUCKET}/precious/data.bin", b"keep me")

    def dreamreel(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "video", str(clip), *argv, *VIDEO_FAST],
            env=s3,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )

    refused = dreamreel("-o", "a.mp4", "--workdir", f"s3://{BUCKET}")
    assert refused.returncode == 2 and "holds files dreamreel did not write there (precious)" in refused.stderr
    assert fs.cat_file(f"{BUCKET}/precious/data.bin") == b"keep me" and not (tmp_path / "a.mp4").exists()
    fs.mkdir("dreamreel-empty")
    done = dreamreel("-o", "b.mp4", "--workdir", "s3://dreamreel-empty")
    assert done.returncode == 0, done.stderr
    assert fs.exists("dreamreel-empty") and fs.find("dreamreel-empty") == []
    assert fs.cat_file(f"{BUCKET}/precious/data.bin") == b"keep me"


def test_a_staged_dream_never_lands_outside_its_output(s3: dict[str, str], tmp_path: Path) -> None:
    """Anyone who can write the bucket can put keys under a job's ``out/``: only the outputs the plan
    expects are brought home, checked; ``out/../x`` is never written anywhere."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=s3["FSSPEC_S3_ENDPOINT_URL"], use_listings_cache=False
    )
    photos = image_folder(tmp_path / "photos", 2, 32, 48)
    argv = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "images",
        str(photos),
        "-o",
        str(tmp_path / "dreams"),
        "--workdir",
        f"s3://{BUCKET}/job",
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
        "-q",
    ]
    first = subprocess.run(argv, env=s3, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    fs.pipe_file(f"{BUCKET}/job/out/../escaped.png", b"evil")
    fs.pipe_file(f"{BUCKET}/job/out/../../escaped.png", b"evil")
    fs.pipe_file(f"{BUCKET}/job/out/extra.png", b"not planned")
    again = subprocess.run(argv, env=s3, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path.parent / "escaped.png").exists()
    assert sorted(p.name for p in (tmp_path / "dreams").iterdir()) == ["0.png", "1.png"]
