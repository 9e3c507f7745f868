"""A real Dask cluster on 127.0.0.1 (a `dask scheduler` and two `dask worker` processes, no mocks):
batches and videos run on it, survive losing a worker, and equal a local run."""

from __future__ import annotations

import os
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
from pipeline.imagefile import read_image
from tests.clips import make_clip
from tests.media import REPO, image_folder, mean_change
from tests.test_video import FAST as VIDEO_FAST

FAST = ["--model", "inception_v3", "--weights", "untrained", "--layers", "mixed2=1", "--set", "iterations=6",
        "--set", "octaves=1", "--max-side", "160", "-q"]
DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, tmp: Path, scheduler_env: dict[str, str] | None = None):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                           "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          env={**os.environ, "PYTHONPATH": str(REPO), **(scheduler_env or {})})
        self.workers: list[subprocess.Popen[bytes]] = []

    def add_worker(self, nanny: bool = False) -> subprocess.Popen[bytes]:
        # Scheduler and workers import this checkout (a cluster shares the command's environment; the
        # scheduler unpickles task graphs too).
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        w = subprocess.Popen([DASK, "worker", self.address, "--nthreads", "1", "--no-dashboard",
                              *([] if nanny else ["--no-nanny"]), "--local-directory", str(self.tmp)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.workers.append(w)
        return w

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "dask")
    try:
        c.add_worker()
        c.add_worker()
        c.wait_for_workers(2)
        yield c
    finally:
        c.close()


def kill_one_worker_when(cluster: Cluster, ready, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            cluster.workers[0].send_signal(signal.SIGKILL)
            cluster.workers[0].wait()
            return True
        time.sleep(0.05)
    return False


def test_image_batch_on_cluster_survives_a_lost_worker_and_equals_local(cluster: Cluster, tmp_path: Path) -> None:
    src = image_folder(tmp_path / "in", 10)
    local = tmp_path / "local"
    assert main(["images", str(src), "-o", str(local), *FAST]) == 0
    remote = tmp_path / "remote"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "images", str(src), "-o", str(remote), *FAST,
                             "--scheduler", cluster.address], stderr=subprocess.PIPE, text=True)
    events = remote / ".dreamreel-work" / "events.log"
    killed = kill_one_worker_when(cluster, lambda: events.exists() and len(events.read_text().splitlines()) >= 2)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    assert killed
    for i in range(10):
        assert np.array_equal(read_image(local / f"{i}.png").pixels, read_image(remote / f"{i}.png").pixels)
        assert mean_change(remote / f"{i}.png", src / f"{i}.png") > 1.0


def test_video_on_cluster_survives_a_lost_worker_and_equals_local(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", cut_at=0.5, seconds=1.2)
    args = [*VIDEO_FAST, "--set", "iterations=4", "--set", "video.chunk_frames=8", "--keep-work"]
    assert main(["video", str(clip), "-o", str(tmp_path / "local.mp4"), "--workdir", str(tmp_path / "wl"),
                 *args]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "video", str(clip), "-o", str(tmp_path / "r.mp4"),
                             "--workdir", str(tmp_path / "wr"), *args, "--scheduler", cluster.address],
                            stderr=subprocess.PIPE, text=True)
    events = tmp_path / "wr" / "events.log"
    killed = kill_one_worker_when(cluster, lambda: events.exists() and len(events.read_text().splitlines()) >= 3)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    assert killed
    names = sorted(p.name for p in (tmp_path / "wl" / "dream").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "wr" / "dream").glob("*.png"))
    for n in names:
        assert (tmp_path / "wl" / "dream" / n).read_bytes() == (tmp_path / "wr" / "dream" / n).read_bytes(), n
        assert mean_change(tmp_path / "wr" / "dream" / n, tmp_path / "wr" / "src" / n) > 1.0, n


def test_unreachable_scheduler_is_one_line(tmp_path: Path, capsys) -> None:
    src = image_folder(tmp_path / "in", 1, 40, 40)
    code = main(["images", str(src), "-o", str(tmp_path / "out"), *FAST, "--scheduler",
                 f"tcp://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_workers_that_cannot_see_the_paths_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    """The start-up probe really runs on the cluster's workers: a path they can't read stops the job."""
    from distributed import Client

    from pipeline.schedule import SchedulerError, check_shared_paths

    with Client(cluster.address, timeout="10s") as client:
        check_shared_paths(client, tmp_path, tmp_path)  # both visible: passes
        with pytest.raises(SchedulerError, match="same paths.*cannot read .*elsewhere"):
            check_shared_paths(client, tmp_path / "elsewhere", tmp_path)
        with pytest.raises(SchedulerError, match="cannot write in"):
            check_shared_paths(client, tmp_path, tmp_path / "no-such-folder")


def test_lost_scheduler_is_one_line_and_a_new_one_resumes(tmp_path: Path) -> None:
    src = image_folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    events = out / ".dreamreel-work" / "events.log"
    first = Cluster(tmp_path / "d1")
    try:
        first.add_worker()
        first.wait_for_workers(1)
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "images", str(src), "-o", str(out), *FAST,
                                 "--scheduler", first.address], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (events.exists() and len(events.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.scheduler.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=120)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        first.close()
    assert code == 1 and "lost the Dask scheduler" in err and "Traceback" not in err, err
    done_before = set(events.read_text().splitlines())
    second = Cluster(tmp_path / "d2")
    try:
        second.add_worker()
        second.wait_for_workers(1)
        assert main(["images", str(src), "-o", str(out), *FAST, "--scheduler", second.address]) == 0
    finally:
        second.close()
    lines = events.read_text().splitlines()
    assert len(lines) == len(set(lines)) and done_before <= set(lines)  # nothing dreamt twice
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in src.glob("*.png"))


def test_a_task_that_keeps_killing_workers_is_bounded_by_the_job_not_the_scheduler(tmp_path: Path) -> None:
    """The scheduler here allows 100 deaths (its own setting, which this client cannot change): the
    job's own count still fails the task after MAX_DEATHS, and the other tasks complete."""
    from distributed import Client

    from pipeline.schedule import MAX_DEATHS, DeathGuard, WorkerDeaths
    from tests.test_schedule import run_with_a_killer

    cluster = Cluster(tmp_path / "dask", {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "100"})
    try:
        cluster.add_worker(nanny=True)
        cluster.add_worker(nanny=True)
        cluster.wait_for_workers(2)
        with Client(cluster.address, timeout="10s") as client:
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 100
            results, errors = run_with_a_killer(client, DeathGuard(str(tmp_path / "attempts")))
    finally:
        cluster.close()
    assert results == [0, 1, 4, 9] and list(errors) == ["killer"], errors
    assert isinstance(errors["killer"], WorkerDeaths) and f"took down {MAX_DEATHS} workers" in str(errors["killer"])
