"""The benchmarks run (tiny sizes; their figures are read by people, never asserted here)."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import main
from tests.clips import make_clip
from tests.test_video import FAST as VIDEO_FAST


def test_bench_video_reports_every_mode(tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=0.3, audio=False)
    engine = [a for a in VIDEO_FAST if a != "-q"]
    assert main(["bench", "video", str(clip), "--frames", "4", *engine]) == 0
    out = capsys.readouterr().out
    for mode in ("none", "blend", "flow"):
        assert any(line.startswith(mode) for line in out.splitlines())


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
