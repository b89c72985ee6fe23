"""wire/limits.py: item counts, depth and lengths are checked on the headers before anything is unpacked."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest

from medviz_core.errors import ProtocolError
from medviz_core.wire import codec
from medviz_core.wire.client_frames import parse_client_frame
from medviz_core.wire.limits import SERVER_LIMITS, ClientLimits, UnpackLimits, check_shape, client_limits

CLIENT = client_limits(max_message_bytes=20 * 1024 * 1024, max_question_chars=2000)


def start_with_extra(extra: bytes) -> bytes:
    """A start map whose extra field `x` holds `extra` (raw msgpack bytes)."""
    head: bytes = b"\x83" + msgpack.packb("type") + msgpack.packb("start") + msgpack.packb("image") + msgpack.packb(b"png")
    return head + msgpack.packb("x") + extra


def bomb(arrays: int) -> bytes:
    """The reported bomb: `arrays` empty arrays in one array32 (one byte each)."""
    return start_with_extra(b"\xdd" + struct.pack(">I", arrays) + b"\x90" * arrays)


def test_the_item_bomb_is_refused_at_its_array_header_without_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("msgpack.unpackb was called on the bomb")

    monkeypatch.setattr(codec.msgpack, "unpackb", never)
    data = bomb(19_900_000)
    with pytest.raises(ProtocolError) as error:
        parse_client_frame(data, ClientLimits())
    assert len(data) > 19_900_000
    assert str(error.value) == "message holds a msgpack array of 19900000 items; the limit is 64"


def test_a_tree_of_small_arrays_is_refused_after_the_item_limit() -> None:
    leaf = b"\xdc\x00\x40" + b"\x90" * 64  # 64 empty arrays: each array under the length limit
    data = start_with_extra(b"\xdc\x00\x40" + leaf * 64)
    with pytest.raises(ProtocolError) as error:
        check_shape(data, CLIENT)
    assert str(error.value) == "message holds more than 1024 msgpack items; the limit is 1024"


def test_deep_nesting_is_refused_at_the_depth_limit() -> None:
    with pytest.raises(ProtocolError) as error:
        check_shape(start_with_extra(b"\x91" * 100 + b"\xc0"), CLIENT)
    assert str(error.value) == "message nests arrays and maps deeper than 8 levels; the limit is 8"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (b"\xdb" + struct.pack(">I", 100_000) + b"q" * 100_000, "message holds a msgpack str of 100000 bytes; the limit is 8000"),
        (b"\xdf" + struct.pack(">I", 40) + b"\xc0\xc0" * 40, "message holds a msgpack map of 40 entries; the limit is 32"),
        (b"\xd4\x01\x00", "message holds a msgpack extension type (0xd4); the protocol has none"),
        (b"\xdd\x00\x00", "message is not valid msgpack"),
    ],
    ids=["long-str", "wide-map", "ext", "cut-header"],
)
def test_each_length_limit_names_the_value_and_the_limit(extra: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as error:
        check_shape(start_with_extra(extra), CLIENT)
    assert str(error.value) == message


def test_every_client_frame_of_the_protocol_fits_the_client_limits() -> None:
    from medviz_core.wire.client_frames import AnalyzeRequest, BoxRequest, StartRequest
    from tests.wire_client import encode_analyze, encode_client_start, encode_command

    boxes = tuple(BoxRequest(f"box{n}", (1, 2, 3, 4), 0) for n in range(32))
    start = StartRequest(images=(b"a", b"b", b"c", b"d"), labels=("PA", "lat", "prior", "x"), question="é" * 2000,
                         methods=("raw", "layer_weighted", "head_importance", "flow", "rollout", "consensus"))
    for data in (encode_client_start(start), encode_analyze(AnalyzeRequest("agreement", 3, boxes=boxes)),
                 encode_command("seek", index=4), encode_command("cancel_analysis", job="j" * 64)):
        check_shape(data, CLIENT)


def test_server_frames_and_their_golden_fixtures_fit_the_server_limits() -> None:
    from tests.fixtures.frames import make_fixtures

    for data in make_fixtures.build().values():
        check_shape(data, SERVER_LIMITS)


ROOMY = UnpackLimits(max_items=1_000_000, max_depth=4, max_array_len=1_000_000, max_map_len=1_000_000,
                     max_str_len=1_000_000, max_bin_len=1_000_000)


def one_value_per_first_byte() -> dict[int, bytes]:
    """msgpack's own encoding of a value for every first byte it uses (0xc1 it never does): each
    fixint, fixstr, fixarray and fixmap length, and every sized header at its smallest length."""
    values: list[Any] = [*range(-32, 128), 200, 60_000, 2**32 - 1, 2**64 - 1, -100, -30_000, -2**31, -2**63,
                         None, True, False, 1.5]
    values += ["s" * n for n in (*range(32), 32, 256, 65_536)]
    values += [b"b" * n for n in (1, 256, 65_536)]
    values += [[7] * n for n in (*range(16), 16, 65_536)]
    values += [{f"k{i}": 7 for i in range(n)} for n in (*range(16), 16, 65_536)]
    values += [msgpack.ExtType(1, b"e" * n) for n in (1, 2, 4, 8, 16, 3, 256, 65_536)]
    encoded = [msgpack.packb(v, use_bin_type=True) for v in values] + [msgpack.packb(1.5, use_single_float=True)]
    return {data[0]: data for data in encoded}


def test_every_first_byte_is_read_to_the_end_of_its_value_and_extension_types_are_refused() -> None:
    by_first = one_value_per_first_byte()
    assert set(by_first) == set(range(256)) - {0xC1}
    for first, value in by_first.items():
        # [value, ext]: the ext is refused by name only when the value was read to exactly its end
        expected = 0xD4 if first not in range(0xC7, 0xCA) and first not in range(0xD4, 0xD9) else first
        with pytest.raises(ProtocolError) as error:
            check_shape(b"\x92" + value + b"\xd4\x00\x00", ROOMY)
        assert (first, str(error.value)) == (
            first, f"message holds a msgpack extension type (0x{expected:02x}); the protocol has none")
    with pytest.raises(ProtocolError) as never_used:
        check_shape(b"\x92\xc1\xc0", ROOMY)
    assert str(never_used.value) == "message is not valid msgpack"


def test_a_bin_is_held_to_the_bin_limit_and_a_str_to_the_str_limit() -> None:
    limits = UnpackLimits(max_items=64, max_depth=4, max_array_len=64, max_map_len=64, max_str_len=4, max_bin_len=64)
    check_shape(msgpack.packb([b"b" * 64, "s" * 4], use_bin_type=True), limits)
    for value, message in [(b"b" * 65, "message holds a msgpack bin of 65 bytes; the limit is 64"),
                           ("s" * 5, "message holds a msgpack str of 5 bytes; the limit is 4")]:
        with pytest.raises(ProtocolError) as error:
            check_shape(msgpack.packb(value, use_bin_type=True), limits)
        assert str(error.value) == message
