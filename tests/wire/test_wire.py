"""The wire package, protocol v2: golden fixtures, exact sizes, quantisation, and reading protocol v1."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from medviz_core.errors import ProtocolError
from medviz_core.wire.codec import pack_polygon, quantise, unpack_polygon
from medviz_core.wire.results import (
    AgreementResult,
    AnalysisFrame,
    FaithfulnessResult,
    GradientResult,
    HeadsResult,
    MethodAgreement,
    VolumeResult,
)
from medviz_core.wire.server_frames import EndFrame, ErrorFrame, ImageInfo, StartFrame, StepFrame, decode, peek_timing
from tests.fixtures.frames import make_fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
V1 = FIXTURES / "v1"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.msgpack"))
V1_NAMES = sorted(p.stem for p in V1.glob("*.msgpack"))


def from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bin"}:
        return base64.b64decode(value["$bin"])
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def load(name: str, folder: Path = FIXTURES) -> Any:
    return decode((folder / f"{name}.msgpack").read_bytes())


def test_every_fixture_has_its_json_twin() -> None:
    assert NAMES == [
        "analysis_agreement", "analysis_cancelled", "analysis_faithfulness", "analysis_gradient", "analysis_heads",
        "analysis_queued", "analysis_volume", "end", "end_cancelled", "error", "error_request", "queued", "replay",
        "start", "start_two", "step", "step_special", "step_two",
    ]
    for folder, names in ((FIXTURES, NAMES), (V1, V1_NAMES)):
        for name in names:
            data = (folder / f"{name}.msgpack").read_bytes()
            expected = from_json(json.loads((folder / f"{name}.json").read_text()))
            assert msgpack.unpackb(data, raw=False) == expected, name


def test_the_encoder_still_writes_the_fixture_bytes() -> None:
    built = make_fixtures.build()
    assert sorted(built) == NAMES
    for name, data in built.items():
        assert (FIXTURES / f"{name}.msgpack").read_bytes() == data, name
        assert msgpack.unpackb(data)["v"] == 2


def test_every_fixture_decodes_to_its_frame_type_and_encodes_back_to_its_bytes() -> None:
    for name in NAMES:
        data = (FIXTURES / f"{name}.msgpack").read_bytes()
        frame = decode(data)
        assert frame.type == name.split("_")[0], name
        assert frame.to_wire() == data, name


def test_a_step_with_six_maps_three_regions_and_its_context_stays_under_2_5_kb() -> None:
    data = StepFrame.of_step(make_fixtures.sample_step(), t_ms=480.25).to_wire()
    assert len(data) == 2384
    assert len(data) - len((V1 / "step.msgpack").read_bytes()) == 62  # the context links, the sink and `share`


def test_a_decoded_step_recovers_the_raw_maps_within_half_a_quantisation_step() -> None:
    step = make_fixtures.sample_step()
    frame = decode(StepFrame.of_step(step, t_ms=480.25).to_wire())
    assert isinstance(frame, StepFrame)
    assert (frame.index, frame.token_id, frame.text, frame.position, frame.t_ms) == (7, 1234, " lung", 301, 480.25)
    assert list(frame.maps) == list(step.maps)
    for name, values in step.maps.items():
        quant = frame.maps[name]
        half_step = (quant.hi - quant.lo) / 255 / 2 + 1e-9
        assert np.abs(quant.values((16, 16)) - values).max() <= half_step + 1e-6 * abs(quant.hi)
    assert frame.maps["flow"].u8 == bytes(256)
    assert (frame.maps["flow"].lo, frame.maps["flow"].hi) == (0.25, 0.25)
    first = frame.images[0]
    assert first.stats.peak == (4, 6) and first.stats.peak_zone == "right middle"
    assert (frame.image_mass, first.share, frame.layers_seeing_image, frame.is_special) == (0.375, 0.375, 4, False)
    assert [(link.position, link.value) for link in frame.context] == [(300, 0.125), (4, 0.0625), (299, 0.03125)]
    assert frame.sink == 0.5


def test_region_polygons_travel_as_uint16_pairs() -> None:
    region = make_fixtures.sample_regions()[0]
    packed = pack_polygon(region.polygon)
    assert len(packed) == 24 * 4
    back = unpack_polygon(packed)
    assert max(abs(a - b) for p, q in zip(back, region.polygon) for a, b in zip(p, q)) <= 0.5 / 65535 + 1e-12
    assert pack_polygon(((0.0, 1.0), (1.5, -0.5))) == bytes([0, 0, 255, 255, 255, 255, 0, 0])


def test_a_polygon_of_odd_length_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^a region polygon must be whole \(x, y\) uint16 pairs; got 6 bytes$"):
        unpack_polygon(bytes(6))


def test_quantise_maps_lo_to_0_and_hi_to_255() -> None:
    lo, hi, u8 = quantise(np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32))
    assert (lo, hi, list(u8)) == (1.0, 5.0, [0, 64, 128, 255])


def test_quantise_treats_non_finite_values_as_lo() -> None:
    lo, hi, u8 = quantise(np.array([np.nan, 0.0, np.inf, 2.0]))
    assert (lo, hi, list(u8)) == (0.0, 2.0, [0, 0, 0, 255])
    assert quantise(np.array([np.nan, np.nan])) == (0.0, 0.0, bytes(2))


def test_a_decoded_start_carries_the_model_prompt_images_preset_and_params() -> None:
    frame = load("start")
    assert isinstance(frame, StartFrame)
    assert frame.model == make_fixtures.FACTS
    assert frame.images == (ImageInfo(png=make_fixtures.PNG, size=(6, 4), label="", positions=tuple(range(10, 266))),)
    assert frame.image_positions == tuple(range(10, 266))
    assert (frame.question, frame.preset) == ("Is there an effusion?", "model-card")
    assert frame.token_texts[:4] == ("<bos>", "<start_of_turn>", "user", "\n") and frame.token_texts[4] == ""
    assert frame.params.max_new_tokens == 64 and frame.params.seed is None
    assert frame.created == 1764400000.5 and frame.recording == "AbCdEfGhIjKlMnOpQrStUv"


@pytest.mark.parametrize(("name", "stated", "read"), [
    ("tiny", None, True), ("demo?device=cpu", None, True), ("random:medgemma-4b?layers=2", None, True),
    ("google/medgemma-4b-it", None, False), ("/models/medgemma-4b-it", None, False),
    ("google/medgemma-4b-it", True, True), ("tiny", False, False),
])
def test_a_start_frames_stand_in_flag_is_read_as_stated_else_off_the_model_name(
        name: str, stated: bool | None, read: bool) -> None:
    start = msgpack.unpackb((FIXTURES / "start.msgpack").read_bytes())
    assert start["model"]["stand_in"] is True  # new frames state it
    start["model"]["name"] = name
    if stated is None:
        del start["model"]["stand_in"]  # as in recordings made before the field
    else:
        start["model"]["stand_in"] = stated
    frame = decode(msgpack.packb(start))
    assert isinstance(frame, StartFrame)
    assert frame.model.stand_in is read


def test_images_are_always_a_list_and_each_step_block_has_the_same_shape() -> None:
    one = msgpack.unpackb((FIXTURES / "start.msgpack").read_bytes())
    assert [sorted(image) for image in one["images"]] == [["height", "label", "png", "positions", "width"]]
    assert "image" not in one and "more" not in one
    step = msgpack.unpackb((FIXTURES / "step_two.msgpack").read_bytes())
    assert [sorted(block) for block in step["images"]] == [
        ["ent", "ent_n", "maps", "peak", "regions", "share", "zone"]] * 2
    assert step["mass"] == 0.375 and [block["share"] for block in step["images"]] == [0.25, 0.125]


def test_a_two_image_start_lists_both_views_with_their_token_positions() -> None:
    frame = load("start_two")
    assert isinstance(frame, StartFrame)
    assert [(i.label, i.positions[0], i.positions[-1], len(i.positions)) for i in frame.images] == [
        ("PA", 12, 267, 256), ("lateral", 271, 526, 256)]
    assert frame.image_positions == frame.images[0].positions + frame.images[1].positions
    assert frame.question is None and frame.recording is None and frame.preset == "medviz"


def test_a_two_image_step_carries_each_views_share_and_maps_under_5_kb() -> None:
    data = StepFrame.of_step(make_fixtures.two_image_step(), t_ms=612.5).to_wire()
    assert len(data) == 4294
    frame = decode(data)
    assert isinstance(frame, StepFrame)
    assert [image.share for image in frame.images] == [0.25, 0.125] and frame.image_mass == 0.375
    lateral = frame.images[1]
    assert (lateral.stats.peak, lateral.stats.peak_zone, len(lateral.stats.regions)) == ((6, 4), "central middle", 1)
    expected = make_fixtures.sample_maps()["raw"].T
    quant = lateral.maps["raw"]
    assert np.abs(quant.values((16, 16)) - expected).max() <= (quant.hi - quant.lo) / 255 / 2 + 1e-9


def test_a_decoded_end_keeps_reason_text_and_timings() -> None:
    assert load("end") == EndFrame(reason="end_of_turn", tokens=9, text="Clear lungs.", prefill_ms=250.5,
                                   total_ms=1000.25, message="", timings={"model_ms": 900.5, "maps_ms": 40.25})


def test_an_error_echoes_the_id_of_the_request_it_refuses() -> None:
    assert load("error") == ErrorFrame("bad_image", "the image is empty: expected a PNG, JPEG or DICOM image", None)
    assert load("error_request").id == "r3"


def test_analysis_results_decode_into_their_typed_shapes_with_the_request_id() -> None:
    gradient = load("analysis_gradient")
    assert isinstance(gradient, AnalysisFrame)
    assert (gradient.job, gradient.kind, gradient.index, gradient.status, gradient.id) == (
        "gradient-7-3f2a", "gradient", 7, "done", "r1")
    assert isinstance(gradient.result, GradientResult) and len(gradient.result.maps) == 2
    heads = load("analysis_heads").result
    assert isinstance(heads, HeadsResult)
    assert (heads.layers, heads.heads, len(heads.maps)) == (2, 2, 8)
    assert heads.mass == (0.5, 0.25, 0.125, 0.0625) and heads.entropy == (0.75, 0.5, 0.875, 1.0)
    faith = load("analysis_faithfulness")
    assert isinstance(faith.result, FaithfulnessResult) and faith.result.method == "consensus" and faith.id == "faith-7"
    assert faith.result.deletion.scores == (0.5, 0.25, 0.125, 0.0625, 0.0)
    assert faith.result.insertion.auc == 0.328125
    assert load("analysis_agreement").result == AgreementResult(
        {"raw": MethodAgreement(True, 0.25, 0.5), "consensus": MethodAgreement(False, 0.0, 0.0)}, 1)
    volume = load("analysis_volume").result
    assert isinstance(volume, VolumeResult) and (volume.size, volume.peak, volume.frontal, volume.lateral) == (
        4, (1, 2, 3), 0, 1)
    assert volume.volume.values((4, 4, 4))[1, 2, 3] == 1.0
    cancelled = load("analysis_cancelled")
    assert (cancelled.status, cancelled.message, cancelled.result, cancelled.id) == (
        "cancelled", "cancelled by the client", None, "r2")


def test_decode_refuses_bytes_that_are_not_msgpack() -> None:
    with pytest.raises(ProtocolError, match=r"^message is more than one msgpack value: 1 bytes follow the first$"):
        decode(b"\x01\x02")
    with pytest.raises(ProtocolError, match=r"^message is not valid msgpack$"):
        decode(b"\x82\xa1")


def test_decode_refuses_an_unknown_frame_type_and_names_a_missing_field() -> None:
    with pytest.raises(ProtocolError, match=r"^unknown frame type 'hello'; expected one of start, step, end, "):
        decode(msgpack.packb({"v": 2, "type": "hello"}))
    with pytest.raises(ProtocolError, match=r"^queued frame is missing field 'position'$"):
        decode(msgpack.packb({"v": 2, "type": "queued"}))


def test_decode_refuses_a_protocol_version_it_does_not_read() -> None:
    with pytest.raises(ProtocolError, match=r"^protocol version 3 is not supported; expected 1 or 2$"):
        decode(msgpack.packb({"v": 3, "type": "queued", "position": 1}))


def test_an_analysis_frame_with_an_unknown_kind_is_a_protocol_error() -> None:
    data = msgpack.packb({"v": 2, "type": "analysis", "job": "j", "kind": "magic", "index": 0, "status": "done",
                          "message": "", "result": None})
    with pytest.raises(ProtocolError, match=r"^analysis kind 'magic' / status 'done' is not one the protocol knows$"):
        decode(data)


# -- protocol v1, as the v1 encoder wrote it ------------------------------------------------


def test_every_v1_fixture_reads_as_its_v2_frame() -> None:
    same_in_v2 = ("analysis_agreement", "analysis_cancelled", "analysis_faithfulness", "analysis_gradient",
                  "analysis_heads", "analysis_queued", "end", "end_cancelled", "error", "queued", "replay")
    for name in same_in_v2:
        old, new = load(name, V1), load(name)
        assert type(old) is type(new), name
        if isinstance(new, AnalysisFrame):
            assert old.result == new.result and old.job == new.job, name
        else:
            assert old == new, name


def test_a_v1_start_upgrades_to_a_list_of_images_and_the_medviz_preset() -> None:
    frame = load("start_two", V1)
    assert isinstance(frame, StartFrame)
    assert [(i.label, len(i.positions)) for i in frame.images] == [("PA", 256), ("lateral", 256)]
    assert (frame.preset, frame.token_texts) == ("medviz", ())
    legacy = load("legacy_start", V1)  # the first v1 encoder: no labels, positions or `more`
    assert legacy.images == (ImageInfo(png=make_fixtures.PNG, size=(6, 4), label="", positions=tuple(range(10, 266))),)


def test_a_v1_step_upgrades_to_one_block_per_image_with_its_share_and_the_same_map_bytes() -> None:
    old = load("step_two", V1)
    assert isinstance(old, StepFrame)
    raw = msgpack.unpackb((V1 / "step_two.msgpack").read_bytes())
    assert [image.share for image in old.images] == [0.25, 0.125] and old.image_mass == 0.375
    assert old.images[0].maps["raw"].u8 == raw["maps"]["raw"][2]
    assert old.images[1].maps["raw"].u8 == raw["more"][0]["maps"]["raw"][2]
    assert old.images[1].stats.peak == (6, 4) and old.context == () and old.sink == 0.0
    one = load("step", V1)
    assert len(one.images) == 1 and one.images[0].share == one.image_mass == 0.375


@pytest.mark.parametrize("name", NAMES)
def test_peek_timing_reads_each_fixture_frames_type_and_timing_as_decode_does(name: str) -> None:
    data = (FIXTURES / f"{name}.msgpack").read_bytes()
    frame = decode(data)
    expected = frame.created if isinstance(frame, StartFrame) else frame.t_ms if isinstance(frame, StepFrame) else None
    assert peek_timing(data) == (frame.type, expected)


def test_peek_timing_reads_no_further_than_the_timing_field() -> None:
    frame = {"v": 2, "type": "step", "i": 3, "t_ms": 12.5, "images": [{"maps": {"raw": b"x" * 256}}]}
    data = msgpack.packb(frame, use_bin_type=True)
    cut = data[: data.index(b"\xa6images")]  # everything after t_ms is gone
    assert peek_timing(data) == ("step", 12.5)
    assert peek_timing(cut) == ("step", 12.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (msgpack.packb([1, 2]), "message is not valid msgpack"),
        (b"", "message is not valid msgpack"),
        (msgpack.packb({"v": 9, "type": "step", "t_ms": 1.0}), "protocol version 9 is not supported; expected 1 or 2"),
        (msgpack.packb({"v": 2, "type": 7}), "a frame needs a string field 'type'; got an integer"),
        (msgpack.packb({"v": 2, "type": "step", "t_ms": "soon"}),
         "field 't_ms' of the step frame must be a number; got a string"),
        (msgpack.packb({"v": 2, "type": "start"}), "start frame is missing field 'created'"),
    ],
    ids=["array", "empty", "version", "type", "timing-type", "no-timing"],
)
def test_peek_timing_refuses_what_is_not_a_timed_frame_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as error:
        peek_timing(data)
    assert str(error.value) == message
