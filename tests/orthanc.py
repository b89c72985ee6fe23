"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin on a free loopback port, and its REST helpers.

No mock stands in for the archive. `Orthanc` writes a config into a temporary folder (storage and index there,
HTTP Basic authentication on with one registered user, remote access refused, the DICOM C-STORE server off,
the DICOMweb plugin at /dicom-web/), starts `/usr/sbin/Orthanc CONFIG.json`, waits until its REST answers and
stops it by its PID. Orthanc 1.10 has no option to bind one address: it listens on every interface, and
`RemoteAccessAllowed: false` makes it refuse every client that is not on loopback. `upload` stores DICOM bytes
through Orthanc's REST (/instances), `delete_study` removes a study by its StudyInstanceUID.
`ORTHANC` is None where Orthanc (or its DICOMweb plugin) is not installed: the PACS tests skip, saying so
(`./dev test` installs both).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.server.serve_process import free_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC = shutil.which("Orthanc", path="/usr/sbin:/usr/bin") if DICOMWEB_PLUGIN.exists() else None
NOT_INSTALLED = "Debian's orthanc and orthanc-dicomweb are not installed (./dev test installs them)"
USER = "medviz"


@dataclass
class Orthanc:
    """One Orthanc process on 127.0.0.1:`port` (HTTP) with user `USER` and a random password."""

    folder: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def password_file(self) -> Path:
        path = self.folder / "pacs-password"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def rest(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, auth=(USER, self.password), timeout=30)

    def start(self) -> Orthanc:
        assert ORTHANC is not None, NOT_INSTALLED
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps({
            "Name": "medviz-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.port, "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: self.password}, "DicomServerEnabled": False, "DicomPort": free_port(),
            "Plugins": [str(DICOMWEB_PLUGIN)], "HttpDescribeErrors": True, "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }))
        config.chmod(0o600)
        log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.folder)
        log.close()
        with self.rest() as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/system").status_code == 200:
                        return self
                time.sleep(0.05)
        tail = (self.folder / "orthanc.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on port {self.port}:\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def upload(self, dicom: bytes) -> str:
        """Store one DICOM file through Orthanc's REST; its Orthanc instance id."""
        with self.rest() as client:
            answer = client.post("/instances", content=dicom, headers={"Content-Type": "application/dicom"})
        answer.raise_for_status()
        return str(answer.json()["ID"])

    def delete_study(self, study_uid: str) -> None:
        """Remove the study with this StudyInstanceUID (and everything in it)."""
        with self.rest() as client:
            found = client.post("/tools/lookup", content=study_uid)
            found.raise_for_status()
            for hit in found.json():
                if hit["Type"] == "Study":
                    client.delete(f"/studies/{hit['ID']}").raise_for_status()

    def study_series(self, study_uid: str) -> list[dict[str, object]]:
        """The series Orthanc holds in a study (its own REST view: MainDicomTags, Instances)."""
        with self.rest() as client:
            found = client.post("/tools/lookup", content=study_uid).json()
            ids = [hit["ID"] for hit in found if hit["Type"] == "Study"]
            return [] if not ids else list(client.get(f"/studies/{ids[0]}/series").json())
