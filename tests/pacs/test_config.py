"""PacsConfig: credentials only from files, never in a repr, an error or Settings' repr; addresses checked."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from server.pacs.client import PacsClient, StudyQuery
from server.pacs.config import PacsConfig
from server.pacs.errors import PacsConfigError
from server.settings import Settings

SECRET = "s3cret-Pa55word"


def test_the_password_comes_from_its_files_first_line_and_no_repr_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(f"{SECRET}\nignored\n")
    config = PacsConfig.from_files("http://127.0.0.1:8042/dicom-web", user="medviz", password_file=str(path))
    token = PacsConfig.from_files("https://pacs.example/dicom-web", token_file=str(path))
    assert (config.user, config.password, token.token) == ("medviz", SECRET, SECRET)
    shown = repr(config) + repr(token) + repr(Settings(pacs=config)) + repr(PacsClient(config))
    assert SECRET not in shown


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://pacs/dicom-web", "the PACS address must be an http:// or https:// DICOMweb root, e.g. "
     "http://127.0.0.1:8042/dicom-web; got 'ftp://pacs/dicom-web'"),
    (f"http://medviz:{SECRET}@pacs/dicom-web", "the PACS address must carry no user or password: give the user "
     "with --pacs-user and put credentials in --pacs-password-file"),
    (f"htp//medviz:{SECRET}@pacs/dicom-web", "the PACS address must carry no user or password: give the user "
     "with --pacs-user and put credentials in --pacs-password-file"),
    ("http://pacs/dicom-web?x=1", "the PACS address must carry no query or fragment: give its DICOMweb root, e.g. "
     "http://127.0.0.1:8042/dicom-web"),
])
def test_an_address_that_is_no_dicomweb_root_or_carries_credentials_is_refused(url: str, message: str) -> None:
    with pytest.raises(PacsConfigError) as error:
        PacsConfig(url)
    assert error.value.message == message


def test_a_missing_or_empty_credential_file_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(PacsConfigError) as missing:
        PacsConfig.from_files("http://pacs/dicom-web", user="u", password_file=str(tmp_path / "absent"))
    with pytest.raises(PacsConfigError) as blank:
        PacsConfig.from_files("http://pacs/dicom-web", token_file=str(empty))
    with pytest.raises(PacsConfigError) as alone:
        PacsConfig.from_files("http://pacs/dicom-web", user="u")
    assert missing.value.message == (f"cannot read the PACS password file {str(tmp_path / 'absent')!r}: "
                                     "No such file or directory")
    assert blank.value.message == f"the PACS token file {str(empty)!r} is empty; its first line is the token"
    assert alone.value.message == ("--pacs-user needs --pacs-password-file (the password is never given on the "
                                   "command line)")


@pytest.mark.parametrize("url", ["http://pacs.example:80/dicom-web", "https://pacs.example:443/dicom-web",
                                 "http://pacs.example/dicom-web"])
def test_an_address_naming_its_schemes_default_port_is_the_pacs_own_address(url: str) -> None:
    asked: list[str] = []

    def pacs(request: httpx.Request) -> httpx.Response:  # the transport alone stands in: no server on port 80 or 443
        asked.append(str(request.url))
        return httpx.Response(200, headers={"Content-Type": "application/dicom+json"}, stream=httpx.ByteStream(b"[]"))

    with PacsClient(PacsConfig(url), transport=httpx.MockTransport(pacs)) as client:
        page = client.find_studies(StudyQuery(patient_id="X"))
    assert (page.studies, len(asked)) == ((), 1)
    assert asked[0].startswith(url.replace(":80/", "/").replace(":443/", "/") + "/studies?PatientID=X&")
