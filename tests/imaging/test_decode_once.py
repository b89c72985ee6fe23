"""Each decode reads a DICOM once, and a header checked at admission is not read again (issue 24 item 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medviz_core.imaging.load import image_header, load_image

DICOM = "nih_00000002_000_dx.dcm"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every pydicom.dcmread call from here on, as "header" or "full" (the real function still reads)."""
    calls: list[str] = []
    real = pydicom.dcmread

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("header" if kwargs.get("stop_before_pixels") else "full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counted)
    yield calls


def test_decoding_a_dicom_reads_it_once_and_still_checks_its_header_first(cxr_dir: Path, reads: list[str]) -> None:
    data = (cxr_dir / DICOM).read_bytes()
    load_image(data)
    assert reads == ["full"]


def test_a_dicom_checked_at_admission_is_read_once_for_its_header_and_once_to_decode(
        cxr_dir: Path, reads: list[str]) -> None:
    data = (cxr_dir / DICOM).read_bytes()
    header = image_header(data)
    load_image(data, checked=header)
    assert reads == ["header", "full"]


@pytest.mark.parametrize("name", [DICOM, "nih_00000001_000.png", "commons_haggstrom_normal_pa.jpg"])
def test_a_checked_header_gives_the_same_pixels_as_reading_it_again(cxr_dir: Path, name: str) -> None:
    data = (cxr_dir / name).read_bytes()
    assert np.array_equal(load_image(data, checked=image_header(data)), load_image(data))


def test_one_stream_of_a_dicom_reads_it_once_and_prepares_it_once(
        tiny_engine: Any, cxr_dir: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    prepared: list[str] = []
    real = tiny_engine.prepare_image

    def counted(image: Any) -> Any:
        prepared.append(type(image).__name__)
        return real(image)

    monkeypatch.setattr(tiny_engine, "prepare_image", counted)
    run = tiny_engine.stream((cxr_dir / DICOM).read_bytes(), max_new_tokens=1)
    run.close()
    assert (reads, prepared) == (["full"], ["bytes"])
