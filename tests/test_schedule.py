"""Scheduling: tasks that kill their worker, the numerics layout a job records and keeps."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cluster.client import dask_client
from pipeline.cluster.schedule import MAX_DEATHS, DeathGuard, Task, WorkerDeaths, run_chains
from pipeline.job.store import Store
from pipeline.runtime import usable_cores
from tests.media import image_folder


def die(after: object = None) -> None:
    """Take the worker process down, as a segfault or the kernel's OOM killer would."""
    os._exit(1)


def square(x: int, after: object = None) -> int:
    return x * x


def run_with_a_killer(client, guard: DeathGuard) -> tuple[list[int], dict[str, BaseException]]:
    results: list[int] = []
    errors: dict[str, BaseException] = {}
    chains = [[Task("killer", die)], *[[Task(f"ok-{i}", square, (i,))] for i in range(4)]]
    run_chains(client, chains, results.append, lambda task, exc: errors.__setitem__(task.key, exc), guard=guard)
    return sorted(results), errors


def test_a_task_that_keeps_killing_workers_fails_after_max_deaths_the_rest_completes(tmp_path: Path) -> None:
    guard = DeathGuard(Store(tmp_path))
    with dask_client(workers=2, threads=1) as client:
        results, errors = run_with_a_killer(client, guard)
    assert results == [0, 1, 4, 9]
    assert list(errors) == ["killer"]
    assert isinstance(errors["killer"], WorkerDeaths) and f"took down {MAX_DEATHS} workers" in str(errors["killer"])
    assert len(os.listdir(tmp_path / "attempts" / "killer")) == MAX_DEATHS  # the next start refused itself


def test_marks_of_an_earlier_run_are_not_deaths(tmp_path: Path) -> None:
    """A command killed mid-task leaves marks; the next run (another run id) starts from zero."""
    earlier = DeathGuard(Store(tmp_path))
    for _ in range(MAX_DEATHS):
        earlier.started("frame-7")
    DeathGuard(Store(tmp_path)).started("frame-7")  # does not raise
    with pytest.raises(WorkerDeaths):
        earlier.started("frame-7")
    earlier.finished("frame-7")
    assert not (tmp_path / "attempts" / "frame-7").exists()


@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 cores to give two layouts")
def test_local_workers_use_the_thread_count_the_job_recorded(tmp_path: Path) -> None:
    """Begun with --workers 2 (1 thread each on 2 cores), continued in one fresh process (which
    would take every core): the job's record says 1, so one numerics layout dreams every image."""
    src = image_folder(tmp_path / "in", 2, 48, 64)
    out = tmp_path / "out"
    fast = [
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
    assert main(["images", str(src), "-o", str(out), *fast, "--workers", "2"]) == 0
    image_folder(tmp_path / "more", 2, 48, 64, name="more-{i}.png")
    for p in (tmp_path / "more").iterdir():
        p.rename(src / p.name)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "images", str(src), "-o", str(out), *fast],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 dreamt, 2 already done" in proc.stderr and "layouts" not in proc.stderr
    job = json.loads((out / ".dreamreel-work" / "job.json").read_text())
    assert job["numerics"]["threads"] == usable_cores() // 2
    assert [layout["threads"] for layout in job["layouts"].values()] == [usable_cores() // 2]


def test_a_second_layout_is_reported(tmp_path: Path) -> None:
    from pipeline.job.record import JobRecord, LayoutLog

    store = Store(tmp_path)
    log = LayoutLog(lambda j: store.write_json("job.json", j.to_json()), JobRecord({}))
    layout = {"tensorflow": "2.21.0", "device": "cpu A", "threads": 2, "onednn": "default"}
    log.saw(layout)
    log.saw(dict(layout))
    assert log.warning() is None
    log.saw({**layout, "threads": 8})
    assert "2 numerics layouts" in log.warning() and "8 threads" in log.warning()
    assert len(json.loads((tmp_path / "job.json").read_text())["layouts"]) == 2
    # A job begun by a version whose engine computed otherwise (before batch norms were folded: its
    # layouts have no "arithmetic") is said to mix layouts too.
    log.saw({**layout, "arithmetic": 2})
    assert "3 numerics layouts" in log.warning() and "engine arithmetic 1" in log.warning()
    assert "engine arithmetic 2" in log.warning()


def test_load_tensorflow_sets_the_thread_count_numerics_reports() -> None:
    code = "from pipeline.runtime import load_tensorflow, numerics; load_tensorflow(1); print(numerics()['threads'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "1", proc.stderr


# A command stopped by Ctrl-C while its closes run out (a timeout of 1 ms): prints its worker
# processes and the task's child, then how long its exit took after the cluster's context ended.
STOPPED_COMMAND = """
import subprocess, sys, time
from pathlib import Path
from pipeline.cluster import client as cluster_client, schedule

def hang(pid_file):
    child = subprocess.Popen(["sleep", "300"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(300)

if __name__ == "__main__":
    import atexit
    cluster_client.CLOSE_TIMEOUT_S = 0.001
    pid_file = Path(sys.argv[1])
    with cluster_client.dask_client(workers=2, threads=1) as client:
        print(*[w.process.process.pid for w in client.cluster.workers.values()], flush=True)
        future = client.submit(hang, str(pid_file), pure=False)
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(pid_file.read_text(), flush=True)
        schedule.STOP.set()
    ended = time.monotonic()
    atexit.register(lambda: print(f"{time.monotonic() - ended:.2f}", flush=True))  # runs after Dask's hooks
"""


def test_ctrl_c_leaves_nothing_running_and_nothing_for_the_exit_to_wait_for(tmp_path: Path) -> None:
    """On a busy machine the bounded closes after Ctrl-C can run out; Dask's exit hook then closed
    the cluster again, waiting up to 10 s (a Ctrl-C once took 11.5 s to stop). Closes that always
    run out must still leave every worker process and its children dead, and the exit quick."""
    import psutil

    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_COMMAND)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "child")], capture_output=True, text=True, timeout=120, env=env
    )
    lines = done.stdout.split()
    assert done.returncode == 0 and len(lines) == 4, done.stdout + done.stderr
    pids = [int(x) for x in lines[:3]]
    assert float(lines[3]) < 1.0, f"the exit waited {lines[3]} s"
    left = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
    assert not left


def test_tracebacks_of_what_a_stop_cancels_are_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C cancels Dask's tasks and waits; their tracebacks (tornado's "Exception in callback")
    must not print above the command's one line. Other times they still show."""
    import logging

    from pipeline.cluster import client, schedule

    client._quiet_dask()
    app = logging.getLogger("tornado.application")
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        app.error("before a stop")
        schedule.STOP.set()
        try:
            app.error("while stopping")
        finally:
            schedule.STOP.clear()
    assert [r.getMessage() for r in caplog.records] == ["before a stop"]
