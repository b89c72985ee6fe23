"""The source frame's marks on the wire: `from_pacs` (the server retrieved the images from its PACS) round-trips beside
`deidentified`, an older frame without it reads as not from the PACS, and a client can never set it: a start frame's
own `from_pacs` is ignored and a marked start request does not carry the mark out."""

from __future__ import annotations

import msgpack
import pytest

from medviz_core.errors import ProtocolError
from medviz_core.wire.client_frames import StartRequest, parse_client_frame
from medviz_core.wire.limits import ClientLimits
from medviz_core.wire.server_frames import SourceFrame, decode

HEADERS = (b"\x08\x00\x16\x00header", None)
LIMITS = ClientLimits(max_message_bytes=1000, max_question_chars=20, max_new_tokens=12)


def fields(frame: SourceFrame) -> dict[str, object]:
    return dict(msgpack.unpackb(frame.to_wire(), raw=False))


def test_the_pacs_mark_round_trips_alone_and_beside_the_de_identified_mark() -> None:
    marked = SourceFrame(HEADERS, from_pacs=True)
    both = SourceFrame(HEADERS, deidentified=True, from_pacs=True)
    assert (decode(marked.to_wire()), decode(both.to_wire())) == (marked, both)
    assert fields(marked) == {"v": 2, "type": "source", "headers": list(HEADERS), "from_pacs": True}


def test_an_unmarked_source_frame_is_written_as_before_and_an_older_one_reads_as_not_from_the_pacs() -> None:
    assert fields(SourceFrame(HEADERS)) == {"v": 2, "type": "source", "headers": list(HEADERS)}
    older = msgpack.packb({"v": 2, "type": "source", "headers": list(HEADERS), "deidentified": True})
    assert decode(older) == SourceFrame(HEADERS, deidentified=True, from_pacs=False)


def test_a_pacs_mark_that_is_not_a_bool_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="from_pacs"):
        decode(msgpack.packb({"v": 2, "type": "source", "headers": [], "from_pacs": "yes"}))


def test_a_client_cannot_mark_its_upload_as_from_the_pacs() -> None:
    claimed = msgpack.packb({"v": 2, "type": "start", "images": [b"dicom"], "from_pacs": True})
    assert parse_client_frame(claimed, LIMITS).from_pacs is False  # type: ignore[union-attr]
    marked = StartRequest(images=(b"dicom",), preset="medviz", from_pacs=True)
    assert "from_pacs" not in msgpack.unpackb(marked.to_wire(), raw=False)
    assert parse_client_frame(marked.to_wire(), LIMITS) == StartRequest(images=(b"dicom",), preset="medviz")
