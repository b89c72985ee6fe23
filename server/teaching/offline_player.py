"""The offline player: one self-contained HTML file that replays a recording with no server.

Owns: which frames the file carries (`replay_frames`: exactly what a replay viewer gets, by
sockets/replay.py's rule: the start, each step followed by the finished results about its token,
the last end; never the recording-only `source` frame) and the page itself (`player_html`):
web/index.html with web/css/ inline, every ES module of web/js/ as a `data:` URL in an import map
(each relative import rewritten to its mapped name, the sources otherwise as they are: no build
step) and the frames, base64 in a `<script type="application/octet-stream">` that
web/js/offline/boot.js plays, with the kinds that need the model (`data-model-kinds`, from
medviz_core/analyses/kinds.py's registry: boot.js says why each analysis is absent). Does not own
reading recordings (medviz_core/recording/file.py), playing them (web/js/offline/) nor HTTP (offline_routes.py).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections import defaultdict
from pathlib import Path

from medviz_core.analyses.kinds import ANALYSES
from medviz_core.errors import MedvizError, RequestError
from medviz_core.recording.deidentify import IDENTIFYING_KINDS
from medviz_core.recording.file import RecordedFrame, Recording, read_recording
from medviz_core.wire.results import AnalysisFrame

MODULE_PREFIX = "medviz/"  # the import map's names: bare specifiers, as a data: module cannot resolve "./x.js"
RELATIVE_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\.{1,2}/[\w./-]+\.js)\2""")
STYLESHEET = '<link rel="stylesheet" href="css/app.css">'
ENTRY = '<script type="module" src="js/app.js"></script>'
RECORDING_ELEMENT = "medviz-recording"  # the id web/js/offline/boot.js reads the frames from


def replay_frames(recording: Recording) -> list[bytes]:
    """The bytes a replay viewer gets, in the order sockets/replay.py sends them: the start, each step followed
    by the finished (done) results about its token, then the last end. The recording-only `source` frame, a
    result about a token never generated, an unfinished result and a DICOM export (IDENTIFYING_KINDS: it may copy
    the patient's identity, and a page without a server cannot show it) are never among them."""
    if not recording.frames:
        raise RequestError("the recording is empty: it holds no frame to play")
    results: defaultdict[int, list[RecordedFrame]] = defaultdict(list)
    for result in recording.analyses:
        if isinstance(result.frame, AnalysisFrame) and result.frame.kind not in IDENTIFYING_KINDS:
            results[result.frame.index].append(result)
    sent = [recording.frames[0].sent]
    for k, step in enumerate(recording.steps):
        sent.append(step.sent)
        sent.extend(result.sent for result in results.get(k, ()))
    if recording.end_frame is not None:
        sent.append(recording.end_frame.sent)
    return sent


def module_name(web: Path, module: Path) -> str:
    """The import map's name of a module of web/js/: `medviz/js/views/player.js`."""
    return MODULE_PREFIX + module.relative_to(web).as_posix()


def rewritten(web: Path, module: Path) -> str:
    """A module's source with each relative import (`from "../page.js"`, `import("./x.js")`, JSDoc types
    included) naming the import map's entry instead."""
    def name(match: re.Match[str]) -> str:
        target = (module.parent / match[3]).resolve()
        return f"{match[1]}{match[2]}{module_name(web, target)}{match[2]}"

    return RELATIVE_IMPORT.sub(name, module.read_text(encoding="utf-8"))


def import_map(web: Path) -> dict[str, dict[str, str]]:
    """Every module of web/js/ by its name, as a base64 `data:` URL of its rewritten source."""
    imports = {}
    for module in sorted((web / "js").rglob("*.js")):
        encoded = base64.b64encode(rewritten(web, module).encode("utf-8")).decode("ascii")
        imports[module_name(web, module.resolve())] = f"data:text/javascript;base64,{encoded}"
    return {"imports": imports}


def player_html(recording: Recording, name: str, web: Path) -> str:
    """The offline player of one recording: web/index.html with its stylesheet and modules inline and the
    replay's frames embedded. MedvizError if web/ is not the page this builder knows."""
    web = web.resolve()
    page = (web / "index.html").read_text(encoding="utf-8")
    for expected in (STYLESHEET, ENTRY, "</body>"):
        if page.count(expected) != 1:
            raise MedvizError(f"{web / 'index.html'} should hold {expected!r} once to build an offline player; "
                              f"found it {page.count(expected)} times")
    css = "\n".join(p.read_text(encoding="utf-8") for p in sorted((web / "css").glob("*.css")))
    if "</style" in css.lower():
        raise MedvizError("web/css/ holds '</style', which would end the offline player's inline style early")
    frames = base64.b64encode(b"".join(replay_frames(recording))).decode("ascii")
    modules = json.dumps(import_map(web), separators=(",", ":"))
    entry = (f'<script type="importmap">{modules}</script>\n'
             f'  <script type="module">import "{MODULE_PREFIX}js/app.js";</script>')
    on_model = ",".join(kind for kind, analysis in ANALYSES.items() if analysis.needs_model)
    embedded = (f'<script type="application/octet-stream" id="{RECORDING_ELEMENT}" '
                f'data-name="{html.escape(name)}" data-model-kinds="{on_model}">{frames}</script>\n</body>')
    return (page.replace(STYLESHEET, f"<style>\n{css}\n</style>").replace(ENTRY, entry)
            .replace("</body>", embedded))


def player_of(recording_path: Path, web: Path) -> bytes:
    """The offline player of a recording file, as the bytes `medviz html` writes and the route sends.
    NotFoundError / ProtocolError for a missing or unreadable recording."""
    return player_html(read_recording(recording_path), recording_path.stem, web).encode("utf-8")


def write_player(recording_path: Path, out: Path, web: Path) -> int:
    """Write the offline player of a recording file to `out` (never over an existing file); its size in bytes.
    NotFoundError / ProtocolError for a missing or unreadable recording, RequestError for an existing `out`."""
    page = player_of(recording_path, web)
    try:
        with out.open("xb") as file:
            file.write(page)
    except FileExistsError:
        raise RequestError(f"{out} already exists; choose another --out (an offline player is never "
                           "overwritten)") from None
    return len(page)
