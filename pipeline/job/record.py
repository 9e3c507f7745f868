"""A job's record in its store: what the job is (its identity: input, range, config), whether a
store belongs to it, its name, and the numerics layouts that have dreamt it.

The same store with another input or config is refused, naming what changed; ``--restart`` clears
it. A store that holds another job's record but none of its work (a job that failed before it
dreamt anything) is taken over without asking. Everything in a store is written whole (store.py),
so a job killed at any moment resumes from what exists.

The record is the one file of a job that cannot be made again from the input, so it is kept
twice (``job.json`` and ``job.copy.json``), each with a checksum of its content: a damaged or
missing one is restored from the other, with one line saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import PipelineError, UsageError
from pipeline.job.integrity import Damaged, digest
from pipeline.job.store import Store, is_url, redact
from pipeline.runtime import describe_layout, layout_id

log = logging.getLogger("dreamcore")

JOB_FILE = "job.json"
JOB_COPY = "job.copy.json"
# 2: the numerics layout (thread count) and the layouts seen; 3: checksums on the record and on every
# stored frame and chunk
JOB_VERSION = 3


@dataclass(frozen=True)
class Numerics:
    """How a job computes, fixed when it begins so that a resumed run gives the same bytes."""

    threads: int | None = None  # TensorFlow's intra-op threads of local workers (None: each worker's own)
    encoder_threads: int | None = None  # x264's threads (media.encoder_threads), for jobs that encode


@dataclass(frozen=True)
class JobRecord:
    """One job's record, the same for every command (video, zoom, images): ``job.json``."""

    identity: dict[str, Any]  # what the job is: input, range, config... (another identity is another job)
    token: str = ""  # written into the store too: a worker that reads another is not in this job
    numerics: Numerics = field(default_factory=Numerics)
    probe: dict[str, Any] | None = None  # the input as the video command found it
    plan: dict[str, Any] | None = None  # the video job's plan (pipeline.video.plan.Plan.to_dict)
    layouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # numerics layouts that dreamt its items
    version: int = JOB_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "identity": self.identity,
            "token": self.token,
            "numerics": asdict(self.numerics),
        }
        for name in ("probe", "plan"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.layouts:
            out["layouts"] = self.layouts
        return out

    @classmethod
    def from_json(cls, job: Mapping[str, Any]) -> JobRecord:
        """A record as read (its shape checked): also one written before every command shared this
        form (a zoom's encoder threads at the top, no token)."""
        numerics = dict(job.get("numerics") or {})
        if "encoder_threads" in job:
            numerics.setdefault("encoder_threads", job["encoder_threads"])
        return cls(
            identity=dict(job["identity"]),
            token=str(job.get("token", "")),
            numerics=Numerics(numerics.get("threads"), numerics.get("encoder_threads")),
            probe=job.get("probe"),
            plan=job.get("plan"),
            layouts=dict(job.get("layouts") or {}),
            version=job["version"],
        )


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the first and last MiB: cheap on a 10 GB clip,
    and a changed file is caught even when a copy kept its mtime."""
    st = path.stat()
    with open(path, "rb") as f:

        def read(start: int, end: int) -> bytes:
            f.seek(start)
            return f.read(end - start)

        digest = ends_hash(st.st_size, read)
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest}


def ends_hash(size: int, read: Callable[[int, int], bytes]) -> str:
    """SHA-256 of a file's first MiB and, past 2 MiB, its last: ``read(start, end)`` gives the bytes,
    from a local file or a store alike."""
    h = hashlib.sha256(read(0, min(size, 1 << 20)))
    if size > 2 << 20:
        h.update(read(size - (1 << 20), size))
    return h.hexdigest()


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ (recursing into mappings)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += describe_changes(a, b, name + ".")
        elif a != b:
            changed.append(name)
    return changed


def _checksum(job: Mapping[str, Any]) -> str:
    body = {k: v for k, v in job.items() if k != "checksum"}
    return digest([json.dumps(body, sort_keys=True, allow_nan=False).encode()]).hex()


def write_record(store: Store, record: JobRecord | Mapping[str, Any]) -> None:
    """Write the job's record, and then its copy, each whole and durable."""
    job = record.to_json() if isinstance(record, JobRecord) else dict(record)
    text = (json.dumps({**job, "checksum": _checksum(job)}, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    store.write_bytes(JOB_FILE, text)
    store.write_bytes(JOB_COPY, text)


def _load(store: Store, rel: str) -> tuple[dict[str, Any] | None, str | None, bytes | None]:
    """(the record, None, its bytes), or (None, why it can't be used, None)."""
    raw = store.read_bytes(rel)
    if raw is None:
        return None, "missing", None
    try:
        job = json.loads(raw)
    except ValueError:
        return None, f"damaged ({len(raw)} bytes that are not JSON: cut short or overwritten?)", None
    if not isinstance(job, dict):
        return None, f"not a dreamreel job record (a JSON {type(job).__name__})", None
    if "checksum" not in job and job.get("version") != JOB_VERSION:
        return job, None, raw  # an older dreamreel's: refused below by its version, with --restart
    if job.get("checksum") != _checksum(job):
        return None, "damaged (its checksum does not match its content)", None
    why = _shape_fault(job)
    if why:
        return None, f"not a dreamreel job record ({why})", None
    return job, None, raw


def _shape_fault(job: Mapping[str, Any]) -> str | None:
    """What in a record (its checksum right) has the wrong type, or None."""
    if not isinstance(job.get("version"), int) or not isinstance(job.get("identity"), dict):
        return "no version or identity"
    plan = job.get("plan")
    if plan is not None:
        ok = (
            isinstance(plan, dict)
            and isinstance(plan.get("frames"), int)
            and isinstance(plan.get("pts"), list)
            and all(isinstance(t, (int, float)) for t in plan["pts"])
            and len(plan["pts"]) == plan["frames"]
            and all(
                isinstance(x, dict) and all(isinstance(x.get(k), int) for k in ("id", "warm_from", "first", "end"))
                for x in plan.get("segments") or [None]
            )
            and all(
                isinstance(x, dict) and all(isinstance(x.get(k), int) for k in ("seg", "first", "end"))
                for x in plan.get("chunks") or [None]
            )
        )
        if not ok:
            return "its plan"
    return None


def read_record(store: Store) -> JobRecord | None:
    """The job's record (None when the store holds none). A damaged or missing record is restored
    from its copy, saying so; both damaged is :class:`~pipeline.job.integrity.Damaged`."""
    job, why, raw = _load(store, JOB_FILE)
    if job is not None:
        if "checksum" in job and raw is not None and store.read_bytes(JOB_COPY) != raw:
            store.write_bytes(JOB_COPY, raw)  # a kill between the two writes left the copy behind
        return JobRecord.from_json(job)
    copy, why_copy, raw_copy = _load(store, JOB_COPY)
    if copy is not None and raw_copy is not None and "checksum" in copy:
        log.warning("%s: %s: restored from its copy %s", redact(store.path(JOB_FILE)), why, JOB_COPY)
        store.write_bytes(JOB_FILE, raw_copy)
        return JobRecord.from_json(copy)
    if why == "missing" and why_copy == "missing":
        if has_work(store):
            raise Damaged(
                JOB_FILE,
                redact(store.path(JOB_FILE)),
                "missing, and its copy too, beside a job's frames "
                "and chunks that nothing now describes: --restart discards them",
            )
        return None
    raise Damaged(
        JOB_FILE,
        redact(store.path(JOB_FILE)),
        f"{why}, and its copy {JOB_COPY} "
        f"{'too' if why_copy == why else why_copy}: the job it describes cannot be resumed; --restart "
        "discards it",
    )


def has_work(store: Store) -> bool:
    """Whether a job in the store has anything done: a dreamt frame or an encoded chunk."""
    return store.holds_files("frames") or store.holds_files("chunks")


def open_job(
    store: Store, identity: Mapping[str, Any], restart: bool, work: Callable[[Store], bool] = has_work
) -> JobRecord | None:
    """The store's job record when it describes this job (None when there is none, or after
    ``restart`` cleared it); another job's store is refused, naming what changed, unless it holds
    none of that job's work (``work`` tells)."""
    if restart:
        store.clear()
        return None
    try:
        job = read_record(store)
    except Damaged:
        if work(store):
            raise
        store.clear()  # a damaged record of a job that did nothing: nothing to lose
        return None
    if job is None:
        return None
    changed = describe_changes(job.identity, identity)
    if job.version != JOB_VERSION:
        changed.insert(0, "job format version")
    if changed and not work(store):
        store.clear()  # e.g. a job that failed before dreaming anything: the fixed command starts afresh
        return None
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise UsageError(
            f"{redact(store.url)}: this work folder belongs to another job (changed: {shown}); "
            "run the original command to finish it, or pass --restart to discard it"
        )
    return job


def job_id(identity: Mapping[str, Any], store: Store) -> str:
    """A job's name in task keys and worker caches: its identity (config included) and its store."""
    return hashlib.sha256(json.dumps([identity, store.url], sort_keys=True).encode()).hexdigest()[:12]


class LayoutLog:
    """The numerics layouts (pipeline.runtime) that dreamt a job's items, kept in its record: a job
    whose items were all dreamt under one layout equals an uninterrupted run's, item for item."""

    def __init__(self, save: Callable[[JobRecord], None], record: JobRecord):
        self.save, self.record = save, record

    def saw(self, layout: Mapping[str, Any]) -> None:
        key = layout_id(dict(layout))
        if key not in self.record.layouts:
            self.record = replace(self.record, layouts={**self.record.layouts, key: dict(layout)})
            self.save(self.record)

    def warning(self) -> str | None:
        layouts = list(self.record.layouts.values())
        if len(layouts) <= 1:
            return None
        shown = "; ".join(map(describe_layout, layouts))
        return (
            f"this job was dreamt under {len(layouts)} numerics layouts ({shown}): "
            "where a shot or item crossed from one to another it can differ from an uninterrupted run by a "
            "fraction of a grey level (docs/exact.md)"
        )


# --- the life of a job in its work folder (video and zoom) -------------------------------------

T = TypeVar("T")

# A file found damaged this many times in one run is not made again (a failing disk?); nor is
# anything after this many rounds of repairs.
MAX_REPAIRS_OF_ONE = 3
MAX_ROUNDS = 100


def claim_apart(store: Store, output: str) -> None:
    """Claim the work folder (Store.claim) after making sure it is not OUT itself: the film would
    then land on a folder."""
    if store.local and not is_url(output) and store.local_path() == Path(output).resolve():
        raise UsageError(f"--workdir {output}: the work folder may not be OUT itself")
    store.claim()


def remake(store: Store, exc: Damaged) -> None:
    """A damaged or missing file found: removed, to be made again from the last good state by the
    job's next round (:func:`until_whole`), with one line saying so."""
    store.delete(exc.rel)
    log.warning("%s: making it again from the last good state", exc)


def checked_copies(store: Store, rels: list[str], folder: Path) -> list[Path]:
    """Local copies of sealed files (chunks), every one checked: all the damaged ones are removed
    at once (:func:`remake`), then the first raised, so one round makes them all again."""
    copies, damaged = [], []
    for rel in rels:
        try:
            copies.append(store.get_sealed(rel, folder / Path(rel).name))
        except Damaged as exc:
            damaged.append(exc)
    for other in damaged[1:]:
        remake(store, other)
    if damaged:
        raise damaged[0]
    return copies


def until_whole(store: Store, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` (dream what is missing, then join) until it finds nothing damaged: each
    damaged or missing file it meets is removed, with one line, and made again by the next round
    from the last good state. A file damaged again and again is a failing disk: the run stops."""
    seen: Counter[str] = Counter()
    for _ in range(MAX_ROUNDS):
        try:
            return attempt()
        except Damaged as exc:
            seen[exc.rel] += 1
            if seen[exc.rel] > MAX_REPAIRS_OF_ONE:
                raise PipelineError(
                    f"{exc} (again, after {MAX_REPAIRS_OF_ONE} repairs: a failing disk?); what is "
                    f"done is kept in {redact(store.url)}"
                ) from None
            remake(store, exc)
    raise PipelineError(
        f"{redact(store.url)}: still finding damaged files after {MAX_ROUNDS} rounds of repairs (a "
        "failing disk?); what is done is kept there"
    )


@contextlib.contextmanager
def undone_unless_dreamt(store: Store, new: bool) -> Iterator[dict[str, bool]]:
    """A job's run: when it began the job (``new``) and fails before it dreamt anything (the caller
    sets ``["dreaming"]`` as it starts), what it wrote in the work folder is removed, and the folder
    too when this run made it, so the corrected command starts afresh."""
    begun = {"dreaming": False}
    try:
        yield begun
    except BaseException:
        if new and not begun["dreaming"]:
            store.remove()
        raise


def remove_work(store: Store) -> None:
    """Remove a job's work folder after success; say what was kept and why. The job is done and its
    output in place: a folder that cannot be removed is a warning, not a failure."""
    try:
        others = store.remove()
    except (OSError, PipelineError) as exc:
        log.warning(
            "%s: the output is written, but the work folder could not be removed (%s): remove it by hand",
            redact(store.url),
            redact(str(exc)),
        )
        return
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        log.warning(
            "%s: kept: it also holds %s, which dreamreel did not write (its own files are removed)",
            redact(store.url),
            shown,
        )
