"""SAM frames: the checked examples from devices.md, the decoder fed whole, byte by byte, with
leading garbage and trailing bytes, recovery after bad frames, and its buffer bound."""

from __future__ import annotations

import pytest

from protocols.idcard import (
    BUFFER_LIMIT,
    FIND_CARD,
    MAX_FRAME_SIZE,
    NEED_DATA,
    PREAMBLE,
    READ_TEXT_PHOTO,
    Frame,
    FrameChecksumError,
    FrameDecoder,
    FrameLengthError,
    LocalProtocolError,
    RemoteProtocolError,
    Response,
    checksum,
    decode_response,
    encode_command,
    encode_frame,
    encode_response,
)

SAM_OK = bytes.fromhex("AA AA AA 96 69 00 04 00 00 90 94")
NO_CARD = bytes.fromhex("AA AA AA 96 69 00 04 00 00 80 84")


def drain(decoder: FrameDecoder) -> list[Frame]:
    out = []
    for _ in range(1000):
        frame = decoder.next_frame()
        if frame is NEED_DATA:
            return out
        out.append(frame)
    raise AssertionError("decoder never returned NEED_DATA")


def test_checked_examples_encode_byte_for_byte() -> None:
    assert encode_command(FIND_CARD) == bytes.fromhex("AA AA AA 96 69 00 03 20 01 22")
    assert encode_command(READ_TEXT_PHOTO) == bytes.fromhex("AA AA AA 96 69 00 03 30 01 32")
    assert encode_response(Response(sw3=0x90)) == SAM_OK
    assert encode_response(Response(sw3=0x80)) == NO_CARD


def test_checksum_is_xor_from_length_to_last_payload_byte() -> None:
    assert checksum(b"\x00\x04\x00\x00\x90") == 0x94
    assert checksum(b"") == 0


@pytest.mark.parametrize("wire", [SAM_OK, NO_CARD])
def test_decodes_whole(wire: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(wire)
    frames = drain(decoder)
    assert [decode_response(f).sw3 for f in frames] == [wire[-2]]
    assert decoder.buffered == 0


def test_decodes_byte_by_byte() -> None:
    decoder = FrameDecoder()
    results = []
    for i in range(len(SAM_OK)):
        decoder.feed(SAM_OK[i : i + 1])
        results.append(decoder.next_frame())
    assert results[:-1] == [NEED_DATA] * (len(SAM_OK) - 1)
    assert results[-1] == Frame(payload=b"\x00\x00\x90")


def test_skips_leading_garbage_and_keeps_trailing_bytes() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x01\x02\xaa\x96\xaa\xaa" + SAM_OK + NO_CARD[:6])
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x90")]
    assert decoder.skipped == 6
    assert decoder.buffered == 6  # the start of the next frame waits for the rest
    decoder.feed(NO_CARD[6:])
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x80")]


def test_garbage_alone_is_dropped_except_a_possible_preamble_start() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00" * 5000 + PREAMBLE[:3])
    assert decoder.next_frame() is NEED_DATA
    assert decoder.buffered == 3
    decoder.feed(SAM_OK[3:])
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x90")]


def test_bad_checksum_is_the_peers_error_and_the_next_frame_still_decodes() -> None:
    bad = SAM_OK[:-1] + b"\x00"
    decoder = FrameDecoder()
    decoder.feed(bad + NO_CARD)
    with pytest.raises(FrameChecksumError, match="checksum 0x00, expected 0x94"):
        decoder.next_frame()
    assert isinstance(FrameChecksumError("x"), RemoteProtocolError)
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x80")]
    assert decoder.errors == 1


@pytest.mark.parametrize("length", [0, 1, 2, MAX_FRAME_SIZE - 6, 0xFFFF])
def test_impossible_length_is_the_peers_error_and_resyncs(length: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(PREAMBLE + length.to_bytes(2, "big") + SAM_OK)
    with pytest.raises(FrameLengthError, match=f"length field is {length}"):
        decoder.next_frame()
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x90")]


def test_a_corrupt_length_does_not_swallow_the_next_frame() -> None:
    # Claims 200 bytes, carries 3: the next real frame lies inside the claimed span.
    decoder = FrameDecoder()
    decoder.feed(PREAMBLE + b"\x00\xc8\x01\x02\x03" + SAM_OK + b"\x00" * 200)
    with pytest.raises(FrameChecksumError):
        decoder.next_frame()
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x90")]


def test_largest_frame_round_trips_and_one_more_byte_is_refused() -> None:
    payload = bytes(range(256)) * 15 + bytes(MAX_FRAME_SIZE - 8 - 3840)
    wire = encode_frame(payload)
    assert len(wire) == MAX_FRAME_SIZE
    decoder = FrameDecoder()
    decoder.feed(wire)
    assert drain(decoder) == [Frame(payload=payload)]
    with pytest.raises(LocalProtocolError, match="frame payload"):
        encode_frame(payload + b"\x00")
    with pytest.raises(LocalProtocolError):
        encode_frame(b"\x01")


def test_feeding_without_draining_is_refused_not_buffered_without_bound() -> None:
    decoder = FrameDecoder()
    decoder.feed(SAM_OK * 700)  # 7700 bytes: fits the bound
    before = decoder.buffered
    with pytest.raises(LocalProtocolError, match="call next_frame"):
        decoder.feed(SAM_OK * 100)
    assert decoder.buffered == before <= BUFFER_LIMIT
    assert len(drain(decoder)) == 700
    decoder.feed(SAM_OK * 100)  # drained: fits again
    assert len(drain(decoder)) == 100


def test_clear_forgets_a_partial_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(SAM_OK[:8])
    decoder.clear()
    decoder.feed(NO_CARD)
    assert drain(decoder) == [Frame(payload=b"\x00\x00\x80")]


def test_response_shorter_than_status_words_is_the_peers_error() -> None:
    with pytest.raises(RemoteProtocolError, match="at least SW1 SW2 SW3"):
        decode_response(Frame(payload=b"\x20\x01"))
