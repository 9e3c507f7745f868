"""The video job's task graph: a Plan and what the store already holds in, the tasks still to run
out, in the order Dask should prefer them. A pure function of its inputs (no store is read here),
so resume, repair and scheduling order are unit-tested without running a frame."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.cluster.schedule import Ref, Task
from pipeline.errors import PipelineError
from pipeline.job.framestore import FrameStore
from pipeline.video.plan import Chunk, Plan, Segment, start_order
from pipeline.video.tasks import FrameResult, FrameWork, JobSpec, chunk_task, frame_task


@dataclass(frozen=True)
class Stored:
    """What a job's store holds, as the graph needs it: the chunks encoded, and each segment's
    stored frames (whole or not: a damaged one is found when read)."""

    chunks: frozenset[str] = frozenset()
    frames: dict[int, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    tasks: list[Task]  # to run, in the order Dask should prefer them
    done: set[int]  # output frames already done (stored, or in an encoded chunk)
    kept: set[tuple[int, int]]  # every output frame as (segment, index)


def frame_summary(result: FrameResult) -> FrameResult:
    """What the command needs of a frame's result (not its pixels): runs where the result is."""
    return result.summary()


def stored_of(frames: FrameStore, plan: Plan) -> Stored:
    """Read what the store holds (the one place the graph's inputs touch the store)."""
    return Stored(frozenset(frames.store.names("chunks")), {s.id: frames.indexes(s.id) for s in plan.segments})


def build_graph(spec: JobSpec, plan: Plan, stored: Stored, run: str, in_flight: int | None = None) -> Graph:
    """The tasks still to run, in the order Dask should prefer them; the output frames already done;
    and every output frame as (segment, index). Segments come in their start order, each one's frame
    tasks in order, each chunk's task right after its last frame (so chunks are encoded, and their
    frames dropped, as the chain goes); a chunk that cross-fades into the next segment comes after
    that segment's last warm frame.

    ``in_flight``: chains dreamt at once (a local cluster: one a worker, its one dream slot), each
    chain's first frame waiting for the end of the chain that many before it; None: no limit (a
    cluster the command did not start). Without it a local worker took the next chain's frame
    whenever its chain's next frame was not ready yet, so two chains took turns, frame by frame:
    two x264 encoders filling their look-ahead at once and draining at once, the dream starved
    while they drain (`python -m benchmarks.serial --frames 240`, 4 shots)."""
    b = _Builder(spec, plan, stored, run, in_flight)
    for s in start_order(list(plan.segments)):
        b.add_segment(s)
    leftover = [t.key for ts in b.deferred.values() for t in ts]
    if leftover:
        raise PipelineError(f"internal: tasks never scheduled: {leftover[:3]}")
    return Graph(b.tasks, b.done, b.kept)


class _Builder:
    """The graph as it is built: what is done and wanted, and the tasks added so far."""

    def __init__(self, spec: JobSpec, plan: Plan, stored: Stored, run: str, in_flight: int | None):
        self.spec, self.plan, self.run, self.in_flight = spec, plan, run, in_flight
        self.segments = list(plan.segments)
        self.dur = plan.durations()
        self.todo = [c for c in plan.chunks if c.name not in stored.chunks]
        self.kept = {(s.id, i) for s in self.segments for i in range(s.first, s.end)}
        self.done: set[int] = set()
        for c in plan.chunks:
            if c.name in stored.chunks:
                self.done.update(range(c.first, c.end))
        frames = {s.id: stored.frames.get(s.id, []) for s in self.segments}
        for s in self.segments:
            self.done.update(i for i in frames[s.id] if i >= s.first)
        self.fresh_always = spec.sequence.fresh_always
        # The frames whose pixels a chunk not yet encoded takes: its own, and the warm frames of the
        # next segment that it cross-fades. A chain runs to the last of them (need).
        wanted: dict[int, set[int]] = {s.id: set() for s in self.segments}
        self.chunk_by_end: dict[tuple[int, int], list[Chunk]] = {}
        self.chunk_of: dict[tuple[int, int], Chunk] = {}  # (segment, frame) -> the chunk it ends up in
        for c in self.todo:
            wanted[c.seg].update(range(c.first, c.end))
            self.chunk_by_end.setdefault((c.seg, c.end - 1), []).append(c)
            self.chunk_of.update({(c.seg, i): c for i in range(c.first, c.end)})
            if c.blend is not None:  # the next segment's warm frames end up in this chunk too
                nxt = self.segments[c.blend]
                wanted[nxt.id].update(range(nxt.warm_from, nxt.first))
                self.chunk_of.update({(nxt.id, i): c for i in range(nxt.warm_from, nxt.first)})
        self.need = {s.id: max(wanted[s.id], default=s.warm_from - 1) + 1 for s in self.segments}
        self.chains: dict[int, list[int]] = {}
        self.replay: set[tuple[int, int]] = set()
        self.planned: set[str] = set()
        for s in self.segments:
            self.chains[s.id], again = _chain(s, wanted[s.id], set(frames[s.id]))
            self.replay.update((s.id, i) for i in again)
            self.planned.update(self.key("f", s.id, i) for i in self.chains[s.id])
        self.tasks: list[Task] = []
        self.submitted: set[str] = set()
        self.deferred: dict[str, list[Task]] = {}  # blend chunks, waiting for the next segment's warm frame
        self.ends: list[str] = []  # each chain's last frame task, in start order

    def key(self, kind: str, seg: int, i: int) -> str:
        return f"dreamreel-{self.spec.id}-{self.run}-{kind}{seg}-{i}"

    def add(self, task: Task) -> None:
        self.tasks.append(task)
        self.submitted.add(task.key)
        for later in self.deferred.pop(task.key, []):
            self.add(later)

    def add_chunk(self, c: Chunk) -> None:
        deps = [self.key("f", c.seg, c.end - 1)]
        blend = None
        if c.blend is not None:
            blend = self.segments[c.blend]
            deps.append(self.key("f", blend.id, blend.first - 1))
        refs = [Ref(k) for k in deps if k in self.planned]
        task = Task(
            self.key("c", c.seg, c.first),
            chunk_task,
            (self.spec, c, self.segments[c.seg], blend, tuple(self.dur[c.first : c.end])),
            {"after": refs},
            light=True,
        )
        waiting = next((k for k in deps if k in self.planned and k not in self.submitted), None)
        if waiting:  # after the task it waits for, which is not in the list yet
            self.deferred.setdefault(waiting, []).append(task)
        else:
            self.add(task)

    def add_segment(self, s: Segment) -> None:
        # Chunks whose frames are all stored already can be encoded at once.
        for c in self.todo:
            if c.seg == s.id and self.key("f", s.id, c.end - 1) not in self.planned:
                self.add_chunk(c)
        chain = self.chains[s.id]
        for i in chain:
            self.add(self.frame(s, i, first=i == chain[0]))
            for c in self.chunk_by_end.get((s.id, i), []):
                self.add_chunk(c)
        if chain:
            self.ends.append(self.key("f", s.id, chain[-1]))

    def frame(self, s: Segment, i: int, first: bool) -> Task:
        pts = self.plan.pts
        fresh = self.fresh_always or i == s.warm_from
        prev_key = self.key("f", s.id, i - 1)
        # Every mode chains (a chunk waits for its last frame; frames decode in order); a fresh
        # frame ignores what it is given.
        prev = Ref(prev_key) if prev_key in self.planned else None
        c = self.chunk_of.get((s.id, i))
        out = c is not None and c.seg == s.id  # an output frame of this segment (not a warm frame)
        streamed = out and c is not None and c.blend is None
        after = None
        if first and self.in_flight is not None and len(self.ends) >= self.in_flight:
            after = Ref(f"{self.ends[-self.in_flight]}-summary")
        work = FrameWork(
            seg=s.id,
            index=i,
            pts=pts[i],
            fresh=fresh,
            prev_pts=None if fresh else pts[i - 1],
            last=i == self.need[s.id] - 1,
            chunk=c if streamed else None,
            durations=tuple(self.dur[c.first : c.end]) if streamed and c is not None else (),
            encoded_in=c.name if c is not None else None,
            next_pts=pts[i + 1] if (i + 1 < self.need[s.id] and not self.fresh_always) else None,
            replay=(s.id, i) in self.replay,
        )
        return Task(
            self.key("f", s.id, i), frame_task, (self.spec, work, prev), {"after": after}, summary=frame_summary
        )


def _chain(s: Segment, wanted: set[int], stored: set[int]) -> tuple[list[int], list[int]]:
    """The frames segment ``s`` must dream, in order, so that every frame in ``wanted`` (those a
    chunk still to encode takes) is stored or dreamt, given the frames ``stored``; and which of them
    are dreamt only to carry the chain (a replay: no chunk still takes them, so they are kept
    nowhere).

    The chain starts at the first wanted frame that is not stored, going on from the stored frame
    before it; stored frames after it (after a damaged one removed, say) are read back on the way,
    not dreamt again. When the frame before it is gone too (a damaged chunk encoded again, or the
    frame a chain goes on from lost), the chain starts again from the last stored frame before it,
    or from the segment's fresh start: every frame is a function of the one before, so that gives
    the same pixels."""
    missing = sorted(wanted - stored)
    if not missing:
        return [], []
    begin, need = missing[0], max(wanted) + 1
    start = begin
    if begin > s.warm_from and begin - 1 not in stored:
        below = [i for i in stored if s.warm_from <= i < begin - 1]
        start = max(below) + 1 if below else s.warm_from
    chain = list(range(start, need))
    return chain, [i for i in chain if i not in wanted and i not in stored]
