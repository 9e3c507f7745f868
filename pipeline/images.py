"""`dreamreel images`: dream every image under a folder into a mirrored folder, resumably.

The walk follows symbolic links but never enters a folder twice (loops can't trap it), never
enters OUT_DIR or the work folder (a link to them would feed the dreams back in), and skips hidden
files and folders. Every file is judged by its content: what decodes as an image is dreamt,
anything else (a FIFO, a link to nothing, a file that is no image) is recorded as a failure with
its reason, and the rest goes on. One Dask task per image; a worker loads its model once. Outputs
are written whole (temporary name, then rename), never over a file that appeared meanwhile, and an
output that exists is done, so a re-run dreams only what is missing. The work folder
(``OUT_DIR/.dreamreel-work``) holds the job record; another config on the same OUT_DIR is refused.
A dream a worker staged in the store comes home only to the output it was planned for, checked.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dreamcore.config import DreamConfig
from dreamcore.engine import from_float_rgb, to_float_rgb
from dreamcore.errors import DreamError
from pipeline.cluster.client import announce_dashboard, dask_client, job_threads
from pipeline.cluster.schedule import DeathGuard, Task, run_chains
from pipeline.cluster.workers import check_job, check_store_shared, config_for_workers, engine, sees_file
from pipeline.errors import InputError, Unwritable, UsageError, one_line, write_fault
from pipeline.guide import still, store_still
from pipeline.io.fsutil import temp_dir, write_atomic
from pipeline.io.imagefile import WRITE_EXTENSIONS, encode_image, read_image
from pipeline.io.walk import walk
from pipeline.job.integrity import Damaged
from pipeline.job.locations import ends_digest, fetch, stored_ends_digest
from pipeline.job.session import Session, job_session
from pipeline.job.store import Store, StoreUnavailable
from pipeline.progress import Reporter
from pipeline.runtime import load_tensorflow, numerics
from pipeline.settings import identity_extras, pinned

log = logging.getLogger("dreamcore")

WORK_NAME = ".dreamreel-work"
FORMATS = ("same", "png", "jpg")  # --format: the input's own, or one for every dream


@dataclass
class Item:
    src: Path
    rel: str  # relative input path, '/'-separated
    dst: Path


@dataclass
class BatchReport:
    """What a finished batch did: the images dreamt, found done and failed (paths relative to IN_DIR)."""

    done: list[str] = field(default_factory=list)  # dreamt by this run
    already: list[str] = field(default_factory=list)  # found dreamt when it began
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of each item that failed
    seconds: float = 0.0
    note: str | None = None  # e.g. items dreamt under more than one numerics layout


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


def plan(
    in_dir: Path, out_dir: Path, fmt: str, avoid: tuple[Path, ...] = ()
) -> tuple[list[Item], list[tuple[str, str]]]:
    """The items to dream, and the entries of IN_DIR that can't be (relative path, why)."""
    taken: set[str] = set()
    items = []
    files, odd = walk(in_dir, (out_dir, *avoid))
    for src in files:
        rel = src.relative_to(in_dir)
        items.append(Item(src, rel.as_posix(), out_dir / output_for(rel, fmt, taken)))
    return items, [(p.relative_to(in_dir).as_posix(), why) for p, why in odd]


# --- the task (runs on a Dask worker) ----------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    """What every image task carries: the job's name, store and token, and its config."""

    id: str
    store: Store
    token: str
    config: DreamConfig
    guide: str | None = None  # a guide's digest (the image is in the store)


@dataclass(frozen=True)
class ImageResult:
    """One image's result: dreamt (``ok``), or why not (a bad input is a result, not an error)."""

    rel: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    layout: dict[str, Any] = field(default_factory=dict)  # the numerics it was dreamt under


def image_task(spec: BatchSpec, src: str, dst: str, rel: str, staged: bool = False) -> ImageResult:
    """Dream one file from ``src`` into ``dst`` (a path or a URL; with ``staged``, a name in the job's
    store, for the command to bring home); a bad input is a result (ok False, its reason), never an
    exception. A worker that cannot see the job fails the job."""
    t0 = time.perf_counter()
    check_job(spec)
    with temp_dir("dreamreel-image") as tmp:
        try:
            picture = read_image(fetch(src, Path(tmp)))
        except InputError as exc:
            return ImageResult(rel, False, str(exc).split(": ", 1)[-1])
    load_tensorflow()
    cfg = spec.config
    if spec.guide is not None:
        cfg = cfg.replace(guide=still(spec.store, spec.guide))
    dreamer = engine(cfg)  # the network is built once per worker process, then cached
    try:
        rgb, alpha = to_float_rgb(picture.pixels)
        dreamt = dreamer.dream_rgb(rgb)
        data = encode_image(from_float_rgb(dreamt, alpha, picture.pixels.dtype), Path(dst).suffix)
    except (MemoryError, OSError, ValueError) as exc:  # this item's failure, not the batch's
        return ImageResult(rel, False, f"{type(exc).__name__}: {exc}")
    try:
        _put(data, dst, spec.store if staged else None)
    except FileExistsError:
        return ImageResult(rel, False, "a file appeared at its output while it was dreamt, and is kept")
    except OSError as exc:
        fault = write_fault(exc)
        if fault:  # the output folder, not this image: every other image would fail the same way
            raise Unwritable(
                f"{Path(dst).parent}: cannot write {Path(dst).name} ({fault}): free some space or fix "
                "the folder, then run the same command again: the images dreamt so far are kept"
            ) from None
        return ImageResult(rel, False, f"{type(exc).__name__}: {exc}")
    return ImageResult(rel, True, seconds=time.perf_counter() - t0, layout=numerics())


def _put(data: bytes, location: str, store: Store | None) -> None:
    """Write an output whole, never over a file that appeared there meanwhile (FileExistsError): a
    local file renamed into place, or (``store``) a dream staged in the job's store under the name
    ``location``, checksummed, for the command to bring home."""
    if store is not None:
        store.write_sealed(location, data, durable=True)
        return
    target = Path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data, overwrite=False)


# --- the job -----------------------------------------------------------------------------------


@dataclass
class BatchRequest:
    """A batch job (``dreamreel images``): the folder of images, the folder of dreams, how to dream them."""

    in_dir: Path
    out_dir: Path  # mirrors in_dir
    config: DreamConfig
    fmt: str = "same"  # "same" (the input's format where writable, else PNG), "png" or "jpg"
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
        raise UsageError(
            f"{out_dir}: the output folder may not be inside the input folder "
            "(its images would be taken as inputs next time)"
        )
    if b in a.parents:
        raise UsageError(
            f"{in_dir}: the input folder may not be inside the output folder (its dreams would be "
            "written among the inputs, or over them)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")


def _check_workdir(req: BatchRequest, store: Store) -> None:
    if store.local:
        work = store.local_path()
        for folder, what in ((req.in_dir.resolve(), "input"), (req.out_dir.resolve(), "output")):
            if work == folder or work in folder.parents:
                raise UsageError(
                    f"--workdir {req.workdir}: the work folder may not be or hold the {what} folder "
                    f"(a folder of its own, such as the default {req.out_dir / WORK_NAME})"
                )


def run_batch(req: BatchRequest, progress: Reporter | None = None) -> BatchReport:
    """Dream every image not yet dreamt (resuming the job in OUT_DIR); ``progress`` gets the job's
    progress. Failed items are in the report; a fault of the job's own (no store, no network, a full
    disk) raises."""
    check_dirs(req.in_dir, req.out_dir)
    progress = progress or Reporter("images", None, "images", unit="image")
    cfg = pinned(req.config)
    store = Store(req.workdir or str(req.out_dir / WORK_NAME))
    _check_workdir(req, store)
    try:
        req.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Unwritable(f"{req.out_dir}: cannot create the output folder ({write_fault(exc) or exc})") from None
    identity = {
        "input": {"folder": str(req.in_dir.resolve())},
        "config": cfg.to_dict(),
        "format": req.fmt,
        **identity_extras(cfg),
    }
    report = BatchReport()
    t0 = time.perf_counter()
    with job_session(
        store,
        identity,
        restart=req.restart,
        threads=job_threads(req.workers, req.scheduler),
        work=lambda _: True,  # the work is in OUT_DIR: never dropped
    ) as session:
        if cfg.guide is not None:
            store_still(store, cfg.guide)
        items, odd = _items(req, store)
        todo = []
        for item in items:
            if item.dst.exists():
                report.already.append(item.rel)
            else:
                todo.append(item)
        tally = _Tally(req, session, report, progress)
        progress.stage("dream", len(items) + len(odd), len(report.already))
        for rel, why in odd:
            tally(ImageResult(rel, False, why))
        if todo:
            spec = BatchSpec(
                id=session.id,
                store=store,
                token=session.record.token,
                config=cfg,
                guide=None if cfg.guide is None else cfg.guide.digest,
            )
            _dream(req, session, spec, todo, tally)
        report.note = tally.layouts.warning()
    progress.stage("done")
    report.seconds = time.perf_counter() - t0
    return report


def _items(req: BatchRequest, store: Store) -> tuple[list[Item], list[tuple[str, str]]]:
    """The planned items and the odd entries; a stopped run's partial writes swept, its staged
    dreams brought home."""
    avoid = (store.local_path(),) if store.local else ()
    items, odd = plan(req.in_dir, req.out_dir, req.fmt, avoid)
    _sweep_partials([it.dst for it in items])
    if not items and not odd:
        raise UsageError(f"{req.in_dir}: no files in it (hidden ones are skipped)")
    if store.local and any(store.local_path() in it.dst.parents for it in items):
        raise UsageError(
            f"--workdir {req.workdir}: some dreams would be written in the work folder: give one "
            "apart from where the dreams go (such as the default, hidden, one)"
        )
    for fault in _bring_home(store, req.out_dir, {it.rel: it.dst for it in items}):  # a stopped run's dreams
        log.warning(fault)
    return items, odd


class _Tally:
    """Each image's result as it comes: brought home when staged, reported, logged."""

    def __init__(self, req: BatchRequest, session: Session, report: BatchReport, progress: Reporter):
        self.req, self.store, self.report, self.progress = req, session.store, report, progress
        self.layouts = session.layouts()
        self.staged: dict[str, Path] = {}  # rel -> final path, for outputs the workers put in the store

    def __call__(self, r: ImageResult) -> None:
        if r.ok and r.rel in self.staged:
            dst = self.staged[r.rel]
            home = _bring_home(
                self.store, self.req.out_dir, {r.rel: dst}, {dst.relative_to(self.req.out_dir).as_posix()}
            )
            if home:
                r = ImageResult(r.rel, False, home[0])
        if r.ok:
            self.layouts.saw(r.layout)
            self.report.done.append(r.rel)
            self.store.log(f"dreamt {r.rel}")
        else:
            self.report.failed.append((r.rel, r.reason))
            self.store.log(f"failed {r.rel}: {r.reason}")
            self.progress.note(one_line(f"dreamreel: skipped {r.rel}: {r.reason}"))
        self.progress.advance()

    def error(self, task: Task, exc: BaseException) -> None:
        if isinstance(exc, (StoreUnavailable, DreamError, Unwritable)):
            raise exc  # the job's problem (a worker without the store or the network, a full disk)
        # e.g. WorkerDeaths: this image took workers down again and again
        first = str(exc).splitlines()[0] if str(exc) else ""
        self(ImageResult(task.args[3], False, f"{type(exc).__name__}: {first}"[:300]))


def _dream(req: BatchRequest, session: Session, spec: BatchSpec, todo: list[Item], tally: _Tally) -> None:
    store = session.store
    with dask_client(req.workers, req.scheduler, session.record.numerics.threads) as client:
        if req.scheduler:
            announce_dashboard(client)
            where = _locations(client, req, store, session.record.token, todo, tally.staged)
            spec = replace(
                spec, config=DreamConfig.from_mapping(config_for_workers(client, store, spec.config.to_dict()))
            )
        else:
            where = {it.rel: (str(it.src), str(it.dst)) for it in todo}
        run = uuid.uuid4().hex[:6]
        tasks = [
            [
                Task(
                    f"dreamreel-{spec.id}-{run}-image-{i}",
                    image_task,
                    (spec, *where[it.rel], it.rel),
                    {"staged": it.rel in tally.staged},
                )
            ]
            for i, it in enumerate(todo)
        ]
        session.dreaming()
        run_chains(client, tasks, tally, tally.error, guard=DeathGuard(store, "attempts"))


def _sweep_partials(outputs: list[Path]) -> None:
    """Remove the writes a kill cut short (``.NAME.XXXXXXXX.part``, fsutil.write_atomic's) of the
    planned outputs: never an output, and never a file of anyone else's."""
    for folder, names in _by_folder(outputs).items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            m = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}\.part", entry.name)
            if m and m.group(1) in names and entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)


def _by_folder(paths: list[Path]) -> dict[Path, set[str]]:
    folders: dict[Path, set[str]] = {}
    for p in paths:
        folders.setdefault(p.parent, set()).add(p.name)
    return folders


def _locations(
    client: Any, req: BatchRequest, store: Store, token: str, todo: list[Item], staged: dict[str, Path]
) -> dict[str, tuple[str, str]]:
    """Where the cluster's workers read each image and write its dream. Folders every worker sees
    at the same paths are used as they are; otherwise inputs are uploaded into the store once and
    dreams written there (a name in the store), then brought home by this command as each one
    finishes."""

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
            size = it.src.stat().st_size
            if store.size(rel) != size or stored_ends_digest(store, rel, size) != ends_digest(it.src):
                store.put_file(it.src, rel)
            src = store.path(rel)
        if not out_visible:
            dst = f"out/{it.dst.relative_to(req.out_dir).as_posix()}"
            staged[it.rel] = it.dst
        where[it.rel] = (src, dst)
    return where


def _bring_home(store: Store, out_dir: Path, wanted: dict[str, Path], listed: set[str] | None = None) -> list[str]:
    """Move the dreams the workers staged in the store (``out/NAME``) to their outputs: only those
    the plan expects (``wanted``: input rel -> its output path in OUT_DIR), each checked, written
    whole and never over a file there, nor through a link out of OUT_DIR. Whatever else lies under
    ``out/`` is never written anywhere. Returns why a dream could not be brought home (it is made
    again next time)."""
    faults = []
    root = out_dir.resolve()
    staged = {f"out/{r}" for r in (_staged(store) if listed is None else listed)}
    for dst in wanted.values():
        rel = f"out/{dst.relative_to(out_dir).as_posix()}"
        if rel not in staged:
            continue
        try:
            data = store.read_sealed(rel)
        except Damaged as exc:
            store.delete(rel)
            faults.append(f"{exc}: it will be dreamt again")
            continue
        if data is None:
            continue
        real = Path(os.path.realpath(dst.parent))  # through every link that exists now
        if real != root and root not in real.parents:
            faults.append(f"{dst.parent} leads out of {out_dir}: {dst.name} not written there")
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(dst, data, overwrite=False)
        except FileExistsError:
            faults.append(f"{dst}: a file appeared there meanwhile, and is kept")
        store.delete(rel)
    return faults


def _staged(store: Store) -> list[str]:
    """The names under the store's ``out/`` (relative to it): listed once, for what to read back;
    never used as paths themselves."""
    if store.local:
        root = store.local_path("out")
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    base = store.fresh("out").split("://", 1)[-1].rstrip("/")
    try:
        return [p[len(base) + 1 :] for p in store.fs.find(base)]
    except FileNotFoundError:
        return []


def summary(report: BatchReport) -> str:
    lines = [
        f"dreamreel: {len(report.done)} dreamt, {len(report.already)} already done, "
        f"{len(report.failed)} failed ({report.seconds:.1f} s)"
    ]
    for rel, reason in report.failed:
        lines.append(one_line(f"  failed: {rel}: {reason}"))
    if report.note:
        lines.append(f"dreamreel: note: {report.note}")
    return "\n".join(lines)
