"""A DICOM export writes no identifier of its source into the log: highdicom's INFO lines name the
source's SOP Instance UID, and medviz holds its logger at WARNING."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviz_core.export.dicom import ExportMap, ExportSource, build_export
from medviz_core.imaging.load import load_image

SOURCE = "nih_00000002_000_dx.dcm"


def test_an_export_of_a_dicom_source_logs_none_of_its_uids(cxr_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    header = pydicom.dcmread(cxr_dir / SOURCE, stop_before_pixels=True)
    picture = load_image((cxr_dir / SOURCE).read_bytes())
    caplog.set_level(logging.DEBUG)
    result = build_export(ExportSource(picture, header), ExportMap(np.full((16, 16), 0.5, np.float32), (), "rollout", "token 1"))
    assert [o.kind for o in result.objects] == ["secondary_capture", "parametric_map", "presentation_state"]
    uids = {str(header.SOPInstanceUID), str(header.StudyInstanceUID), str(header.SeriesInstanceUID)}
    assert [r.getMessage() for r in caplog.records if any(uid in r.getMessage() for uid in uids)] == []
    assert [r.name for r in caplog.records if r.name.startswith("highdicom") and r.levelno < logging.WARNING] == []
    assert logging.getLogger("highdicom").getEffectiveLevel() == logging.WARNING
