"""The browser's own msgpack decoder (web/js/msgpack.js) and frame decoder
(web/js/protocol.js), run in Chromium on the golden fixtures and on a value using every
msgpack format, must read exactly what Python reads."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from .conftest import Server, Watched

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.msgpack"))

# Decode in the page; bin -> {"$bin": base64}, ext -> {"$ext": [type, base64]}, BigInt -> {"$int": "..."}
DECODE = """async ([b64, frame]) => {
  const { decode, Ext } = await import('/js/msgpack.js');
  const { decodeFrame } = await import('/js/protocol.js');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const b64of = (u8) => {
    let s = '';
    for (let k = 0; k < u8.length; k += 8192) s += String.fromCharCode(...u8.subarray(k, k + 8192));
    return btoa(s);
  };
  const plain = (v) => {
    if (v instanceof Uint8Array) return { $bin: b64of(v) };
    if (v instanceof Float32Array) return { $f32: Array.from(v) };
    if (v instanceof Ext) return { $ext: [v.type, b64of(v.data)] };
    if (typeof v === 'bigint') return { $int: v.toString() };
    if (v instanceof Map) return { $map: Array.from(v, ([k, x]) => [plain(k), plain(x)]) };
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  return { value: plain(decode(bytes)), frame: frame ? plain(decodeFrame(bytes)) : null };
}"""


def run_decoder(page: Any, data: bytes, frame: bool) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(DECODE, [base64.b64encode(data).decode(), frame])
    return result


def expected_frame(v: dict[str, Any]) -> dict[str, Any]:
    """What protocol.js should make of a decoded frame: the documented fields, camelCased."""
    t = v["type"]
    if t == "step":
        def poly(b64: str) -> list[float]:
            raw = base64.b64decode(b64)
            return [int.from_bytes(raw[k:k + 2], "little") / 65535 for k in range(0, len(raw), 2)]
        return {
            "type": "step", "i": v["i"], "tokenId": v["token_id"], "text": v["text"], "pos": v["pos"], "tMs": v["t_ms"],
            "maps": {m: {"lo": e[0], "hi": e[1], "u8": e[2]} for m, e in v["maps"].items()},
            "mass": v["mass"], "ent": v["ent"], "entN": v["ent_n"], "peak": v["peak"], "zone": v["zone"],
            "regions": [{"poly": poly(r["poly"]["$bin"]), "box": r["box"], "mass": r["mass"], "zone": r["zone"]} for r in v["regions"]],
            "modelMs": v["model_ms"], "mapsMs": v["maps_ms"], "seeing": v["seeing"], "special": v["special"],
        }
    if t == "start":
        m, p = v["model"], v["prompt"]
        return {
            "type": "start", "session": v["session"],
            "model": {"name": m["name"], "layers": m["layers"], "heads": m["heads"], "kvHeads": m["kv_heads"], "grid": m["grid"],
                      "imageTokenId": m["image_token_id"], "slidingWindow": m["sliding_window"], "fullLayers": m["full_layers"],
                      "device": m["device"], "dtype": m["dtype"]},
            "prompt": {"tokenIds": p["token_ids"], "imagePositions": p["image_positions"], "question": p["question"]},
            "image": v["image"], "methods": v["methods"], "params": v["params"], "created": v["created"],
            "recording": v.get("recording"),
        }
    if t == "end":
        return {"type": "end", "reason": v["reason"], "tokens": v["tokens"], "text": v["text"], "prefillMs": v["prefill_ms"],
                "totalMs": v["total_ms"], "message": v["message"], "timings": v["timings"]}
    return {k: x for k, x in v.items() if k != "v"}


def test_there_are_golden_fixtures_to_read() -> None:
    assert {"start", "step", "end", "error", "queued", "replay"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_browser_decodes_each_golden_fixture_exactly_as_python(tab: Watched, server: Server, name: str) -> None:
    tab.page.goto(server.url)
    data = (FIXTURES / f"{name}.msgpack").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    result = run_decoder(tab.page, data, frame=True)
    assert result["value"] == expected
    frame = result["frame"]
    for region in frame.get("regions", []):
        region["poly"] = region["poly"]["$f32"]
    want = expected_frame(expected)
    for got_region, want_region in zip(frame.get("regions", []), want.get("regions", [])):
        assert got_region.pop("poly") == pytest.approx(want_region.pop("poly"), abs=1e-7)
    assert frame == want
    assert tab.errors == []


def test_the_browser_reads_every_msgpack_format(tab: Watched, server: Server) -> None:
    value = {
        "fixint": [0, 127, -1, -32], "uint": [128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1],
        "int": [-33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1],
        "big": [2**64 - 1, -(2**63)], "floats": [1.5, -0.1, 1e300],
        "str": ["", "é ✓ 🫁", "x" * 31, "y" * 32, "z" * 256, "w" * 65536],
        "bin": [b"", b"\x00\xff", bytes(256), bytes(65536)],
        "array16": list(range(16)), "map16": {str(k): k for k in range(16)},
        "ext": [msgpack.ExtType(5, b"a"), msgpack.ExtType(7, b"ab"), msgpack.ExtType(1, b"abcd"),
                msgpack.ExtType(2, b"12345678"), msgpack.ExtType(3, b"x" * 16), msgpack.ExtType(4, b"abc"),
                msgpack.ExtType(6, bytes(300)), msgpack.ExtType(9, bytes(70000))],
        "nil": None, "bools": [True, False], "nested": [[[]], {}],
    }
    value["array32"] = list(range(70000))
    value["map32"] = {f"k{k}": k for k in range(70000)}
    packed = msgpack.packb(value, use_bin_type=True)
    single = msgpack.packb([1.5, 0.1], use_single_float=True)
    tab.page.goto(server.url)
    got = run_decoder(tab.page, packed, frame=False)["value"]

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"$bin": base64.b64encode(v).decode()}
        if isinstance(v, msgpack.ExtType):
            return {"$ext": [v.code, base64.b64encode(v.data).decode()]}
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 - 1:
            return {"$int": str(v)}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    assert got == plain(value)
    assert run_decoder(tab.page, single, frame=False)["value"] == msgpack.unpackb(single)
    assert tab.errors == []
