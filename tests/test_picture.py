"""Tests about the picture: a trained network (vgg16_hed, bundled) must give a visible dream."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from tests.media import SAMPLE_IMAGE, SHARED_MEDIA, run_cli_measuring_peak

FRUITS = SHARED_MEDIA / "fruits.jpg" if (SHARED_MEDIA / "fruits.jpg").exists() else SAMPLE_IMAGE


def test_vgg16_hed_preset_dreams_visibly_on_fruits(tmp_path, capsys) -> None:
    out = tmp_path / "fruits-dream.png"
    code = main(["image", str(FRUITS), "-o", str(out), "--model", "vgg16_hed", "--preset", "hed", "-q"])
    assert code == 0, capsys.readouterr().err
    src = np.asarray(Image.open(FRUITS).convert("RGB"), dtype=np.float32) / 255
    dst = np.asarray(Image.open(out), dtype=np.float32) / 255
    assert dst.shape == src.shape
    change = np.abs(dst - src).mean()
    assert change >= 0.02, change
    # A dream adds structure, not a colour cast or noise: edges get stronger, the mean colour stays.
    assert np.abs(dst.mean(axis=(0, 1)) - src.mean(axis=(0, 1))).max() < 0.05

    def edges(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.mean(axis=2), axis=1)).mean())

    assert edges(dst) > 1.2 * edges(src)


def test_trained_dream_differs_from_untrained(tmp_path) -> None:
    """The trained weights are really used: the same settings untrained give another picture."""
    from dreamcore import DreamConfig, dream_image

    img = np.asarray(Image.open(FRUITS).convert("RGB"))[::2, ::2]
    cfg = DreamConfig(model="vgg16_hed", layers={"block4_conv3": 1.0}, iterations=3, octaves=1)
    trained = dream_image(img, cfg)
    untrained = dream_image(img, cfg.replace(weights="untrained"))
    assert np.abs(trained.astype(int) - untrained.astype(int)).mean() > 1


@pytest.mark.slow
def test_4k_image_peak_rss_under_2_gib(tmp_path) -> None:
    """3840x2160 through the tiles; peak RSS of the whole process measured by the kernel, under the
    README's 2 GiB."""
    big = tmp_path / "big.png"
    Image.open(FRUITS).convert("RGB").resize((3840, 2160), Image.BICUBIC).save(big)
    out = tmp_path / "big-dream.jpg"
    code, peak_kb = run_cli_measuring_peak(
        ["image", str(big), "-o", str(out), "-q", "--set", "iterations=2"], tmp_path / "peak"
    )
    assert code == 0
    print(f"3840x2160 peak RSS: {peak_kb / 1024 / 1024:.2f} GiB")
    assert peak_kb < 2 * 1024 * 1024
    assert Image.open(out).size == (3840, 2160)
