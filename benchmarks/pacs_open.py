"""What opening a study from the PACS costs beside reading the same files from disk, on a real Orthanc.

Starts Debian's Orthanc with its DICOMweb plugin on a free loopback port (tests/orthanc.py: a temporary folder,
authentication on), stores the DICOM sample of ../shared/data/cxr as a two-view study (PA and lateral copies with
their own UIDs), then times, `--rounds` times each, in one run:
- disk:   both files read and ordered as a study (`imaging.study.read_study`, what `medviz generate FILES` does);
- search: one QIDO-RS study search by patient ID (`PacsClient.find_studies`);
- open:   the study's instances and series listed, the two views chosen and retrieved with WADO-RS
          (`pacs.views.open_study`, what a start from the PACS does before the image checks);
- thumb:  one rendered 128-pixel thumbnail (WADO-RS /rendered);
- send:   one token's export (SC, PM, SEG, GSPS) stored with STOW-RS, first time (`send_objects`), and a re-send
          (the "already there" check alone).
It prints the median of each in ms and its ratio to `disk`. Orthanc is stopped by its PID at the end.

Usage: python benchmarks/pacs_open.py [--rounds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medviz_core.export.dicom import ExportMap, ExportSource, build_export  # noqa: E402
from medviz_core.imaging.load import load_image  # noqa: E402
from medviz_core.imaging.study import read_study  # noqa: E402
from medviz_core.types import Region  # noqa: E402
from server.pacs.client import PacsClient, StudyQuery  # noqa: E402
from server.pacs.config import PacsConfig  # noqa: E402
from server.pacs.send import send_objects  # noqa: E402
from server.pacs.views import open_study  # noqa: E402
from tests.orthanc import NOT_INSTALLED, ORTHANC, USER, Orthanc  # noqa: E402
from tests.pacs.fixtures import SAMPLE_DICOM, dicom_copy  # noqa: E402

CXR = ROOT.parent / "shared" / "data" / "cxr"


def median_ms(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if ORTHANC is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 2
    sample = (CXR / SAMPLE_DICOM).read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        pa = dicom_copy(sample, "BENCH-1", "ACC-BENCH", view="PA")
        lateral = dicom_copy(sample, "BENCH-1", "ACC-BENCH", view="LL", study_uid=pa.study_uid)
        files = [Path(folder, "pa.dcm"), Path(folder, "ll.dcm")]
        files[0].write_bytes(pa.dicom)
        files[1].write_bytes(lateral.dicom)
        orthanc = Orthanc(Path(folder, "orthanc")).start()
        try:
            orthanc.upload(pa.dicom)
            orthanc.upload(lateral.dicom)
            config = PacsConfig(orthanc.dicomweb, user=USER, password=orthanc.password)
            with PacsClient(config) as client:
                timings = {
                    "disk": median_ms(args.rounds, lambda: read_study(files)),
                    "search": median_ms(args.rounds, lambda: client.find_studies(StudyQuery(patient_id="BENCH-1"))),
                    "open": median_ms(args.rounds, lambda: open_study(client, pa.study_uid)),
                    "thumb": median_ms(args.rounds, lambda: client.thumbnail(pa.study_uid, pa.series_uid, pa.sop_uid)),
                }
                source = pydicom.dcmread(files[0])
                relevancy = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
                region = Region(polygon=((0.1, 0.1), (0.4, 0.1), (0.4, 0.4), (0.1, 0.4)), box=(0.1, 0.1, 0.3, 0.3),
                                mass=0.3, zone="right upper")
                export = build_export(ExportSource(load_image(pa.dicom), source),
                                      ExportMap(relevancy=relevancy, regions=(region,), method="rollout",
                                                description="token 1 'bench'", stand_in=True))
                objects = [(o.kind, o.dataset) for o in export.objects]
                start = time.perf_counter()
                first = send_objects(client, pa.study_uid, objects, [source])
                timings["send"] = (time.perf_counter() - start) * 1000
                timings["resend"] = median_ms(max(1, args.rounds // 4),
                                              lambda: send_objects(client, pa.study_uid, objects, [source]))
        finally:
            orthanc.stop()
    print(f"Orthanc {orthanc.base} on loopback; {args.rounds} rounds; a two-view study of "
          f"{len(pa.dicom) // 1024} KiB files; send: {len(first.sent)} objects stored")
    for name, ms in timings.items():
        print(f"{name:7s} {ms:8.1f} ms   x{ms / timings['disk']:.1f} of disk")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "ms": timings}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
