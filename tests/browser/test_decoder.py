"""The browser's own msgpack decoder (web/js/wire/msgpack.js) and frame decoder
(web/js/wire/protocol.js), run in Chromium on the golden protocol v2 fixtures and on a value
using every msgpack format, must read exactly what Python reads. Version 1 frames are the
server's to upgrade: the browser refuses them by their version."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from medviz_core.wire.results import AnalysisFrame, DicomResult
from tests.browser.conftest import Server, Watched

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.msgpack"))

# Decode in the page; bin -> {"$bin": base64}, ext -> {"$ext": [type, base64]}, BigInt -> {"$int": "..."}
DECODE = """async ([b64, frame]) => {
  const { decode, Ext } = await import('/js/wire/msgpack.js');
  const { decodeFrame } = await import('/js/wire/protocol.js');
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


def _poly(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return [int.from_bytes(raw[k:k + 2], "little") / 65535 for k in range(0, len(raw), 2)]


def _qmap(e: list[Any]) -> dict[str, Any]:
    return {"lo": e[0], "hi": e[1], "u8": e[2]}


def _image_maps(v: dict[str, Any]) -> dict[str, Any]:
    """One image's block of a step, as protocol.js names it."""
    return {
        "maps": {m: _qmap(e) for m, e in v["maps"].items()}, "share": v["share"], "ent": v["ent"], "entN": v["ent_n"],
        "peak": v["peak"], "zone": v["zone"],
        "regions": [{"poly": _poly(r["poly"]["$bin"]), "box": r["box"], "mass": r["mass"], "zone": r["zone"]} for r in v["regions"]],
    }


def _image(v: dict[str, Any]) -> dict[str, Any]:
    return {"png": v["png"], "width": v["width"], "height": v["height"], "label": v["label"], "positions": v["positions"]}


def _curve(c: dict[str, Any]) -> dict[str, Any]:
    return {"fractions": c["fractions"], "scores": c["scores"], "auc": c["auc"]}


def _result(kind: str, r: dict[str, Any] | None) -> Any:
    if r is None:
        return None
    if kind == "gradient":
        return {"maps": [_qmap(e) for e in r["maps"]]}
    if kind == "heads":
        return {"layers": r["layers"], "heads": r["heads"], "maps": [_qmap(e) for e in r["maps"]], "mass": r["mass"], "entropy": r["entropy"]}
    if kind == "faithfulness":
        return {"method": r["method"], "deletion": _curve(r["deletion"]), "insertion": _curve(r["insertion"]),
                "randomDeletion": _curve(r["random_deletion"]), "randomInsertion": _curve(r["random_insertion"])}
    if kind == "agreement":
        return {"perMethod": r["per_method"], "image": r["image"]}
    if kind == "volume":
        return {"method": r["method"], "size": r["size"], "volume": _qmap(r["volume"]), "peak": r["peak"],
                "frontal": r["frontal"], "lateral": r["lateral"]}
    if kind == "dicom":
        return {"zip": r["zip"], "names": r["names"], "notes": r["notes"]}
    return r


def expected_frame(v: dict[str, Any]) -> dict[str, Any]:
    """What protocol.js should make of a decoded v2 frame: the documented fields, camelCased."""
    t = v["type"]
    if t == "step":
        return {
            "type": "step", "i": v["i"], "tokenId": v["token_id"], "text": v["text"], "pos": v["pos"], "tMs": v["t_ms"],
            "mass": v["mass"], "images": [_image_maps(m) for m in v["images"]],
            "context": [{"position": p, "value": x} for p, x in v["context"]], "sink": v["sink"],
            "modelMs": v["model_ms"], "mapsMs": v["maps_ms"], "seeing": v["seeing"], "special": v["special"],
        }
    if t == "start":
        m, p, q = v["model"], v["prompt"], v["params"]
        return {
            "type": "start", "session": v["session"],
            "model": {"name": m["name"], "layers": m["layers"], "heads": m["heads"], "kvHeads": m["kv_heads"], "grid": m["grid"],
                      "imageTokenId": m["image_token_id"], "slidingWindow": m["sliding_window"], "fullLayers": m["full_layers"],
                      "device": m["device"], "dtype": m["dtype"], "standIn": m["stand_in"]},
            "prompt": {"tokenIds": p["token_ids"], "tokens": p["tokens"], "imagePositions": p["image_positions"],
                       "question": p["question"], "preset": p["preset"], "primer": p.get("primer", "")},
            "images": [_image(x) for x in v["images"]], "methods": v["methods"],
            "params": {"maxNewTokens": q["max_new_tokens"], "temperature": q["temperature"], "topP": q["top_p"],
                       "topK": q["top_k"], "repetitionPenalty": q["repetition_penalty"], "seed": q["seed"]},
            "created": v["created"], "recording": v["recording"],
        }
    if t == "end":
        return {"type": "end", "reason": v["reason"], "tokens": v["tokens"], "text": v["text"], "prefillMs": v["prefill_ms"],
                "totalMs": v["total_ms"], "message": v["message"], "timings": v["timings"]}
    if t == "analysis":
        return {"type": "analysis", "job": v["job"], "kind": v["kind"], "index": v["index"], "status": v["status"],
                "message": v["message"], "result": _result(v["kind"], v["result"]), "id": v["id"]}
    return {k: x for k, x in v.items() if k != "v"}


def _unpoly(frame: dict[str, Any], want: dict[str, Any]) -> None:
    """Compare region polygons to float32 precision, then drop them from both sides."""
    for got_block, want_block in zip(frame.get("images", []), want.get("images", [])):
        for got_region, want_region in zip(got_block.get("regions", []), want_block.get("regions", [])):
            assert got_region.pop("poly")["$f32"] == pytest.approx(want_region.pop("poly"), abs=1e-7)


def test_there_are_golden_fixtures_to_read() -> None:
    assert {"start", "step", "end", "error", "queued", "replay"} <= set(NAMES)
    assert {"start_two", "step_two", "step_special", "error_request", "analysis_gradient", "analysis_heads",
            "analysis_faithfulness", "analysis_agreement", "analysis_volume"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_browser_decodes_each_v2_golden_fixture_exactly_as_python(tab: Watched, server: Server, name: str) -> None:
    tab.page.goto(server.url)
    data = (FIXTURES / f"{name}.msgpack").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    result = run_decoder(tab.page, data, frame=True)
    assert result["value"] == expected
    frame = result["frame"]
    want = expected_frame(expected)
    _unpoly(frame, want)
    assert frame == want
    assert tab.errors == []


def test_the_browser_reads_stand_in_as_stated_else_off_the_name_as_python_does(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    start = msgpack.unpackb((FIXTURES / "start.msgpack").read_bytes())
    read = []
    for name, stated in [("tiny?window=4", None), ("random:medgemma-4b", None), ("google/medgemma-4b-it", None),
                         ("google/medgemma-4b-it", True), ("demo", False)]:
        start["model"]["name"] = name
        start["model"].pop("stand_in", None)  # a recording made before the field
        if stated is not None:
            start["model"]["stand_in"] = stated
        read.append(run_decoder(tab.page, msgpack.packb(start), frame=True)["frame"]["model"]["standIn"])
    assert read == [True, True, False, True, False]
    assert tab.errors == []


def test_the_browser_decodes_a_dicom_export_answer_with_its_zip_names_and_notes(tab: Watched, server: Server) -> None:
    frame = AnalysisFrame(job="dicom-4-ab12", kind="dicom", index=4, status="done", id="d1",
                          result=DicomResult(zip=b"PK\x03\x04zip", names=("secondary_capture.dcm",),
                                             notes=("this export has no patient identity",)))
    tab.page.goto(server.url)
    got = run_decoder(tab.page, frame.to_wire(), frame=True)["frame"]
    assert got == {"type": "analysis", "job": "dicom-4-ab12", "kind": "dicom", "index": 4, "status": "done", "message": "",
                   "id": "d1", "result": {"zip": {"$bin": base64.b64encode(b"PK\x03\x04zip").decode()},
                                          "names": ["secondary_capture.dcm"], "notes": ["this export has no patient identity"]}}
    assert tab.errors == []


@pytest.mark.parametrize("name", ["start", "step"])
def test_the_browser_refuses_a_version_1_frame_by_its_version(tab: Watched, server: Server, name: str) -> None:
    tab.page.goto(server.url)
    data = (FIXTURES / "v1" / f"{name}.msgpack").read_bytes()
    message = tab.page.evaluate("""async (b64) => {
      const { decodeFrame } = await import('/js/wire/protocol.js');
      try { decodeFrame(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))); return null; } catch (e) { return e.message; }
    }""", base64.b64encode(data).decode())
    assert message == "protocol version should be 2, got 1"
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
