"""Reading and writing still images.

Reading: Pillow identifies the file from its header (so absurd dimensions are refused before a
single pixel is decoded), applies the EXIF orientation, takes the first frame of an animation and
converts CMYK and palettes; 16-bit files are decoded by OpenCV, which keeps all 16 bits where
Pillow would cut RGB to 8. Formats Pillow does not know go to OpenCV. Writing: by the output's
extension, through OpenCV's encoders, under a temporary name renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import InputError, Unwritable, UsageError, write_fault
from pipeline.io.fsutil import check_input_file, check_output_file, write_atomic

# A ceiling on what is decoded: 100 megapixels (e.g. 12000 x 8000) is a 1.2 GB float image, and
# more than that is a decompression bomb or a mistake, not a dream anyone waits for on a CPU.
MAX_PIXELS = 100_000_000
# The same ceiling for the formats only OpenCV reads: it checks a header's size against this before
# decoding (it reads the variable once, at its first decode, so it is set when this module loads).
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)

WRITE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
_KEEPS_16BIT = {".png", ".tif", ".tiff"}
_KEEPS_ALPHA = {".png", ".tif", ".tiff", ".webp"}

# EXIF orientation -> (rotations by 90 degrees counter-clockwise, then flip left-right)
_ORIENT = {2: (0, True), 3: (2, False), 4: (2, True), 5: (3, True), 6: (3, False), 7: (1, True), 8: (1, False)}


@dataclass
class Picture:
    """Decoded pixels: uint8 or uint16, (H, W), (H, W, 3) RGB or (H, W, 4) RGBA."""

    pixels: np.ndarray
    source_format: str


def read_image(path: str | os.PathLike[str]) -> Picture:
    p = Path(path)
    check_input_file(p, "not an image (use `dreamreel images` for folders)")

    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we check dimensions ourselves, with our own message
    try:
        im: Image.Image = Image.open(p)
    except UnidentifiedImageError:
        return _read_with_opencv(p)
    except OSError as exc:
        raise InputError(f"{p}: cannot read image header ({exc})") from None
    with im:
        w, h = im.size
        _check_dimensions(p, w, h)
        fmt = im.format or "image"
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # an animation: its first frame
            if _is_16bit(im):
                orientation = im.getexif().get(0x0112, 1)
                return Picture(_apply_orientation(_decode_16bit(p), orientation), fmt)
            im = ImageOps.exif_transpose(im)
            im.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{p}: truncated or corrupt {fmt} data ({exc})") from None
        return Picture(_to_array(im), fmt)


def _check_dimensions(p: Path, w: int, h: int) -> None:
    if w < 1 or h < 1:
        raise InputError(f"{p}: the header claims {w}x{h} pixels")
    if w * h > MAX_PIXELS:
        raise InputError(
            f"{p}: {w}x{h} pixels is larger than the {MAX_PIXELS // 1_000_000} megapixel limit "
            "(a decompression bomb or a mistake; scale it down first)"
        )


def _is_16bit(im: object) -> bool:
    mode = getattr(im, "mode", "")
    if mode.startswith("I;16") or mode == "I":
        return True
    tile = getattr(im, "tile", None) or []
    return bool(tile) and "16" in str(tile[0].args if hasattr(tile[0], "args") else tile[0])


def _decode_16bit(p: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(p, dtype=np.uint8)  # not cv2.imread: any path, unicode included
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{p}: truncated or corrupt 16-bit image data")
    return _bgr_to_rgb(arr)


# How the files OpenCV decodes begin (its decoders tell a format by these bytes, as here). Pillow
# reads most of them first; a file Pillow did not know and that begins with none of these is no
# image, and is refused from its first bytes: never read whole (a 1 GB file in a photo folder).
_OPENCV_SIGNATURES = (
    b"BM",
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"PF\n",
    b"Pf\n",
    b"\x59\xa6\x6a\x95",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\xff\x4f\xff\x51",
    b"\x76\x2f\x31\x01",
    b"#?RADIANCE",
    b"#?RGBE",
    b"GIF87a",
    b"GIF89a",
    b"\xff\x0a",
    b"\x00\x00\x00\x0cJXL ",
)


def _opencv_may_read(head: bytes) -> bool:
    if head.startswith(_OPENCV_SIGNATURES):
        return True
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"1234567":  # PBM/PGM/PPM/PAM
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP" or head[4:12] in (b"ftypavif", b"ftypavis")


def _read_with_opencv(p: Path) -> Picture:
    import cv2

    with open(p, "rb") as f:
        head = f.read(16)
    if not _opencv_may_read(head):
        raise InputError(f"{p}: not an image (no known image format)")
    data = np.fromfile(p, dtype=np.uint8)
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):  # OpenCV checked the header's size before decoding
            raise InputError(
                f"{p}: its header claims more than the {MAX_PIXELS // 1_000_000} megapixel limit "
                "(a decompression bomb or a mistake; scale it down first)"
            ) from None
        raise InputError(f"{p}: cannot decode ({str(exc).strip().splitlines()[-1]})") from None
    if arr is None:
        raise InputError(f"{p}: not an image (no known image format)")
    _check_dimensions(p, arr.shape[1], arr.shape[0])
    if arr.dtype not in (np.uint8, np.uint16):
        # float formats (EXR, HDR): tone-map by clipping into [0, 1], as 16-bit
        arr = np.round(np.clip(arr.astype(np.float32), 0, 1) * 65535).astype(np.uint16)
    return Picture(_bgr_to_rgb(arr), "image")


def _bgr_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr[..., ::-1])
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., [2, 1, 0, 3]])
    return arr


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    rot, flip = _ORIENT.get(int(orientation), (0, False))
    if flip:
        arr = arr[:, ::-1]
    if rot:
        arr = np.rot90(arr, rot)
    return np.ascontiguousarray(arr)


def _to_array(im: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        return np.round(np.clip(arr, 0, 1) * 65535).astype(np.uint16)
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    return np.asarray(im).copy()


def rgb8(pixels: np.ndarray) -> np.ndarray:
    """A decoded picture as 8-bit RGB (H, W, 3): gray repeated, alpha dropped, 16 bits scaled down
    (for what is made of 8-bit frames: a film, a contact sheet)."""
    a = pixels if pixels.ndim == 3 else pixels[..., None]
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float64) / np.iinfo(a.dtype).max, 0, 1) * 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def check_output_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse, before any work, an output we could not or should not write."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise UsageError(
            f"{p}: cannot tell the image format from {ext or 'no extension'!r}; "
            f"use one of {', '.join(sorted(WRITE_EXTENSIONS))}"
        )
    return check_output_file(p, overwrite)


def encode_image(pixels: np.ndarray, ext: str) -> bytes:
    """Encode (H, W[, 3|4]) RGB(A) uint8/uint16 pixels in the format the extension names."""
    import cv2

    ext = ext.lower()
    arr = pixels
    if arr.ndim == 3 and arr.shape[2] == 4 and ext not in _KEEPS_ALPHA:
        arr = arr[..., :3]
    if arr.dtype == np.uint16 and ext not in _KEEPS_16BIT:
        arr = np.round(arr / 257.0).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 95]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    if not ok:
        raise UsageError(f"OpenCV cannot encode {ext} images of shape {pixels.shape}")
    return buf.tobytes()


def write_image(path: str | os.PathLike[str], pixels: np.ndarray, overwrite: bool = True) -> None:
    """Write whole; without ``overwrite``, never over a file that is there, even one that appeared a
    moment ago (UsageError)."""
    p = Path(path)
    try:
        write_atomic(p, encode_image(pixels, p.suffix), overwrite=overwrite)
    except FileExistsError:
        raise UsageError(
            f"{p}: appeared while the image was dreamt, and is kept (pass --overwrite to replace it)"
        ) from None
    except OSError as exc:
        fault = write_fault(exc)
        if not fault:
            raise
        raise Unwritable(f"{p}: cannot write ({fault})") from None
