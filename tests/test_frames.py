"""frames.py: golden fixtures, exact sizes, quantisation, and client frame validation."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from medviz_core import frames
from medviz_core.errors import ProtocolError
from tests.fixtures.frames import make_fixtures

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "frames"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.msgpack"))


def from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bin"}:
        return base64.b64decode(value["$bin"])
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def test_every_fixture_has_its_json_twin() -> None:
    assert NAMES == [
        "analysis_agreement", "analysis_cancelled", "analysis_faithfulness", "analysis_gradient", "analysis_heads",
        "analysis_queued", "end", "end_cancelled", "error", "legacy_start", "queued", "replay", "start", "start_two",
        "step", "step_special", "step_two",
    ]
    for name in NAMES:
        data = (FIXTURES / f"{name}.msgpack").read_bytes()
        expected = from_json(json.loads((FIXTURES / f"{name}.json").read_text()))
        assert msgpack.unpackb(data, raw=False) == expected, name


def test_the_encoder_still_writes_the_fixture_bytes() -> None:
    built = make_fixtures.build()
    assert sorted(built) == [n for n in NAMES if not n.startswith("legacy_")]
    for name, data in built.items():
        assert (FIXTURES / f"{name}.msgpack").read_bytes() == data, name


def test_every_fixture_decodes_to_its_frame_type() -> None:
    types = [frames.decode((FIXTURES / f"{n}.msgpack").read_bytes()).type for n in NAMES]
    assert types == ["analysis"] * 6 + ["end", "end", "error", "start", "queued", "replay", "start", "start",
                                        "step", "step", "step"]


def test_a_step_with_six_maps_and_three_regions_stays_under_2_5_kb() -> None:
    data = frames.encode_step(make_fixtures.sample_step(), t_ms=480.25)
    assert len(data) == 2322
    assert len(data) < 2500


def test_a_decoded_step_recovers_the_raw_maps_within_half_a_quantisation_step() -> None:
    step = make_fixtures.sample_step()
    frame = frames.decode(frames.encode_step(step, t_ms=480.25))
    assert isinstance(frame, frames.StepFrame)
    assert (frame.index, frame.token_id, frame.text, frame.position, frame.t_ms) == (7, 1234, " lung", 301, 480.25)
    assert list(frame.maps) == list(step.maps)
    for name, values in step.maps.items():
        quant = frame.maps[name]
        half_step = (quant.hi - quant.lo) / 255 / 2 + 1e-9
        assert np.abs(quant.values((16, 16)) - values).max() <= half_step + 1e-6 * abs(quant.hi)
    assert frame.maps["flow"].u8 == bytes(256)
    assert (frame.maps["flow"].lo, frame.maps["flow"].hi) == (0.25, 0.25)
    assert frame.stats.peak == (4, 6) and frame.stats.peak_zone == "right middle"
    assert frame.stats.image_mass == 0.375 and frame.layers_seeing_image == 4 and frame.is_special is False


def test_region_polygons_travel_as_uint16_pairs() -> None:
    region = make_fixtures.sample_regions()[0]
    packed = frames.pack_polygon(region.polygon)
    assert len(packed) == 24 * 4
    back = frames.unpack_polygon(packed)
    assert max(abs(a - b) for p, q in zip(back, region.polygon) for a, b in zip(p, q)) <= 0.5 / 65535 + 1e-12
    assert frames.pack_polygon(((0.0, 1.0), (1.5, -0.5))) == bytes([0, 0, 255, 255, 255, 255, 0, 0])


def test_a_polygon_of_odd_length_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^a region polygon must be whole \(x, y\) uint16 pairs; got 6 bytes$"):
        frames.unpack_polygon(bytes(6))


def test_quantise_maps_lo_to_0_and_hi_to_255() -> None:
    lo, hi, u8 = frames.quantise(np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32))
    assert (lo, hi, list(u8)) == (1.0, 5.0, [0, 64, 128, 255])


def test_quantise_treats_non_finite_values_as_lo() -> None:
    lo, hi, u8 = frames.quantise(np.array([np.nan, 0.0, np.inf, 2.0]))
    assert (lo, hi, list(u8)) == (0.0, 2.0, [0, 0, 0, 255])
    assert frames.quantise(np.array([np.nan, np.nan])) == (0.0, 0.0, bytes(2))


def test_a_decoded_start_carries_the_model_prompt_image_and_params() -> None:
    frame = frames.decode((FIXTURES / "start.msgpack").read_bytes())
    assert isinstance(frame, frames.StartFrame)
    assert frame.model == make_fixtures.FACTS
    assert frame.image_png == make_fixtures.PNG and frame.image_size == (6, 4)
    assert frame.image_positions == tuple(range(10, 266))
    assert frame.question == "Is there an effusion?"
    assert frame.params.max_new_tokens == 64 and frame.params.seed is None
    assert frame.created == 1764400000.5 and frame.recording == "AbCdEfGhIjKlMnOpQrStUv"


def test_a_decoded_end_keeps_reason_text_and_timings() -> None:
    frame = frames.decode((FIXTURES / "end.msgpack").read_bytes())
    assert frame == frames.EndFrame(reason="end_of_turn", tokens=9, text="Clear lungs.", prefill_ms=250.5,
                                    total_ms=1000.25, message="", timings={"model_ms": 900.5, "maps_ms": 40.25})


def test_decode_refuses_bytes_that_are_not_msgpack() -> None:
    with pytest.raises(ProtocolError, match=r"^message is more than one msgpack value: 1 bytes follow the first$"):
        frames.decode(b"\x01\x02")
    with pytest.raises(ProtocolError, match=r"^message is not valid msgpack$"):
        frames.decode(b"\x82\xa1")
    with pytest.raises(ProtocolError, match=r"^message is not valid msgpack$"):
        frames.decode(b"\xc1")


def test_decode_refuses_an_unknown_frame_type() -> None:
    with pytest.raises(ProtocolError, match=r"^unknown frame type 'hello'; expected one of start, step, end, "):
        frames.decode(msgpack.packb({"v": 1, "type": "hello"}))


def test_decode_names_a_missing_field() -> None:
    with pytest.raises(ProtocolError, match=r"^queued frame is missing field 'position'$"):
        frames.decode(msgpack.packb({"v": 1, "type": "queued"}))


def test_decode_refuses_another_protocol_version() -> None:
    with pytest.raises(ProtocolError, match=r"^protocol version 2 is not supported; expected 1$"):
        frames.decode(msgpack.packb({"v": 2, "type": "queued", "position": 1}))


def test_a_legacy_start_without_labels_or_more_decodes_as_one_unlabelled_image() -> None:
    frame = frames.decode((FIXTURES / "legacy_start.msgpack").read_bytes())
    assert isinstance(frame, frames.StartFrame)
    assert frame.images == (frames.ImageInfo(png=make_fixtures.PNG, size=(6, 4), label="", positions=tuple(range(10, 266))),)
    assert frame.image_png == make_fixtures.PNG and frame.image_size == (6, 4)


def test_a_one_image_start_carries_its_label_positions_and_no_more() -> None:
    frame = frames.decode((FIXTURES / "start.msgpack").read_bytes())
    assert isinstance(frame, frames.StartFrame)
    assert [(i.label, i.positions, i.size) for i in frame.images] == [("", tuple(range(10, 266)), (6, 4))]
    assert msgpack.unpackb((FIXTURES / "start.msgpack").read_bytes())["more"] == []


def test_a_two_image_start_lists_both_views_with_their_token_positions() -> None:
    frame = frames.decode((FIXTURES / "start_two.msgpack").read_bytes())
    assert isinstance(frame, frames.StartFrame)
    assert [(i.label, i.positions[0], i.positions[-1], len(i.positions)) for i in frame.images] == [
        ("PA", 12, 267, 256), ("lateral", 271, 526, 256)]
    assert frame.image_positions == frame.images[0].positions + frame.images[1].positions
    assert frame.question is None and frame.recording is None


def test_a_two_image_step_carries_shares_and_the_second_views_maps_under_5_kb() -> None:
    data = frames.encode_step(make_fixtures.two_image_step(), t_ms=612.5)
    assert len(data) == 4255
    frame = frames.decode(data)
    assert isinstance(frame, frames.StepFrame)
    assert frame.shares == (0.25, 0.125) and frame.stats.image_mass == 0.375
    assert len(frame.more) == 1 and list(frame.more[0].maps) == list(frame.maps)
    lateral = frame.more[0]
    assert (lateral.stats.image_mass, lateral.stats.peak, lateral.stats.peak_zone) == (0.125, (6, 4), "central middle")
    assert len(lateral.stats.regions) == 1
    expected = make_fixtures.sample_maps()["raw"].T
    quant = frame.image_maps(1)["raw"]
    assert np.abs(quant.values((16, 16)) - expected).max() <= (quant.hi - quant.lo) / 255 / 2 + 1e-9
    assert frame.image_maps(0) is frame.maps


def test_a_one_image_step_sends_neither_shares_nor_more() -> None:
    raw = msgpack.unpackb((FIXTURES / "step.msgpack").read_bytes())
    assert "shares" not in raw and "more" not in raw
    frame = frames.decode((FIXTURES / "step.msgpack").read_bytes())
    assert isinstance(frame, frames.StepFrame) and frame.shares == () and frame.more == ()


def test_analysis_results_decode_into_their_typed_shapes() -> None:
    def load(name: str) -> frames.AnalysisFrame:
        frame = frames.decode((FIXTURES / f"{name}.msgpack").read_bytes())
        assert isinstance(frame, frames.AnalysisFrame)
        return frame

    gradient = load("analysis_gradient")
    assert (gradient.job, gradient.kind, gradient.index, gradient.status) == ("gradient-7-3f2a", "gradient", 7, "done")
    assert isinstance(gradient.result, frames.GradientResult) and len(gradient.result.maps) == 2
    heads = load("analysis_heads").result
    assert isinstance(heads, frames.HeadsResult)
    assert (heads.layers, heads.heads, len(heads.maps)) == (2, 2, 8)
    assert heads.mass == (0.5, 0.25, 0.125, 0.0625) and heads.entropy == (0.75, 0.5, 0.875, 1.0)
    faith = load("analysis_faithfulness").result
    assert isinstance(faith, frames.FaithfulnessResult) and faith.method == "consensus"
    assert faith.deletion.scores == (0.5, 0.25, 0.125, 0.0625, 0.0) and faith.deletion.fractions[-1] == 1.0
    assert faith.insertion.auc == 0.328125
    agreement = load("analysis_agreement").result
    assert agreement == frames.AgreementResult(
        {"raw": frames.MethodAgreement(True, 0.25, 0.5), "consensus": frames.MethodAgreement(False, 0.0, 0.0)}, 1)
    cancelled = load("analysis_cancelled")
    assert (cancelled.status, cancelled.message, cancelled.result) == ("cancelled", "cancelled by the client", None)


def test_an_analysis_frame_with_an_unknown_kind_is_a_protocol_error() -> None:
    data = msgpack.packb({"v": 1, "type": "analysis", "job": "j", "kind": "magic", "index": 0, "status": "done",
                          "message": "", "result": None})
    with pytest.raises(ProtocolError, match=r"^analysis kind 'magic' / status 'done' is not one the protocol knows$"):
        frames.decode(data)
