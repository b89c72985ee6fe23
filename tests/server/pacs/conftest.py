"""The PACS fixtures of tests/pacs (one real Orthanc per test session, test studies stored into it) for the server's
PACS routes, and a server on the tiny model whose settings name that Orthanc and a PACS key (OPERATOR: its header,
as the operator's link gives it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.guard.security import PACS_HEADER
from server.pacs.config import PacsConfig
from tests.pacs.conftest import orthanc, pacs_config, sample_dicom, stored_study  # noqa: F401  (fixtures)
from tests.server.helpers import LiveServer

PACS_KEY = "pacs-key-of-the-tests-0123"
OPERATOR = {PACS_HEADER: PACS_KEY}  # what the operator's link gives every request (as a cookie in the browser)


@pytest.fixture
def pacs_server(make_server: Callable[..., LiveServer], pacs_config: PacsConfig) -> Callable[..., LiveServer]:  # noqa: F811
    """A server on the tiny model with the test Orthanc as its PACS and PACS_KEY (settings overrides as keywords)."""

    def start(**overrides: Any) -> LiveServer:
        return make_server(**{"pacs": pacs_config, "pacs_key": PACS_KEY, **overrides})

    return start
