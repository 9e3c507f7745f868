"""A job's record in its store: what the job is (its identity: input, range, config), whether a
store belongs to it, its name, and the numerics layouts that have dreamt it.

The same store with another input or config is refused, naming what changed; ``--restart`` clears
it. Everything in a store is written whole (store.py), so a job killed at any moment resumes from
what exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError
from .store import Store

JOB_FILE = "job.json"
JOB_VERSION = 2  # 2: the numerics layout (thread count) and the layouts seen


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the first and last MiB: cheap on a 10 GB clip,
    and a changed file is caught even when a copy kept its mtime."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": h.hexdigest()}


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


def open_job(store: Store, identity: Mapping[str, Any], restart: bool) -> dict[str, Any] | None:
    """The store's job record when it describes this job (None when there is none, or after
    ``restart`` cleared it); another job's store is refused, naming what changed."""
    job = store.read_json(JOB_FILE)
    if job is None:
        return None
    if restart:
        store.clear()
        return None
    changed = describe_changes(job.get("identity", {}), identity)
    if job.get("version") != JOB_VERSION:
        changed.insert(0, "job format version")
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise UsageError(f"{store.url}: this work folder belongs to another job (changed: {shown}); "
                         "run the original command to finish it, or pass --restart to discard it")
    return job


def job_id(identity: Mapping[str, Any], store: Store) -> str:
    """A job's name in task keys and worker caches: its identity (config included) and its store."""
    return hashlib.sha256(json.dumps([identity, store.url], sort_keys=True).encode()).hexdigest()[:12]


class LayoutLog:
    """The numerics layouts (pipeline.runtime) that dreamt a job's items, kept in its record: a job
    whose items were all dreamt under one layout equals an uninterrupted run's, item for item."""

    def __init__(self, save: Callable[[dict[str, Any]], None], job: dict[str, Any]):
        self.save, self.job = save, job
        job.setdefault("layouts", {})

    def saw(self, layout: Mapping[str, Any]) -> None:
        from .runtime import layout_id

        key = layout_id(dict(layout))
        if key not in self.job["layouts"]:
            self.job["layouts"][key] = dict(layout)
            self.save(self.job)

    def warning(self) -> str | None:
        from .runtime import describe_layout

        layouts = list(self.job["layouts"].values())
        if len(layouts) <= 1:
            return None
        shown = "; ".join(map(describe_layout, layouts))
        return (f"this job was dreamt under {len(layouts)} numerics layouts ({shown}): "
                "where a shot or item crossed from one to another it can differ from an uninterrupted run by a "
                "fraction of a grey level (README: 'Exact results')")
