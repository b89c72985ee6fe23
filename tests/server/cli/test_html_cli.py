"""`medviz html REC --out FILE.html`: one self-contained HTML file holding the player's code and exactly the
frames a replay viewer gets (never the recording-only source frame), within its size bound."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgpack
import pytest

from medviz_core.recording.file import read_recording
from server.cli.main import main
from server.teaching.offline_player import RECORDING_ELEMENT, replay_frames

DICOM = "nih_00000002_000_dx.dcm"


class Sources(HTMLParser):
    """Every tag's src/href, the import map and the embedded recording of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.tags: list[str] = []
        self.scripts: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        self.sources += [value for name, value in attrs if name in ("src", "href") and value is not None]
        if tag == "script":
            self._in = found.get("id") or found.get("type") or "module"

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self.scripts[self._in] = self.scripts.get(self._in, "") + data


@pytest.fixture(scope="module")
def dicom_recording(tmp_path_factory: pytest.TempPathFactory, cxr_dir: Path) -> Path:
    """A tiny-model recording of a DICOM: it holds the recording-only source frame (the DICOM headers)."""
    out = tmp_path_factory.mktemp("html") / "dicom_look.medviz"
    assert main(["record", str(cxr_dir / DICOM), "--out", str(out), "--model", "tiny", "--max-new-tokens", "3"]) == 0
    assert read_recording(out).source is not None
    return out


def written(recording: Path, out: Path) -> Sources:
    assert main(["html", str(recording), "--out", str(out)]) == 0
    page = Sources()
    page.feed(out.read_text(encoding="utf-8"))
    return page


def test_the_file_is_one_html_page_with_no_outside_script_style_or_link(dicom_recording: Path, tmp_path: Path) -> None:
    page = written(dicom_recording, tmp_path / "player.html")
    assert page.tags.count("html") == 1
    assert [s for s in page.sources if not s.startswith("data:")] == []
    modules: dict[str, str] = json.loads(page.scripts["importmap"])["imports"]
    assert "medviz/js/app.js" in modules and "medviz/js/offline/boot.js" in modules
    assert all(url.startswith("data:text/javascript;base64,") for url in modules.values())
    sources = [base64.b64decode(url.split(",", 1)[1]).decode() for url in modules.values()]
    assert [s for s in sources if re.search(r"""from\s*["']\.""", s)] == []  # every import names a mapped module


def test_the_file_holds_exactly_the_frames_a_replay_viewer_gets_and_never_the_source_frame(
    dicom_recording: Path, tmp_path: Path
) -> None:
    page = written(dicom_recording, tmp_path / "player.html")
    embedded = base64.b64decode(page.scripts[RECORDING_ELEMENT])
    recording = read_recording(dicom_recording)
    assert embedded == b"".join(replay_frames(recording))
    assert [frame["type"] for frame in _frames(embedded)] == ["start", "step", "step", "step", "end"]
    source = next(f.data for f in recording.frames if f.frame.type == "source")
    assert source not in embedded


def test_the_page_names_the_analyses_that_need_the_model_from_the_registry(dicom_recording: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "player.html"
    written(dicom_recording, out)
    assert 'data-model-kinds="gradient,heads,faithfulness">' in out.read_text(encoding="utf-8")


def _frames(data: bytes) -> list[dict[str, Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


def test_the_file_is_at_most_the_recordings_size_times_1_4_plus_1_mb(dicom_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "player.html"
    written(dicom_recording, out)
    assert out.stat().st_size <= dicom_recording.stat().st_size * 1.4 + 1_000_000


def test_an_existing_file_is_never_overwritten_and_says_so(dicom_recording: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "player.html"
    out.write_text("mine")
    assert main(["html", str(dicom_recording), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"medviz: {out} already exists; choose another --out (an offline player is "
                                       "never overwritten)\n")
    assert out.read_text() == "mine"


def test_a_missing_recording_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["html", str(tmp_path / "gone.medviz"), "--out", str(tmp_path / "p.html")]) == 2
    assert capsys.readouterr().err == "medviz: recording 'gone' does not exist\n"
    assert not (tmp_path / "p.html").exists()
