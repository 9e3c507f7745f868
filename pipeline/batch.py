"""`dreamreel images`: dream every image under a folder into a mirrored folder, resumably.

The walk follows symbolic links but never enters a folder twice (loops can't trap it) and skips
hidden files and folders. Every file is judged by its content: what decodes as an image is dreamt,
anything else is recorded as a failure with its reason, and the rest goes on. One Dask task per
image; a worker loads its model once. Outputs are written whole (temporary name, then rename) and
an output that exists is done, so a re-run dreams only what is missing. The work folder
(``OUT_DIR/.dreamreel-work``) holds the job record; another config on the same OUT_DIR is refused.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcore.config import DreamConfig

from .errors import UsageError
from .imagefile import WRITE_EXTENSIONS
from .jobs import JOB_VERSION, LayoutLog, WorkFolder

WORK_NAME = ".dreamreel-work"
FORMATS = ("same", "png", "jpg")


@dataclass
class Item:
    src: Path
    rel: str  # relative input path, '/'-separated
    dst: Path


@dataclass
class BatchReport:
    done: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    note: str | None = None  # e.g. items dreamt under more than one numerics layout


def walk(root: Path) -> list[Path]:
    """Every non-hidden regular file under ``root``, following links, each folder entered once."""
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []

    def visit(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=True):
                    visit(path)
                elif entry.is_file(follow_symlinks=True):
                    files.append(path)
            except OSError:
                files.append(path)  # unreadable: recorded as a failure when read

    visit(root)
    return files


def output_for(rel: Path, fmt: str, taken: set[str]) -> str:
    """The mirrored output path (relative); a second input that would land on the same name keeps
    its own extension in the name (``a.jpg`` and ``a.png`` -> ``a.png`` and ``a.jpg.png``)."""
    ext = rel.suffix.lower()
    if fmt == "same":
        new_ext = ext if ext in WRITE_EXTENSIONS else ".png"
    else:
        new_ext = "." + fmt
    out = rel.with_suffix(new_ext) if rel.suffix else rel.with_name(rel.name + new_ext)
    key = out.as_posix()
    if key.lower() in taken:
        out = rel.with_name(rel.name + new_ext)
        key = out.as_posix()
    taken.add(key.lower())
    return key


def plan(in_dir: Path, out_dir: Path, fmt: str) -> list[Item]:
    taken: set[str] = set()
    items = []
    for src in walk(in_dir):
        rel = src.relative_to(in_dir)
        items.append(Item(src, rel.as_posix(), out_dir / output_for(rel, fmt, taken)))
    return items


# --- the task (runs on a Dask worker) ----------------------------------------------------------

def image_task(config: dict[str, Any], src: str, dst: str, rel: str) -> dict[str, Any]:
    """Dream one file; a bad input is a result (ok False, its reason), never an exception."""
    from dreamcore.engine import Engine, from_float_rgb, to_float_rgb

    from .errors import InputError
    from .imagefile import read_image, write_image
    from .runtime import load_tensorflow, numerics

    t0 = time.perf_counter()
    try:
        picture = read_image(src)
    except InputError as exc:
        return {"rel": rel, "ok": False, "reason": str(exc).removeprefix(f"{src}: ")}
    load_tensorflow()
    engine = Engine(DreamConfig.from_mapping(config))  # built once per worker process, then cached
    try:
        rgb, alpha = to_float_rgb(picture.pixels)
        dreamt = engine.dream_rgb(rgb)
        out = Path(dst)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_image(out, from_float_rgb(dreamt, alpha, picture.pixels.dtype))
    except (MemoryError, OSError, ValueError) as exc:  # this item's failure, not the batch's
        return {"rel": rel, "ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"rel": rel, "ok": True, "seconds": time.perf_counter() - t0, "layout": numerics()}


# --- the job -----------------------------------------------------------------------------------

@dataclass
class BatchRequest:
    in_dir: Path
    out_dir: Path
    config: DreamConfig
    fmt: str = "same"
    restart: bool = False
    workers: int | None = None
    scheduler: str | None = None
    quiet: bool = False


def check_dirs(in_dir: Path, out_dir: Path) -> None:
    if not in_dir.exists():
        raise UsageError(f"{in_dir}: no such folder")
    if not in_dir.is_dir():
        raise UsageError(f"{in_dir}: not a folder (use `dreamreel image` for one file)")
    a, b = in_dir.resolve(), out_dir.resolve()
    if a == b or a in b.parents:
        raise UsageError(f"{out_dir}: the output folder may not be inside the input folder "
                         "(its images would be taken as inputs next time)")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")


def run_batch(req: BatchRequest) -> BatchReport:
    from tqdm import tqdm

    from .schedule import DeathGuard, Task, check_shared_paths, dask_client, job_threads, run_chains
    from .settings import resolve_noted

    check_dirs(req.in_dir, req.out_dir)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    res = resolve_noted(req.config)
    work = WorkFolder(req.out_dir / WORK_NAME)
    identity = {
        "input": {"folder": str(req.in_dir.resolve())},
        "config": req.config.to_dict(),
        "format": req.fmt,
        "resolved": {"model": res.backbone.name, "weights": res.backbone.weights_name(res.weights),
                     "layers": res.layers},
    }
    report = BatchReport()
    t0 = time.perf_counter()
    with work.locked():
        job = work.check_same_job(identity, req.restart)
        if job is None:
            job = {"version": JOB_VERSION, "identity": identity,
                   "numerics": {"threads": job_threads(req.workers, req.scheduler)}}
            work.write_job(job)
        layouts = LayoutLog(work, job)
        for stale in req.out_dir.rglob(".*.part"):  # a write cut short by a kill: never an output
            stale.unlink(missing_ok=True)
        items = plan(req.in_dir, req.out_dir, req.fmt)
        todo = []
        for item in items:
            if item.dst.exists():
                report.already.append(item.rel)
            else:
                todo.append(item)
        bar = tqdm(total=len(items), initial=len(report.already), unit="image", desc="images", disable=req.quiet,
                   file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        config = req.config.to_dict()

        def on_result(r: dict[str, Any]) -> None:
            if r["ok"]:
                layouts.saw(r["layout"])
                report.done.append(r["rel"])
                work.log_event(f"dreamt {r['rel']}")
            else:
                report.failed.append((r["rel"], r["reason"]))
                work.log_event(f"failed {r['rel']}: {r['reason']}")
                bar.write(f"dreamreel: skipped {r['rel']}: {r['reason']}", file=sys.stderr)
            bar.update(1)

        def on_error(task: Task, exc: BaseException) -> None:
            # e.g. KilledWorker: this image took a worker down again and again
            first = str(exc).splitlines()[0] if str(exc) else ""
            on_result({"rel": task.args[3], "ok": False, "reason": f"{type(exc).__name__}: {first}"[:300]})

        tag = hashlib.sha256(str(work.path).encode()).hexdigest()[:10]
        try:
            if todo:
                with dask_client(req.workers, req.scheduler, job["numerics"]["threads"]) as client:
                    if req.scheduler:
                        check_shared_paths(client, req.in_dir.resolve(), work.path)
                    run_chains(client, [[Task(f"image-{tag}-{i}", image_task, (config, str(it.src), str(it.dst),
                                                                                it.rel))]
                                        for i, it in enumerate(todo)], on_result, on_error,
                               guard=DeathGuard(str(work.sub("attempts"))))
        finally:
            bar.close()
        if not items:
            raise UsageError(f"{req.in_dir}: no files in it (hidden ones are skipped)")
        report.note = layouts.warning()
    report.seconds = time.perf_counter() - t0
    return report


def summary(report: BatchReport) -> str:
    lines = [f"dreamreel: {len(report.done)} dreamt, {len(report.already)} already done, "
             f"{len(report.failed)} failed ({report.seconds:.1f} s)"]
    for rel, reason in report.failed:
        lines.append(f"  failed: {rel}: {reason}")
    if report.note:
        lines.append(f"dreamreel: note: {report.note}")
    return "\n".join(lines)

