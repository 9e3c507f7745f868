"""The studio's video and zoom jobs: each a command line run in its own process, listed from
its folder (``.dreamreel-studio/jobs/ID``), so a studio started again finds every job the last one
had, and an unfinished one resumes with one click. At most ``slots`` run at once; the rest wait
in a queue, in the order they were asked for.

A job's state is read from its folder each time, never kept only in memory:

- ``done``: its runner wrote exit code 0 and the output exists;
- ``running``: its runner process is alive;
- ``queued``: waiting for a slot in this studio;
- ``stopped``: cancelled, failed, or its studio died; resume runs the same command line again,
  which goes on from the job's work folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.studio.commands import Folder, shown
from pipeline.studio.runner import EVENTS, EXIT, JOB, LOG, PID, write_json


@dataclass(frozen=True)
class JobState:
    """What the page shows of one job."""

    id: str
    kind: str  # "video" or "zoom"
    label: str  # the input's name
    state: str  # "queued", "running", "done" or "stopped"
    done: int
    total: int
    eta_s: float | None
    message: str  # the last line: the runner's result or error, or a progress note
    output: str  # relative to the studio's folder
    command: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class Board:
    """Jobs of one studio folder."""

    def __init__(self, folder: Folder, slots: int = 1):
        self.folder = folder
        self.slots = max(1, slots)
        self.jobs_dir = folder.state("jobs")
        self._lock = threading.Lock()
        self._resuming = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._queue: deque[str] = deque()
        self._closed = threading.Event()
        self._pump_thread: threading.Thread | None = None

    # --- asking -------------------------------------------------------------------------------

    def submit(self, kind: str, argv: Callable[[str], list[str]], label: str, stem: str) -> tuple[str, list[str]]:
        """A new job for the command line ``argv(OUTPUT)`` (run in the studio's folder), its output a
        name in ``dreams/`` that no file and no other job has; it starts when a slot is free.
        Returns the job's id and its command line."""
        with self._lock:
            taken = [int(p.name.split("-")[0]) for p in self.jobs_dir.iterdir() if p.name.split("-")[0].isdigit()]
            job_id = f"{max(taken, default=0) + 1:04d}-{kind}"
            output = self.folder.new_output(stem, ".mp4", frozenset(self._outputs()))
            made = argv(output)
            path = self.jobs_dir / job_id
            path.mkdir()
            write_json(
                path / JOB,
                {"id": job_id, "kind": kind, "argv": made, "label": label, "output": output, "t": time.time()},
            )
            self._queue.append(job_id)
        self.pump()
        return job_id, made

    def _outputs(self) -> set[str]:
        """The outputs of this folder's jobs (a queued job has not made its output, nor its work folder)."""
        outputs = set()
        for job_id in self.ids():
            job = _read_json(self.jobs_dir / job_id / JOB)
            if job is not None:
                outputs.add(str(job.get("output")))
        return outputs

    def resume(self, job_id: str) -> None:
        """Run a stopped job's command line again: it goes on from its work folder."""
        self._known(job_id)
        with self._resuming:  # two clicks: the second finds the job queued
            state = self.state(job_id)
            if state.state != "stopped":
                raise ValueError(f"job {job_id} is {state.state}: only a stopped job resumes")
            with self._lock:
                (self.jobs_dir / job_id / EXIT).unlink(missing_ok=True)
                self._queue.append(job_id)
        self.pump()

    def cancel(self, job_id: str) -> None:
        """Stop a job: a queued one leaves the queue, a running one stops within a gradient step
        and keeps what it finished."""
        self._known(job_id)
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
                write_json(
                    self.jobs_dir / job_id / EXIT,
                    {"code": 130, "message": "cancelled before it began", "t": time.time()},
                )
                return
            proc = self._procs.get(job_id)
        if proc is None and self._runner_pid(job_id) is None:
            raise ValueError(f"job {job_id} is not running")
        if proc is not None and proc.poll() is None:
            # The runner writes its pid once it catches SIGTERM: until then, the signal would kill
            # it outright (its work is kept either way, but then it cannot say so).
            deadline = time.monotonic() + 10
            while proc.poll() is None and self._runner_pid(job_id) != proc.pid and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
        else:
            pid = self._runner_pid(job_id)  # a runner left by a studio that died, still stopping
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def _known(self, job_id: str) -> str:
        if job_id not in self.ids():
            raise ValueError(f"no job {job_id!r} in this studio's folder")
        return job_id

    # --- running ------------------------------------------------------------------------------

    def pump(self) -> None:
        """Reap finished runners, start queued jobs while slots are free."""
        with self._lock:
            for job_id, proc in list(self._procs.items()):
                if proc.poll() is not None:
                    del self._procs[job_id]
            while self._queue and len(self._procs) < self.slots and not self._closed.is_set():
                job_id = self._queue.popleft()
                self._procs[job_id] = self._start(job_id)

    def _start(self, job_id: str) -> subprocess.Popen[bytes]:
        path = self.jobs_dir / job_id
        # Not the studio's password; and no module of the studio's folder can shadow the runner's own:
        # it starts in its job's folder (ours), without the current folder on its path.
        env = {k: v for k, v in os.environ.items() if k != "DREAMREEL_STUDIO_PASSWORD"}
        env.update(PYTHONUNBUFFERED="1", PYTHONSAFEPATH="1")
        # The runner imports this checkout's packages however the studio found them.
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        with open(path / LOG, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "pipeline.studio.runner", str(path), str(self.folder.root), str(os.getpid())],
                cwd=path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in the studio's terminal reaches it through the studio's close
            )

    def start_pumping(self, every_s: float = 0.5) -> None:
        """Start queued jobs as slots free up, whether or not a page is open."""

        def loop() -> None:
            while not self._closed.wait(every_s):
                self.pump()

        self._pump_thread = threading.Thread(target=loop, name="dreamreel-jobs", daemon=True)
        self._pump_thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop every running job (each keeps what it finished) and wait for them, bounded."""
        self._closed.set()
        with self._lock:
            procs = list(self._procs.values())
            self._queue.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # --- reading ------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Every job of this folder, newest first."""
        return sorted((p.name for p in self.jobs_dir.iterdir() if (p / JOB).is_file()), reverse=True)

    def states(self) -> list[JobState]:
        out = []
        for job_id in self.ids():
            try:
                out.append(self.state(job_id))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # one damaged folder is one row
                out.append(JobState(job_id, "?", "?", "stopped", 0, 0, None, f"unreadable: {exc}", "", ""))
        return out

    def state(self, job_id: str) -> JobState:
        path = self.jobs_dir / job_id
        job = json.loads((path / JOB).read_text())
        event = _last_event(path / EVENTS)
        ended = _read_json(path / EXIT)
        with self._lock:
            queued = job_id in self._queue
            proc = self._procs.get(job_id)
        alive = (proc is not None and proc.poll() is None) or (proc is None and self._runner_pid(job_id) is not None)
        output = job["output"]
        if alive:
            state = "running"
        elif queued:
            state = "queued"
        elif ended is not None and ended["code"] == 0 and (self.folder.root / output).exists():
            state = "done"
        else:
            state = "stopped"
        if ended is not None and not alive:
            message = ended["message"]
        elif state == "stopped" and event is None:
            message = "not started (its studio stopped first): resume starts it"
        elif state == "stopped":
            message = "stopped before it ended (its studio or its process was stopped); what it finished is kept"
        else:
            message = (event or {}).get("note") or ""
        done, total = (event["done"], event["total"]) if event else (0, 0)
        if state == "done":
            done = total
        return JobState(
            id=job_id,
            kind=job["kind"],
            label=job["label"],
            state=state,
            done=done,
            total=total,
            eta_s=event.get("eta_s") if event and state == "running" else None,
            message=message,
            output=output,
            command=shown(job["argv"]),
        )

    def _runner_pid(self, job_id: str) -> int | None:
        """The pid of this job's runner if it is alive (one started by an earlier studio included)."""
        import psutil

        info = _read_json(self.jobs_dir / job_id / PID)
        if info is None:
            return None
        try:
            proc = psutil.Process(info["pid"])
            cmd = proc.cmdline()
            zombie = proc.status() == psutil.STATUS_ZOMBIE
        except (psutil.Error, OSError, KeyError, TypeError):
            return None
        folder = str(self.jobs_dir / job_id)
        if zombie or "pipeline.studio.runner" not in cmd or folder not in cmd:
            return None
        return int(info["pid"])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_event(path: Path) -> dict[str, Any] | None:
    """The last whole line of a job's events (the file may be growing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        # a note-only line repeats the counts; the last one with a stage is what the job is at
        if isinstance(data, dict) and "done" in data:
            return data
    return None
