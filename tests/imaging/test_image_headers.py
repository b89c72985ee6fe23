"""imaging.headers: an image's declared size and samples, read without decoding, and what decoding costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.errors import ImageError
from medviz_core.imaging.headers import WORK_BYTES_PER_PIXEL, ImageHeader, read_header
from medviz_core.imaging.load import image_header


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nih_00000001_000.png", ImageHeader("png", 1024, 1024, 1, 1)),
        ("nih_00000004_000_rgba.png", ImageHeader("png", 1024, 1024, 4, 1)),
        ("nih_00000002_000_dx.dcm", ImageHeader("dicom", 1024, 1024, 1, 1)),
    ],
)
def test_the_header_gives_size_channels_and_bytes_per_sample(cxr_dir: Path, name: str, expected: ImageHeader) -> None:
    assert image_header((cxr_dir / name).read_bytes()) == expected


def test_a_jpeg_header_also_says_where_its_first_scan_starts(cxr_dir: Path) -> None:
    header = image_header((cxr_dir / "commons_haggstrom_normal_pa.jpg").read_bytes())
    assert (header.kind, header.width, header.height, header.channels, header.bytes_per_sample) == (
        "jpeg", 786, 899, 1, 1)
    assert 0 < header.scan_offset < 2000 and not header.arithmetic


def test_decoded_bytes_count_channels_and_bit_depth_and_work_adds_the_conversions() -> None:
    header = ImageHeader("png", 7071, 7071, 4, 2)
    assert header.decoded_bytes == 7071 * 7071 * 8 == 399_992_328
    assert header.work_bytes == 399_992_328 + 7071 * 7071 * WORK_BYTES_PER_PIXEL
    assert header.describe() == "7071 x 7071 x 4 channel(s) x 2 byte(s) = 399992328 bytes"


def test_a_png_with_an_invalid_colour_type_is_refused() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes([0, 0, 0, 13]) + b"IHDR" + bytes([0, 0, 0, 2, 0, 0, 0, 2, 8, 5, 0, 0, 0]) + bytes(4)
    with pytest.raises(ImageError) as error:
        read_header(data, "png")
    assert str(error.value) == "the PNG colour type 5 is not valid; expected one of 0, 2, 3, 4, 6"
