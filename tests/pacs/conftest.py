"""The names tests/pacs/fixtures.py defines, for modules that import them from here (PacsStudy, dicom_copy; the
fixtures themselves are registered once for the whole run by tests/conftest.py and need no import)."""

from tests.pacs.fixtures import (  # noqa: F401  (re-exported)
    PacsStudy,
    dicom_copy,
    orthanc,
    pacs,
    pacs_config,
    sample_dicom,
    stored_study,
)
