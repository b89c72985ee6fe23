"""Every bad input to /ws/session gets its clear error frame and close code, and the server
still serves the next session."""

from __future__ import annotations

import struct
import zlib
from typing import Any, Callable

import msgpack
import pytest

from medviz_core import frames
from server.requests import encode_command

from .helpers import recv, LiveServer, kinds, raw_start, refused, run, session, start_bytes


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (its pixel data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b"")


CASES: dict[str, tuple[Callable[[bytes], bytes | str], str, str, int]] = {
    "corrupt image": (lambda good: start_bytes(good[:200] + bytes(500)),
                      "bad_image", "the PNG file is truncated or damaged", 4415),
    "zero bytes": (lambda good: start_bytes(b""),
                   "bad_image", "empty file: got 0 bytes; expected a PNG, JPEG or DICOM image", 4415),
    "a PNG declaring 100000 x 100000": (lambda good: start_bytes(png_header(100_000, 100_000)), "bad_image",
                                        "image is 100000 x 100000 = 10000000000 pixels; the limit is 50000000", 4415),
    "a non-image": (lambda good: start_bytes(b"hello, this is not an image"),
                    "bad_image", "not a PNG, JPEG or DICOM image: starts with b'hello, t'", 4415),
    "invalid msgpack": (lambda good: b"\xc1\xff\x00", "bad_frame", "message is not valid msgpack", 4400),
    "a text message": (lambda good: '{"type": "start"}', "bad_frame",
                       "frames must be binary msgpack messages; got a text message", 4400),
    "a wrong field type": (lambda good: raw_start(image=good, max_new_tokens="4"), "bad_request",
                           "field 'max_new_tokens' of the start frame must be an integer; got a string", 4400),
    "max_new_tokens over the cap": (lambda good: raw_start(image=good, max_new_tokens=65), "bad_request",
                                    "max_new_tokens must be in 1..64; got 65", 4400),
    "a question over the length limit": (lambda good: raw_start(image=good, question="q" * 2001), "bad_request",
                                         "question is 2001 characters; the limit is 2000", 4400),
    "a sampling value out of range": (lambda good: raw_start(image=good, top_p=1.5), "bad_request",
                                      "top_p must be in (0, 1]; got 1.5", 4400),
    "an unknown method": (lambda good: raw_start(image=good, methods=["magic"]), "bad_request",
                          "methods must be a non-empty subset of raw, layer_weighted, head_importance, flow, "
                          "rollout, consensus; got ['magic']", 4400),
    "an unknown frame type": (lambda good: msgpack.packb({"type": "launch"}), "bad_frame",
                              "unknown frame type 'launch'; expected one of start", 4400),
    "a command before start": (lambda good: encode_command("cancel"), "bad_frame",
                               "frame type 'cancel' is not accepted here; expected one of start", 4400),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_start_gets_a_clear_error_and_the_next_session_runs(
    case: str, live: LiveServer, sample_bytes: bytes
) -> None:
    make, code, message, close_code = CASES[case]
    error, closed_with, _ = run(refused(f"{live.ws}/ws/session", make(sample_bytes)))
    assert error == frames.ErrorFrame(code, message)
    assert closed_with == close_code
    assert kinds(run(session(live, sample_bytes, max_new_tokens=1))) == ["start", "step", "end"]


def test_an_oversize_message_is_too_large_and_the_next_session_runs(
    make_server: Any, sample_bytes: bytes
) -> None:
    server: LiveServer = make_server(max_message_bytes=len(sample_bytes) + 1000)
    oversize = start_bytes(sample_bytes + bytes(2000))
    error, closed_with, _ = run(refused(f"{server.ws}/ws/session", oversize))
    assert error == frames.ErrorFrame(
        "too_large", f"message is {len(oversize)} bytes; the limit is {len(sample_bytes) + 1000}"
    )
    assert closed_with == 4413
    assert kinds(run(session(server, sample_bytes, max_new_tokens=1))) == ["start", "step", "end"]


def test_a_bad_command_during_a_session_is_answered_and_the_session_goes_on(
    live: LiveServer, sample_bytes: bytes
) -> None:
    from websockets.asyncio.client import connect

    from .helpers import receive_all

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/session") as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=3))
            first = await recv(ws)
            await ws.send(b"\xc1")
            return [first, *await receive_all(ws)]

    data = run(scenario())
    errors = [frames.decode(d) for d in data if frames.decode(d).type == "error"]
    assert errors == [frames.ErrorFrame("bad_frame", "message is not valid msgpack")]
    assert [k for k in kinds(data) if k != "error"] == ["start", "step", "step", "step", "end"]
