"""A job's run in its work folder, the same for every resumable command (video, zoom, images).

:func:`job_session` claims the folder (never one holding anything of the user's), locks it, opens
the job's record (refusing another job's, naming what changed) or begins a new one (its token and
numerics fixed then), and yields a :class:`Session`. A run that began the job and fails before it
dreamt anything removes what it wrote, so the corrected command starts afresh; a run that succeeds
removes the work folder unless asked to keep it. :func:`until_whole` repeats a run's attempt until
it finds nothing damaged, each damaged file made again from the last good state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pipeline.io import media
from pipeline.job.record import (
    JobRecord,
    LayoutLog,
    Numerics,
    claim_apart,
    has_work,
    job_id,
    open_job,
    remove_work,
    undone_unless_dreamt,
    write_record,
)
from pipeline.job.store import Store


@dataclass
class Session:
    """A job's run: its store, its record as last saved, and whether it has begun dreaming."""

    store: Store
    record: JobRecord
    new: bool  # this run began the job
    begun: dict[str, bool]

    @property
    def id(self) -> str:
        """The job's name in task keys and worker caches."""
        return job_id(self.record.identity, self.store)

    def save(self, record: JobRecord) -> None:
        """Keep ``record`` as the job's record (written whole, with its copy)."""
        self.record = record
        write_record(self.store, record)

    def dreaming(self) -> None:
        """From now on a failure keeps what the run wrote: dreamt work is never discarded."""
        self.begun["dreaming"] = True

    def layouts(self) -> LayoutLog:
        """Where the numerics layouts that dream the job's items are noted (saved in the record)."""
        return LayoutLog(self.save, self.record)


@contextmanager
def job_session(
    store: Store,
    identity: Mapping[str, Any],
    *,
    restart: bool,
    output: str | None = None,
    threads: int | None = None,
    encodes: bool = False,
    keep_work: bool = True,
    work: Callable[[Store], bool] = has_work,
) -> Iterator[Session]:
    """Open (or begin) the job ``identity`` in ``store`` for one run. ``output``: the job's output,
    which the work folder may not be; ``threads``: a new job's TensorFlow threads; ``encodes``: the
    job encodes chunks (x264's threads are fixed when it begins); ``keep_work``: keep the work folder
    after success; ``work``: whether the store holds work another job would lose."""
    if output is not None:
        claim_apart(store, output)
    else:
        store.claim()
    with store.locked():
        record = open_job(store, identity, restart, work)
        new = record is None
        with undone_unless_dreamt(store, new) as begun:
            store.sweep_partials()  # a kill mid-write (a chunk's copy, a frame) left a temporary file
            changed = new
            if record is None:
                record = JobRecord(dict(identity), token=uuid.uuid4().hex, numerics=Numerics(threads))
            if encodes and record.numerics.encoder_threads is None:  # new, or begun before jobs recorded it
                record = replace(record, numerics=replace(record.numerics, encoder_threads=media.encoder_threads()))
                changed = True
            if changed:
                write_record(store, record)
            store.write_bytes("token", record.token.encode())
            yield Session(store, record, new, begun)
        if not keep_work:
            remove_work(store)
