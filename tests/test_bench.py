"""The benchmarks run (tiny sizes; their figures are read by people, never asserted here)."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import main
from tests.clips import make_clip
from tests.test_video import FAST as VIDEO_FAST


def test_bench_video_reports_every_mode_and_the_reference(tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=0.3, audio=False)
    engine = [a for a in VIDEO_FAST if a != "-q"]
    assert main(["bench", "video", str(clip), "--frames", "4", "--size", "192x128", "--reference-frames", "1",
                 *engine]) == 0
    out = capsys.readouterr().out
    for mode in ("none", "blend", "flow", "reference"):
        assert any(line.startswith(mode) for line in out.splitlines())


def test_bench_video_size_must_be_even(capsys) -> None:
    try:
        main(["bench", "video", "c.mp4", "--size", "641x360"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "must be even" in capsys.readouterr().err


def test_reference_is_the_keras_loop_on_the_same_network() -> None:
    """The reference dreams (the image moves, stays finite, keeps its shape) with the engine's
    own feature network, and at equal settings it is as strong as the engine without jitter."""
    import numpy as np

    from dreamcore.config import DreamConfig
    from dreamcore.engine import Engine
    from pipeline.bench import make_reference

    # A trained network: the keras.io step floors mean |g| at 1e-6, which untrained gradients are below.
    cfg = DreamConfig(model="vgg16_hed", layers={"block4_conv3": 1.0}, octaves=2,
                      iterations=3, jitter=0, tile=0, max_loss=None)
    engine = Engine(cfg)
    img = np.random.default_rng(1).uniform(-0.5, 0.5, (160, 176, 3)).astype(np.float32)
    ref = make_reference(engine.dreamer.net, [1.0])(img, cfg)
    ours = engine.dream_rgb((img + 1) / 2) * 2 - 1
    assert ref.shape == img.shape and np.isfinite(ref).all()
    moved_ref, moved_ours = np.mean(np.abs(ref - img)), np.mean(np.abs(ours - img))
    assert moved_ref > 0.005
    assert 0.5 < moved_ref / moved_ours < 2.0


def test_bench_trials_threads_change_no_pixel(capsys) -> None:
    """The trials harness end to end at small sizes; one thread gives the very same dream as all
    cores (op determinism), so its pixel difference must read 0.00."""
    from pipeline.trials import bench_trials

    table = bench_trials(["threads 1 intra"], steps=1, small=True)
    rows = {line[:34].strip(): line for line in table.splitlines()}
    assert "baseline (the engine)" in rows
    row = rows["threads 1 intra, 1 inter"]
    assert "failed" not in row, row
    numbers = row[34:].split()
    grad_diff, pixels = numbers[4], numbers[5]
    assert grad_diff == "0.00%" and pixels == "0.00", row


def test_bench_images_and_dask_run(capsys) -> None:
    assert main(["bench", "images", "--count", "2", "--size", "64", "--workers", "1", "--", "--model",
                 "inception_v3", "--weights", "untrained", "--layers", "mixed2=1", "--set", "iterations=1",
                 "--set", "octaves=1"]) == 0
    assert "loop of `image`" in capsys.readouterr().out
    assert main(["bench", "dask", "--tasks", "5"]) == 0
    assert "ms/task" in capsys.readouterr().out


def test_bench_engine_ceiling_and_flop_count() -> None:
    from pipeline import bench

    bench.matmul_ceiling(n=128, repeats=1)
    import keras

    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    # 2 x out_h x out_w x cout x kh x kw x cin: the count is exact for a plain convolution
    assert bench.conv_flops(model, 10, 12) == 2 * 8 * 10 * 4 * 3 * 3 * 3
