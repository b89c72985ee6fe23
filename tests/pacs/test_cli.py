"""`medviz pacs find`, `medviz generate|record --pacs URL --study UID`, `medviz export --send URL` and `medviz serve
--pacs` on a real Orthanc: found by patient ID and accession, a session recorded from the archive, its export stored
into the same study (QIDO lists the new series, each stored object passes dciodvfy), a re-send that sends nothing
twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from server.cli.main import main
from server.pacs.client import PacsClient
from tests.export.test_dicom_export import dciodvfy, needs_dciodvfy
from tests.orthanc import USER, Orthanc
from tests.pacs.fixtures import PacsStudy


def credentials(orthanc: Orthanc) -> list[str]:
    return ["--pacs-user", USER, "--pacs-password-file", str(orthanc.password_file())]


def record_from_pacs(orthanc: Orthanc, study: PacsStudy, recording: Path) -> int:
    """`medviz record --pacs` of `study` on the tiny model, 2 tokens, keeping identity (so it can be sent back)."""
    return main(["record", "--pacs", orthanc.dicomweb, "--study", study.study_uid, *credentials(orthanc),
                 "--out", str(recording), "--model", "tiny", "--max-new-tokens", "2", "--keep-identity"])


def test_pacs_find_prints_the_study_found_by_patient_id_and_by_accession(
        orthanc: Orthanc, stored_study: Callable[..., PacsStudy], capsys: pytest.CaptureFixture[str]) -> None:
    study = stored_study("PAT-CLI-1", "ACC-CLI-1")
    assert main(["pacs", "find", orthanc.dicomweb, "--patient-id", "PAT-CLI-1", *credentials(orthanc)]) == 0
    table = capsys.readouterr()
    assert main(["pacs", "find", orthanc.dicomweb, "--accession", "ACC-CLI-1", "--json", *credentials(orthanc)]) == 0
    found = json.loads(capsys.readouterr().out)
    lines = table.out.splitlines()
    assert lines[0].split() == ["date", "patient", "id", "name", "accession", "modalities", "series/inst", "study",
                                "UID"]
    assert lines[1].split() == ["2024-01-15", "PAT-CLI-1", "Covid0000", "ACC-CLI-1", "DX", "1/1", study.study_uid]
    assert table.err == "1 study\n"
    assert [(s["study_uid"], s["patient_id"], s["accession"]) for s in found["studies"]] == [
        (study.study_uid, "PAT-CLI-1", "ACC-CLI-1")]
    assert orthanc.password not in table.out + table.err


def test_pacs_limit_caps_a_search_at_the_configured_number_of_studies(
        orthanc: Orthanc, stored_study: Callable[..., PacsStudy], capsys: pytest.CaptureFixture[str]) -> None:
    first, second = stored_study("PAT-LIMIT-1", "ACC-LIMIT-1"), stored_study("PAT-LIMIT-1", "ACC-LIMIT-2")
    find = ["pacs", "find", orthanc.dicomweb, "--patient-id", "PAT-LIMIT-1", "--json", *credentials(orthanc)]
    assert main(find) == 0
    assert sorted(s["study_uid"] for s in json.loads(capsys.readouterr().out)["studies"]) == sorted(
        [first.study_uid, second.study_uid])
    assert main([*find, "--pacs-limit", "max_results=1"]) == 0
    capped = json.loads(capsys.readouterr().out)
    assert (len(capped["studies"]), capped["more"], capped["capped"]) == (1, False, True)
    assert main([*(a for a in find if a != "--json"), "--pacs-limit", "max_results=1"]) == 0
    shown = capsys.readouterr()
    assert shown.out.splitlines()[1].split()[1] == "PAT-LIMIT-1"
    assert shown.err == ("1 study; a search shows at most 1 study (--pacs-limit max_results=N): "
                                       "narrow it to see the rest\n")


@pytest.mark.parametrize(("spec", "message"), [
    ("max_results", "--pacs-limit takes NAME=VALUE with NAME one of connect_timeout_s, read_timeout_s, "
                    "total_timeout_s, max_results, page_size, max_answer_bytes, max_instance_bytes, "
                    "max_thumbnail_bytes, max_store_answer_bytes; got 'max_results'"),
    ("password=x", "--pacs-limit takes NAME=VALUE with NAME one of connect_timeout_s, read_timeout_s, "
                   "total_timeout_s, max_results, page_size, max_answer_bytes, max_instance_bytes, "
                   "max_thumbnail_bytes, max_store_answer_bytes; got 'password=x'"),
    ("max_results=many", "--pacs-limit max_results takes a whole number; got 'many'"),
    ("read_timeout_s=soon", "--pacs-limit read_timeout_s takes seconds; got 'soon'"),
    ("max_results=0", "the PACS limit max_results must be > 0; got 0"),
])
def test_a_wrong_pacs_limit_is_one_line(orthanc: Orthanc, spec: str, message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pacs", "find", orthanc.dicomweb, "--pacs-limit", spec, *credentials(orthanc)]) == 2
    assert capsys.readouterr().err == f"medviz: {message}\n"


def test_a_wrong_password_is_one_line_without_the_password(orthanc: Orthanc, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    assert main(["pacs", "find", orthanc.dicomweb, "--pacs-user", USER, "--pacs-password-file", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert err == (f"medviz: the PACS refused medviz's credentials (HTTP 401 from {orthanc.dicomweb} for a study "
                   "search): check --pacs-user and --pacs-password-file, or --pacs-token-file\n")


@needs_dciodvfy
def test_record_from_the_pacs_then_export_send_stores_into_the_same_study_once(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    study = stored_study("PAT-SEND-1", "ACC-SEND-1")
    recording = tmp_path / "from-pacs.medviz"
    assert record_from_pacs(orthanc, study, recording) == 0
    capsys.readouterr()
    export = ["export", str(recording), "--token", "0", "--send", orthanc.dicomweb, *credentials(orthanc)]
    assert main([*export, "--out", str(tmp_path / "first")]) == 0
    first = capsys.readouterr().out.splitlines()
    series = pacs.series(study.study_uid)
    assert main([*export, "--out", str(tmp_path / "again")]) == 0
    again = capsys.readouterr().out.splitlines()
    sent = [line for line in first if line.startswith("sent: ")]
    objects = len([line for line in first if line.split(":")[0] in ("secondary_capture", "parametric_map",
                                                                   "segmentation", "presentation_state")])
    assert sent == [f"sent: stored {objects} of {objects} objects into study {study.study_uid}"]
    assert [s.description.startswith("medviz") for s in series].count(True) == objects == len(series) - 1
    assert [line for line in again if line.startswith("sent: ")] == [
        f"sent: all {objects} objects were already in study {study.study_uid} and were not sent again"]
    assert len(pacs.series(study.study_uid)) == 1 + objects
    stored = [i for i in pacs.instances(study.study_uid) if i.sop_uid != study.sop_uid]
    assert len(stored) == objects
    for instance in stored:  # what the PACS holds now is what dciodvfy accepts
        path = tmp_path / f"{instance.sop_uid}.dcm"
        path.write_bytes(pacs.retrieve(study.study_uid, instance.series_uid, instance.sop_uid))
        assert (instance.sop_class_uid, dciodvfy(path)[0]) == (instance.sop_class_uid, [])


def test_export_send_of_a_recording_without_a_dicom_source_says_so_and_writes_nothing(
        orthanc: Orthanc, cxr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "png.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(recording), "--model", "tiny",
                 "--max-new-tokens", "2"]) == 0
    capsys.readouterr()
    out = tmp_path / "export"
    assert main(["export", str(recording), "--token", "0", "--out", str(out), "--send", orthanc.dicomweb,
                 *credentials(orthanc)]) == 2
    assert capsys.readouterr().err == (f"medviz: {str(recording)!r} has no DICOM source: nothing to send into a study "
                                       "(its image was PNG or JPEG)\n")
    assert not out.exists()


def test_export_send_with_a_missing_password_file_says_so_and_writes_nothing(
        orthanc: Orthanc, stored_study: Callable[..., PacsStudy], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    study = stored_study("PAT-NOFILE-1", "ACC-NOFILE-1")
    recording = tmp_path / "from-pacs.medviz"
    assert record_from_pacs(orthanc, study, recording) == 0
    capsys.readouterr()
    out, absent = tmp_path / "export", tmp_path / "absent"
    assert main(["export", str(recording), "--token", "0", "--out", str(out), "--send", orthanc.dicomweb,
                 "--pacs-user", USER, "--pacs-password-file", str(absent)]) == 2
    assert capsys.readouterr().err == (f"medviz: cannot read the PACS password file {str(absent)!r}: "
                                       "No such file or directory\n")
    assert not out.exists()


def test_generate_reads_its_study_from_the_pacs(orthanc: Orthanc, stored_study: Callable[..., PacsStudy],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    study = stored_study("PAT-GEN-1", "ACC-GEN-1")
    assert main(["generate", "--pacs", orthanc.dicomweb, "--study", study.study_uid, *credentials(orthanc),
                 "--model", "tiny", "--max-new-tokens", "2", "--plain"]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("[max_tokens: 2 tokens in ")


def test_image_files_and_a_pacs_study_are_one_or_the_other(orthanc: Orthanc, cxr_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(cxr_dir / "nih_00000001_000.png"), "--pacs", orthanc.dicomweb, "--study", "1.2"]) == 2
    assert main(["record", "--study", "1.2"]) == 2
    assert main(["generate", "--pacs", orthanc.dicomweb]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "medviz: give either image files or --pacs URL --study UID, not both",
        "medviz: --study and --series need --pacs URL (the archive to read them from)",
        "medviz: --pacs needs --study UID (medviz pacs find URL lists the studies)"]


def test_serve_takes_the_pacs_with_its_password_file_and_shows_no_secret(orthanc: Orthanc) -> None:
    from server.cli.commands import serve_settings
    from server.cli.main import build_parser

    args = build_parser().parse_args(["serve", "--pacs", orthanc.dicomweb, *credentials(orthanc)])
    settings = serve_settings(args)
    assert settings.pacs is not None
    assert (settings.pacs.url, settings.pacs.user, settings.pacs.password) == (orthanc.dicomweb, USER,
                                                                                orthanc.password)
    assert settings.pacs.max_instance_bytes == settings.max_message_bytes
    assert orthanc.password not in repr(settings)
