"""multipart/related bodies (PS3.18 8.6): building a STOW-RS request, and reading a WADO-RS answer's parts.

Owns: `build` (DICOM Part 10 files -> body and its Content-Type, with a boundary found in none of them) and
`parts` (an answer's body and Content-Type -> each part's Content-Type and bytes; malformed bodies are a
PacsBadAnswer). A small parser of its own: the standard library's email parser copies and re-encodes bodies, and
no well-kept package fits without a new dependency. Does not own HTTP (client.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from email.message import Message

from server.pacs.errors import PacsBadAnswer

MAX_PARTS = 64


def build(files: Sequence[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    """A multipart/related body of `files` and its Content-Type header."""
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in f for f in files):
        boundary = secrets.token_hex(16)
    chunks = []
    for f in files:
        chunks.append(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + f + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


def content_type(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header -> (media type in lower case, its parameters)."""
    message = Message()
    message["Content-Type"] = header
    params = {k.lower(): v for k, v in message.get_params(header="content-type", failobj=[])[1:]}
    return message.get_content_type().lower(), {k: str(v) for k, v in params.items()}


def parts(body: bytes, header: str, what: str) -> list[tuple[str, bytes]]:
    """The parts of a multipart answer: (Content-Type of the part, its bytes), at most MAX_PARTS."""
    kind, params = content_type(header)
    boundary = params.get("boundary", "")
    if not kind.startswith("multipart/") or not boundary or len(boundary) > 200:
        raise PacsBadAnswer(f"the PACS's answer to {what} is not multipart (Content-Type {header[:80]!r})")
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise PacsBadAnswer(f"the PACS's answer to {what} holds no whole part")
    found: list[tuple[str, bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        if len(found) == MAX_PARTS:
            raise PacsBadAnswer(f"the PACS's answer to {what} holds more than {MAX_PARTS} parts")
        if not piece.startswith(b"\r\n"):
            raise PacsBadAnswer(f"the PACS's answer to {what} has a malformed part delimiter")
        if piece[2:4] == b"\r\n":  # a part without headers
            head, content = b"", piece[4:]
        else:
            head, separator, content = piece[2:].partition(b"\r\n\r\n")
            if not separator:
                raise PacsBadAnswer(f"the PACS's answer to {what} has a part without the end of its headers")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        found.append((_part_type(head), content))
    else:
        raise PacsBadAnswer(f"the PACS's answer to {what} was cut before its closing delimiter")
    return found


def _part_type(head: bytes) -> str:
    for line in head.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "content-type":
            return content_type(value.strip())[0]
    return ""
