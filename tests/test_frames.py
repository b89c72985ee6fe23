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
from medviz_core.errors import ProtocolError, RequestError
from medviz_core.frames import ClientLimits, MessageTooLarge, StartRequest
from tests.fixtures.frames import make_fixtures

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "frames"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.msgpack"))
LIMITS = ClientLimits(max_message_bytes=1000, max_question_chars=20, max_new_tokens=12)


def from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bin"}:
        return base64.b64decode(value["$bin"])
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def test_every_fixture_has_its_json_twin() -> None:
    assert NAMES == ["end", "end_cancelled", "error", "queued", "replay", "start", "step", "step_special"]
    for name in NAMES:
        data = (FIXTURES / f"{name}.msgpack").read_bytes()
        expected = from_json(json.loads((FIXTURES / f"{name}.json").read_text()))
        assert msgpack.unpackb(data, raw=False) == expected, name


def test_the_encoder_still_writes_the_fixture_bytes() -> None:
    for name, data in make_fixtures.build().items():
        assert (FIXTURES / f"{name}.msgpack").read_bytes() == data, name


def test_every_fixture_decodes_to_its_frame_type() -> None:
    types = [frames.decode((FIXTURES / f"{n}.msgpack").read_bytes()).type for n in NAMES]
    assert types == ["end", "end", "error", "queued", "replay", "start", "step", "step"]


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


def test_a_start_request_round_trips_with_defaults_filled_in() -> None:
    request = frames.parse_client_frame(msgpack.packb({"type": "start", "image": b"png"}), LIMITS)
    assert request == StartRequest(image=b"png", max_new_tokens=12)
    full = StartRequest(image=b"x", question="why?", max_new_tokens=3, temperature=0.5, top_p=0.9, top_k=5,
                        repetition_penalty=1.1, seed=7, methods=("raw", "flow"), record=True)
    assert frames.parse_client_frame(frames.encode_client_start(full), LIMITS) == full


def test_a_client_message_over_the_size_limit_is_too_large() -> None:
    with pytest.raises(MessageTooLarge, match=r"^message is 1001 bytes; the limit is 1000$") as caught:
        frames.parse_client_frame(bytes(1001), LIMITS)
    assert caught.value.code == "too_large"


def test_a_text_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^frames must be binary msgpack messages; got a text message$"):
        frames.parse_client_frame('{"type": "start"}', LIMITS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image": "abc"}, r"^field 'image' of the start frame must be bytes; got a string$"),
        ({"image": b"x", "max_new_tokens": "12"}, r"^field 'max_new_tokens' of the start frame must be an integer; got a string$"),
        ({"image": b"x", "max_new_tokens": True}, r"^field 'max_new_tokens' of the start frame must be an integer; got a boolean$"),
        ({"image": b"x", "max_new_tokens": 13}, r"^max_new_tokens must be in 1..12; got 13$"),
        ({"image": b"x", "question": 5}, r"^field 'question' of the start frame must be a string; got an integer$"),
        ({"image": b"x", "question": "q" * 21}, r"^question is 21 characters; the limit is 20$"),
        ({"image": b"x", "record": 1}, r"^field 'record' of the start frame must be a boolean; got an integer$"),
        ({"image": b"x", "methods": [1]}, r"^field 'methods' of the start frame must be an array of strings$"),
        ({}, r"^start frame is missing field 'image'$"),
    ],
)
def test_a_start_request_with_a_wrong_field_names_it(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        frames.parse_client_frame(msgpack.packb({"type": "start", **fields}), LIMITS)
    assert caught.value.code == "bad_request"


def test_an_unknown_client_frame_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^unknown frame type 'launch'; expected one of cancel$") as caught:
        frames.parse_client_frame(msgpack.packb({"type": "launch"}), LIMITS, accept=("cancel",))
    assert caught.value.code == "bad_frame"


def test_a_known_frame_type_in_the_wrong_place_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^frame type 'seek' is not accepted here; expected one of start$"):
        frames.parse_client_frame(frames.encode_command("seek", index=1), LIMITS, accept=("start",))


def test_replay_commands_are_range_checked() -> None:
    assert frames.parse_client_frame(frames.encode_command("seek", index=3), LIMITS) == frames.SeekRequest(index=3)
    assert frames.parse_client_frame(frames.encode_command("speed", value=4), LIMITS) == frames.SpeedRequest(4.0)
    assert frames.parse_client_frame(frames.encode_command("pause"), LIMITS) == frames.PauseRequest()
    with pytest.raises(RequestError, match=r"^replay speed must be in 0.25..8; got 16.0$"):
        frames.parse_client_frame(frames.encode_command("speed", value=16.0), LIMITS)
    with pytest.raises(RequestError, match=r"^seek index must be >= 0; got -1$"):
        frames.parse_client_frame(frames.encode_command("seek", index=-1), LIMITS)
