"""Image bytes' format and pixel helpers that both loaders use (load.py for PNG/JPEG, dicom.py for DICOM).

Owns: recognising a container format by its leading bytes (`sniff_format`, `Format`, the
names shown in messages), the refusal of a declared size over the pixel limit before any
pixel is decoded (`check_pixels`), and turning decoded values into the (H, W, 3) uint8
picture by imaging/load.py's choices: gray to R == G == B (`gray_to_rgb`), min-max windowing
(`window_min_max`) and the rounded linear map to 0..255 a block of rows at a time
(`to_uint8`). A base module: it imports only errors.py, so the loaders can share it
without importing each other. Does not own decoding any format (imaging/load.py, imaging/dicom.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medviz_core.errors import ImageError

ROW_BLOCK = 512  # rows converted at a time, so float64 working copies stay small
EXPECTED = "a PNG, JPEG or DICOM image"

Format = Literal["png", "jpeg", "dicom", "pdf", "gif", "bmp", "tiff", "webp", "jpeg2000", "zip", "gzip"]

# Leading bytes -> format. "dicom" is found by its "DICM" marker at offset 128 instead.
MAGIC: tuple[tuple[bytes, Format], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"%PDF", "pdf"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
)
NAMES: dict[str, str] = {
    "png": "PNG",
    "jpeg": "JPEG",
    "pdf": "PDF document",
    "gif": "GIF image",
    "bmp": "BMP image",
    "tiff": "TIFF image",
    "webp": "WebP image",
    "jpeg2000": "JPEG 2000 image",
    "zip": "ZIP archive",
    "gzip": "gzip archive",
}


def sniff_format(data: bytes) -> Format:
    """The container format named by the leading bytes; ImageError when none is known."""
    if not data:
        raise ImageError(f"empty file: got 0 bytes; expected {EXPECTED}")
    if data[128:132] == b"DICM":
        return "dicom"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    raise ImageError(f"not {EXPECTED}: starts with {data[:8]!r}")


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a declared size over the limit, before any pixel is decoded."""
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(f"image is {width} x {height} = {pixels} pixels; the limit is {max_pixels}")


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) gray -> (H, W, 3) uint8 with R == G == B."""
    return np.ascontiguousarray(np.repeat(gray.astype(np.uint8, copy=False)[:, :, None], 3, axis=2))


def window_min_max(values: np.ndarray) -> np.ndarray:
    """Any numeric array -> uint8: its lowest value -> 0, highest -> 255, rounded."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return to_uint8(values, low, high)


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(values - low) * 255 / (high - low), rounded and clipped, a block of rows at a time."""
    out = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, values.shape[0], ROW_BLOCK):
        scaled = (values[start:start + ROW_BLOCK].astype(np.float64) - low) * 255.0 / (high - low)
        out[start:start + ROW_BLOCK] = np.clip(np.rint(scaled), 0, 255)
    return out
