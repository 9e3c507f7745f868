"""The video job's task graph (pipeline.video.graph): segments, overlaps, resume from a partial
store, and the order tasks are preferred in. build_graph is a pure function of the plan and of what
the store holds, so these tests need no clip, no TensorFlow and no Dask: plans are built directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.sequence import Sequence
from pipeline.cluster.schedule import Ref, Task
from pipeline.job.framestore import chunk_name
from pipeline.job.store import Store
from pipeline.video.graph import Graph, Stored, build_graph
from pipeline.video.plan import Chunk, Plan, Segment, plan_chunks, plan_segments, start_order
from pipeline.video.tasks import FrameWork, JobSpec, chunk_task, frame_task

RUN = "r4nd0m"


def make_plan(frames: int, shots: list[int], workers: int = 1, overlap: int = 0, size: int = 10) -> Plan:
    segments = plan_segments(frames, shots, workers, 0, overlap)
    return Plan(
        frames=frames,
        pts=tuple(i / 24 for i in range(frames)),
        frame_rate="24",
        constant_rate=True,
        errors=0,
        last_duration=None,
        shots=tuple(shots),
        segments=tuple(segments),
        chunks=tuple(plan_chunks(segments, size)),
    )


def make_spec(tmp_path: Path, coherence: str = "flow") -> JobSpec:
    return JobSpec(
        id="job1",
        store=Store(str(tmp_path)),
        token="token",
        input="clip.mp4",
        input_key="key",
        size=(64, 48),
        sequence=Sequence(DreamConfig(), VideoConfig(coherence=coherence)),
        rate="24",
    )


def graph_of(
    tmp_path: Path, plan: Plan, stored: Stored | None = None, in_flight: int | None = None, coherence: str = "flow"
) -> Graph:
    g = build_graph(make_spec(tmp_path, coherence), plan, stored or Stored(), RUN, in_flight)
    check_refs(g)
    return g


def check_refs(g: Graph) -> None:
    """Every graph: keys unique and of this run; every Ref names a task listed before it."""
    keys = [t.key for t in g.tasks]
    assert len(keys) == len(set(keys))
    assert all(RUN in k for k in keys)
    seen: set[str] = set()
    for t in g.tasks:
        for r in refs_in(t):
            target = r.key.removesuffix("-summary")
            assert target in seen, f"{t.key} refers to {r.key}, not a task before it"
        seen.add(t.key)


def refs_in(t: Task) -> list[Ref]:
    values = [*t.args, *t.kwargs.values()]
    out: list[Ref] = []
    for v in values:
        if isinstance(v, Ref):
            out.append(v)
        elif isinstance(v, list | tuple):
            out.extend(x for x in v if isinstance(x, Ref))
    return out


def is_frame(t: Task) -> bool:
    return t.fn is frame_task


def is_chunk(t: Task) -> bool:
    return t.fn is chunk_task


def work(t: Task) -> FrameWork:
    assert is_frame(t)
    return t.args[1]


def chunk_of(t: Task) -> Chunk:
    assert is_chunk(t)
    return t.args[1]


def frame_keys(g: Graph) -> dict[tuple[int, int], str]:
    return {(work(t).seg, work(t).index): t.key for t in g.tasks if is_frame(t)}


def layout(g: Graph) -> list[tuple[str, int, int]]:
    """The task list in short: ("f", seg, index) or ("c", seg, chunk's first)."""
    return [
        ("f", work(t).seg, work(t).index) if is_frame(t) else ("c", chunk_of(t).seg, chunk_of(t).first) for t in g.tasks
    ]


def test_a_fresh_segment_dreams_every_frame_in_a_chain_and_encodes_each_chunk_after_its_last_frame(
    tmp_path: Path,
) -> None:
    plan = make_plan(25, [0])
    assert plan.segments == (Segment(0, 0, 0, 25),)
    g = graph_of(tmp_path, plan)
    expected = [("f", 0, i) for i in range(10)] + [("c", 0, 0)]
    expected += [("f", 0, i) for i in range(10, 20)] + [("c", 0, 10)]
    expected += [("f", 0, i) for i in range(20, 25)] + [("c", 0, 20)]
    assert layout(g) == expected
    keys = frame_keys(g)
    frames = [t for t in g.tasks if is_frame(t)]
    for t in frames:
        w = work(t)
        i = w.index
        assert t.args[0].id == "job1"
        assert t.args[2] == (Ref(keys[(0, i - 1)]) if i > 0 else None)
        assert t.kwargs == {"after": None}
        assert t.summary is not None
        assert w.pts == plan.pts[i]
        assert w.fresh == (i == 0)
        assert w.prev_pts == (None if i == 0 else plan.pts[i - 1])
        assert w.last == (i == 24)
        assert w.next_pts == (None if i == 24 else plan.pts[i + 1])
        assert not w.replay
        c = next(c for c in plan.chunks if c.first <= i < c.end)
        assert w.chunk == c and w.encoded_in == c.name
        assert w.durations == tuple(plan.durations()[c.first : c.end])
    for t in g.tasks:
        if is_chunk(t):
            c = chunk_of(t)
            assert t.light
            assert t.args[2] == Segment(0, 0, 0, 25) and t.args[3] is None
            assert t.args[4] == tuple(plan.durations()[c.first : c.end])
            assert t.kwargs == {"after": [Ref(keys[(0, c.end - 1)])]}
    assert g.done == set()
    assert g.kept == {(0, i) for i in range(25)}


def test_segments_start_longest_shot_first_and_chain_after_the_one_in_flight_before(tmp_path: Path) -> None:
    plan = make_plan(60, [0, 10, 25])  # shots of 10, 15 and 35 frames; one worker splits none
    assert [(s.first, s.end) for s in plan.segments] == [(0, 10), (10, 25), (25, 60)]
    assert [s.id for s in start_order(list(plan.segments))] == [2, 1, 0]

    def firsts(g: Graph) -> list[Task]:
        return [t for t in g.tasks if is_frame(t) and work(t).index == plan.segments[work(t).seg].first]

    g = graph_of(tmp_path, plan, in_flight=1)
    order = [seg for kind, seg, _ in layout(g) if kind == "f"]
    assert order == [2] * 35 + [1] * 15 + [0] * 10  # one chain after another, never interleaved
    keys = frame_keys(g)
    assert [(work(t).seg, t.kwargs["after"]) for t in firsts(g)] == [
        (2, None),
        (1, Ref(f"{keys[(2, 59)]}-summary")),
        (0, Ref(f"{keys[(1, 24)]}-summary")),
    ]
    for t in g.tasks:  # only a chain's first frame waits for another chain
        if is_frame(t) and t not in firsts(g):
            assert t.kwargs["after"] is None
    assert all(work(t).fresh for t in firsts(g))
    assert [work(t).index for t in g.tasks if is_frame(t) and work(t).last] == [59, 24, 9]
    # the first frame of a chain does not chain to the previous segment's last frame
    assert all(t.args[2] is None for t in firsts(g))

    # two chains in flight: the third waits for the first
    g = graph_of(tmp_path, plan, in_flight=2)
    keys = frame_keys(g)
    assert [(work(t).seg, t.kwargs["after"]) for t in firsts(g)] == [
        (2, None),
        (1, None),
        (0, Ref(f"{keys[(2, 59)]}-summary")),
    ]

    # no limit (a cluster the command did not start): no chain waits
    g = graph_of(tmp_path, plan, in_flight=None)
    assert all(t.kwargs["after"] is None for t in g.tasks if is_frame(t))
    assert g.kept == {(s.id, i) for s in plan.segments for i in range(s.first, s.end)}


def test_equal_shots_start_in_film_order(tmp_path: Path) -> None:
    plan = make_plan(30, [0, 10, 20])
    g = graph_of(tmp_path, plan)
    assert [seg for kind, seg, _ in layout(g) if kind == "f"] == [0] * 10 + [1] * 10 + [2] * 10


def test_a_split_shot_dreams_the_overlap_and_cross_fades_it_after_the_next_segments_warm_frames(
    tmp_path: Path,
) -> None:
    plan = make_plan(120, [0], workers=2, overlap=4, size=48)
    s0, s1 = plan.segments
    assert (s0, s1) == (Segment(0, 0, 0, 60), Segment(1, 56, 60, 120))
    blend = Chunk(0, 48, 60, blend=1)
    assert plan.chunks == (Chunk(0, 0, 48), blend, Chunk(1, 60, 108), Chunk(1, 108, 120))
    g = graph_of(tmp_path, plan, in_flight=2)
    expected = [("f", 0, i) for i in range(48)] + [("c", 0, 0)] + [("f", 0, i) for i in range(48, 60)]
    expected += [("f", 1, i) for i in range(56, 60)] + [("c", 0, 48)]  # deferred to the last warm frame
    expected += [("f", 1, i) for i in range(60, 108)] + [("c", 1, 60)]
    expected += [("f", 1, i) for i in range(108, 120)] + [("c", 1, 108)]
    assert layout(g) == expected

    keys = frame_keys(g)
    by_key = {t.key: t for t in g.tasks}
    works = {k: work(by_key[v]) for k, v in keys.items()}
    # the next segment's chain starts fresh at its warm frames, not at its first output frame
    assert works[(1, 56)].fresh and by_key[keys[(1, 56)]].args[2] is None
    assert not any(works[(1, i)].fresh for i in range(57, 120))
    assert [i for (seg, i), w in works.items() if seg == 1 and w.fresh] == [56]
    # warm frames: not streamed (a cross-fade mixes them), kept in the blending chunk
    for i in range(56, 60):
        w = works[(1, i)]
        assert w.chunk is None and w.durations == () and w.encoded_in == blend.name
        assert not w.replay
    # the blending chunk's own frames are not streamed either; a plain chunk's are
    for i in range(48, 60):
        assert works[(0, i)].chunk is None and works[(0, i)].encoded_in == blend.name
    assert works[(0, 47)].chunk == Chunk(0, 0, 48)
    assert works[(1, 60)].chunk == Chunk(1, 60, 108) and works[(1, 60)].encoded_in == Chunk(1, 60, 108).name
    assert works[(0, 59)].last and works[(0, 59)].next_pts is None
    assert not works[(1, 59)].last and works[(1, 119)].last

    task = next(t for t in g.tasks if is_chunk(t) and chunk_of(t) == blend)
    assert task.args[2] == s0 and task.args[3] == s1
    assert task.kwargs == {"after": [Ref(keys[(0, 59)]), Ref(keys[(1, 59)])]}
    plain = [t for t in g.tasks if is_chunk(t) and t is not task]
    assert all(t.args[3] is None for t in plain)
    # the second chain waits for none: two in flight
    assert by_key[keys[(1, 56)]].kwargs["after"] is None
    assert g.done == set()
    assert g.kept == {(0, i) for i in range(60)} | {(1, i) for i in range(60, 120)}


def test_a_resumed_job_skips_encoded_chunks_and_goes_on_from_the_last_stored_frame(tmp_path: Path) -> None:
    plan = make_plan(40, [0])
    # chunks [0, 10) and [10, 20) encoded; frames 19..32 stored ([20, 30) all stored, not encoded)
    stored = Stored(frozenset({chunk_name(0, 10), chunk_name(10, 20)}), {0: list(range(19, 33))})
    g = graph_of(tmp_path, plan, stored)
    assert layout(g) == [("c", 0, 20)] + [("f", 0, i) for i in range(33, 40)] + [("c", 0, 30)]
    first = g.tasks[1]
    w = work(first)
    assert w.index == 33 and not w.fresh
    assert first.args[2] is None  # no task before it: it reads frame 32 from the store
    assert w.prev_pts == plan.pts[32]
    assert w.chunk == Chunk(0, 30, 40) and w.encoded_in == Chunk(0, 30, 40).name
    assert not w.replay
    keys = frame_keys(g)
    ready = g.tasks[0]  # every frame of [20, 30) stored: encoded at once, waiting for no task
    assert chunk_of(ready) == Chunk(0, 20, 30) and ready.kwargs == {"after": []}
    assert g.tasks[-1].kwargs == {"after": [Ref(keys[(0, 39)])]}
    assert g.done == set(range(33))
    assert g.kept == {(0, i) for i in range(40)}


def test_stored_frames_count_as_done_only_in_their_segments_output(tmp_path: Path) -> None:
    plan = make_plan(120, [0], workers=2, overlap=4, size=48)
    # the next segment's warm frames 56..59 stored, none of its output frames
    stored = Stored(frozenset(), {1: [56, 57, 58, 59]})
    g = graph_of(tmp_path, plan, stored)
    assert g.done == set()
    assert (1, 56) not in frame_keys(g) and (1, 60) in frame_keys(g)
    first = next(t for t in g.tasks if is_frame(t) and work(t).seg == 1)
    assert work(first).index == 60 and work(first).prev_pts == plan.pts[59] and not work(first).fresh
    assert first.args[2] is None


def test_a_finished_job_has_no_tasks_and_every_frame_done(tmp_path: Path) -> None:
    plan = make_plan(120, [0, 30], workers=2, overlap=4, size=48)
    stored = Stored(frozenset(c.name for c in plan.chunks), {})
    g = graph_of(tmp_path, plan, stored, in_flight=1)
    assert g.tasks == []
    assert g.done == set(range(120))
    assert len(g.kept) == 120


def test_a_finished_chain_leaves_no_chain_to_wait_for(tmp_path: Path) -> None:
    plan = make_plan(30, [0, 20])  # the 20-frame shot starts first
    stored = Stored(frozenset({chunk_name(0, 10), chunk_name(10, 20)}), {})
    g = graph_of(tmp_path, plan, stored, in_flight=1)
    assert layout(g) == [("f", 1, i) for i in range(20, 30)] + [("c", 1, 20)]
    assert g.tasks[0].kwargs["after"] is None
    assert g.done == set(range(20))


def test_after_a_blending_chunk_is_encoded_the_next_segment_goes_on_from_its_last_warm_frame(
    tmp_path: Path,
) -> None:
    plan = make_plan(120, [0], workers=2, overlap=4, size=48)
    encoded = frozenset({chunk_name(0, 48), chunk_name(48, 60)})
    # the chunk task keeps the next segment's last warm frame (its chain may go on from it)
    g = graph_of(tmp_path, plan, Stored(encoded, {1: [59]}))
    assert layout(g) == [("f", 1, i) for i in range(60, 108)] + [("c", 1, 60)] + [
        ("f", 1, i) for i in range(108, 120)
    ] + [("c", 1, 108)]
    assert work(g.tasks[0]).prev_pts == plan.pts[59] and not work(g.tasks[0]).fresh
    assert g.done == set(range(60))
    # that frame lost too: the chain starts again at its warm frames, dreamt only to reach frame 60
    g = graph_of(tmp_path, plan, Stored(encoded, {}))
    assert layout(g)[:5] == [("f", 1, i) for i in range(56, 61)]
    warm = [work(t) for t in g.tasks[:4]]
    assert warm[0].fresh and all(w.replay and w.encoded_in is None and w.chunk is None for w in warm)
    assert not work(g.tasks[4]).replay and not work(g.tasks[4]).fresh


def test_a_damaged_chunk_is_dreamt_again_from_the_segments_start_replaying_what_is_encoded(
    tmp_path: Path,
) -> None:
    plan = make_plan(40, [0])
    # [10, 20) and [30, 40) lost (a damaged chunk removed); no frame stored to go on from
    stored = Stored(frozenset({chunk_name(0, 10), chunk_name(20, 30)}), {})
    g = graph_of(tmp_path, plan, stored)
    expected = [("f", 0, i) for i in range(20)] + [("c", 0, 10)]
    expected += [("f", 0, i) for i in range(20, 40)] + [("c", 0, 30)]
    assert layout(g) == expected
    works = {work(t).index: work(t) for t in g.tasks if is_frame(t)}
    replayed = {i for i, w in works.items() if w.replay}
    assert replayed == set(range(10)) | set(range(20, 30))
    assert works[0].fresh and not any(w.fresh for i, w in works.items() if i > 0)
    for i in replayed:  # dreamt only to carry the chain: kept nowhere
        assert works[i].chunk is None and works[i].encoded_in is None
    assert works[10].chunk == Chunk(0, 10, 20) and works[35].encoded_in == Chunk(0, 30, 40).name
    assert works[39].last
    assert g.done == set(range(10)) | set(range(20, 30))

    # a stored frame before the lost one: the chain goes on from it instead of from the start
    g = graph_of(tmp_path, plan, Stored(stored.chunks, {0: [5]}))
    frames = [t for t in g.tasks if is_frame(t)]
    assert work(frames[0]).index == 6 and work(frames[0]).prev_pts == plan.pts[5]
    assert {work(t).index for t in frames if work(t).replay} == {6, 7, 8, 9} | set(range(20, 30))


def test_without_coherence_every_frame_is_fresh_and_none_prefetches_the_next(tmp_path: Path) -> None:
    plan = make_plan(25, [0])
    g = graph_of(tmp_path, plan, coherence="none")
    frames = [t for t in g.tasks if is_frame(t)]
    assert [work(t).index for t in frames] == list(range(25))
    for t in frames:
        w = work(t)
        assert w.fresh and w.prev_pts is None and w.next_pts is None
    # still one chain: frames decode in order, a chunk waits for its last frame
    keys = frame_keys(g)
    assert all(t.args[2] == Ref(keys[(0, work(t).index - 1)]) for t in frames[1:])
    assert work(frames[-1]).last and not any(work(t).last for t in frames[:-1])


@pytest.mark.parametrize("in_flight", [None, 1, 2])
def test_every_plan_schedules_each_wanted_frame_once_and_each_chunk_after_its_frames(
    tmp_path: Path, in_flight: int | None
) -> None:
    plan = make_plan(300, [0, 70, 130], workers=4, overlap=6, size=24)
    assert any(s.warm_from < s.first for s in plan.segments)  # some shot split, with an overlap
    g = graph_of(tmp_path, plan, in_flight=in_flight)
    chunks = [chunk_of(t) for t in g.tasks if is_chunk(t)]
    assert len(chunks) == len(plan.chunks) and set(chunks) == set(plan.chunks)
    keys = frame_keys(g)
    assert set(keys) == {(s.id, i) for s in plan.segments for i in range(s.warm_from, s.end)}
    position = {t.key: n for n, t in enumerate(g.tasks)}
    for t in g.tasks:
        if is_chunk(t):
            c = chunk_of(t)
            last = [keys[(c.seg, c.end - 1)]]
            if c.blend is not None:
                last.append(keys[(c.blend, plan.segments[c.blend].first - 1)])
            assert t.kwargs["after"] == [Ref(k) for k in last]
            assert position[t.key] == max(position[k] for k in last) + 1  # right after the later one
    order = list(dict.fromkeys(work(t).seg for t in g.tasks if is_frame(t)))
    assert order == [s.id for s in start_order(list(plan.segments))]


def test_a_chain_ends_at_the_last_frame_a_chunk_still_takes(tmp_path: Path) -> None:
    plan = make_plan(40, [0])
    # only [10, 20) lost: its chain runs from the start to frame 19, not to the segment's end
    stored = Stored(frozenset({chunk_name(0, 10), chunk_name(20, 30), chunk_name(30, 40)}), {})
    g = graph_of(tmp_path, plan, stored)
    assert layout(g) == [("f", 0, i) for i in range(20)] + [("c", 0, 10)]
    works = [work(t) for t in g.tasks if is_frame(t)]
    assert [w.index for w in works if w.last] == [19]  # its decoder closes there
    assert works[-1].next_pts is None and all(w.next_pts == plan.pts[w.index + 1] for w in works[:-1])
    assert [w.index for w in works if w.replay] == list(range(10))
    assert g.done == set(range(10)) | set(range(20, 40))
