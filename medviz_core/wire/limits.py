"""The protocol's limits: what a frame may hold (checked before anything is unpacked) and what it may ask.

Owns: the protocol constants (MAX_IMAGES, MAX_LABEL_CHARS, MAX_BOXES, ... : the one place each
is defined), `ClientLimits` (the server's caps on what a client asks), `UnpackLimits` (the most
items, nesting depth and array / map / str / bin lengths a frame may hold), `SERVER_LIMITS`
sized to what the server sends and records (protocol v1), `client_limits` sized to what clients
send, and `check_shape`, which walks the msgpack headers of a message (skipping str and bin
payloads, building nothing) and refuses it at the first header past a limit. A bomb of millions
of tiny arrays is refused after at most `max_items` headers, in microseconds and without
memory, so the parser never materialises it. `unpack_kwargs` gives msgpack.unpackb the same
length limits. Does not own what the fields mean (server_frames.py, client_frames.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError

MAX_IMAGES = 4  # images in one session (a study: PA, lateral, prior...)
MAX_QUESTION_CHARS = 2000  # after stripping surrounding whitespace (the engine's bound; a server may allow fewer)
MAX_LABEL_CHARS = 32  # "PA", "lateral", "prior 2024-03"
MAX_BOXES = 32  # annotation boxes in one agreement request
MAX_BOX_LABEL_CHARS = 64
MAX_FAITHFULNESS_STEPS = 256
DEFAULT_FAITHFULNESS_STEPS = 8
MAX_JOB_CHARS = 64
MAX_REQUEST_ID_CHARS = 64  # the `id` a client gives a request, echoed in its answers


@dataclass(frozen=True)
class ClientLimits:
    """What a server accepts from a client (server/settings.py fills it)."""

    max_message_bytes: int = 20 * 1024 * 1024
    max_question_chars: int = MAX_QUESTION_CHARS
    max_new_tokens: int = 512


@dataclass(frozen=True)
class UnpackLimits:
    """The most one msgpack message may hold."""

    max_items: int  # every value counts, map keys included
    max_depth: int  # nested arrays / maps
    max_array_len: int
    max_map_len: int
    max_str_len: int  # bytes
    max_bin_len: int  # bytes


# Server frames: a heads result of a large model (62 layers x 32 heads x 4 images maps,
# 4 items each) is about 32 K items; a start frame's PNG can be tens of MB.
SERVER_LIMITS = UnpackLimits(max_items=1_000_000, max_depth=16, max_array_len=262_144, max_map_len=1024,
                             max_str_len=16 * 1024 * 1024, max_bin_len=256 * 1024 * 1024)


def client_limits(max_message_bytes: int, max_question_chars: int) -> UnpackLimits:
    """What a client frame may hold: 32 boxes of an agreement request (about 360 items) is the
    largest; arrays of at most 64 (4 images, 4 labels, 6 methods, 32 boxes, 4 numbers), maps of at
    most 32 fields, strings up to a question of `max_question_chars` in UTF-8, files up to the message."""
    return UnpackLimits(max_items=1024, max_depth=8, max_array_len=64, max_map_len=32,
                        max_str_len=max(4096, 4 * max_question_chars), max_bin_len=max_message_bytes)


def unpack_kwargs(limits: UnpackLimits) -> dict[str, Any]:
    """msgpack.unpackb / Unpacker arguments enforcing the same lengths (no extension types)."""
    return {"max_array_len": limits.max_array_len, "max_map_len": limits.max_map_len,
            "max_str_len": limits.max_str_len, "max_bin_len": limits.max_bin_len, "max_ext_len": 0}


# First byte -> (bytes of the length field, what it heads). Fixed-size scalars are in _SCALAR.
_SIZED = {0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"), 0xD9: (1, "str"), 0xDA: (2, "str"),
          0xDB: (4, "str"), 0xDC: (2, "array"), 0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map")}
_SCALAR = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
           0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}
_WIDTH = {1: ">B", 2: ">H", 4: ">I"}


def check_shape(data: bytes, limits: UnpackLimits) -> None:
    """ProtocolError at the first msgpack header of `data` past `limits` (or if it is cut short)."""
    pos, items = 0, 0
    pending = [1]  # values still to read at each open level; the top level holds one
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        items += 1
        if items > limits.max_items:
            raise ProtocolError(f"message holds more than {limits.max_items} msgpack items; the limit is "
                                f"{limits.max_items}")
        kind, count, pos = _header(data, pos)
        if kind in ("str", "bin"):
            _check_length(kind, count, limits.max_str_len if kind == "str" else limits.max_bin_len)
            pos += count
        elif kind in ("array", "map"):
            _check_length(kind, count, limits.max_array_len if kind == "array" else limits.max_map_len)
            if len(pending) > limits.max_depth:
                raise ProtocolError(f"message nests arrays and maps deeper than {limits.max_depth} levels; the "
                                    f"limit is {limits.max_depth}")
            pending.append(count * 2 if kind == "map" else count)
    if pos > len(data):
        raise ProtocolError("message is not valid msgpack")


def _header(data: bytes, pos: int) -> tuple[str, int, int]:
    """(kind, length or count, position after the header) of the value at `pos`."""
    if pos >= len(data):
        raise ProtocolError("message is not valid msgpack")
    first = data[pos]
    if first <= 0x7F or first >= 0xE0:
        return "int", 0, pos + 1
    if first <= 0x8F:
        return "map", first & 0x0F, pos + 1
    if first <= 0x9F:
        return "array", first & 0x0F, pos + 1
    if first <= 0xBF:
        return "str", first & 0x1F, pos + 1
    if first in _SCALAR:
        return "scalar", 0, pos + _SCALAR[first]
    if first in _SIZED:
        width, kind = _SIZED[first]
        field = data[pos + 1:pos + 1 + width]
        if len(field) != width:
            raise ProtocolError("message is not valid msgpack")
        return kind, int(struct.unpack(_WIDTH[width], field)[0]), pos + 1 + width
    if first == 0xC1:
        raise ProtocolError("message is not valid msgpack")
    raise ProtocolError(f"message holds a msgpack extension type (0x{first:02x}); the protocol has none")


def _check_length(kind: str, count: int, limit: int) -> None:
    if count > limit:
        what = {"array": "items", "map": "entries"}.get(kind, "bytes")
        raise ProtocolError(f"message holds a msgpack {kind} of {count} {what}; the limit is {limit}")
