"""Media the tests make for themselves (no ../shared needed)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE_IMAGE = REPO / "samples" / "fruits.jpg"
SHARED_MEDIA = REPO.parent / "shared" / "media"


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture with smooth gradients, discs and a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0.5 * np.sin(x / 9.0 + y / 13.0)], axis=2)
    for _ in range(6):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.1, 0.3) * min(height, width)
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        img[mask] = rng.uniform(0, 1, size=3)
    img += rng.normal(0, 0.03, size=img.shape)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and whose data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


_PEAK_SCRIPT = """
import sys
from pipeline.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open('/proc/self/status') as f:
    peak = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
with open(sys.argv[1], 'w') as f:
    f.write(peak)
sys.exit(code)
"""


def run_cli_measuring_peak(argv: list[str], report: Path) -> tuple[int, int]:
    """Run `dreamreel ARGV` in a fresh Python process; return (exit code, peak RSS in KiB).

    VmHWM, not getrusage: ru_maxrss survives fork and exec, so a child of a big pytest process
    would report its parent's size.
    """
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(report), *argv], capture_output=True, text=True)
    return proc.returncode, int(report.read_text())


def image_folder(folder: Path, count: int, height: int = 120, width: int = 160, name: str = "{i}.png") -> Path:
    """A folder of ``count`` different synthetic PNGs."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(synthetic_image(height, width, seed=i)).save(folder / name.format(i=i))
    return folder


def mean_change(dreamt: Path, source: Path) -> float:
    """Mean |dreamt - source| of two image files of one size, on 0..255: how much was dreamt."""
    from PIL import Image

    a = np.asarray(Image.open(dreamt).convert("RGB"), dtype=np.float32)
    b = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32)
    return float(np.abs(a - b).mean())
