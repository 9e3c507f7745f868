"""Reading every kind of still image, refusing bad ones, and writing atomically."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError, UsageError
from pipeline.io import fsutil
from pipeline.io.imagefile import check_output_path, read_image, write_image
from tests.media import REPO, png_header_only, run_cli_measuring_peak, synthetic_image


@pytest.fixture()
def rgb() -> np.ndarray:
    return synthetic_image(40, 60)


def test_rgb_jpeg_and_png(tmp_path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.pixels.dtype == np.uint8 and np.array_equal(pic.pixels, rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert read_image(tmp_path / "a.jpg").pixels.shape == (40, 60, 3)


def test_gray_rgba_palette_and_cmyk(tmp_path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).convert("L").save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").pixels.shape == (40, 60)
    rgba = np.dstack([rgb, np.full((40, 60), 77, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png").pixels, rgba)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    assert read_image(tmp_path / "p.gif").pixels.shape == (40, 60, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    pic = read_image(tmp_path / "c.jpg")
    assert pic.pixels.shape == (40, 60, 3) and abs(pic.pixels.astype(int).mean() - rgb.mean()) < 12


def test_16bit_color_and_gray_keep_16_bits(tmp_path: Path) -> None:
    rgb16 = synthetic_image(30, 50).astype(np.uint16) * 257 + 3
    cv2.imwrite(str(tmp_path / "c.png"), rgb16[..., ::-1])
    pic = read_image(tmp_path / "c.png")
    assert pic.pixels.dtype == np.uint16 and np.array_equal(pic.pixels, rgb16)
    cv2.imwrite(str(tmp_path / "g.tif"), rgb16[..., 0])
    pic = read_image(tmp_path / "g.tif")
    assert pic.pixels.dtype == np.uint16 and np.array_equal(pic.pixels, rgb16[..., 0])


def test_exif_orientation_is_applied(tmp_path: Path, rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=100)
    Image.fromarray(rgb).save(tmp_path / "plain.jpg", quality=100)
    pic = read_image(tmp_path / "r.jpg")
    assert pic.pixels.shape == (60, 40, 3)
    assert np.array_equal(pic.pixels, np.rot90(read_image(tmp_path / "plain.jpg").pixels, -1))


def test_exif_orientation_on_16bit_png(tmp_path: Path) -> None:
    rgb16 = synthetic_image(30, 50).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "c.png"), rgb16[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    # Pillow cannot write 16-bit RGB, so add an eXIf chunk to OpenCV's file by hand.
    data = (tmp_path / "c.png").read_bytes()
    payload = exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    idat = data.index(b"IDAT") - 4
    (tmp_path / "r.png").write_bytes(data[:idat] + chunk + data[idat:])
    pic = read_image(tmp_path / "r.png")
    assert pic.pixels.dtype == np.uint16 and np.array_equal(pic.pixels, np.rot90(rgb16, 1))


def test_animation_gives_its_first_frame(tmp_path: Path, rgb: np.ndarray) -> None:
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    pic = read_image(tmp_path / "a.gif")
    assert abs(pic.pixels.astype(int).mean() - rgb.mean()) < 8


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_text("hello, not an image"), "not an image"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(png_header_only(60000, 60000)), "60000x60000"),
        (lambda p: p.write_bytes((REPO / "samples" / "fruits.jpg").read_bytes()[:20000]), "truncated"),
    ],
    ids=["text", "empty", "bomb", "truncated"],
)
def test_bad_inputs_raise_input_error(tmp_path: Path, make, words: str) -> None:
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(InputError, match=words) as err:
        read_image(p)
    assert "\n" not in str(err.value)


def test_truncated_png(tmp_path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(synthetic_image(300, 300)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "t.png")


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_unreadable_file(tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(rgb).save(tmp_path / "a.png")
    os.chmod(tmp_path / "a.png", 0)
    if os.geteuid() == 0:  # root reads whatever the mode says: make the open fail as it would for a user

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(fsutil, "open", denied, raising=False)
    with pytest.raises(InputError, match="permission denied"):
        read_image(tmp_path / "a.png")


def test_bomb_header_is_refused_in_little_memory(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(60000, 60000))
    code, peak_kb = run_cli_measuring_peak(["image", str(p), "-o", str(tmp_path / "o.png")], tmp_path / "peak")
    assert code == 2 and not (tmp_path / "o.png").exists()
    assert peak_kb < 300 * 1024  # decoded, 60000x60000x3 would be 10 GB


def test_write_keeps_format_alpha_and_depth(tmp_path: Path, rgb: np.ndarray) -> None:
    rgba16 = np.dstack([rgb, np.full((40, 60), 200, np.uint8)]).astype(np.uint16) * 257
    write_image(tmp_path / "o.png", rgba16)
    assert np.array_equal(read_image(tmp_path / "o.png").pixels, rgba16)
    write_image(tmp_path / "o.jpg", rgba16)  # JPEG: 8-bit RGB
    back = read_image(tmp_path / "o.jpg").pixels
    assert back.dtype == np.uint8 and back.shape == (40, 60, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_check_output_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot tell the image format"):
        check_output_path(tmp_path / "o.xyz", False)
    (tmp_path / "o.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="--overwrite"):
        check_output_path(tmp_path / "o.png", False)
    assert check_output_path(tmp_path / "o.png", True)
    with pytest.raises(UsageError, match="does not exist"):
        check_output_path(tmp_path / "no" / "o.png", False)


def test_a_bomb_in_a_format_only_opencv_reads_is_refused_from_its_header(tmp_path: Path) -> None:
    """Radiance HDR (Pillow does not read it): a header claiming 60000x60000 pixels is refused by
    its size, in one line, without the memory a decode would take (14 GB of float pixels)."""
    bomb = tmp_path / "bomb.hdr"
    bomb.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 60000 +X 60000\n" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match="header claims more than the 100 megapixel limit"):
        read_image(bomb)
    code, peak_kb = run_cli_measuring_peak(["image", str(bomb), "-o", str(tmp_path / "o.png")], tmp_path / "peak")
    assert code == 2 and peak_kb < 400 * 1024


def test_temp_folders_of_gone_processes_are_removed_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        host = fsutil._host_tag()
        dead = tmp_path / f"dreamreel-stream-{host}-{gone.pid}-abc"
        live = tmp_path / f"dreamreel-chunk-{host}-{alive.pid}-abc"
        other_host = tmp_path / f"dreamreel-stream-elsewhere{host}-{gone.pid}-abc"
        not_ours = tmp_path / f"other-stream-{host}-{gone.pid}-abc"
        for d in (dead, live, other_host, not_ours):
            d.mkdir()
            (d / "part.mp4").write_bytes(b"x")
        with fsutil.temp_dir("dreamreel-zoom") as mine:
            assert mine.name.startswith(f"dreamreel-zoom-{host}-{os.getpid()}-") and mine.is_dir()
            assert not dead.exists()
            assert live.exists() and other_host.exists() and not_ours.exists()
        assert not mine.exists()
    finally:
        alive.kill()
        alive.wait()
