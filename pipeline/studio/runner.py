"""One studio job in its own process: ``python -m pipeline.studio.runner JOB_FOLDER``.

It reads the job's command line (``job.json``), builds the job exactly as ``dreamreel video`` or
``dreamreel zoom`` does (``pipeline.commands``) and runs it through the Python API, writing each
progress event as a JSON line (``events.jsonl``) and, at the end, its exit code and one-line
message (``exit.json``). SIGTERM or SIGINT cancel it: what it finished is kept and the same job
resumes. If the studio that started it dies, it cancels itself the same way, so a job never runs
on unseen; the next studio lists it, stopped, ready to resume.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

JOB = "job.json"
EVENTS = "events.jsonl"
EXIT = "exit.json"
PID = "runner.json"
LOG = "log.txt"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a file."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data))
    part.replace(path)


class EventLog:
    """Progress events appended as JSON lines; plain progress at most every half second (every
    stage change, note and the last item are written)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.last = 0.0
        self.stage = ""

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        plain = event.note is None and event.stage == self.stage and event.done < event.total
        if plain and now - self.last < 0.5:
            return
        self.last, self.stage = now, event.stage
        self.file.write(json.dumps({**asdict(event), "t": time.time()}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Stop:
    """A stop asked for by a signal or by the studio's death: set from the first instant (a
    signal during the imports included), handed to the job's Cancel once there is one."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.cancel: Any = None

    def __call__(self, *_: object) -> None:
        self.asked.set()
        if self.cancel is not None:
            self.cancel.set()

    def hand_to(self, cancel: Any) -> None:
        self.cancel = cancel
        if self.asked.is_set():
            cancel.set()

    def watch_parent(self, parent: int) -> None:
        while not self.asked.is_set():
            if os.getppid() != parent:  # the studio is gone: stop as a cancel does, keeping the work
                self()
                return
            time.sleep(0.5)


def run(folder: Path, stop: _Stop) -> int:
    from pipeline.api import dream_video, dream_zoom  # lazy: the job's modules load in the runner only
    from pipeline.commands import PROG, build_parser, error_line, video_job, zoom_job  # lazy: as above
    from pipeline.errors import EXIT_INTERRUPTED, EXIT_OK  # lazy: as above
    from pipeline.progress import Cancel, Cancelled  # lazy: as above

    job = json.loads((folder / JOB).read_text())
    cancel = Cancel()
    stop.hand_to(cancel)
    events = EventLog(folder / EVENTS)
    try:
        args = build_parser().parse_args(job["argv"])
        if args.command == "video":
            result: Any = dream_video(video_job(args), events, cancel)
        else:
            result = dream_zoom(zoom_job(args), events, cancel)
        code = EXIT_OK
        line = f"{PROG}: wrote {args.output} ({result.frames} frames, {result.dreamt} dreamt now, "
        line += f"{result.resumed} resumed)"
    except (Cancelled, KeyboardInterrupt):
        code, line = EXIT_INTERRUPTED, f"{PROG}: stopped; what it finished is kept: resume goes on from there"
    except SystemExit as exc:  # argparse refused the command line
        code, line = int(exc.code or 2), f"{PROG}: error: the command line was refused (see the job's log)"
    except Exception as exc:
        code, line = error_line(exc)
    finally:
        events.close()
    write_json(folder / EXIT, {"code": code, "message": line, "t": time.time()})
    print(line, file=sys.stderr)
    return code


def main() -> int:
    """``JOB_FOLDER STUDIO_FOLDER STUDIO_PID``: the studio's pid is given, not read, so that a studio
    that died before this line is noticed too."""
    stop = _Stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    folder, root, parent = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    threading.Thread(target=stop.watch_parent, args=(parent,), daemon=True).start()
    os.chdir(root)  # the command line's paths are the studio folder's
    write_json(folder / PID, {"pid": os.getpid(), "t": time.time()})
    return run(folder, stop)


if __name__ == "__main__":
    sys.exit(main())
