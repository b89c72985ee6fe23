"""`medviz record` without and with `--keep-identity`, `--allow-burned-in`, and `medviz deidentify`: through the
real CLI entry point, a test DICOM that names its patient, and dciodvfy on what `medviz export` writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from medviz_core.analyses.compute import dicom_of, job_id, recording_source, replay_source
from medviz_core.recording.deidentify import holds_identity, identifying_results
from medviz_core.recording.file import index_recording, read_recording, recording_info, summary_path
from medviz_core.recording.summary import append_result, listing_info
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame
from server.cli.main import main
from tests.identified import IDENTITY, UIDS, header_of, identified_dicom, leaks

BURNED_IN = ("medviz: image 1 says BurnedInAnnotation (0028,0301) = YES: text drawn into its pixels may name the "
             "patient, and de-identifying the header cannot remove it; pass --allow-burned-in to record it anyway\n")


def record(image: Path, out: Path, *options: str) -> int:
    return main(["record", str(image), "--out", str(out), "--model", "tiny", "--max-new-tokens", "2", *options])


@pytest.fixture(scope="module")
def identified(cxr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dicom") / "identified.dcm"
    path.write_bytes(identified_dicom(cxr_dir))
    return path


def test_record_writes_no_identity_by_default_and_its_export_passes_dciodvfy_with_one_new_study(
        identified: Path, tmp_path: Path) -> None:
    out = tmp_path / "teaching.medviz"
    assert record(identified, out) == 0
    assert leaks(out.read_bytes()) == []
    assert main(["replay", str(out)]) == 0
    assert main(["export", str(out), "--token", "0", "--out", str(tmp_path / "export")]) == 0
    exported = sorted((tmp_path / "export").iterdir())
    recorded = read_recording(out).source
    assert recorded is not None and recorded.headers[0] is not None
    study = header_of(recorded.headers[0]).StudyInstanceUID
    assert [leaks(p.read_bytes()) for p in exported] == [[], [], [], []]
    assert {pydicom.dcmread(p).StudyInstanceUID for p in exported} == {study}
    assert study != UIDS["StudyInstanceUID"]
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; ./dev test installs it)")
    for path in exported:
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
        assert (path.name, errors) == (path.name, [])


def appended_export(path: Path) -> None:
    """Token 0's DICOM export appended to the recording, as a server appends an analysis result."""
    request = AnalyzeRequest("dicom", 0, method="consensus")
    result = dicom_of(recording_source(path.stem, path, read_recording(path)), request)
    frame = AnalysisFrame(job_id(request), "dicom", 0, "done", "", result)
    assert append_result(path, frame.job, frame.to_wire(), 1 << 30).appended


def test_keep_identity_keeps_it_and_deidentify_makes_a_copy_without_it(identified: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    archive, teaching = tmp_path / "archive.medviz", tmp_path / "teaching.medviz"
    assert record(identified, archive, "--keep-identity") == 0
    appended_export(archive)
    before = archive.read_bytes()
    assert set(leaks(before)) >= {IDENTITY["PatientName"], IDENTITY["PatientID"], UIDS["StudyInstanceUID"]}
    capsys.readouterr()
    assert main(["deidentify", str(archive), "--out", str(teaching)]) == 0
    assert capsys.readouterr().out == (f"medviz: wrote {teaching}: 5 frames, 1 DICOM header(s) de-identified; dropped "
                                       "1 recorded DICOM export(s), ask for them again from the copy\n")
    assert archive.read_bytes() == before  # the original untouched
    assert leaks(teaching.read_bytes()) == [] and leaks(summary_path(teaching).read_bytes()) == []
    copied, original = read_recording(teaching), read_recording(archive)
    assert [f.frame.type for f in copied.frames] == [f.frame.type for f in original.frames][:-1]
    assert [f.data for f in copied.steps] == [f.data for f in original.steps]
    assert listing_info(teaching) == recording_info(teaching)
    assert main(["replay", str(teaching)]) == 0


def test_deidentify_never_overwrites_and_says_so_in_one_line(identified: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    archive, existing = tmp_path / "archive.medviz", tmp_path / "existing.medviz"
    assert record(identified, archive, "--keep-identity") == 0
    existing.write_bytes(b"keep me")
    capsys.readouterr()
    assert main(["deidentify", str(archive), "--out", str(existing)]) == 2
    assert capsys.readouterr().err == (f"medviz: {str(existing)!r} already exists; a de-identified copy never "
                                       "overwrites a file\n")
    assert existing.read_bytes() == b"keep me"


def test_record_refuses_a_burned_in_annotation_in_one_line_unless_allowed_or_identity_is_kept(
        cxr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    burned = tmp_path / "burned.dcm"
    burned.write_bytes(identified_dicom(cxr_dir, BurnedInAnnotation="YES"))
    capsys.readouterr()
    assert record(burned, tmp_path / "refused.medviz") == 2
    assert capsys.readouterr().err == BURNED_IN
    assert not (tmp_path / "refused.medviz").exists()
    assert record(burned, tmp_path / "allowed.medviz", "--allow-burned-in") == 0
    assert leaks((tmp_path / "allowed.medviz").read_bytes()) == []
    assert record(burned, tmp_path / "archive.medviz", "--keep-identity") == 0


def test_serve_keeps_identity_only_when_told_by_its_flag_or_a_setting() -> None:
    from server.cli.commands import serve_settings
    from server.cli.main import build_parser

    def settings(*arguments: str) -> tuple[bool, bool]:
        found = serve_settings(build_parser().parse_args(["serve", *arguments]))
        return found.recordings_keep_identity, found.allow_burned_in

    assert settings() == (False, False)
    assert settings("--recordings-keep-identity") == (True, False)
    assert settings("--set", "recordings_keep_identity=true", "--set", "allow_burned_in=true") == (True, True)


def test_deidentify_refuses_a_burned_in_annotation_before_writing_unless_allowed(
        cxr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    burned, archive = tmp_path / "burned.dcm", tmp_path / "archive.medviz"
    burned.write_bytes(identified_dicom(cxr_dir, BurnedInAnnotation="YES"))
    assert record(burned, archive, "--keep-identity") == 0
    capsys.readouterr()
    assert main(["deidentify", str(archive), "--out", str(tmp_path / "refused.medviz")]) == 2
    assert capsys.readouterr().err == BURNED_IN
    assert not (tmp_path / "refused.medviz").exists()
    assert main(["deidentify", str(archive), "--out", str(tmp_path / "allowed.medviz"), "--allow-burned-in"]) == 0
    assert leaks((tmp_path / "allowed.medviz").read_bytes()) == []


def test_a_dicom_another_tool_marked_deidentified_still_holds_identity_until_medviz_deidentifies_it(
        cxr_dir: Path, tmp_path: Path) -> None:
    partial, archive, teaching = tmp_path / "partial.dcm", tmp_path / "archive.medviz", tmp_path / "teaching.medviz"
    partial.write_bytes(identified_dicom(cxr_dir, PatientIdentityRemoved="YES"))
    assert record(partial, archive, "--keep-identity") == 0
    appended_export(archive)
    assert holds_identity(archive)
    assert len(identifying_results(archive, index_recording(archive))) == 1  # a replay leaves its export out
    replayed = replay_source("archive", archive, read_recording(archive))
    assert replayed.headers[0] is not None and leaks(replayed.headers[0]) == []  # a replay's exports: de-identified
    assert record(partial, tmp_path / "default.medviz") == 0
    assert not holds_identity(tmp_path / "default.medviz")
    assert main(["deidentify", str(archive), "--out", str(teaching)]) == 0
    assert not holds_identity(teaching)


def test_neither_record_nor_deidentify_puts_the_file_name_in_the_start_frame(identified: Path, tmp_path: Path) -> None:
    archive, teaching = tmp_path / "MRN4711_Doe.medviz", tmp_path / "teaching.medviz"
    assert record(identified, archive, "--keep-identity") == 0
    assert main(["deidentify", str(archive), "--out", str(teaching)]) == 0
    starts = [read_recording(path).start for path in (archive, teaching)]
    assert all(start is not None and "MRN4711" not in start.session for start in starts)
    assert len({start.session for start in starts if start is not None}) == 2
    assert b"MRN4711" not in teaching.read_bytes()
