"""The benchmarks run (tiny sizes; their timings are read by people, never asserted here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tests.clips import make_clip

UNTRAINED = dict(model="inception_v3", weights="untrained", layers={"mixed2": 1.0}, iterations=2, octaves=1)


def test_video_benchmark_reports_every_mode_and_the_reference(tmp_path: Path) -> None:
    from benchmarks.video import bench_video, report
    from dreamcore.config import DreamConfig, VideoConfig

    clip = make_clip(tmp_path / "c.mp4", seconds=0.3, audio=False)
    results = bench_video(clip, DreamConfig(**UNTRAINED), VideoConfig(), 4, size=(192, 128), reference_frames=1)
    table = report(results)
    for mode in ("none", "blend", "flow", "reference"):
        assert any(line.startswith(mode) for line in table.splitlines()), table
    flow = next(r for r in results if r.mode == "flow")
    assert flow.frames == 4 and 0 <= flow.instability < 10 and flow.strength > 0


def test_size_must_be_even() -> None:
    from benchmarks.common import parse_size

    assert parse_size("640x360") == (640, 360)
    with pytest.raises(argparse.ArgumentTypeError, match="must be even"):
        parse_size("641x360")


def test_reference_is_the_keras_loop_on_the_same_network() -> None:
    """The reference dreams (the image moves, stays finite, keeps its shape) with the engine's
    own feature network, and at equal settings it is as strong as the engine without jitter."""
    from benchmarks.engine import make_reference
    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine

    # A trained network: the keras.io step floors mean |g| at 1e-6, which untrained gradients are below.
    cfg = DreamConfig(
        model="vgg16_hed", layers={"block4_conv3": 1.0}, octaves=2, iterations=3, jitter=0, tile=0, max_loss=None
    )
    engine = Engine(cfg)
    img = np.random.default_rng(1).uniform(-0.5, 0.5, (160, 176, 3)).astype(np.float32)
    ref = make_reference(engine.dreamer.net, [1.0])(img, cfg)
    ours = engine.dream_rgb((img + 1) / 2) * 2 - 1
    assert ref.shape == img.shape and np.isfinite(ref).all()
    moved_ref, moved_ours = np.mean(np.abs(ref - img)), np.mean(np.abs(ours - img))
    assert moved_ref > 0.005
    assert 0.5 < moved_ref / moved_ours < 2.0


def test_trials_harness_runs_each_trial_in_its_own_process() -> None:
    from benchmarks.trials import bench_trials

    table = bench_trials(["threads 1 intra"], steps=1, small=True)
    rows = {line[:34].strip(): line for line in table.splitlines()}
    assert "baseline (the engine)" in rows
    row = rows["threads 1 intra"]
    assert "failed" not in row, row
    ms_512, ratio = row[34:].split()[:2]
    assert float(ms_512) > 0 and float(ratio) > 0


def test_images_and_scheduling_benchmarks_run() -> None:
    from benchmarks.images import bench_images
    from benchmarks.scheduling import bench_dask

    table = bench_images(
        2,
        64,
        [
            "--model",
            "inception_v3",
            "--weights",
            "untrained",
            "--layers",
            "mixed2=1",
            "--set",
            "iterations=1",
            "--set",
            "octaves=1",
        ],
        (1,),
    )
    assert "loop of `image`" in table and "images --workers 1" in table
    assert "ms/task" in bench_dask(5, (1,))


def test_engine_ceiling_and_flop_count() -> None:
    import keras

    from benchmarks import engine

    assert engine.matmul_ceiling(n=128, repeats=1) > 0
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    # 2 x out_h x out_w x cout x kh x kw x cin: the count is exact for a plain convolution
    assert engine.conv_flops(model, 10, 12) == 2 * 8 * 10 * 4 * 3 * 3 * 3


def test_every_mutant_still_finds_its_line() -> None:
    """benchmarks.mutants patches code by text: a line that changed would leave a mutant unapplied."""
    from benchmarks.mutants import MUTANTS, REPO

    for mutant in MUTANTS:
        assert (REPO / mutant.path).read_text().count(mutant.old) == 1, mutant.name


def test_studio_benchmark_reports_each_network(tmp_path: Path, monkeypatch, capsys) -> None:
    from benchmarks.studio import main
    from tests.media import SAMPLE_IMAGE

    monkeypatch.chdir(tmp_path)  # it works in a folder of its own
    main(["--photo", str(SAMPLE_IMAGE), "--side", "96", "--repeat", "1", "--networks", "inception_v3"])
    out = capsys.readouterr().out
    assert "at 96x" in out and out.splitlines()[-1].startswith("inception_v3")


def test_zoom_quality_benchmark_reports_sharpness_colour_and_cost(tmp_path: Path, capsys) -> None:
    from benchmarks.zoomquality import main
    from tests.media import SAMPLE_IMAGE

    main(
        [
            "--image",
            str(SAMPLE_IMAGE),
            "--frames",
            "4",
            "--every",
            "2",
            "--variants",
            "linear,lanczos",
            "--model",
            "inception_v3",
            "--set",
            "weights=untrained",
            "--set",
            "layers={mixed2: 1}",
            "--set",
            "octaves=1",
            "--set",
            "iterations=2",
            "--set",
            "max_side=96",
            "--work",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "frames measured: [0, 2, 3]" in out
    for variant in ("linear", "lanczos"):
        assert any(line.startswith(variant) for line in out.splitlines()), out
    assert out.count("largest distance from frame 0") == 2
