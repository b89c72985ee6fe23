"""msgpack framing of the protocol: version, limits, typed field reads, quantised maps and polygons.

Owns: `VERSION`, `pack` (one frame: a map with `v` and `type`; step frames pack floats as
float32), `unpack` (limits checked on the headers first, then one msgpack map with a known
version and a string `type`), `peek_fields` (a few top-level fields of a frame, every other
value skipped unbuilt), `get_field` / `optional_field` (a field of the expected type,
or an error naming the field, what was expected and what came), `QuantMap` with
`quantise`, and region polygons as uint16 pairs. Does not own which fields a frame has
(server_frames.py, client_frames.py, results.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from medviz_core.errors import ProtocolError
from medviz_core.wire.limits import SERVER_LIMITS, UnpackLimits, check_shape, unpack_kwargs

VERSION = 2
READABLE_VERSIONS = (1, 2)  # server frames and recordings; version 1 is upgraded on read (v1.py)
_U16 = np.dtype("<u2")
_SINGLE = msgpack.Packer(use_single_float=True, use_bin_type=True)
_DOUBLE = msgpack.Packer(use_single_float=False, use_bin_type=True)


def pack(frame_type: str, body: Mapping[str, Any], single: bool = False) -> bytes:
    """One frame's bytes: {"v": VERSION, "type": frame_type, **body}; floats as float32 when `single`."""
    data: bytes = (_SINGLE if single else _DOUBLE).pack({"v": VERSION, "type": frame_type, **body})
    return data


def unpack(data: bytes, limits: UnpackLimits = SERVER_LIMITS, versions: tuple[int, ...] = READABLE_VERSIONS
           ) -> dict[str, Any]:
    """One msgpack map with `v` (default VERSION) and `type`; ProtocolError past `limits` or if malformed."""
    check_shape(data, limits)
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, **unpack_kwargs(limits))
    except msgpack.ExtraData as error:
        extra = len(error.extra)
        raise ProtocolError(f"message is more than one msgpack value: {extra} bytes follow the first") from None
    except (ValueError, TypeError):  # FormatError, StackError, truncated input, bad UTF-8, bad map keys
        raise ProtocolError("message is not valid msgpack") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"a frame must be a msgpack map; got {describe(value)}")
    check_version(value.get("v", VERSION), versions)
    if not isinstance(value.get("type"), str):
        raise ProtocolError(f"a frame needs a string field 'type'; got {describe(value.get('type'))}")
    return value


def check_version(version: object, versions: tuple[int, ...] = READABLE_VERSIONS) -> None:
    """ProtocolError unless a frame's `v` is one of `versions`."""
    if version not in versions:
        raise ProtocolError(f"protocol version {version!r} is not supported; expected "
                            f"{' or '.join(str(v) for v in versions)}")


def peek_fields(data: bytes, names: frozenset[str], enough: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The top-level fields `names` of one frame map, read in order until `enough(found)`; every other
    value is skipped by msgpack without being built (a step's maps and regions, a start's PNG), and
    nothing after the last field needed is parsed. No shape check of the rest, and a key given twice
    reads as its first (`unpack` keeps the last): for clients that read a trusted server's frames by
    the thousand. ProtocolError if what it reads is not a msgpack map."""
    found: dict[str, Any] = {}
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1), **unpack_kwargs(SERVER_LIMITS))
        unpacker.feed(data)
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if isinstance(key, str) and key in names:
                found[key] = unpacker.unpack()
                if enough(found):
                    break
            else:
                unpacker.skip()
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ProtocolError("message is not valid msgpack") from None
    return found


# -- typed field reads ---------------------------------------------------------------------

Kind = type | tuple[type, ...]
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", bytes: "bytes",
          list: "an array", dict: "a map", type(None): "nil"}


def describe(value: object) -> str:
    """What a value is, for error messages (never the value itself: it may be image bytes)."""
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return _NAMES.get(type(value), type(value).__name__)


def _expected(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def get_field(m: Mapping[str, Any], key: str, kind: Kind, where: str, error: type[Exception] = ProtocolError) -> Any:
    """m[key] if it has type `kind` (an int passes for a float, a bool never for an int)."""
    if key not in m:
        raise error(f"{where} frame is missing field '{key}'")
    value = m[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_bool = isinstance(value, bool)
    ok = isinstance(value, kinds) and (not is_bool or bool in kinds)
    if float in kinds and isinstance(value, int) and not is_bool:
        ok = True
    if not ok:
        raise error(f"field '{key}' of the {where} frame must be {_expected(kind)}; got {describe(value)}")
    return value


def optional_field(m: Mapping[str, Any], key: str, kind: Kind, default: Any, where: str,
                   error: type[Exception] = ProtocolError) -> Any:
    """Like get_field, but `default` when the key is absent (or nil where the default is nil)."""
    if key not in m or (m[key] is None and default is None):
        return default
    return get_field(m, key, kind, where, error)


def maps_of(m: Mapping[str, Any], key: str, where: str, error: type[Exception] = ProtocolError
            ) -> list[dict[str, Any]]:
    """m[key] as an array of maps."""
    items: list[Any] = get_field(m, key, list, where, error)
    if not all(isinstance(item, dict) for item in items):
        raise error(f"field '{key}' of the {where} frame must be an array of maps")
    return items


# -- quantised maps ------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantMap:
    """A map as it travels: raster uint8 bytes and the float range they span."""

    lo: float
    hi: float
    u8: bytes

    def values(self, grid: tuple[int, ...]) -> np.ndarray:
        """The raw values back (to within half a quantisation step), shape `grid`."""
        u8 = np.frombuffer(self.u8, dtype=np.uint8).astype(np.float32)
        return (self.lo + u8 / 255.0 * (self.hi - self.lo)).astype(np.float32).reshape(grid)

    @staticmethod
    def of(values: np.ndarray) -> QuantMap:
        return QuantMap(*quantise(values))

    def to_wire(self) -> list[Any]:
        return [self.lo, self.hi, self.u8]

    @staticmethod
    def from_wire(entry: object, what: str) -> QuantMap:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], bytes)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[:2])):
            raise ProtocolError(f"map '{what}' must be [lo, hi, bytes]; got {describe(entry)}")
        return QuantMap(lo=float(entry[0]), hi=float(entry[1]), u8=entry[2])


def quantise(values: np.ndarray) -> tuple[float, float, bytes]:
    """Min-max a map to uint8: (lo, hi, raster bytes); all zero when the map is flat.

    lo and hi are rounded to float32 first, as they travel, so decoding recovers the map
    to within half a quantisation step. Non-finite values count as `lo`.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(flat)
    if not finite.any():
        return 0.0, 0.0, bytes(flat.size)
    lo = float(np.float32(flat[finite].min()))
    hi = float(np.float32(flat[finite].max()))
    if hi <= lo:
        return lo, lo, bytes(flat.size)
    scaled = np.where(finite, (flat - lo) / (hi - lo), 0.0)
    return lo, hi, np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()


def pack_polygon(polygon: tuple[tuple[float, float], ...]) -> bytes:
    """Normalised (x, y) vertices -> uint16 little-endian pairs (value / 65535 of the side)."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    return np.rint(np.clip(points, 0.0, 1.0) * 65535.0).astype(_U16).tobytes()


def unpack_polygon(data: bytes) -> tuple[tuple[float, float], ...]:
    if len(data) % 4:
        raise ProtocolError(f"a region polygon must be whole (x, y) uint16 pairs; got {len(data)} bytes")
    points = np.frombuffer(data, dtype=_U16).reshape(-1, 2).astype(np.float64) / 65535.0
    return tuple((float(x), float(y)) for x, y in points)
