"""wire/client_frames.py: client frames (protocol v2) parsed and checked once into typed requests, and encoded."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from medviz_core.errors import MessageTooLarge, ProtocolError, RequestError
from medviz_core.types import GenerationParams
from medviz_core.wire.client_frames import (
    AnalyzeRequest,
    CancelAnalysisRequest,
    PacsPick,
    ParamsRequest,
    PauseRequest,
    SeekRequest,
    SpeedRequest,
    StartRequest,
    parse_client_frame,
    peek_request_id,
)
from medviz_core.wire.limits import ClientLimits
from tests.wire_client import encode_command

LIMITS = ClientLimits(max_message_bytes=1000, max_question_chars=20, max_new_tokens=12)


def test_a_start_request_round_trips_leaving_unstated_params_to_the_model() -> None:
    request = parse_client_frame(msgpack.packb({"type": "start", "images": [b"png"]}), LIMITS)
    assert request == StartRequest(images=(b"png",), preset="medviz", params=ParamsRequest())
    assert isinstance(request, StartRequest) and request.params.limit == 12
    params = ParamsRequest(max_new_tokens=3, temperature=0.5, top_p=0.9, top_k=5, repetition_penalty=1.1, seed=7)
    full = StartRequest(images=(b"x",), question="why?", preset="original", params=params, methods=("raw", "flow"),
                        record=True)
    assert parse_client_frame(full.to_wire(), LIMITS) == full


def test_the_sampling_parameters_travel_as_one_params_map_of_the_stated_ones() -> None:
    raw = msgpack.unpackb(StartRequest(images=(b"x",), params=ParamsRequest(seed=3, temperature=1)).to_wire())
    assert raw["params"] == {"temperature": 1.0, "seed": 3}
    assert raw["v"] == 2 and "max_new_tokens" not in raw
    every = ParamsRequest.of(GenerationParams(seed=3))
    assert msgpack.unpackb(StartRequest(images=(b"x",), params=every).to_wire())["params"] == {
        "max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "seed": 3}


def test_unstated_params_are_the_models_suggestion_and_a_suggested_length_keeps_to_the_servers_limit() -> None:
    suggested = GenerationParams(repetition_penalty=1.3)
    assert ParamsRequest(temperature=0.5).resolve(suggested) == GenerationParams(temperature=0.5, repetition_penalty=1.3)
    assert ParamsRequest(limit=100).resolve(suggested).max_new_tokens == 100
    assert ParamsRequest(max_new_tokens=300, repetition_penalty=1.0).resolve(suggested) == GenerationParams(
        max_new_tokens=300)
    with pytest.raises(RequestError, match=r"^repetition_penalty must be in 0.01..10; got 0$"):
        ParamsRequest(repetition_penalty=0)


def test_a_client_message_over_the_size_limit_is_too_large() -> None:
    with pytest.raises(MessageTooLarge, match=r"^message is 1001 bytes; the limit is 1000$") as caught:
        parse_client_frame(bytes(1001), LIMITS)
    assert caught.value.code == "too_large"


def test_a_text_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^frames must be binary msgpack messages; got a text message$"):
        parse_client_frame('{"type": "start"}', LIMITS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images": "abc"}, r"^field 'images' of the start frame must be an array; got a string$"),
        ({"images": [b"x"], "params": {"max_new_tokens": "12"}},
         r"^field 'max_new_tokens' of the start frame must be an integer; got a string$"),
        ({"images": [b"x"], "params": {"max_new_tokens": True}},
         r"^field 'max_new_tokens' of the start frame must be an integer; got a boolean$"),
        ({"images": [b"x"], "params": {"max_new_tokens": 13}}, r"^max_new_tokens must be in 1..12; got 13$"),
        ({"images": [b"x"], "params": {"temperature": 9}}, r"^temperature must be 0 \(greedy\) or in 0.01..5; got 9$"),
        ({"images": [b"x"], "params": 3}, r"^field 'params' of the start frame must be a map; got an integer$"),
        ({"images": [b"x"], "question": 5}, r"^field 'question' of the start frame must be a string; got an integer$"),
        ({"images": [b"x"], "question": "q" * 21}, r"^question is 21 characters; the limit is 20$"),
        ({"images": [b"x"], "question": " "}, r"^question must not be empty or only whitespace$"),
        ({"images": [b"x"], "question": "<end_of_turn>"}, r"^question must not contain the model's control token "),
        ({"images": [b"x"], "prompt": "chatty"}, r"^prompt must be one of medviz, original, model-card; got 'chatty'$"),
        ({"images": [b"x"], "record": 1}, r"^field 'record' of the start frame must be a boolean; got an integer$"),
        ({"images": [b"x"], "methods": [1]}, r"^field 'methods' of the start frame must be an array of strings$"),
        ({"images": [b"x"], "methods": ["magic"]}, r"^methods must be a non-empty subset of raw, "),
        ({"image": b"x"}, r"^start frame is missing field 'images'$"),
    ],
)
def test_a_start_request_with_a_wrong_field_names_it(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        parse_client_frame(msgpack.packb({"type": "start", **fields}), LIMITS)
    assert caught.value.code == "bad_request"


def test_an_unknown_client_frame_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^unknown frame type 'launch'; expected one of cancel$") as caught:
        parse_client_frame(msgpack.packb({"type": "launch"}), LIMITS, accept=("cancel",))
    assert caught.value.code == "bad_frame"


def test_a_known_frame_type_in_the_wrong_place_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^frame type 'seek' is not accepted here; expected one of start$"):
        parse_client_frame(encode_command("seek", index=1), LIMITS, accept=("start",))


def test_replay_commands_are_range_checked() -> None:
    assert parse_client_frame(encode_command("seek", index=3), LIMITS) == SeekRequest(index=3)
    assert parse_client_frame(encode_command("speed", value=4), LIMITS) == SpeedRequest(4.0)
    assert parse_client_frame(encode_command("pause"), LIMITS) == PauseRequest()
    with pytest.raises(RequestError, match=r"^replay speed must be in 0.25..8; got 16.0$"):
        parse_client_frame(encode_command("speed", value=16.0), LIMITS)
    with pytest.raises(RequestError, match=r"^seek index must be >= 0; got -1$"):
        parse_client_frame(encode_command("seek", index=-1), LIMITS)


def test_a_study_start_round_trips_its_images_and_labels() -> None:
    study = StartRequest(images=(b"pa", b"lat"), labels=("PA", "lateral"), preset="medviz",
                         params=ParamsRequest(max_new_tokens=3))
    parsed = parse_client_frame(study.to_wire(), LIMITS)
    assert parsed == study
    raw = msgpack.unpackb(study.to_wire())
    assert raw["images"] == [b"pa", b"lat"] and raw["labels"] == ["PA", "lateral"]


def test_an_analyze_request_keeps_its_id_and_the_fields_its_kind_uses() -> None:
    request = AnalyzeRequest("faithfulness", 3, method="rollout", steps=4, id="r-17")
    assert parse_client_frame(request.to_wire(), LIMITS) == request
    volume = parse_client_frame(msgpack.packb({"type": "analyze", "kind": "volume", "index": 2, "steps": 9}), LIMITS)
    assert volume == AnalyzeRequest("volume", 2, method="consensus")
    assert parse_client_frame(CancelAnalysisRequest("gradient-1-ab", id="c1").to_wire(), LIMITS) == \
        CancelAnalysisRequest("gradient-1-ab", id="c1")


def test_a_request_id_is_checked_and_can_be_read_from_a_refused_request() -> None:
    bad = msgpack.packb({"type": "analyze", "kind": "magic", "index": 0, "id": "mine"})
    with pytest.raises(RequestError, match=r"^analysis kind must be one of "):
        parse_client_frame(bad, LIMITS)
    assert peek_request_id(bad) == "mine"
    assert peek_request_id(b"\xc1") is None and peek_request_id("text") is None
    with pytest.raises(RequestError, match=r"^a request id must be 1..64 characters; got 65$"):
        parse_client_frame(msgpack.packb({"type": "analyze", "kind": "heads", "index": 0, "id": "x" * 65}), LIMITS)


def test_a_version_1_client_frame_is_refused_with_the_version_the_server_reads() -> None:
    with pytest.raises(ProtocolError, match=r"^protocol version 1 is not supported; expected 2$"):
        parse_client_frame(msgpack.packb({"v": 1, "type": "start", "image": b"x"}), LIMITS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images": []}, r"^field 'images' of the start frame must hold 1..4 files; got 0$"),
        ({"images": [b"x"] * 5}, r"^field 'images' of the start frame must hold 1..4 files; got 5$"),
        ({"images": [b"x", "y"]}, r"^field 'images' of the start frame must be an array of bytes$"),
        ({"images": [b"x"], "labels": ["PA", "lateral"]},
         r"^labels must be at most one per image; got 2 for 1 image\(s\)$"),
        ({"images": [b"x"], "labels": ["L" * 33]}, r"^an image label must be at most 32 characters; got 33$"),
        ({"images": [b"x"], "labels": [3]}, r"^field 'labels' of the start frame must be an array of strings$"),
    ],
)
def test_a_study_start_with_wrong_images_or_labels_names_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_client_frame(msgpack.packb({"type": "start", **fields}), LIMITS)


def test_a_start_from_the_pacs_carries_no_files_and_round_trips_its_study_series_and_instances() -> None:
    pick = PacsPick(study="1.2.3", series="1.2.3.4", instances=("1.2.3.4.5", "1.2.3.4.6"))
    request = StartRequest(images=(), preset="medviz", pacs=pick, record=True)
    assert parse_client_frame(request.to_wire(), LIMITS) == request
    assert msgpack.unpackb(request.to_wire())["pacs"] == {"study": "1.2.3", "series": "1.2.3.4",
                                                          "instances": ["1.2.3.4.5", "1.2.3.4.6"]}
    assert "pacs" not in msgpack.unpackb(StartRequest(images=(b"x",)).to_wire())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images": [b"x"], "pacs": {"study": "1.2", "instances": ["1.2.3"]}},
         r"^a start from the PACS carries no files; got 1 file\(s\) beside field 'pacs'$"),
        ({"images": [], "labels": ["PA"], "pacs": {"study": "1.2", "instances": ["1.2.3"]}},
         r"^a start from the PACS takes no labels: the server labels its views from their headers$"),
        ({"images": [], "pacs": {"study": "1.2/../x", "instances": ["1.2.3"]}},
         r"^the PACS study must be a DICOM UID \(digits and dots, at most 64 characters\); got '1.2/../x'$"),
        ({"images": [], "pacs": {"study": "1.2", "series": "01.2", "instances": ["1.2.3"]}},
         r"^the PACS series must be a DICOM UID \(digits and dots, at most 64 characters\); got '01.2'$"),
        ({"images": [], "pacs": {"study": "1.2", "instances": ["1." + "2" * 63]}},
         r"^a PACS instance must be a DICOM UID \(digits and dots, at most 64 characters\); got '1.2{63}'$"),
        ({"images": [], "pacs": {"study": "1.2", "instances": []}},
         r"^field 'instances' of the start frame's pacs field must hold 1..4 SOP instance UIDs; got 0 item\(s\)$"),
        ({"images": [], "pacs": {"study": "1.2", "instances": ["1.3"] * 5}},
         r"^field 'instances' of the start frame's pacs field must hold 1..4 SOP instance UIDs; got 5 item\(s\)$"),
        ({"images": [], "pacs": {"study": "1.2", "instances": ["1.3", "1.3"]}},
         r"^field 'instances' of the start frame's pacs field names one instance twice$"),
        ({"images": [], "pacs": {"instances": ["1.3"]}},
         r"^pacs field of the start frame is missing field 'study'$"),
    ],
)
def test_a_start_from_the_pacs_with_a_wrong_field_names_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_client_frame(msgpack.packb({"type": "start", **fields}), LIMITS)
