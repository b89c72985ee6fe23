"""What an image file declares in its header, read before any pixel is decoded, and what decoding it costs.

Owns: `ImageHeader` (width, height, channels and bytes per sample as the file declares
them) and `read_header` for PNG (IHDR), JPEG (the SOFn frame header) and DICOM (Rows,
Columns, SamplesPerPixel, BitsAllocated; `dicom_dataset_header` for a dataset already
read); `decoded_bytes` (width x height x channels x bytes per sample: what the decoder
produces), `work_bytes` (a bound on the memory `imaging.load_image` needs for it at its
peak) and `check_jpeg_scan` (a JPEG must carry at least one bit of scan data per 8 x 8
block its header declares, or libjpeg fills the rest with grey). Does not own decoding
(imaging/load.py) or any server budget (server/guard/image_budget.py).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from medviz_core.errors import ImageError

PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
# JPEG frame headers: baseline, extended, progressive, lossless; Huffman (C0-C3, C5-C7) or arithmetic (C9-CF).
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
JPEG_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
JPEG_SOS = 0xDA
# Peak bytes per pixel that load_image holds besides the decoder's own samples: Pillow's
# 4-byte pixel store, the array taken from it, 16-bit working copies, the 3-byte RGB result.
WORK_BYTES_PER_PIXEL = 14


@dataclass(frozen=True)
class ImageHeader:
    """An image's size and sample layout as its header declares them."""

    kind: str  # "png" | "jpeg" | "dicom"
    width: int
    height: int
    channels: int
    bytes_per_sample: int
    scan_offset: int = 0  # JPEG: where the first scan starts (0 for other kinds)
    arithmetic: bool = False  # JPEG: arithmetic-coded (can use under one bit per block)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """What the decoder produces: width x height x channels x bytes per sample."""
        return self.pixels * self.channels * self.bytes_per_sample

    @property
    def work_bytes(self) -> int:
        """A bound on load_image's peak memory for this file (the decoded samples and the conversions)."""
        return self.decoded_bytes + self.pixels * WORK_BYTES_PER_PIXEL

    def describe(self) -> str:
        return (f"{self.width} x {self.height} x {self.channels} channel(s) x {self.bytes_per_sample} byte(s) "
                f"= {self.decoded_bytes} bytes")


def read_header(data: bytes, kind: str) -> ImageHeader:
    """The header of a PNG, JPEG or DICOM file (`kind` from pixels.sniff_format); ImageError if unreadable."""
    if kind == "png":
        return _png_header(data)
    if kind == "jpeg":
        return _jpeg_header(data)
    if kind == "dicom":
        return _dicom_header(data)
    raise ImageError(f"no header reader for {kind!r}; expected png, jpeg or dicom")


def check_jpeg_scan(data: bytes, header: ImageHeader) -> None:
    """Refuse a JPEG whose scan data is too short for the blocks its header declares.

    A Huffman-coded scan spends at least one bit on the DC value of every 8 x 8 block of
    the first component, so a whole picture needs at least blocks / 8 bytes after its
    first SOS marker; arithmetic coding can spend less, so for it the bound is 64 times lower.
    """
    blocks = -(-header.width // 8) * -(-header.height // 8)
    needed = -(-blocks // (8 * 64 if header.arithmetic else 8))
    held = len(data) - header.scan_offset
    if held < needed:
        raise ImageError(f"the JPEG header declares {header.width} x {header.height} pixels but holds {held} bytes "
                         f"of image data; a whole picture of that size needs at least {needed}")


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 29 or data[12:16] != b"IHDR":
        raise ImageError("the PNG file is truncated or damaged")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in PNG_CHANNELS:
        raise ImageError(f"the PNG colour type {colour} is not valid; expected one of 0, 2, 3, 4, 6")
    return ImageHeader("png", width, height, PNG_CHANNELS[colour], 2 if depth == 16 else 1)


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the marker segments from SOI to the first SOS; the SOFn before it gives the size."""
    at, frame = 2, None
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ImageError("the JPEG file is truncated or damaged")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in JPEG_SOF and at + 10 <= len(data):
            precision, height, width, components = struct.unpack(">BHHB", data[at + 4:at + 10])
            frame = (marker, precision, height, width, components)
        if marker == JPEG_SOS:
            if frame is None:
                break
            kind, precision, height, width, components = frame
            if not height or not width or not components:
                raise ImageError(f"the JPEG header declares {width} x {height} pixels and {components} components")
            return ImageHeader("jpeg", width, height, components, 2 if precision > 8 else 1,
                               scan_offset=at + 2 + length, arithmetic=kind in JPEG_ARITHMETIC)
        at += 2 + length
    raise ImageError("the JPEG file is truncated or damaged")  # no frame header before a scan


def _dicom_header(data: bytes) -> ImageHeader:
    import pydicom

    try:
        dataset: Any = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    except Exception as error:  # any pydicom failure is a bad file
        raise ImageError("the DICOM file is truncated or damaged") from error
    return dicom_dataset_header(dataset)


def dicom_dataset_header(dataset: Any) -> ImageHeader:
    """The header of a DICOM dataset already read (imaging.load_image reads a DICOM once, in full, and checks
    this before any pixel is decoded); ImageError if its size tags are missing or not numbers."""
    try:
        rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
        samples = int(dataset.get("SamplesPerPixel") or 1)
        bits = int(dataset.get("BitsAllocated") or 8)
    except Exception as error:  # any pydicom failure, or a tag that is not a number, is a bad file
        raise ImageError("the DICOM file is truncated or damaged") from error
    if not rows or not columns:
        raise ImageError(f"the DICOM file has no image size: Rows={rows}, Columns={columns}")
    # pydicom's pixel arrays are float64 for float pixel data, and at least a byte per sample
    return ImageHeader("dicom", columns, rows, samples, max(1, -(-bits // 8)))
