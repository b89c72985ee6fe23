"""The protocol's limits: what a frame may hold (checked before anything is unpacked) and what it may ask.

Owns: the protocol constants (MAX_BOXES, MAX_JOB_CHARS, ... : the one place each is defined;
MAX_IMAGES, MAX_NEW_TOKENS and MAX_QUESTION_CHARS are the domain's, medviz_core/limits.py, and
re-exported here for the frames), `ClientLimits` (the server's caps on what a client asks),
`UnpackLimits` (the most items, nesting depth and array / map / str / bin lengths a frame may
hold), `SERVER_LIMITS` sized to what the server sends and records (protocol v1),
`client_limits` sized to what clients send, and `check_shape`, which walks the msgpack headers
of a message (skipping str and bin payloads, building nothing) and refuses it at the first
header past a limit. A bomb of millions of tiny arrays is refused after at most `max_items`
headers, in microseconds and without memory, so the parser never materialises it.
`unpack_kwargs` gives msgpack.unpackb the same
length limits. Does not own what the fields mean (server_frames.py, client_frames.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medviz_core.errors import ProtocolError
from medviz_core.limits import MAX_IMAGES as MAX_IMAGES
from medviz_core.limits import MAX_NEW_TOKENS as MAX_NEW_TOKENS
from medviz_core.limits import MAX_QUESTION_CHARS

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


# What a msgpack value's first byte heads: a scalar of a fixed size, a str / bin payload, an array, a map
# (each with its count in the byte's low bits or in a length field that follows), an extension type, or
# 0xC1 (never used).
_SCALAR, _STR, _BIN, _ARRAY, _MAP, _EXT, _NEVER = range(7)
_KIND_NAMES = {_STR: "str", _BIN: "bin", _ARRAY: "array", _MAP: "map"}
_SIZED = {0xC4: (1, _BIN), 0xC5: (2, _BIN), 0xC6: (4, _BIN), 0xD9: (1, _STR), 0xDA: (2, _STR),
          0xDB: (4, _STR), 0xDC: (2, _ARRAY), 0xDD: (4, _ARRAY), 0xDE: (2, _MAP), 0xDF: (4, _MAP)}
_SCALAR_BYTES = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
                 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}


def _first_byte_table() -> tuple[list[int], list[int], list[int]]:
    """Per first byte: its kind; a scalar's size or a length field's width (0: the count is in the low
    bits); the mask of those low bits."""
    kinds, sizes, masks = [_EXT] * 256, [0] * 256, [0] * 256
    for first in range(256):
        if first <= 0x7F or first >= 0xE0:  # fixint
            kinds[first], sizes[first] = _SCALAR, 1
        elif first <= 0xBF:  # fixmap, fixarray, fixstr
            kinds[first] = _MAP if first <= 0x8F else _ARRAY if first <= 0x9F else _STR
            masks[first] = 0x1F if first >= 0xA0 else 0x0F
        elif first in _SCALAR_BYTES:
            kinds[first], sizes[first] = _SCALAR, _SCALAR_BYTES[first]
        elif first in _SIZED:
            sizes[first], kinds[first] = _SIZED[first]
        elif first == 0xC1:
            kinds[first] = _NEVER
    return kinds, sizes, masks


_KINDS, _SIZES, _MASKS = _first_byte_table()


def check_shape(data: bytes, limits: UnpackLimits) -> None:
    """ProtocolError at the first msgpack header of `data` past `limits` (or if it is cut short).

    One pass over the headers, reading each first byte from a table: every frame's decoder runs this
    before msgpack does, and it costs several times what msgpack's own parse of the frame does.
    """
    n, pos, items = len(data), 0, 0
    max_items, max_depth = limits.max_items, limits.max_depth
    caps = {_STR: limits.max_str_len, _BIN: limits.max_bin_len, _ARRAY: limits.max_array_len, _MAP: limits.max_map_len}
    outer: list[int] = []  # values still to read at each enclosing level
    left = 1  # values still to read at this level; the top level holds one
    kinds, sizes, masks = _KINDS, _SIZES, _MASKS
    while True:
        if not left:
            if not outer:
                break
            left = outer.pop()
            continue
        left -= 1
        items += 1
        if items > max_items:
            raise ProtocolError(f"message holds more than {max_items} msgpack items; the limit is {max_items}")
        if pos >= n:
            raise ProtocolError("message is not valid msgpack")
        first = data[pos]
        kind = kinds[first]
        if kind == _SCALAR:
            pos += sizes[first]
            continue
        if kind >= _EXT:
            if kind == _NEVER:
                raise ProtocolError("message is not valid msgpack")
            raise ProtocolError(f"message holds a msgpack extension type (0x{first:02x}); the protocol has none")
        width = sizes[first]
        if width:
            pos += 1 + width
            if pos > n:
                raise ProtocolError("message is not valid msgpack")
            count = int.from_bytes(data[pos - width:pos], "big")
        else:
            count = first & masks[first]
            pos += 1
        if count > caps[kind]:
            _refuse_length(kind, count, caps[kind])
        if kind <= _BIN:
            pos += count
        else:
            if len(outer) >= max_depth:
                raise ProtocolError(f"message nests arrays and maps deeper than {max_depth} levels; the "
                                    f"limit is {max_depth}")
            outer.append(left)
            left = count * 2 if kind == _MAP else count
    if pos > n:
        raise ProtocolError("message is not valid msgpack")


def _refuse_length(kind: int, count: int, limit: int) -> None:
    name = _KIND_NAMES[kind]
    what = {"array": "items", "map": "entries"}.get(name, "bytes")
    raise ProtocolError(f"message holds a msgpack {name} of {count} {what}; the limit is {limit}")
