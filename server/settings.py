"""The server's one Settings object: where it listens, what it serves and what it accepts.

Owns: every knob of the server, `check()`, which refuses a non-loopback bind without
a token, `DEFAULT_MODEL` (the model every command uses unless told), `default_recordings()`
(the per-user data folder recordings go to) and `configured()`, which sets any field by name
from a TOML file and `NAME=VALUE` strings, each checked against the field's type.
docs/security.md lists every limit here with its default; keep the two in step.
Does not own parsing command lines (cli/commands.py) or enforcing the limits (wire/,
wire/limits.py, imaging/load.py, guard/image_budget.py, sockets/connections.py, the handlers).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import string
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviz_core.errors import AuthError, MedvizError
from medviz_core.imaging.load import MAX_DECODED_BYTES, MAX_PIXELS
from medviz_core.recording.deidentify import RecordingIdentity
from medviz_core.wire.limits import ClientLimits
from server.pacs.config import PacsConfig

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
DEFAULT_MODEL = "demo"  # every command's and the server's model unless one is named
TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~")  # what links, cookies, headers carry as is


def default_recordings() -> Path:
    """Where recordings go unless told: `$XDG_DATA_HOME/medviz/recordings`, else
    `~/.local/share/medviz/recordings` (never the working directory: medical images one
    `git add .` away from a commit)."""
    data = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "medviz" / "recordings"


def is_loopback(host: str) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    recordings: Path = field(default_factory=default_recordings)
    web: Path = WEB_DIR
    queue_cap: int = 8  # sessions waiting for the model beyond the running one; past it: busy
    viewer_queue: int = 256  # frames a viewer may fall behind before it is closed (4008)
    linger_s: float = 300.0  # how long a finished session stays watchable from its log
    owner_grace_s: float = 15.0  # a dropped or disconnected owner's session runs on this long for a rejoin
    analysis_cache: int = 256  # done analysis results kept in memory (recordings keep theirs on disk)
    analysis_per_connection: int = 8  # analyses one connection may have waiting; past it: busy
    analysis_queue: int = 32  # analyses waiting on the whole server; past it: busy
    recordings_min_free_mb: int = 512  # a recorded session needs this much free space on the recordings disk to start
    recording_results_max_bytes: int = 64 * 1024 * 1024  # analysis results appended to one recording, in bytes
    recordings_keep_identity: bool = False  # write DICOM headers as they came (a clinical archive); else de-identified
    allow_burned_in: bool = False  # record a DICOM that says BurnedInAnnotation YES even into a de-identified recording
    first_frame_timeout_s: float = 30.0
    max_message_bytes: int = 20 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    max_decoded_bytes: int = MAX_DECODED_BYTES  # per image: width x height x channels x bytes per sample
    image_budget_bytes: int = 1024 * 1024 * 1024  # estimated decoding work in flight, all requests together
    image_wait_s: float = 30.0  # how long a start request waits for room in the image budget; then busy
    max_question_chars: int = 2000
    max_new_tokens: int = 512
    max_session_sockets: int = 32  # open /ws/session connections
    max_watch_sockets: int = 128  # open /ws/watch connections
    max_replay_sockets: int = 32  # open /ws/replay connections
    max_sockets: int = 160  # open websockets of every kind together; past any cap: busy (4429)
    max_connections: int = 256  # TCP connections uvicorn serves at once (HTTP 503 past it)
    idle_timeout_s: float = 300.0  # a replay, or a live socket after its end, with no message either way: 4408
    close_timeout_s: float = 30.0  # how long a close (4008 to a slow viewer) may wait behind unsent bytes
    header_timeout_s: float = 10.0  # from connecting to the end of the request headers
    max_header_bytes: int = 16 * 1024  # request line and headers together (h11's limit)
    keep_alive_s: int = 5  # an idle HTTP keep-alive connection is closed after this
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)  # extra origins, e.g. "https://host:443"
    video_render_limit_s: float = 1800.0  # a Video button's render, from its start, pauses included; then killed
    video_paused_limit_s: float = 600.0  # a render paused without a break while the model works; then killed
    # Scale-out (docs/deploy.md): a Redis URL makes this a stateless web node; the rest tune it and its workers.
    redis_url: str | None = None  # e.g. redis://:password@10.0.0.5:6379/0; None: sessions in this process
    redis_prefix: str = "medviz"  # every key starts with it, so deployments can share one Redis
    heartbeat_s: float = 2.0  # how often workers and web nodes say they are alive (and hold their job)
    reclaim_s: float = 15.0  # a job its worker did not hold this long is reclaimed: re-run if not started, else failed
    redis_wait_s: float = 10.0  # how long a followed session waits for a lost Redis before its viewers get an error
    session_ttl_s: float = 86400.0  # a session's keys expire after this even if it never ended (linger_s after its end)
    no_worker_notice_s: float = 30.0  # a web node that saw no live worker this long ends waiting sessions: busy
    redis_insecure: bool = False  # accept a Redis that answers without a password (tests, a one-user box)
    # The hospital's archive (docs/pacs.md): set by `medviz serve --pacs URL` and its credential files, never --set
    # or a config file (refused there: FROM_OPTIONS_ONLY); its repr hides the password and token.
    pacs: PacsConfig | None = None
    # The second credential the PACS routes and a PACS start need (docs/security.md): only the operator's link carries
    # it, never a share or watch link; `medviz serve --pacs` makes one per start unless --pacs-key-file. None: no
    # request may use the PACS.
    pacs_key: str | None = field(default=None, repr=False)

    @property
    def limits(self) -> ClientLimits:
        return ClientLimits(
            max_message_bytes=self.max_message_bytes,
            max_question_chars=self.max_question_chars,
            max_new_tokens=self.max_new_tokens,
        )

    def recording_identity(self) -> RecordingIdentity:
        """What a new session's recording keeps of its patient's identity (with a key of its own)."""
        return RecordingIdentity(keep=self.recordings_keep_identity, allow_burned_in=self.allow_burned_in,
                                 allow_with="the server setting allow_burned_in=true")

    @property
    def ws_max_size(self) -> int:
        """uvicorn's hard frame limit: above ours, so oversize messages get a clear error frame first."""
        return self.max_message_bytes + 1024 * 1024

    def check(self) -> Settings:
        """Refuse settings that would expose medical images: a public bind needs a token."""
        if not is_loopback(self.host) and not self.token:
            raise AuthError(
                f"refusing to listen on {self.host} without a token: pass --token "
                "(or set MEDVIZ_TOKEN), or bind 127.0.0.1"
            )
        if self.token is not None and len(self.token) < 8:
            raise AuthError(f"the token must be at least 8 characters; got {len(self.token)}")
        if self.pacs_key is not None and len(self.pacs_key) < 16:
            raise AuthError(f"the PACS key must be at least 16 characters; got {len(self.pacs_key)}")
        _check_secret("the token", self.token)
        _check_secret("the PACS key", self.pacs_key)
        if self.pacs_key is not None and self.pacs_key == self.token:
            raise AuthError("the PACS key must differ from the token: every watch link carries the token")
        return self


def _check_secret(what: str, value: str | None) -> None:
    """AuthError unless `value` (when set) travels unchanged in links, cookies and headers."""
    odd = next((c for c in value or "" if c not in TOKEN_CHARACTERS), None)
    if odd is not None:
        raise AuthError(f"{what} may hold only letters A-Z a-z, digits and - . _ ~ (it travels unchanged "
                        f"in links, cookies and headers); it holds {odd!r}")


FROM_OPTIONS_ONLY = ("pacs", "pacs_key")
FROM_OPTIONS_ONLY_HINT = ("is set by medviz serve --pacs URL (credentials: --pacs-user with --pacs-password-file, "
                          "or --pacs-token-file) and --pacs-key-file, never")


class SettingError(MedvizError):
    """A setting that names no field of Settings or whose value is not of the field's type."""


def configured(base: Settings, file: Mapping[str, object] | None = None, sets: Iterable[str] = ()) -> Settings:
    """`base` with the fields a TOML file's table (`file`) names, then each `NAME=VALUE` of `sets`
    (later wins), every value checked against its field's type: SettingError in one line otherwise."""
    changes: dict[str, Any] = {}
    for name, value in (file or {}).items():
        changes[name] = _checked(name, value, "in the config file", text=False)
    for item in sets:
        name, equals, text = item.partition("=")
        if not equals:
            raise SettingError(f"--set takes NAME=VALUE; got {item[:80]!r}")
        changes[name.strip()] = _checked(name.strip(), text, "in --set", text=True)
    return dataclasses.replace(base, **changes)


def read_config(path: Path) -> dict[str, object]:
    """A TOML file of settings (`max_watch_sockets = 256`, ...) as a table; SettingError if unreadable."""
    import tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as error:
        raise SettingError(f"cannot read the config file {str(path)!r}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingError(f"the config file {str(path)!r} is not TOML: {error}") from None


def _hints() -> dict[str, object]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _checked(name: str, value: object, where: str, text: bool) -> object:
    """`value` as the type of field `name`: a string from --set is parsed, a TOML value must have the type."""
    hints = _hints()
    if name in FROM_OPTIONS_ONLY:  # read from their files by `medviz serve`, which would replace a value given here
        raise SettingError(f"{name} {FROM_OPTIONS_ONLY_HINT} {where}")
    if name not in hints:
        near = difflib.get_close_matches(name, hints, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(near)}?" if near else "docs/security.md lists every setting"
        raise SettingError(f"unknown setting {name[:60]!r} {where}; {hint}")
    try:
        return _as(hints[name], value, text)
    except ValueError as error:
        raise SettingError(f"setting {name} {where}: {error}") from None


def _as(kind: object, value: object, text: bool) -> object:
    """`value` as `kind` (str, int, float, bool, Path, tuple[str, ...], or one of them | None); `text`: parse
    strings (--set; "" and "none" are None where None is allowed), else the value must already be of the type."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if text and isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return _as(next(a for a in args if a is not type(None)), value, text)
    if typing.get_origin(kind) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if text and isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"expected a list (comma-separated after --set); got {value!r}"[:160])
        return tuple(_as(args[0], item, text) for item in items)
    if kind is bool:
        return _boolean(value, text)
    if kind is int or kind is float:
        return _number(kind is int, value, text)
    if kind is Path or kind is str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected {'a path' if kind is Path else 'a string'}; got {value!r}"[:160])
        return Path(value).expanduser() if kind is Path else value
    raise ValueError(f"fields of type {kind} cannot be set")


def _boolean(value: object, text: bool) -> bool:
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"expected true or false; got {value!r}"[:160])


def _number(whole: bool, value: object, text: bool) -> int | float:
    wanted = "an integer" if whole else "a number"
    number: int | float
    if text and isinstance(value, str):
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            raise ValueError(f"expected {wanted}; got {value!r}"[:160]) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value if whole else float(value)
    elif isinstance(value, float) and not whole:
        number = value
    else:
        raise ValueError(f"expected {wanted}; got {value!r}"[:160])
    if number < 0:
        raise ValueError(f"expected {wanted} >= 0; got {value!r}"[:160])
    return number
