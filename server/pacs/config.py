"""How to reach one PACS: its DICOMweb root, its credentials and the limits every exchange with it keeps.

Owns: `PacsConfig` (frozen; its repr never shows the password or token) and `PacsConfig.from_files`, which reads
the password or token from a file's first line (never from the command line, which other local users read in
/proc/PID/cmdline). Does not own the HTTP exchanges (pacs/client.py) nor the command-line options (cli/pacs.py).
docs/security.md lists the limits' defaults; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.pacs.errors import PacsConfigError

MAX_INSTANCE_BYTES = 20 * 1024 * 1024  # one retrieved instance: the upload limit (Settings.max_message_bytes)
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # one QIDO-RS JSON answer (100 studies take about 150 KB)
MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024  # one rendered thumbnail
MAX_STORE_ANSWER_BYTES = 1024 * 1024  # a STOW-RS answer (its two sequences)
SECRET = "<hidden>"


@dataclass(frozen=True)
class PacsConfig:
    url: str  # the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    user: str | None = None  # HTTP Basic, with `password`
    password: str | None = field(default=None, repr=False)  # from a file; never logged, never in a repr
    token: str | None = field(default=None, repr=False)  # Bearer, from a file; never logged, never in a repr
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0  # each read of an answer
    total_timeout_s: float = 120.0  # one exchange (a search, a retrieval, a store) as a whole
    max_results: int = 100  # studies one search shows at most, all pages together
    page_size: int = 25  # studies per QIDO-RS request (`limit`)
    max_answer_bytes: int = MAX_ANSWER_BYTES
    max_instance_bytes: int = MAX_INSTANCE_BYTES
    max_thumbnail_bytes: int = MAX_THUMBNAIL_BYTES
    max_store_answer_bytes: int = MAX_STORE_ANSWER_BYTES

    def __post_init__(self) -> None:
        if "@" in self.url:  # a user or password in the address: refused before any of it may be echoed
            raise PacsConfigError("the PACS address must carry no user or password: give the user with --pacs-user "
                                  "and put credentials in --pacs-password-file")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsConfigError(f"the PACS address must be an http:// or https:// DICOMweb root, e.g. "
                                  f"http://127.0.0.1:8042/dicom-web; got {self.url[:120]!r}")
        if parts.query or parts.fragment:
            raise PacsConfigError("the PACS address must carry no query or fragment: give its DICOMweb root, e.g. "
                                  "http://127.0.0.1:8042/dicom-web")
        if self.password is not None and self.user is None:
            raise PacsConfigError("a PACS password needs a user name too (--pacs-user)")
        if self.token is not None and self.user is not None:
            raise PacsConfigError("give the PACS either a user and password or a token, not both")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise PacsConfigError(f"the PACS limit {f.name} must be > 0; got {value!r}")
        if self.page_size > self.max_results:
            object.__setattr__(self, "page_size", self.max_results)

    @property
    def root(self) -> str:
        """The DICOMweb root without a trailing slash."""
        return self.url.rstrip("/")

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): where requests may go; the port always a number (80 or 443 when the address
        names none), as httpx's URLs leave out a scheme's default port."""
        parts = urlsplit(self.url)
        return parts.scheme, (parts.hostname or "").lower(), port_of(parts.scheme, parts.port)

    def secrets(self) -> tuple[str, ...]:
        """The values no message, log line or answer to a browser may carry."""
        return tuple(s for s in (self.password, self.token) if s)

    @staticmethod
    def from_files(url: str, user: str | None = None, password_file: str | None = None,
                   token_file: str | None = None, **limits: Any) -> PacsConfig:
        """A config whose password or token is the first line of its file."""
        if password_file is not None and token_file is not None:
            raise PacsConfigError("give the PACS either --pacs-password-file or --pacs-token-file, not both")
        if password_file is not None and user is None:
            raise PacsConfigError("--pacs-password-file needs --pacs-user too")
        if user is not None and password_file is None:
            raise PacsConfigError("--pacs-user needs --pacs-password-file (the password is never given on the "
                                  "command line)")
        password = _first_line(password_file, "password") if password_file is not None else None
        token = _first_line(token_file, "token") if token_file is not None else None
        return PacsConfig(url=url, user=user, password=password, token=token, **limits)


def port_of(scheme: str, port: int | None) -> int:
    """A URL's port, its scheme's default (80 for http, 443 for https) when it names none."""
    return port if port is not None else 443 if scheme == "https" else 80


def _first_line(path: str, what: str) -> str:
    try:
        lines = Path(path).expanduser().read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PacsConfigError(f"cannot read the PACS {what} file {path!r}: "
                              f"{getattr(error, 'strerror', None) or type(error).__name__}") from None
    if not lines or not lines[0].strip():
        raise PacsConfigError(f"the PACS {what} file {path!r} is empty; its first line is the {what}")
    return lines[0].strip()
