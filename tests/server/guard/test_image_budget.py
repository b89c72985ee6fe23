"""guard/image_budget.py over a real server: small files that decode to gigabytes cost the server little."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from medviz_core.wire import server_frames as frames
from tests.server.helpers import LiveServer, kinds, refused, run
from tests.server.memory import GB, peak_growth
from tests.wire_client import start_request

SIDE = 7071  # 7071 x 7071 = 49999041 pixels: just under the pixel limit


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.fixture(scope="module")
def rgba16_bomb() -> bytes:
    """A whole 16-bit RGBA PNG of 7071 x 7071 transparent pixels: about 389 KB."""
    row = b"\x00" + bytes(SIDE * 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(SIDE)) + packer.flush()
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def gray_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side), 9).save(out, format="PNG", compress_level=9)
    return out.getvalue()


def start(images: list[bytes]) -> bytes:

    return start_request(images=tuple(images), max_new_tokens=1).to_wire()


async def in_parallel(server: LiveServer, messages: list[bytes]) -> list[tuple[Any, int | None, str]]:
    return list(await asyncio.gather(*(refused(f"{server.ws}/ws/session", m) for m in messages)))


def test_three_parallel_16bit_rgba_bombs_are_refused_from_their_headers(make_server: Any, rgba16_bomb: bytes) -> None:
    server: LiveServer = make_server()
    with peak_growth() as growth:
        answers = run(in_parallel(server, [start([rgba16_bomb])] * 3))
    assert len(rgba16_bomb) < 400_000
    assert answers == [(frames.ErrorFrame("bad_image", "image would decode to 7071 x 7071 x 4 channel(s) x 2 byte(s) "
                                          "= 399992328 bytes; the limit is 268435456 bytes"), 4415,
                        "image would decode to 7071 x 7071 x 4 channel(s) x 2 byte(s) = 399992328 bytes; the limit "
                        "is 268435456 bytes")] * 3
    assert growth[0] < GB, f"peak RSS grew {growth[0] / GB:.2f} GB"


def test_three_parallel_studies_of_four_gray_bombs_are_refused_as_more_work_than_the_budget(
    make_server: Any
) -> None:
    server: LiveServer = make_server()
    bomb = gray_png(SIDE)
    with peak_growth() as growth:
        answers = run(in_parallel(server, [start([bomb] * 4)] * 3))
    each = f"{SIDE} x {SIDE} x 1 channel(s) x 1 byte(s) = 49999041 bytes"
    message = (f"decoding these 4 image(s) ({', '.join([each] * 4)}) needs about 2999942460 bytes; the server "
               "decodes at most 1073741824 at once")
    assert len(bomb) < 100_000
    assert [(a[0], a[1]) for a in answers] == [(frames.ErrorFrame("bad_image", message), 4415)] * 3
    assert growth[0] < GB, f"peak RSS grew {growth[0] / GB:.2f} GB"


def test_parallel_studies_under_the_budget_decode_within_it_and_finished_ones_keep_no_pixels(
    make_server: Any
) -> None:
    server: LiveServer = make_server()
    study = [gray_png(4000)] * 2  # 16 M pixels each: about 240 MB of decoding work each, 480 MB a study

    async def three() -> list[list[bytes]]:
        return list(await asyncio.gather(*(session_of_images(server, study) for _ in range(3))))

    with peak_growth() as growth:
        sessions = run(three())
    budget = server.app.state.sessions.images
    assert [[k for k in kinds(s) if k != "queued"] for s in sessions] == [["start", "step", "end"]] * 3
    assert (budget.in_use, budget.peak <= budget.total) == (0, True)
    assert growth[0] < GB, f"peak RSS grew {growth[0] / GB:.2f} GB"
    kept = [(s.job.images, s.job.request.images) for s in server.app.state.sessions._sessions.values()]
    assert kept == [((), (b"", b""))] * 3  # finished: the start frame's PNGs are all they still send


async def session_of_images(server: LiveServer, images: list[bytes]) -> list[bytes]:
    from websockets.asyncio.client import connect

    from tests.server.helpers import receive_all

    async with connect(f"{server.ws}/ws/session", max_size=None) as ws:
        await ws.send(start(images))
        return await receive_all(ws)
