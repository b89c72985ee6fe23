"""server/requests.py: client frames validated into typed requests, and encoded for Python clients."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from medviz_core import frames
from medviz_core.errors import MessageTooLarge, ProtocolError, RequestError
from medviz_core.frames import StartRequest
from server.requests import ClientLimits, encode_client_start, encode_command, parse_client_frame

LIMITS = ClientLimits(max_message_bytes=1000, max_question_chars=20, max_new_tokens=12)


def test_a_start_request_round_trips_with_defaults_filled_in() -> None:
    request = parse_client_frame(msgpack.packb({"type": "start", "image": b"png"}), LIMITS)
    assert request == StartRequest(image=b"png", max_new_tokens=12)
    full = StartRequest(image=b"x", question="why?", max_new_tokens=3, temperature=0.5, top_p=0.9, top_k=5,
                        repetition_penalty=1.1, seed=7, methods=("raw", "flow"), record=True)
    assert parse_client_frame(encode_client_start(full), LIMITS) == full


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
    assert parse_client_frame(encode_command("seek", index=3), LIMITS) == frames.SeekRequest(index=3)
    assert parse_client_frame(encode_command("speed", value=4), LIMITS) == frames.SpeedRequest(4.0)
    assert parse_client_frame(encode_command("pause"), LIMITS) == frames.PauseRequest()
    with pytest.raises(RequestError, match=r"^replay speed must be in 0.25..8; got 16.0$"):
        parse_client_frame(encode_command("speed", value=16.0), LIMITS)
    with pytest.raises(RequestError, match=r"^seek index must be >= 0; got -1$"):
        parse_client_frame(encode_command("seek", index=-1), LIMITS)


def test_a_study_start_round_trips_its_images_and_labels() -> None:
    study = StartRequest(images=(b"pa", b"lat"), labels=("PA", "lateral"), max_new_tokens=3)
    parsed = parse_client_frame(encode_client_start(study), LIMITS)
    assert parsed == study
    assert isinstance(parsed, StartRequest) and parsed.image == b"pa"
    raw = msgpack.unpackb(encode_client_start(study))
    assert "image" not in raw and raw["images"] == [b"pa", b"lat"] and raw["labels"] == ["PA", "lateral"]


def test_images_replace_image_when_both_are_sent() -> None:
    parsed = parse_client_frame(msgpack.packb({"type": "start", "image": b"old", "images": [b"a", b"b"]}), LIMITS)
    assert isinstance(parsed, StartRequest) and parsed.images == (b"a", b"b") and parsed.image == b"a"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images": []}, r"^field 'images' of the start frame must hold 1..4 files; got 0$"),
        ({"images": [b"x"] * 5}, r"^field 'images' of the start frame must hold 1..4 files; got 5$"),
        ({"images": [b"x", "y"]}, r"^field 'images' of the start frame must be an array of bytes$"),
        ({"images": [b"x"], "labels": ["PA", "lateral"]},
         r"^labels must be at most one string of up to 32 characters per image; got 2 for 1 image\(s\)$"),
        ({"images": [b"x"], "labels": ["L" * 33]},
         r"^labels must be at most one string of up to 32 characters per image; got 1 for 1 image\(s\)$"),
        ({"images": [b"x"], "labels": [3]}, r"^field 'labels' of the start frame must be an array of strings$"),
    ],
)
def test_a_study_start_with_wrong_images_or_labels_names_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_client_frame(msgpack.packb({"type": "start", **fields}), LIMITS)
