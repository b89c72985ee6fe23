"""`medviz serve | worker | record | replay | watch | faithfulness | export`: commands about sessions and recordings
(record reads a study from files or a PACS, export may send into the PACS: cli/pacs.py).

Owns: their arguments and handlers. `add_server_commands(subparsers)` is called by cli/main.py,
which prints a MedvizError as one line (exit 2). Does not own the server itself (app.py),
the frames of a run (medviz_core/session_frames.py) or the frame format (medviz_core/wire/).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from medviz_core.errors import MedvizError
from medviz_core.wire.client_frames import ParamsRequest, StartRequest
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import EndFrame, StepFrame
from server.cli.analysis import add_prompt_argument
from server.cli.pacs import add_pacs_options, add_study_source, check_sendable, pacs_config, send_export
from server.settings import DEFAULT_MODEL, Settings

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _settings(args: argparse.Namespace, **flags: Any) -> Settings:
    """Settings from the defaults, then `--config FILE`, then the explicit flags (None: not given), then
    each `--set NAME=VALUE` (the last word); every value checked against its field's type."""
    from server.settings import configured, read_config

    base = configured(Settings(), read_config(Path(args.config)) if args.config else None)
    given = {name: value for name, value in flags.items() if value is not None}
    return configured(dataclasses.replace(base, **given), None, args.set or ())


def serve_settings(args: argparse.Namespace) -> Settings:
    """`medviz serve`'s Settings: defaults < --config FILE < --model, --host, ... (and their environment
    variables) < each --set NAME=VALUE."""
    settings = _settings(args, model=args.model, host=args.host, port=args.port, token=args.token or None,
                         recordings=_path(args.recordings), **_redis_flags(args),
                         recordings_keep_identity=True if getattr(args, "recordings_keep_identity", False) else None)
    if getattr(args, "pacs", None) is None:
        return settings  # a retrieved instance is held to the upload's own limit
    return dataclasses.replace(settings, pacs=pacs_config(args.pacs, args,
                                                          max_instance_bytes=settings.max_message_bytes),
                               pacs_key=_pacs_key(getattr(args, "pacs_key_file", None)))


def _pacs_key(path: str | None) -> str | None:
    """--pacs-key-file's key (its first line); None without one (the start makes its own: guard/security.py)."""
    if path is None:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as error:
        raise MedvizError(f"cannot read the PACS key file {path!r}: {getattr(error, 'strerror', None) or error}"
                          ) from None


def _redis_flags(args: argparse.Namespace) -> dict[str, Any]:
    """redis_url from --redis (never with its password: /proc/PID/cmdline), MEDVIZ_REDIS and
    --redis-password-file (server/scale/auth.py); redis_insecure from --redis-insecure."""
    from server.scale.auth import redis_url

    url = redis_url(args.redis, os.environ.get("MEDVIZ_REDIS"), args.redis_password_file, args.set or ())
    return {"redis_url": url, "redis_insecure": True if args.redis_insecure else None}


def _check_redis(settings: Settings) -> None:
    """Before anything is loaded: the Redis must want a password (or --redis-insecure), and take ours."""
    from server.scale.auth import require_auth

    if settings.redis_url:
        require_auth(settings.redis_url, settings.redis_insecure)


def _serve(args: argparse.Namespace) -> int:
    import time

    from server.app import create_app
    from server.guard.log_redaction import RedactTokens
    from server.guard.security import with_start_token
    from server.uvicorn_config import AnnouncingServer, server_config

    began = time.monotonic()
    given = serve_settings(args).check()
    settings = with_start_token(given)  # no token given: one of this start's own, in the link printed below
    _check_redis(settings)
    if args.ray:
        if not settings.redis_url:
            raise MedvizError("--ray runs the workers as Ray Serve replicas fed through Redis: pass --redis URL too")
        from server.scale.ray_app import start_workers

        start_workers(settings, replicas=args.replicas, gpus=args.gpus)
    app = create_app(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:  # medviz's own lines: never a token either
        handler.addFilter(RedactTokens(tuple(s for s in (settings.token, settings.pacs_key) if s)))
    shown = "?token=<your token>" if given.token else f"?token={settings.token}"
    if settings.pacs_key:  # the operator's link opens the PACS too; share and watch links never carry the key
        shown += "&pacs_key=<your PACS key>" if given.pacs_key else f"&pacs_key={settings.pacs_key}"
    note = "" if given.token else "; open this link: its token is new with every start (--token T for a fixed one)"
    print(f"medviz: loading {settings.model}; recordings go to {settings.recordings}", file=sys.stderr, flush=True)

    def ready() -> None:  # the sockets accept connections now, the model loaded
        print(f"medviz: serving {settings.model} at http://{settings.host}:{settings.port}/{shown} "
              f"(ready {time.monotonic() - began:.1f} s after start{note})", file=sys.stderr, flush=True)

    AnnouncingServer(server_config(app, settings), ready).run()
    return 0


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _worker(args: argparse.Namespace) -> int:
    import signal

    from medviz_core.models.load import load_engine
    from server.scale.worker import RedisWorker

    settings = _settings(args, model=args.model, recordings=_path(args.recordings), heartbeat_s=args.heartbeat_s,
                         reclaim_s=args.reclaim_s, **_redis_flags(args))
    if not settings.redis_url:
        raise MedvizError("medviz worker needs --redis URL (or MEDVIZ_REDIS): the Redis its web nodes use")
    _check_redis(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = RedisWorker(load_engine(settings.model, compile=args.compile), settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.halt())  # the run in hand ends cancelled
    print(f"medviz: worker {worker.name} serving {settings.model} from Redis; recordings in {settings.recordings}",
          file=sys.stderr)
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.halt()
    worker.stop()
    return 0


def _study(args: argparse.Namespace, labels: str | None) -> tuple[list[bytes], tuple[str, ...]]:
    """Files or a folder, or a study from --pacs -> (file bytes in study order, labels): --labels, else the DICOM
    tags (the PACS's view labels)."""
    from server.cli.pacs import study_source

    study = study_source(args, args.image)
    if labels is None:
        return [f.data for f in study], tuple(f.label for f in study)
    given = tuple(label.strip() for label in labels.split(","))
    if len(given) > len(study):
        raise MedvizError(f"--labels names {len(given)} images; the study has {len(study)}")
    return [f.data for f in study], given


def _record(args: argparse.Namespace) -> int:
    import time

    from medviz_core.imaging.dicom import dicom_header
    from medviz_core.models.load import load_engine
    from medviz_core.recording.deidentify import RecordingIdentity
    from medviz_core.recording.file import SUFFIX, RecordingWriter
    from medviz_core.session_frames import session_frames
    from server.settings import default_recordings

    out = Path(args.out).expanduser() if args.out else default_recordings() / (
        f"recorded-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}{SUFFIX}")
    if out.exists():
        raise MedvizError(f"{str(out)!r} already exists; recordings are never overwritten")
    images, labels = _study(args, args.labels)
    identity = RecordingIdentity(keep=args.keep_identity, allow_burned_in=args.allow_burned_in)
    identity.check(tuple(dicom_header(image) for image in images))  # before the model loads
    engine = load_engine(args.model, compile=args.compile)
    request = StartRequest(images=tuple(images), labels=labels, question=args.question, preset=args.prompt,
                           params=ParamsRequest(max_new_tokens=args.max_new_tokens),  # the rest: the model's
                           from_pacs=args.pacs is not None)  # medviz retrieved the study (--pacs): it may go back
    cancel = threading.Event()
    session = secrets.token_urlsafe(16)  # as the server's: the file's name (it may name the patient) stays on disk
    stream = session_frames(engine, request, session, cancel, identity=identity)
    first = next(stream)  # errors about the images, burned-in annotation or parameters come before any file is made
    print(f"medviz: recording {args.model} to {out}", file=sys.stderr, flush=True)
    with RecordingWriter(out) as writer:
        writer.write(first.to_record)
        try:
            for frame in stream:
                writer.write(frame.to_record)
                sys.stdout.write(".")
                sys.stdout.flush()
        except KeyboardInterrupt:
            cancel.set()
            for frame in stream:  # the run stops at its next step and ends `cancelled`
                writer.write(frame.to_record)
    print(f"\nmedviz: wrote {out} ({out.stat().st_size} bytes)")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from medviz_core.recording.file import read_recording

    recording = read_recording(Path(args.file))
    start = recording.start
    if start is None:
        raise MedvizError(f"{args.file!r} holds no whole frame")
    asked = "full report" if start.question is None else f"question ({len(start.question)} characters)"
    print(f"session {start.session}: model {start.model.name}, {asked}, methods {', '.join(start.methods)}")
    if len(start.images) > 1:
        print("images: " + ", ".join(f"{i.label or n} {i.size[0]}x{i.size[1]}" for n, i in enumerate(start.images)))
    for recorded in recording.steps:
        step = recorded.frame
        assert isinstance(step, StepFrame)
        shares = "".join(f" {start.images[n].label or n}:{image.share:.3f}" for n, image in enumerate(step.images)
                         ) if len(step.images) > 1 else ""
        print(f"{step.index:4d} {step.t_ms:9.1f} ms {step.text!r:24} {step.images[0].stats.peak_zone:15} "
              f"image_mass {step.image_mass:.3f}{shares}")
    end: EndFrame | None = recording.end
    if end is None:
        print(f"[cut: {len(recording.steps)} steps, no end frame]")
    else:
        print(f"[{end.reason}: {end.tokens} tokens in {end.total_ms / 1000:.1f} s] {end.text!r}")
    for recorded in recording.analyses:
        result = recorded.frame
        assert isinstance(result, AnalysisFrame)
        print(f"[analysis {result.kind} of token {result.index}: job {result.job}]")
    return 0


def _faithfulness(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from medviz_core.analyses.batch import faithfulness_rows, parse_tokens, plan_faithfulness, summarise
    from medviz_core.analyses.compute import recording_source
    from medviz_core.models.load import load_engine
    from medviz_core.recording.file import read_recording
    from medviz_core.types import METHODS

    path = Path(args.recording)
    if not path.is_file():
        raise MedvizError(f"no recording at {args.recording!r}")
    source = recording_source(path.stem, path, read_recording(path))
    methods = list(source.start.methods) if args.methods == "all" else list(dict.fromkeys(
        m.strip() for m in args.methods.split(",")))
    unknown = [m for m in methods if m not in (*METHODS, "gradient")]
    if unknown:
        raise MedvizError(f"--methods: unknown {', '.join(unknown)}; expected 'all' or some of "
                          f"{', '.join(METHODS)}, gradient")
    requests = plan_faithfulness(source, parse_tokens(args.tokens, len(source.steps)), methods, args.steps)
    recorded_with = source.start.model.name
    if args.model and args.model != recorded_with:  # results are kept per job, not per model: keep them apart
        print(f"medviz: model {args.model!r} is not the recording's ({recorded_with!r}): its results are "
              "computed afresh and not added to the recording", file=sys.stderr)
        source = dataclasses.replace(source, recorded={}, recording=None)
    model = args.model or recorded_with
    print(f"{'token':>5} {'text':16} {'method':16} {'deletion':>9} {'insertion':>9} {'rand del':>9} "
          f"{'rand ins':>9}")
    rows = []
    for row in faithfulness_rows(lambda: load_engine(model), source, requests, save=not args.no_save):
        rows.append(row)
        r = row.result
        print(f"{row.index:5d} {row.text!r:16.16} {row.method:16} {r.deletion.auc:9.4f} {r.insertion.auc:9.4f} "
              f"{r.random_deletion.auc:9.4f} {r.random_insertion.auc:9.4f}{'  (recorded)' if row.recorded else ''}",
              flush=True)
    summary = summarise(rows)
    print("mean over tokens (deletion: lower is more faithful; insertion: higher)")
    for m in summary:
        print(f"{m.tokens:5d} {'':16} {m.method:16} {m.deletion_auc:9.4f} {m.insertion_auc:9.4f} "
              f"{m.random_deletion_auc:9.4f} {m.random_insertion_auc:9.4f}")
    if not args.no_save and source.recording is not None and any(not row.recorded for row in rows):
        print(f"results added to {path} (a replay shows them)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "recording": path.name, "steps": args.steps,
            "rows": [{"token": r.index, "text": r.text, "method": r.method, "deletion_auc": r.result.deletion.auc,
                      "insertion_auc": r.result.insertion.auc, "random_deletion_auc": r.result.random_deletion.auc,
                      "random_insertion_auc": r.result.random_insertion.auc} for r in rows],
            "mean": [vars(m) for m in summary],
        }, indent=2) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from medviz_core.analyses.compute import export_token_map, recording_source
    from medviz_core.export.dicom import export_dicom
    from medviz_core.recording.file import read_recording

    path = Path(args.recording)
    if not path.is_file():
        raise MedvizError(f"no recording at {args.recording!r}")
    try:
        recording = read_recording(path)
    except MedvizError as error:
        raise MedvizError(f"{args.recording!r} is not a medviz recording: {error.message}") from None
    if recording.start is None:
        raise MedvizError(f"{args.recording!r} is not a medviz recording: it holds no whole frame")
    sending = None
    if args.send:  # before anything is written: the recording may be sent, the PACS's address and credentials read
        check_sendable(repr(args.recording), recording)
        sending = pacs_config(args.send, args)
    source = recording_source(path.stem, path, recording)
    first, last = _token_range(args.token)
    export_source, token_map = export_token_map(source, first, last, args.method, args.image)
    result = export_dicom(export_source, token_map, args.out)
    for exported in result.objects:
        print(f"{exported.kind}: {exported.path}")
    for note in result.notes:
        print(f"note: {note}")
    if sending is not None:
        send_export(sending, [(o.kind, o.dataset) for o in result.objects], export_source.header)
    return 0


def _token_range(spec: str) -> tuple[int, int]:
    """`I` or `A:B` (both included) -> (first, last)."""
    try:
        if ":" in spec:
            low, high = spec.split(":", 1)
            return int(low), int(high)
        return int(spec), int(spec)
    except ValueError:
        raise MedvizError(f"--token must be I or A:B with integers (A:B includes both); got {spec!r}") from None


def _watch(args: argparse.Namespace) -> int:
    from server.cli.watch import watch

    end = watch(args.url, sys.stdout, sys.stderr)
    return 0 if end is not None else 1


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --set NAME=VALUE: any field of server/settings.py (docs/security.md lists them)."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="a TOML file of settings (e.g. max_watch_sockets = 256); flags and --set override it")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any setting of docs/security.md, e.g. --set max_watch_sockets=256 (repeatable)")


def _add_redis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-password-file", default=None, metavar="FILE",
                        help="the Redis password: this file's first line (never on the command line)")
    parser.add_argument("--redis-insecure", action="store_true",
                        help="accept a Redis that answers without a password (refused otherwise)")


def add_server_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve the web viewer, live sessions and replays")
    serve.add_argument("--model", default=None,
                       help=f"tiny | {DEFAULT_MODEL} (default) | random:medgemma-4b | hub id | folder")
    serve.add_argument("--host", default=None, help="a non-loopback address needs --token (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default 7860")
    serve.add_argument("--token", default=os.environ.get("MEDVIZ_TOKEN"), help="access token (or MEDVIZ_TOKEN)")
    serve.add_argument("--recordings", default=None,
                       help="folder for recorded sessions (default $XDG_DATA_HOME/medviz/recordings, else "
                       "~/.local/share/medviz/recordings)")
    serve.add_argument("--recordings-keep-identity", action="store_true",
                       help="write recordings with the patient's identity as the DICOM headers came (a clinical "
                       "archive; default: de-identified, docs/deidentification.md)")
    serve.add_argument("--redis", default=None,
                       help="redis://host:port/db, no password (or MEDVIZ_REDIS, a whole URL): a stateless web node "
                       "whose sessions go through Redis to `medviz worker`s or Ray Serve replicas (docs/deploy.md)")
    _add_redis_options(serve)
    serve.add_argument("--pacs", default=None, metavar="URL", help="the hospital's archive, a DICOMweb root (e.g. "
                       "http://pacs:8042/dicom-web): the page searches it and opens and sends studies (docs/pacs.md)")
    add_pacs_options(serve)
    serve.add_argument("--pacs-key-file", default=None, metavar="FILE", help="with --pacs: the PACS key (16+ of "
                       "A-Z a-z 0-9 - . _ ~) the operator's link carries; default: a new one every start, in the "
                       "printed link (share and watch links never open the PACS)")
    serve.add_argument("--ray", action="store_true", help="with --redis: also run the workers as Ray Serve replicas "
                       "(RAY_ADDRESS or a local Ray)")
    serve.add_argument("--replicas", type=int, default=1, help="with --ray: how many workers (one per GPU)")
    serve.add_argument("--gpus", type=float, default=None, help="with --ray: GPUs per replica (default 1 where "
                       "the cluster has GPUs, else 0)")
    _add_settings_options(serve)
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser("worker", help="a generation worker taking sessions from Redis (scale-out)")
    worker.add_argument("--redis", default=None, help="the web nodes' Redis URL, no password (or MEDVIZ_REDIS)")
    _add_redis_options(worker)
    worker.add_argument("--model", default=None,
                        help=f"tiny | {DEFAULT_MODEL} (default) | random:medgemma-4b | hub id | folder")
    worker.add_argument("--recordings", default=None,
                        help="the recordings folder every node mounts (default: as medviz serve's)")
    worker.add_argument("--compile", action="store_true", help="compile the decode step (see medviz generate)")
    worker.add_argument("--heartbeat-s", type=float, default=None,
                        help=f"how often it says it is alive (default {Settings.heartbeat_s:g})")
    worker.add_argument("--reclaim-s", type=float, default=None, help="a job nobody held this long is reclaimed "
                        f"(the same on every node; > the heartbeat; default {Settings.reclaim_s:g})")
    _add_settings_options(worker)
    worker.set_defaults(handler=_worker)

    record = subparsers.add_parser("record", help="record one session to a file, without a server")
    record.add_argument("image", nargs="*", help="PNG, JPEG or DICOM files, or a study folder (frontal views first); "
                        "or --pacs URL --study UID")
    add_study_source(record)
    record.add_argument("--labels", default=None,
                        help="comma-separated view labels in study order, e.g. PA,lateral (default: DICOM tags)")
    record.add_argument("--out", default=None, help="the .medviz file to write (never overwritten; default: a new "
                        "file in the recordings folder, $XDG_DATA_HOME/medviz/recordings, which medviz serve lists)")
    record.add_argument("--model", default=DEFAULT_MODEL)
    record.add_argument("--question", default=None, help="ask a question instead of the full report")
    add_prompt_argument(record)
    record.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's suggestion")
    record.add_argument("--compile", action="store_true", help="compile the decode step (see medviz generate)")
    record.add_argument("--keep-identity", action="store_true",
                        help="keep the patient's identity in the DICOM headers (default: de-identified by the Basic "
                        "Application Level Confidentiality Profile, docs/deidentification.md)")
    record.add_argument("--allow-burned-in", action="store_true",
                        help="record a DICOM that says it has burned-in annotation (text in its pixels, which header "
                        "de-identification cannot remove)")
    record.set_defaults(handler=_record)

    replay = subparsers.add_parser("replay", help="print a recording: tokens, zone and image mass per step")
    replay.add_argument("file")
    replay.set_defaults(handler=_replay)

    faith = subparsers.add_parser("faithfulness",
                                  help="deletion/insertion curves for every token of a recording (batch)")
    faith.add_argument("recording", help="a .medviz file")
    faith.add_argument("--methods", default="all", help="'all' (the recording's methods) or a list, e.g. raw,gradient")
    faith.add_argument("--tokens", default=None, help="A:B (both included, as in export) or N; default: every token")
    faith.add_argument("--steps", type=int, default=8, help="deletion/insertion steps over the grid cells")
    faith.add_argument("--model", default=None, help="default: the model the recording names")
    faith.add_argument("--no-save", action="store_true", help="do not append the results to the recording")
    faith.add_argument("--json", default=None, help="also write the rows and means here")
    faith.set_defaults(handler=_faithfulness)

    export = subparsers.add_parser("export", help="a token's map as DICOM: secondary capture, parametric map, "
                                   "segmentation (the last two when the recording's image was DICOM)")
    export.add_argument("recording", help="a .medviz file")
    export.add_argument("--token", required=True,
                        help="I (one token) or A:B (the mean over tokens A..B, both included)")
    export.add_argument("--method", default="consensus", help="the map to export (default consensus)")
    export.add_argument("--image", type=int, default=0, help="which image of a study (default 0)")
    export.add_argument("--out", required=True, help="a folder (created if its parent exists)")
    export.add_argument("--send", default=None, metavar="URL", help="then store the objects (STOW-RS) into the "
                        "source's study in this PACS (a DICOMweb root; docs/pacs.md); needs an identified recording")
    add_pacs_options(export)
    export.set_defaults(handler=_export)

    watch = subparsers.add_parser("watch", help="print a live session's (or a recording's) tokens as they arrive")
    watch.add_argument("url", help="the link the page's Share button copies (http://HOST/?watch=ID or ?replay=ID, "
                                   "with its token), or ws://HOST/ws/watch/ID[?token=...]")
    watch.set_defaults(handler=_watch)
