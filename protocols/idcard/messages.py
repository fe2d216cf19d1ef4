"""Commands and responses carried in SAM frames, with the SW3 status codes.

Host -> reader payload: ``CMD PARA [data]``. Reader -> host payload: ``SW1 SW2 SW3 [data]``
(SW1 = SW2 = 0 in every response observed; SW3 is the status). A normal read is
find (expect 9F) -> select (expect 90) -> read (expect 90).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from protocols.idcard.errors import LocalProtocolError, RemoteProtocolError
from protocols.idcard.frames import MAX_PAYLOAD, Frame, encode_frame

__all__ = [
    "BAUD_RATES",
    "FIND_CARD",
    "READ_ADDITIONAL_ADDRESS",
    "READ_TEXT_PHOTO",
    "READ_WITH_FINGERPRINT",
    "RESET_SAM",
    "SAM_ID",
    "SAM_ID_SIZE",
    "SAM_STATUS",
    "SELECT_CARD",
    "Command",
    "Response",
    "Status",
    "decode_command",
    "decode_response",
    "decode_sam_id",
    "encode_command",
    "encode_response",
    "encode_sam_id",
    "set_baud",
    "set_max_rf_frame",
]


class Status(IntEnum):
    """SW3: what the reader says about the command it just ran."""

    OK = 0x90
    CARD_FOUND = 0x9F
    CHECKSUM_ERROR = 0x10
    LENGTH_ERROR = 0x11
    BAD_COMMAND = 0x21
    NOT_AUTHORISED = 0x23
    UNKNOWN_ERROR = 0x24
    CARD_REJECTED_SAM = 0x31
    SAM_REJECTED_CARD = 0x32
    DATA_VERIFICATION_ERROR = 0x33
    UNKNOWN_CARD_TYPE = 0x40
    READ_FAILED = 0x41
    NO_RANDOM_NUMBER = 0x47
    SAM_SELF_TEST_FAILED = 0x60
    SAM_NOT_AUTHORISED = 0x66
    NO_CARD = 0x80
    SELECT_FAILED = 0x81
    ITEM_EMPTY = 0x91

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: Final = {
    Status.OK: "ok",
    Status.CARD_FOUND: "card found",
    Status.CHECKSUM_ERROR: "the reader saw a bad checksum in our command",
    Status.LENGTH_ERROR: "the reader saw a bad length in our command",
    Status.BAD_COMMAND: "the reader does not know this command",
    Status.NOT_AUTHORISED: "command not authorised",
    Status.UNKNOWN_ERROR: "unknown error",
    Status.CARD_REJECTED_SAM: "the card failed to authenticate the SAM",
    Status.SAM_REJECTED_CARD: "the SAM failed to authenticate the card",
    Status.DATA_VERIFICATION_ERROR: "card data failed verification",
    Status.UNKNOWN_CARD_TYPE: "unknown card type",
    Status.READ_FAILED: "reading the card failed",
    Status.NO_RANDOM_NUMBER: "the card gave no random number",
    Status.SAM_SELF_TEST_FAILED: "the SAM failed its self-test",
    Status.SAM_NOT_AUTHORISED: "the SAM is not authorised",
    Status.NO_CARD: "no card on the reader",
    Status.SELECT_FAILED: "selecting the card failed",
    Status.ITEM_EMPTY: "the card holds no such item",
}


def _byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{name} is one byte (0..255), got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One host -> reader command: CMD, PARA and optional data."""

    cmd: int
    para: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _byte("command CMD", self.cmd)
        _byte("command PARA", self.para)
        if len(self.data) > MAX_PAYLOAD - 2:
            raise LocalProtocolError(
                f"command data is at most {MAX_PAYLOAD - 2} bytes, got {len(self.data)}"
            )


RESET_SAM: Final = Command(cmd=0x10, para=0xFF)
SAM_STATUS: Final = Command(cmd=0x11, para=0xFF)
SAM_ID: Final = Command(cmd=0x12, para=0xFF)
FIND_CARD: Final = Command(cmd=0x20, para=0x01)
SELECT_CARD: Final = Command(cmd=0x20, para=0x02)
READ_TEXT_PHOTO: Final = Command(cmd=0x30, para=0x01)
READ_ADDITIONAL_ADDRESS: Final = Command(cmd=0x30, para=0x03)
READ_WITH_FINGERPRINT: Final = Command(cmd=0x30, para=0x10)
_SET_BAUD: Final = 0x60
_SET_MAX_RF_FRAME: Final = 0x61

#: Speeds selectable with the set-baud command, by index. The reader answers at the old speed.
BAUD_RATES: Final = (115200, 57600, 38400, 19200, 9600)


def set_baud(baud: int) -> Command:
    """The command that switches the reader to `baud` (one of `BAUD_RATES`)."""
    if baud not in BAUD_RATES:
        raise LocalProtocolError(f"an ID-card reader speaks one of {BAUD_RATES} baud, not {baud}")
    return Command(cmd=_SET_BAUD, para=BAUD_RATES.index(baud))


def set_max_rf_frame(size: int) -> Command:
    """The command that sets the largest RF frame the reader exchanges with a card."""
    _byte("max RF frame size", size)
    return Command(cmd=_SET_MAX_RF_FRAME, para=0xFF, data=bytes((size,)))


def encode_command(command: Command) -> bytes:
    return encode_frame(bytes((command.cmd, command.para)) + command.data)


def decode_command(frame: Frame) -> Command:
    """The command in a frame received from a host (used by the emulator)."""
    return Command(cmd=frame.payload[0], para=frame.payload[1], data=frame.payload[2:])


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One reader -> host response. `status` is None for an SW3 this code does not know."""

    sw3: int
    data: bytes = b""
    sw1: int = 0
    sw2: int = 0

    def __post_init__(self) -> None:
        _byte("response SW1", self.sw1)
        _byte("response SW2", self.sw2)
        _byte("response SW3", self.sw3)
        if len(self.data) > MAX_PAYLOAD - 3:
            raise LocalProtocolError(
                f"response data is at most {MAX_PAYLOAD - 3} bytes, got {len(self.data)}"
            )

    @property
    def status(self) -> Status | None:
        try:
            return Status(self.sw3)
        except ValueError:
            return None

    def __repr__(self) -> str:
        # Data can be a card's text and photo: show its size only.
        return (
            f"Response(sw1=0x{self.sw1:02X}, sw2=0x{self.sw2:02X}, sw3=0x{self.sw3:02X}, "
            f"data=<{len(self.data)} bytes>)"
        )


def encode_response(response: Response) -> bytes:
    return encode_frame(bytes((response.sw1, response.sw2, response.sw3)) + response.data)


def decode_response(frame: Frame) -> Response:
    """The response in a frame received from a reader."""
    payload = frame.payload
    if len(payload) < 3:
        raise RemoteProtocolError(
            f"an ID-card reader response carries at least SW1 SW2 SW3, this one has "
            f"{len(payload)} bytes; is a host (not a reader) on the other end?"
        )
    return Response(sw1=payload[0], sw2=payload[1], sw3=payload[2], data=payload[3:])


SAM_ID_SIZE: Final = 16
_SAM_ID = struct.Struct("<HHIII")


def decode_sam_id(data: bytes) -> str:
    """The SAM id as printed on the module: ``%02d.%02d-%08u-%010u-%010u``."""
    if len(data) != SAM_ID_SIZE:
        raise RemoteProtocolError(f"a SAM id is {SAM_ID_SIZE} bytes, the reader sent {len(data)}")
    a, b, c, d, e = _SAM_ID.unpack(data)
    return f"{a:02d}.{b:02d}-{c:08d}-{d:010d}-{e:010d}"


def encode_sam_id(a: int, b: int, c: int, d: int, e: int) -> bytes:
    """The 16 bytes a reader sends for SAM id ``a.b-c-d-e`` (u16, u16, u32, u32, u32, LE)."""
    try:
        return _SAM_ID.pack(a, b, c, d, e)
    except struct.error as exc:
        raise LocalProtocolError(f"SAM id parts out of range: {exc}") from exc
