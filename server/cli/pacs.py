"""The CLI's side of the PACS: `medviz pacs find`, the `--pacs URL --study UID` source of generate and record, and
`medviz export --send URL`.

Owns: the PACS options (`--pacs-user` with `--pacs-password-file`, or `--pacs-token-file`: secrets only from files,
never the command line; `--pacs-limit NAME=VALUE` for any of PacsConfig's limits), `pacs find` (a table or JSON of
the matching studies), `pacs_study` (a study's views from the PACS as the StudyFiles `generate` and `record` read
from files, through the same study checks) and `send_export` (an export's objects stored into their source's study,
the report printed, a refusal an error). Does not own DICOMweb (server/pacs/) nor the commands it serves (main.py,
commands.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from medviz_core.errors import MedvizError
from server.pacs.config import PacsConfig
from server.pacs.errors import PacsConfigError

LIMITS = {f.name: str(f.type) for f in fields(PacsConfig) if str(f.type) in ("int", "float")}
"""PacsConfig's limits by name (timeouts in seconds, counts, sizes in bytes) and their types, for --pacs-limit."""

NO_DICOM_SOURCE = "{name} has no DICOM source: nothing to send into a study (its image was PNG or JPEG)"
DEIDENTIFIED = ("{name} is de-identified: its objects are in a new study the PACS does not hold; record with "
                "--keep-identity (a clinical archive) to send results back into the source's study")


CREDENTIALS_HINT = "check --pacs-user and --pacs-password-file, or --pacs-token-file"


@contextlib.contextmanager
def hinted() -> Iterator[None]:
    """The PACS refusing medviz's credentials, with the options that give them (the client's line names none)."""
    from server.pacs.errors import PacsUnauthorized

    try:
        yield
    except PacsUnauthorized as error:
        raise PacsUnauthorized(f"{error.message}: {CREDENTIALS_HINT}") from None


def add_pacs_options(parser: argparse.ArgumentParser) -> None:
    """The PACS's credentials: a user and a password file, or a token file (never a secret on the command line)."""
    parser.add_argument("--pacs-user", default=None, help="the PACS's HTTP Basic user (with --pacs-password-file)")
    parser.add_argument("--pacs-password-file", default=None, metavar="FILE",
                        help="the PACS password: this file's first line (never on the command line)")
    parser.add_argument("--pacs-token-file", default=None, metavar="FILE",
                        help="a Bearer token for the PACS: this file's first line")
    parser.add_argument("--pacs-limit", action="append", default=[], metavar="NAME=VALUE",
                        help=f"change one PACS limit (repeatable): {', '.join(LIMITS)} (docs/security.md)")


def add_study_source(parser: argparse.ArgumentParser) -> None:
    """--pacs URL --study UID [--series UID]: a study from the archive instead of image files."""
    parser.add_argument("--pacs", default=None, metavar="URL",
                        help="a DICOMweb root, e.g. http://pacs:8042/dicom-web: read --study from it instead of files")
    parser.add_argument("--study", default=None, metavar="UID", help="with --pacs: the StudyInstanceUID to read")
    parser.add_argument("--series", default=None, metavar="UID", help="with --pacs: only this series of the study")
    add_pacs_options(parser)


def pacs_config(url: str, args: argparse.Namespace, **limits: Any) -> PacsConfig:
    """The PACS at `url` with the credentials of the options' files; `limits` (the command's own) under each
    --pacs-limit NAME=VALUE."""
    limits = {**limits, **parse_limits(getattr(args, "pacs_limit", None) or [])}
    return PacsConfig.from_files(url, user=args.pacs_user, password_file=args.pacs_password_file,
                                 token_file=args.pacs_token_file, **limits)


def parse_limits(specs: Sequence[str]) -> dict[str, int | float]:
    """--pacs-limit NAME=VALUE options -> PacsConfig's limits (a timeout in seconds, a count or a size in bytes);
    PacsConfig refuses a value <= 0."""
    limits: dict[str, int | float] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in LIMITS:
            raise PacsConfigError(f"--pacs-limit takes NAME=VALUE with NAME one of {', '.join(LIMITS)}; got {spec!r}")
        try:
            limits[name] = float(text) if LIMITS[name] == "float" else int(text)
        except ValueError:
            unit = "seconds" if LIMITS[name] == "float" else "a whole number"
            raise PacsConfigError(f"--pacs-limit {name} takes {unit}; got {text!r}") from None
    return limits


def study_source(args: argparse.Namespace, paths: Sequence[str]) -> list[Any]:
    """The study's files in view order (StudyFiles): from the PACS with --pacs, else from `paths`."""
    from pathlib import Path

    from medviz_core.imaging.study import read_study

    if args.pacs is None:
        if args.study or args.series:
            raise MedvizError("--study and --series need --pacs URL (the archive to read them from)")
        if not paths:
            raise MedvizError("give image files (or a study folder), or --pacs URL --study UID")
        return read_study([Path(p) for p in paths])
    if paths:
        raise MedvizError("give either image files or --pacs URL --study UID, not both")
    if not args.study:
        raise MedvizError("--pacs needs --study UID (medviz pacs find URL lists the studies)")
    return pacs_study(pacs_config(args.pacs, args), args.study, args.series)


def pacs_study(config: PacsConfig, study_uid: str, series_uid: str | None = None) -> list[Any]:
    """The study's default views retrieved from the PACS as StudyFiles, in view order with the PACS's labels;
    the same study checks as files (one study, readable headers)."""
    from medviz_core.imaging.study import StudyFile, order_study
    from server.pacs.client import PacsClient
    from server.pacs.views import open_study

    with hinted(), PacsClient(config) as client:
        files, labels = open_study(client, study_uid, series_uid)
    checked = order_study([(label, data) for label, data in zip(labels, files)])
    study = checked[0].study_uid if checked else None
    return [StudyFile(label, data, label, (0, 0, 0, n), study) for n, (label, data) in enumerate(zip(labels, files))]


def _find(args: argparse.Namespace) -> int:
    from server.pacs.client import PacsClient, StudyQuery

    query = StudyQuery(patient_id=args.patient_id, patient_name=args.patient_name, accession=args.accession,
                       study_date=args.study_date, modality=args.modality)
    with hinted(), PacsClient(pacs_config(args.url, args)) as client:
        page = client.find_studies(query, args.offset)
    if args.json:
        print(json.dumps({"studies": [{**vars(s), "modalities": list(s.modalities)} for s in page.studies],
                          "offset": page.offset, "more": page.more, "capped": page.capped}, indent=2))
        return 0
    rows = [("date", "patient id", "name", "accession", "modalities", "series/inst", "study UID")]
    for s in page.studies:
        counts = f"{'?' if s.series_count is None else s.series_count}/" \
                 f"{'?' if s.instance_count is None else s.instance_count}"
        date = f"{s.study_date[:4]}-{s.study_date[4:6]}-{s.study_date[6:]}" if len(s.study_date) == 8 else s.study_date
        rows.append((date, s.patient_id, s.patient_name, s.accession, ",".join(s.modalities), counts, s.study_uid))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    end = page.offset + len(page.studies)
    more = f"; more may match: --offset {end}" if page.more else ""
    if page.capped:
        more = (f"; a search shows at most {end} {'study' if end == 1 else 'studies'} "
                "(--pacs-limit max_results=N): narrow it to see the rest")
    print(f"{len(page.studies)} {'study' if len(page.studies) == 1 else 'studies'}"
          f"{f' from {page.offset + 1}' if page.offset else ''}{more}", file=sys.stderr)
    return 0


def add_pacs_command(subparsers: Any) -> None:
    pacs = subparsers.add_parser("pacs", help="the hospital's archive over DICOMweb (docs/pacs.md)")
    commands = pacs.add_subparsers(dest="pacs_command", required=True)
    find = commands.add_parser("find", help="search the PACS's studies (QIDO-RS) and print them")
    find.add_argument("url", help="the DICOMweb root, e.g. http://pacs:8042/dicom-web")
    find.add_argument("--patient-id", default=None)
    find.add_argument("--patient-name", default=None, help="DICOM matching: Doe^Jane, DOE*")
    find.add_argument("--accession", default=None)
    find.add_argument("--study-date", default=None, metavar="D1-D2",
                      help="YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (either end may be left open)")
    find.add_argument("--modality", default=None, help="e.g. CR or DX")
    find.add_argument("--offset", type=int, default=0, help="the first study to show (paging)")
    find.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_pacs_options(find)
    find.set_defaults(handler=_find)


def check_sendable(name: str, recording: Any) -> None:
    """Refuse before anything is written: a recording without a DICOM source, or a de-identified one."""
    from medviz_core.recording.deidentify import is_deidentified

    source = recording.source
    if source is None or all(header is None for header in source.headers):
        raise MedvizError(NO_DICOM_SOURCE.format(name=name))
    if is_deidentified(source):
        raise MedvizError(DEIDENTIFIED.format(name=name))


def send_export(config: PacsConfig, objects: Sequence[tuple[str, Any]], source: Any) -> None:
    """Store the export's objects into their study, which must hold `source` (the exported image's header, or None)
    under its patient; print the report; PacsStorePartial when some were refused."""
    from server.pacs.client import PacsClient
    from server.pacs.send import send_objects

    study = str(objects[0][1].StudyInstanceUID)
    with hinted(), PacsClient(config) as client:
        report = send_objects(client, study, objects, [] if source is None else [source])
    print(f"sent: {report.message()}")
    report.raise_for_failures()
