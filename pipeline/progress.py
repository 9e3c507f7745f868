"""Progress of a job as events, and its cancellation: what a notebook, a web page or the CLI's bar
is told while a job runs, and how it stops one from another thread.

A job reports through a :class:`Reporter`: a stage begins (``dream`` with its total and what was
resumed), items finish, a line worth showing appears (a damaged frame dreamt again, an image
skipped). Each becomes a :class:`Progress` event given to the caller's callback, with the time so
far and an ETA from this run's own pace. The CLI turns the events into its tqdm bar.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.cluster.schedule import INTERRUPTED, STOP
from pipeline.errors import EXIT_INTERRUPTED, PipelineError

STAGES = ("plan", "dream", "join", "done")


@dataclass(frozen=True)
class Progress:
    """One event of a running job."""

    command: str  # "video", "zoom" or "images"
    stage: str  # "plan", "dream" (items are dreamt), "join" (the output is assembled) or "done"
    done: int  # items done, resumed ones included
    total: int  # items in the job
    resumed: int = 0  # items found done when this run began
    unit: str = "frame"  # "frame" or "image"
    label: str = ""  # what the job works on (its input's name)
    elapsed_s: float = 0.0  # seconds since this run began
    eta_s: float | None = None  # seconds still to go at this run's pace (None until an item is done here)
    note: str | None = None  # a line for the user (a warning, an item skipped); None for plain progress


ProgressCallback = Callable[[Progress], None]


class Cancelled(PipelineError):
    """The job was cancelled (:meth:`Cancel.set`): what it did is kept, and the same call resumes it."""

    exit_code = EXIT_INTERRUPTED


class Cancel:
    """Stops a running job from another thread: ``cancel.set()``. The job stops within a gradient
    step or half a second, keeps everything it finished, and raises :class:`Cancelled`; the same
    call resumes it. One job runs in a process at a time (stopping reaches every task of this
    process)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()
        STOP.set()  # the tasks of this process stop between gradient steps
        INTERRUPTED.set()  # the scheduling loop stops within half a second

    def is_set(self) -> bool:
        return self._event.is_set()


class Reporter:
    """What a job calls as it goes; the caller's callback gets the events (none without one)."""

    def __init__(self, command: str, callback: ProgressCallback | None, label: str = "", unit: str = "frame"):
        self.command, self.callback, self.label, self.unit = command, callback, label, unit
        self.t0 = self.t_dream = time.perf_counter()
        self.stage_name = "plan"
        self.done = self.total = self.resumed = 0
        self._lock = threading.Lock()

    def _emit(self, note: str | None = None) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        here = self.done - self.resumed
        eta = None
        if self.stage_name == "dream" and here > 0:
            eta = (now - self.t_dream) / here * max(0, self.total - self.done)
        self.callback(
            Progress(
                self.command,
                self.stage_name,
                self.done,
                self.total,
                self.resumed,
                self.unit,
                self.label,
                now - self.t0,
                eta,
                note,
            )
        )

    def stage(self, name: str, total: int | None = None, resumed: int | None = None) -> None:
        """A stage begins (``dream`` with the job's total and the items found done)."""
        with self._lock:
            self.stage_name = name
            if name == "dream":
                self.t_dream = time.perf_counter()
            if total is not None:
                self.total = total
            if resumed is not None:
                self.resumed = self.done = resumed
            self._emit()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._emit()

    def note(self, text: str) -> None:
        """A line for the user, as it happens."""
        with self._lock:
            self._emit(text)


class TqdmBar:
    """The CLI's progress bar, drawn from a job's events: one tqdm bar over the items of the
    ``dream`` stage, with what was resumed, and the events' notes written above it."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: Any = None

    def __call__(self, event: Progress) -> None:
        if event.note is not None:
            self._write(event.note)
            return
        if event.stage == "dream" and self.bar is None:
            from tqdm import tqdm  # lazy: tqdm is only the CLI's

            self.bar = tqdm(
                total=event.total,
                initial=event.done,
                unit=event.unit,
                desc=event.label,
                disable=self.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )
            if event.resumed and event.unit == "frame":
                self.bar.set_postfix_str(f"{event.resumed} resumed", refresh=True)
        elif event.stage == "dream":
            self.bar.update(event.done - self.bar.n)
        else:
            self.close()

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
