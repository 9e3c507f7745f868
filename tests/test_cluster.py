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
from pipeline.errors import PipelineError
from pipeline.io.imagefile import read_image
from tests.clips import make_clip, read_frames
from tests.jobs import dreamt_all, plan
from tests.media import REPO, image_folder, mean_change
from tests.test_video import FAST as VIDEO_FAST

FAST = [
    "--model",
    "inception_v3",
    "--weights",
    "untrained",
    "--layers",
    "mixed2=1",
    "--set",
    "iterations=6",
    "--set",
    "octaves=1",
    "--max-side",
    "160",
    "-q",
]
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
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO), **(scheduler_env or {})},
        )
        self.workers: list[subprocess.Popen[bytes]] = []

    def add_worker(self, nanny: bool = False) -> subprocess.Popen[bytes]:
        # Scheduler and workers import this checkout (a cluster shares the command's environment; the
        # scheduler unpickles task graphs too).
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        w = subprocess.Popen(
            [
                DASK,
                "worker",
                self.address,
                "--nthreads",
                "1",
                "--no-dashboard",
                *([] if nanny else ["--no-nanny"]),
                "--local-directory",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
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
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "images",
            str(src),
            "-o",
            str(remote),
            *FAST,
            "--scheduler",
            cluster.address,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    events = remote / ".dreamreel-work" / "events.log"
    killed = kill_one_worker_when(cluster, lambda: events.exists() and len(events.read_text().splitlines()) >= 2)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    assert killed
    for i in range(10):
        assert np.array_equal(read_image(local / f"{i}.png").pixels, read_image(remote / f"{i}.png").pixels)
        assert mean_change(remote / f"{i}.png", src / f"{i}.png") > 1.0


def test_video_on_cluster_survives_a_lost_worker_and_equals_local(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", cut_at=0.5, seconds=1.2)
    args = [*VIDEO_FAST, "--set", "iterations=4", "--set", "video.chunk_frames=8", "--set", "video.overlap_frames=3"]
    assert (
        main(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / "local.mp4"),
                "--workdir",
                str(tmp_path / "wl"),
                "--keep-frames",
                *args,
            ]
        )
        == 0
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "video",
            str(clip),
            "-o",
            str(tmp_path / "r.mp4"),
            "--workdir",
            str(tmp_path / "wr"),
            "--keep-work",
            *args,
            "--scheduler",
            cluster.address,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "wr" / "events.log"
    killed = kill_one_worker_when(cluster, lambda: events.exists() and len(events.read_text().splitlines()) >= 3)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    assert killed
    assert len(plan(tmp_path / "wl")["segments"]) >= 4  # split shots, cross-faded seams: all on the cluster too
    chunks = sorted(p.name for p in (tmp_path / "wl" / "chunks").iterdir())
    assert chunks == sorted(p.name for p in (tmp_path / "wr" / "chunks").iterdir())
    for name in chunks:
        assert (tmp_path / "wl" / "chunks" / name).read_bytes() == (tmp_path / "wr" / "chunks" / name).read_bytes()
    source = read_frames(clip)
    for i, frame in enumerate(dreamt_all(tmp_path / "wl")):
        assert np.abs(frame.astype(np.float32) - source[i]).mean() > 1.0, i  # a dream, not a copy


def test_unreachable_scheduler_is_one_line(tmp_path: Path, capsys) -> None:
    src = image_folder(tmp_path / "in", 1, 40, 40)
    code = main(
        ["images", str(src), "-o", str(tmp_path / "out"), *FAST, "--scheduler", f"tcp://127.0.0.1:{free_port()}"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler" in err and "Traceback" not in err
    assert "connection refused" in err  # said at once, not after the client's 10 s of retries
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("reply", [None, b"HTTP/1.0 400 Bad Request\r\n\r\nnot dask"])
def test_a_service_that_is_not_a_scheduler_is_one_line_in_bounded_time(
    reply: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Given the dashboard's port or any other service, Dask's client waited forever for a silent
    one and reported a reply in another protocol as running out of memory."""
    import threading

    from pipeline.cluster import client as client_mod

    monkeypatch.setattr(client_mod, "CONNECT_TIMEOUT_S", 2.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    done = threading.Event()

    def answer() -> None:  # every connection gets the reply, or silence, until the test ends
        conns = []
        server.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conns.append(conn)
            if reply is not None:
                conn.sendall(reply)
        for conn in conns:
            conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        src = image_folder(tmp_path / "in", 1, 40, 40)
        code = main(
            [
                "images",
                str(src),
                "-o",
                str(tmp_path / "out"),
                *FAST,
                "--scheduler",
                f"tcp://127.0.0.1:{server.getsockname()[1]}",
            ]
        )
    finally:
        done.set()
        thread.join(timeout=5)
        server.close()
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert ("did not answer as a Dask scheduler in 2 s" if reply is None else "is not a Dask scheduler") in err
    assert "dashboard's port" in err


def test_workers_that_do_not_see_the_job_store_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    """The check really runs on the cluster's workers: they must read the token this job wrote."""
    from distributed import Client

    from pipeline.cluster.workers import check_store_shared
    from pipeline.job.store import Store, StoreNotShared

    store = Store(tmp_path / "work")
    store.write_bytes("token", b"this-job")
    with Client(cluster.address, timeout="10s") as client:
        check_store_shared(client, store, "this-job")  # seen: passes
        with pytest.raises(StoreNotShared, match="does not see this job's store.*and 1 more.*--workdir"):
            check_store_shared(client, store, "another-job")
        with pytest.raises(StoreNotShared, match="does not see"):
            check_store_shared(client, Store(tmp_path / "elsewhere"), "this-job")


def test_lost_scheduler_is_one_line_and_a_new_one_resumes(tmp_path: Path) -> None:
    src = image_folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    events = out / ".dreamreel-work" / "events.log"
    first = Cluster(tmp_path / "d1")
    try:
        first.add_worker()
        first.wait_for_workers(1)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "images",
                str(src),
                "-o",
                str(out),
                *FAST,
                "--scheduler",
                first.address,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
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

    from pipeline.cluster.schedule import MAX_DEATHS, DeathGuard, WorkerDeaths
    from pipeline.job.store import Store
    from tests.test_schedule import run_with_a_killer

    cluster = Cluster(tmp_path / "dask", {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "100"})
    try:
        cluster.add_worker(nanny=True)
        cluster.add_worker(nanny=True)
        cluster.wait_for_workers(2)
        with Client(cluster.address, timeout="10s") as client:
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 100
            results, errors = run_with_a_killer(client, DeathGuard(Store(tmp_path)))
    finally:
        cluster.close()
    assert results == [0, 1, 4, 9] and list(errors) == ["killer"], errors
    assert isinstance(errors["killer"], WorkerDeaths) and f"took down {MAX_DEATHS} workers" in str(errors["killer"])


def test_restart_on_a_reused_folder_dreams_with_the_new_settings_on_long_lived_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The workers live on between the two runs; nothing of the first job's settings may stick."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=0.5, audio=False)
    work = ["--workdir", str(tmp_path / "work"), "--scheduler", cluster.address]
    assert main(["video", str(clip), "-o", str(tmp_path / "a.mp4"), *VIDEO_FAST, *work, "--keep-work"]) == 0
    assert (
        main(["video", str(clip), "-o", str(tmp_path / "b.mp4"), *VIDEO_FAST, *work, "--restart", "--set", "step=0.04"])
        == 0
    )
    assert main(["video", str(clip), "-o", str(tmp_path / "local-b.mp4"), *VIDEO_FAST, "--set", "step=0.04"]) == 0
    a, b, local_b = (read_frames(tmp_path / n) for n in ("a.mp4", "b.mp4", "local-b.mp4"))
    assert [f.tobytes() for f in b] == [f.tobytes() for f in local_b]
    assert np.abs(b[-1].astype(np.float32) - a[-1]).mean() > 1.0


def test_two_jobs_on_one_clip_at_once_on_one_scheduler_both_complete_and_are_right(
    cluster: Cluster, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=0.8, audio=False)
    runs = {}
    for seed in (1, 2):
        runs[seed] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "video",
                str(clip),
                "-o",
                str(tmp_path / f"c{seed}.mp4"),
                *VIDEO_FAST,
                "--seed",
                str(seed),
                "--scheduler",
                cluster.address,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
    for seed, proc in runs.items():
        assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
        assert main(["video", str(clip), "-o", str(tmp_path / f"l{seed}.mp4"), *VIDEO_FAST, "--seed", str(seed)]) == 0
        remote, local = read_frames(tmp_path / f"c{seed}.mp4"), read_frames(tmp_path / f"l{seed}.mp4")
        assert [f.tobytes() for f in remote] == [f.tobytes() for f in local], seed
    assert read_frames(tmp_path / "c1.mp4")[-1].tobytes() != read_frames(tmp_path / "c2.mp4")[-1].tobytes()


def test_a_worker_that_cannot_load_the_resolved_network_fails_the_job_in_one_line(
    cluster: Cluster, tmp_path: Path, capsys
) -> None:
    """InceptionV3 with ImageNet weights, which no worker has or can download: the job fails, naming
    the worker; nothing falls back to another network, nothing is written."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=0.3, audio=False)
    code = main(
        [
            "video",
            str(clip),
            "-o",
            str(tmp_path / "o.mp4"),
            "--model",
            "inception_v3",
            "--layers",
            "mixed2=1",
            "--set",
            "iterations=1",
            "--set",
            "octaves=1",
            "-q",
            "--scheduler",
            cluster.address,
        ]
    )
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("dreamreel: info: Dask dashboard")]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("dreamreel: error: worker ") and "ImageNet weights" in lines[0]
    assert not (tmp_path / "o.mp4").exists()


def test_a_workers_copies_of_job_files_are_shared_kept_while_used_and_removed_when_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker machine copies a job's URL input once (jobs on the same file share the copy). On a
    long-lived worker those copies must not pile up: one unused for COPY_DAYS goes when a new one is
    made, one in use stays, and one removed under a job is made again."""
    import tempfile

    import fsspec

    from pipeline.job import locations

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(locations, "_inputs", {})
    with fsspec.open("memory://job/clip.mp4", "wb") as f:
        f.write(b"a clip")
    cache = tmp_path / "dreamreel-inputs"
    cache.mkdir()
    old, recent = cache / "old.mp4", cache / "recent.mp4"
    for f in (old, recent):
        f.write_bytes(b"an earlier job's clip")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(recent, (time.time() - 3600, time.time() - 3600))

    import hashlib

    k1 = hashlib.sha256(b"a clip").hexdigest()[:16]  # the file's fingerprint (jobs.file_fingerprint)
    copy = Path(locations.worker_copy("memory://job/clip.mp4", k1))
    assert copy.parent == cache and copy.read_bytes() == b"a clip"
    assert not old.exists() and recent.exists()
    os.utime(copy, (two_days_ago, two_days_ago))
    assert locations.worker_copy("memory://job/clip.mp4", k1) == str(copy)  # a task uses it: marked used
    assert copy.stat().st_mtime > time.time() - 60
    copy.unlink()  # removed as unused by another worker process on this machine
    assert locations.worker_copy("memory://job/clip.mp4", k1) == str(copy) and copy.read_bytes() == b"a clip"
    # A copy that is not the file the job began with (changed, or a damaged upload) is never used.
    with pytest.raises(PipelineError, match="not the file the job began with"):
        locations.worker_copy("memory://job/clip.mp4", "0123456789abcdef")
    assert not list(cache.glob("0123456789abcdef*")) and not list(cache.glob(".*.part"))


def test_a_cluster_over_mutual_tls_runs_a_job_and_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    """A scheduler and two workers on 127.0.0.1 that speak only TLS, with a CA and certificates made
    here; the job reaches them with Dask's own TLS settings (from the environment, as Dask's config
    reads them). A client without a certificate, or with one the CA did not sign, is refused, in
    one line each."""
    trustme = pytest.importorskip("trustme")
    from distributed import Client
    from distributed.security import Security

    ca, rogue = trustme.CA(), trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    certs = {}
    for name, issuer in (("scheduler", ca), ("worker", ca), ("client", ca), ("rogue", rogue)):
        cert = issuer.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
        certs[name] = [
            "--tls-ca-file",
            str(tmp_path / "ca.pem"),
            "--tls-cert",
            str(tmp_path / f"{name}.pem"),
            "--tls-key",
            str(tmp_path / f"{name}.key"),
        ]
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
                *certs["scheduler"],
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for n in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--no-nanny",
                        "--local-directory",
                        str(tmp_path / f"w{n}"),
                        *certs["worker"],
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        security = Security(
            tls_ca_file=str(tmp_path / "ca.pem"),
            tls_client_cert=str(tmp_path / "client.pem"),
            tls_client_key=str(tmp_path / "client.key"),
            require_encryption=True,
        )
        deadline = time.monotonic() + 60
        while True:  # the scheduler takes a moment to listen
            try:
                with Client(address, security=security, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        clip = make_clip(tmp_path / "clip.mp4", seconds=0.4)
        tls_env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(tmp_path / "ca.pem")}

        def dreamreel(out: str, cert: str | None) -> subprocess.CompletedProcess[str]:
            extra = (
                {}
                if cert is None
                else {
                    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(tmp_path / f"{cert}.pem"),
                    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(tmp_path / f"{cert}.key"),
                }
            )
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline.cli",
                    "video",
                    str(clip),
                    "-o",
                    str(tmp_path / out),
                    *VIDEO_FAST,
                    "--scheduler",
                    address,
                    "--workdir",
                    str(tmp_path / f"work-{out}"),
                ],
                env={**env, **tls_env, **extra},
                capture_output=True,
                text=True,
                timeout=300,
            )

        done = dreamreel("tls.mp4", "client")
        assert done.returncode == 0, done.stderr
        assert main(["video", str(clip), "-o", str(tmp_path / "local.mp4"), *VIDEO_FAST]) == 0
        assert [f.tobytes() for f in read_frames(tmp_path / "tls.mp4")] == [
            f.tobytes() for f in read_frames(tmp_path / "local.mp4")
        ]
        for cert, words in ((None, "has no client certificate for it"), ("rogue", "cannot reach the Dask scheduler")):
            refused = dreamreel(f"{cert}.mp4", cert)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 1 and len(lines) == 1 and words in lines[0], refused.stderr
            assert not (tmp_path / f"{cert}.mp4").exists() and not (tmp_path / f"work-{cert}.mp4").exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()
