"""Commands, responses, SAM ids, and whole card reads (1295 and 2321 bytes)."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from protocols.idcard import (
    FIND_CARD,
    NEED_DATA,
    READ_ADDITIONAL_ADDRESS,
    READ_TEXT_PHOTO,
    READ_WITH_FINGERPRINT,
    RESET_SAM,
    SAM_ID,
    SAM_STATUS,
    SELECT_CARD,
    CardDataError,
    Command,
    FrameDecoder,
    LocalProtocolError,
    ReadResult,
    RemoteProtocolError,
    ResidentCard,
    Response,
    Sex,
    Status,
    decode_response,
    decode_sam_id,
    encode_command,
    encode_read_data,
    encode_response,
    encode_sam_id,
    parse_read,
    set_baud,
    set_max_rf_frame,
)

CARD = ResidentCard(
    name="王测试",
    sex=Sex.FEMALE,
    nation_code="08",
    birth_date=date(1988, 11, 18),
    address="河北省示例县测试村",
    id_number="130423198811184328",
    issuing_authority="示例县公安局",
    valid_from=date(2015, 3, 1),
    valid_to=date(2035, 3, 1),
)
PHOTO = bytes(range(256)) * 4
FINGERPRINT = bytes(reversed(range(256))) * 4


@pytest.mark.parametrize(
    ("command", "hex_wire"),
    [
        (RESET_SAM, "AAAAAA9669 0003 10FF EC"),
        (SAM_STATUS, "AAAAAA9669 0003 11FF ED"),
        (SAM_ID, "AAAAAA9669 0003 12FF EE"),
        (FIND_CARD, "AAAAAA9669 0003 2001 22"),
        (SELECT_CARD, "AAAAAA9669 0003 2002 21"),
        (READ_TEXT_PHOTO, "AAAAAA9669 0003 3001 32"),
        (READ_ADDITIONAL_ADDRESS, "AAAAAA9669 0003 3003 30"),
        (READ_WITH_FINGERPRINT, "AAAAAA9669 0003 3010 23"),
        (set_baud(115200), "AAAAAA9669 0003 6000 63"),
        (set_baud(9600), "AAAAAA9669 0003 6004 67"),
        (set_max_rf_frame(80), "AAAAAA9669 0004 61FF 50 CA"),
    ],
)
def test_commands_encode(command: Command, hex_wire: str) -> None:
    assert encode_command(command) == bytes.fromhex(hex_wire)


def test_invalid_commands_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError, match="not 4800"):
        set_baud(4800)
    with pytest.raises(LocalProtocolError, match="PARA"):
        Command(cmd=0x20, para=256)
    with pytest.raises(LocalProtocolError, match="SW3"):
        Response(sw3=-1)


def test_status_codes_and_unknown_ones() -> None:
    assert Response(sw3=0x9F).status is Status.CARD_FOUND
    assert Response(sw3=0x41).status is Status.READ_FAILED
    assert Status.READ_FAILED.description == "reading the card failed"
    assert Response(sw3=0x55).status is None  # a vendor's extra code: kept, not fatal
    assert all(s.description for s in Status)


def test_sam_id_format() -> None:
    data = encode_sam_id(5, 1, 20240101, 1234567890, 42)
    assert len(data) == 16
    assert decode_sam_id(data) == "05.01-20240101-1234567890-0000000042"
    with pytest.raises(RemoteProtocolError, match="16 bytes"):
        decode_sam_id(data[:15])


def _round_trip(response: Response) -> tuple[bytes, Response]:
    wire = encode_response(response)
    decoder = FrameDecoder()
    decoder.feed(wire)
    frame = decoder.next_frame()
    assert frame is not NEED_DATA
    return wire, decode_response(frame)


def test_text_photo_read_is_a_1295_byte_frame() -> None:
    wire, response = _round_trip(Response(sw3=0x90, data=encode_read_data(CARD, PHOTO)))
    assert len(wire) == 1295
    assert wire[5:7] == b"\x05\x08"
    assert wire[10:14] == b"\x01\x00\x04\x00"  # text 0x0100, photo 0x0400
    result = parse_read(response)
    assert result == ReadResult(
        text=CARD,
        photo_wlt=PHOTO,
        photo_sha256=hashlib.sha256(PHOTO).hexdigest(),
        fingerprint=None,
    )
    assert "王" not in repr(result) and "1304**********4328" in repr(result)


def test_fingerprint_read_is_a_2321_byte_frame() -> None:
    data = encode_read_data(CARD, PHOTO, FINGERPRINT)
    wire, response = _round_trip(Response(sw3=0x90, data=data))
    assert len(wire) == 2321
    assert wire[5:7] == (2314).to_bytes(2, "big")
    result = parse_read(response, with_fingerprint=True)
    assert result.fingerprint == FINGERPRINT and result.text == CARD


def test_reads_fed_byte_by_byte_with_garbage_and_trailing_bytes() -> None:
    wire = encode_response(Response(sw3=0x90, data=encode_read_data(CARD, PHOTO)))
    decoder = FrameDecoder()
    frames = []
    for byte in b"\x13\x37\xaa" + wire + b"\xaa\xaa":
        decoder.feed(bytes((byte,)))
        if (frame := decoder.next_frame()) is not NEED_DATA:
            frames.append(frame)
    assert [parse_read(decode_response(f)).text for f in frames] == [CARD]
    assert decoder.buffered == 2


def test_inconsistent_read_lengths_are_the_peers_error() -> None:
    data = encode_read_data(CARD, PHOTO)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        parse_read(Response(sw3=0x90, data=data[:-1]))
    with pytest.raises(RemoteProtocolError, match="length fields"):
        parse_read(Response(sw3=0x90, data=b"\x01"))
    short_text = b"\x00\x10\x04\x00" + bytes(16) + PHOTO
    with pytest.raises(RemoteProtocolError, match="256 bytes"):
        parse_read(Response(sw3=0x90, data=short_text))


def test_damaged_text_in_a_read_is_a_card_data_error() -> None:
    data = bytearray(encode_read_data(CARD, PHOTO))
    data[4 + 248 : 4 + 250] = "Q".encode("utf-16-le")  # marker at text offset 248
    with pytest.raises(CardDataError) as caught:
        parse_read(Response(sw3=0x90, data=bytes(data)))
    assert caught.value.field == "card_type"


def test_parse_read_of_a_failed_response_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="check the status"):
        parse_read(Response(sw3=0x41))


def test_read_result_checks_its_hash() -> None:
    with pytest.raises(LocalProtocolError, match="SHA-256"):
        ReadResult(text=CARD, photo_wlt=PHOTO, photo_sha256="00" * 32)
