"""`dreamreel images`: dream every image under a folder into a mirrored folder, resumably.

The walk follows symbolic links but never enters a folder twice (loops can't trap it) and skips
hidden files and folders. Every file is judged by its content: what decodes as an image is dreamt,
anything else is recorded as a failure with its reason, and the rest goes on. One Dask task per
image; a worker loads its model once. Outputs are written whole (temporary name, then rename) and
an output that exists is done, so a re-run dreams only what is missing. The work folder
(``OUT_DIR/.dreamreel-work``) holds the job record; another config on the same OUT_DIR is refused.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcore.config import DreamConfig

from .errors import UsageError
from .fsutil import temp_dir
from .imagefile import WRITE_EXTENSIONS
from .jobs import JOB_VERSION, LayoutLog
from .store import Store, is_url

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

@dataclass(frozen=True)
class BatchSpec:
    """What every image task carries: the job's name, store and token, and its config."""

    id: str
    store: Store
    token: str
    config: dict[str, Any]
    guide: str | None = None  # a guide's digest (the image is in the store)


def image_task(spec: BatchSpec, src: str, dst: str, rel: str) -> dict[str, Any]:
    """Dream one file from ``src`` into ``dst`` (each a path or a URL); a bad input is a result (ok
    False, its reason), never an exception. A worker that cannot see the job fails the job."""

    from dreamcore.engine import from_float_rgb, to_float_rgb

    from .errors import InputError
    from .frames import check_job, engine
    from .imagefile import encode_image, read_image
    from .runtime import load_tensorflow, numerics

    t0 = time.perf_counter()
    check_job(spec)
    with temp_dir("dreamreel-image") as tmp:
        try:
            picture = read_image(_fetch(src, Path(tmp)))
        except InputError as exc:
            return {"rel": rel, "ok": False, "reason": str(exc).split(": ", 1)[-1]}
    load_tensorflow()
    cfg = DreamConfig.from_mapping(spec.config)
    if spec.guide is not None:
        from .guide import still

        cfg = cfg.replace(guide=still(spec.store, spec.guide))
    dreamer = engine(cfg)  # the network is built once per worker process, then cached
    try:
        rgb, alpha = to_float_rgb(picture.pixels)
        dreamt = dreamer.dream_rgb(rgb)
        _put(encode_image(from_float_rgb(dreamt, alpha, picture.pixels.dtype), Path(dst).suffix), dst)
    except (MemoryError, OSError, ValueError) as exc:  # this item's failure, not the batch's
        return {"rel": rel, "ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"rel": rel, "ok": True, "seconds": time.perf_counter() - t0, "layout": numerics()}


def _fetch(location: str, tmp: Path) -> Path:
    """A local path of an input: itself, or a download of a URL."""
    if not is_url(location):
        return Path(location)
    import fsspec

    local = tmp / Path(location).name
    with fsspec.open(location, "rb") as src:
        local.write_bytes(src.read())
    return local


def _put(data: bytes, location: str) -> None:
    """Write an output whole: a local file renamed into place, or an object created at once."""
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        fs.pipe_file(path, data)
        return
    from .fsutil import write_atomic

    target = Path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)


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
    workdir: str | None = None  # the job store: a path or URL (default OUT_DIR/.dreamreel-work)


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
    import uuid

    from tqdm import tqdm

    from .jobs import job_id, open_job
    from .schedule import DeathGuard, Task, announce_dashboard, dask_client, job_threads, run_chains
    from .settings import identity_extras, pinned

    check_dirs(req.in_dir, req.out_dir)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    cfg = pinned(req.config)
    store = Store(req.workdir or str(req.out_dir / WORK_NAME))
    identity = {"input": {"folder": str(req.in_dir.resolve())}, "config": cfg.to_dict(), "format": req.fmt,
                **identity_extras(cfg)}
    report = BatchReport()
    t0 = time.perf_counter()
    with store.locked():
        job = open_job(store, identity, req.restart)
        if job is None:
            job = {"version": JOB_VERSION, "identity": identity, "token": uuid.uuid4().hex,
                   "numerics": {"threads": job_threads(req.workers, req.scheduler)}}
            store.write_json("job.json", job)
        store.write_bytes("token", job["token"].encode())
        if cfg.guide is not None:
            from .guide import store_still

            store_still(store, cfg.guide)
        layouts = LayoutLog(lambda j: store.write_json("job.json", j), job)
        for stale in req.out_dir.rglob(".*.part"):  # a write cut short by a kill: never an output
            stale.unlink(missing_ok=True)
        items = plan(req.in_dir, req.out_dir, req.fmt)
        if not items:
            raise UsageError(f"{req.in_dir}: no files in it (hidden ones are skipped)")
        _bring_home(store, req.out_dir)  # outputs staged in the store by a run that was stopped
        todo = []
        for item in items:
            if item.dst.exists():
                report.already.append(item.rel)
            else:
                todo.append(item)
        bar = tqdm(total=len(items), initial=len(report.already), unit="image", desc="images", disable=req.quiet,
                   file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        spec = BatchSpec(id=job_id(identity, store), store=store, token=job["token"], config=cfg.to_dict(),
                         guide=None if cfg.guide is None else cfg.guide.digest)
        staged: dict[str, Path] = {}  # rel -> final path, for outputs the workers put in the store

        def on_result(r: dict[str, Any]) -> None:
            if r["ok"]:
                if r["rel"] in staged:
                    _bring_home(store, req.out_dir, r["rel"], staged[r["rel"]])
                layouts.saw(r["layout"])
                report.done.append(r["rel"])
                store.log(f"dreamt {r['rel']}")
            else:
                report.failed.append((r["rel"], r["reason"]))
                store.log(f"failed {r['rel']}: {r['reason']}")
                bar.write(f"dreamreel: skipped {r['rel']}: {r['reason']}", file=sys.stderr)
            bar.update(1)

        def on_error(task: Task, exc: BaseException) -> None:
            from dreamcore.errors import DreamError

            from .store import StoreUnavailable

            if isinstance(exc, (StoreUnavailable, DreamError)):
                raise exc  # the job's problem (a worker without the store or the network), not this image's
            # e.g. WorkerDeaths: this image took workers down again and again
            first = str(exc).splitlines()[0] if str(exc) else ""
            on_result({"rel": task.args[3], "ok": False, "reason": f"{type(exc).__name__}: {first}"[:300]})

        try:
            if todo:
                with dask_client(req.workers, req.scheduler, job["numerics"]["threads"]) as client:
                    if req.scheduler:
                        announce_dashboard(client)
                    where = _locations(client, req, store, job["token"], todo, staged) if req.scheduler else {
                        it.rel: (str(it.src), str(it.dst)) for it in todo}
                    if req.scheduler:
                        from dataclasses import replace

                        from .frames import config_for_workers

                        spec = replace(spec, config=config_for_workers(client, store, spec.config))
                    run = uuid.uuid4().hex[:6]
                    tasks = [[Task(f"dreamreel-{spec.id}-{run}-image-{i}", image_task, (spec, *where[it.rel], it.rel))]
                             for i, it in enumerate(todo)]
                    run_chains(client, tasks, on_result, on_error, guard=DeathGuard(store, "attempts"))
        finally:
            bar.close()
        report.note = layouts.warning()
    report.seconds = time.perf_counter() - t0
    return report


def _locations(client: Any, req: BatchRequest, store: Store, token: str, todo: list[Item],
               staged: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Where the cluster's workers read each image and write its dream. Folders every worker sees
    at the same paths are used as they are; otherwise inputs are uploaded into the store once and
    dreams written there, then brought home by this command as each one finishes."""
    from .frames import check_store_shared
    from .schedule import sees_file

    def visible(path: Path) -> bool:
        st = path.stat()
        answers = client.run(sees_file, str(path.resolve()), st.st_size, st.st_mtime_ns)
        return bool(answers) and all(answers.values())

    check_store_shared(client, store, token)
    probe = req.out_dir / f".dreamreel-probe-{os.getpid()}"
    probe.write_bytes(b"probe")
    try:
        out_visible = visible(probe)
    finally:
        probe.unlink(missing_ok=True)
    in_visible = visible(todo[0].src)
    where = {}
    for it in todo:
        src, dst = str(it.src), str(it.dst)
        if not in_visible:
            rel = f"input/{it.rel}"
            if store.size(rel) != it.src.stat().st_size:
                store.put_file(it.src, rel)
            src = store.path(rel)
        if not out_visible:
            dst = store.path(f"out/{it.dst.relative_to(req.out_dir).as_posix()}")
            staged[it.rel] = it.dst
        where[it.rel] = (src, dst)
    return where


def _bring_home(store: Store, out_dir: Path, rel: str | None = None, final: Path | None = None) -> None:
    """Move dreams the workers put in the store (``out/``) to the output folder, whole. With no
    ``rel``: every one found (a stopped run's)."""
    import shutil
    import tempfile

    pairs = [(f"out/{final.relative_to(out_dir).as_posix()}", final)] if rel is not None and final else [
        (f"out/{r}", out_dir / r) for r in _store_files(store, "out")]
    for src, dst in pairs:
        data = store.read_bytes(src)
        if data is None:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part", delete=False) as f:
            f.write(data)
        shutil.move(f.name, dst)
        store.delete(src)


def _store_files(store: Store, prefix: str) -> list[str]:
    """Every file under ``prefix`` in the store, relative to it."""
    if store.local:
        root = store.local_path(prefix)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []
    base = store.fresh(prefix)
    return sorted(p[len(base.split("://", 1)[-1]) + 1:] for p in store.fs.find(base))


def summary(report: BatchReport) -> str:
    lines = [f"dreamreel: {len(report.done)} dreamt, {len(report.already)} already done, "
             f"{len(report.failed)} failed ({report.seconds:.1f} s)"]
    for rel, reason in report.failed:
        lines.append(f"  failed: {rel}: {reason}")
    if report.note:
        lines.append(f"dreamreel: note: {report.note}")
    return "\n".join(lines)

