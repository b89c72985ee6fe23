"""`medviz serve | record | replay | watch` through the real CLI entry point."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from server.cli.main import main
from server.cli.watch import watch
from server.guard.log_redaction import RedactTokens
from tests.server.helpers import LiveServer, receive_all, recv, run, session_of, start_bytes


def test_record_writes_a_finished_recording_that_replay_prints(
    tmp_path: Path, cxr_dir: Path, capsys: pytest.CaptureFixture[str], tiny_engine: Any
) -> None:
    out = tmp_path / "first_look.medviz"
    image = str(cxr_dir / "nih_00000001_000.png")
    assert main(["record", image, "--out", str(out), "--model", "tiny", "--max-new-tokens", "3"]) == 0
    assert main(["replay", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    replay = lines[lines.index(next(line for line in lines if line.startswith("session "))):]
    session = replay[0].split()[1].rstrip(":")  # random, as the server's: never the file's name
    assert len(session) == 22 and session != "first_look"
    assert replay[0] == f"session {session}: model tiny, full report, methods " + ", ".join(frames_methods())
    assert [line.split()[0] for line in replay[1:4]] == ["0", "1", "2"]
    assert replay[4].startswith("[max_tokens: 3 tokens in ")


def frames_methods() -> tuple[str, ...]:
    from medviz_core.types import METHODS

    return METHODS


def test_record_never_overwrites_and_says_so(tmp_path: Path, cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken.medviz"
    out.write_bytes(b"")
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(out), "--model", "tiny"]) == 2
    assert capsys.readouterr().err == f"medviz: {str(out)!r} already exists; recordings are never overwritten\n"


def test_replay_of_a_cut_file_prints_its_whole_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.frames import make_fixtures

    built = make_fixtures.build()
    cut = tmp_path / "cut.medviz"
    cut.write_bytes(built["start"] + built["step"] + built["end"][:20])
    assert main(["replay", str(cut)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "   7     480.2 ms ' lung'                  right middle    image_mass 0.375"
    assert out[2] == "[cut: 1 steps, no end frame]"


def test_serve_refuses_a_public_bind_without_a_token(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.delenv("MEDVIZ_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", "tiny"]) == 2
    assert capsys.readouterr().err.startswith("medviz: refusing to listen on 0.0.0.0 without a token")


def test_watch_prints_the_tokens_of_a_live_session(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> tuple[str, str, list[bytes]]:
        async with connect(f"{live.ws}/ws/session") as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=5))
            first = await recv(owner)
            session_id = session_of(first)
            out, err = io.StringIO(), io.StringIO()
            watching = asyncio.to_thread(watch, f"{live.ws}/ws/watch/{session_id}", out, err)
            _, rest = await asyncio.gather(watching, receive_all(owner))
            return out.getvalue(), err.getvalue(), [first, *rest]

    printed, notes, data = run(scenario())
    steps = [f for f in map(frames.decode, data) if isinstance(f, frames.StepFrame)]
    assert printed == "".join(s.text for s in steps) + "\n"
    assert notes.splitlines()[-1].startswith("[max_tokens: 5 tokens in ")


def test_watch_of_an_unknown_session_is_one_clear_error(live: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", f"{live.ws}/ws/watch/nope"]) == 2
    assert capsys.readouterr().err == "medviz: not_found: session 'nope' does not exist or has expired\n"


def test_logged_request_paths_never_show_the_token() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", "/ws/watch/abc?token=s3cret&x=1"), None)
    RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /ws/watch/abc?token=***&x=1" [accepted]'


def test_record_and_replay_handle_a_labelled_study_of_two_images(
    tmp_path: Path, cxr_dir: Path, capsys: pytest.CaptureFixture[str], tiny_engine: Any
) -> None:
    out = tmp_path / "study.medviz"
    images = [str(cxr_dir / "nih_00000001_000.png"), str(cxr_dir / "nih_00027426_000_512.png")]
    assert main(["record", *images, "--labels", "PA,lateral", "--out", str(out), "--model", "tiny",
                 "--max-new-tokens", "2"]) == 0
    assert main(["replay", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("session ")))
    assert lines[at + 1] == "images: PA 1024x1024, lateral 512x512"
    assert [line.split()[0] for line in lines[at + 2 : at + 4]] == ["0", "1"]
    assert all(" PA:" in line and " lateral:" in line for line in lines[at + 2 : at + 4])
    assert lines[at + 4].startswith("[max_tokens: 2 tokens in ")


def test_record_refuses_more_labels_than_images(tmp_path: Path, cxr_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--labels", "PA,lateral", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "medviz: --labels names 2 images; the study has 1\n"
    assert not out.exists()


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"


def test_a_version_1_recording_replays_in_the_cli_with_its_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    from medviz_core.recording.file import read_recording

    recorded = read_recording(FIXTURES / "v1_study.medviz")
    assert main(["replay", str(FIXTURES / "v1_study.medviz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "images: PA 96x96, lateral 96x96"
    steps = [line for line in lines if line[:4].strip().isdigit()]
    assert [line.split()[0] for line in steps] == [str(i) for i in range(len(recorded.steps))]
    for line, step in zip(steps, recorded.steps):
        assert repr(step.frame.text) in line  # type: ignore[union-attr]
        assert f"image_mass {step.frame.image_mass:.3f}" in line  # type: ignore[union-attr]


def test_export_writes_a_tokens_dicom_objects_and_says_the_png_source_has_no_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert main(["export", str(FIXTURES / "v1_single.medviz"), "--token", "1:2", "--method", "rollout",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    files = sorted(out.iterdir())
    assert len(files) == 1 and printed[0] == f"secondary_capture: {files[0]}"
    assert any(line.startswith("note: the source was PNG/JPEG: this export has no patient identity") for line in printed)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--token", "9"], "medviz: tokens 9..9 are not all in this recording: it has tokens 0..3\n"),
    (["--token", "a"], "medviz: --token must be I or A:B with integers (A:B includes both); got 'a'\n"),
    (["--token", "0", "--method", "magic"],
     "medviz: method 'magic' is not in this recording; it has raw, layer_weighted, head_importance, flow, rollout, "
     "consensus\n"),
])
def test_a_bad_export_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     arguments: list[str], message: str) -> None:
    out = tmp_path / "export"
    assert main(["export", str(FIXTURES / "v1_single.medviz"), *arguments, "--out", str(out)]) == 2
    assert capsys.readouterr().err == message
    assert not out.exists()


def test_an_export_of_a_file_that_is_not_a_recording_is_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.medviz"
    junk.write_bytes(b"this is not msgpack at all")
    assert main(["export", str(junk), "--token", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"medviz: {str(junk)!r} is not a medviz recording: it holds no whole frame\n"
    assert not (tmp_path / "out").exists()


def test_an_export_of_a_dicom_recording_passes_the_dicom_validators(tmp_path: Path, cxr_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    import subprocess

    recording = tmp_path / "dicom_session.medviz"
    assert main(["record", str(cxr_dir / "nih_00000002_000_dx.dcm"), "--out", str(recording), "--model", "tiny",
                 "--max-new-tokens", "2"]) == 0
    out = tmp_path / "export"
    assert main(["export", str(recording), "--token", "0", "--out", str(out)]) == 0
    files = sorted(out.iterdir())
    assert sorted(f.name.rsplit("_", 2)[-2] for f in files) == ["map", "outlines", "overlay", "regions"]
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; ./dev test installs it)")
    for path in files:
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors)
