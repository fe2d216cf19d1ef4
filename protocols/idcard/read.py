"""The data of a successful card read (30 01 text+photo, 30 10 with fingerprint).

Layout after SW1..SW3: text length (2, BE), photo length (2, BE), [fingerprint length (2, BE)],
then the text block, the photo and the fingerprint data, in that order. A normal text+photo
read is 256 + 1024 bytes (a 1295-byte frame); with fingerprint 1024 more (2321 bytes).

The photo is WLT, a proprietary compressed format only a vendor library decodes: it is kept as
raw bytes with its SHA-256, never "decoded" here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from protocols.idcard.cards import CardText
from protocols.idcard.errors import LocalProtocolError, RemoteProtocolError
from protocols.idcard.messages import Response, Status
from protocols.idcard.text import TEXT_BLOCK_SIZE, encode_text_block, parse_text_block

__all__ = ["FINGERPRINT_SIZE", "PHOTO_SIZE", "ReadResult", "encode_read_data", "parse_read"]

PHOTO_SIZE: Final = 1024
FINGERPRINT_SIZE: Final = 1024
#: Upper bound on a declared photo or fingerprint size; real readers send exactly 1024.
_MAX_PART: Final = 2048


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ReadResult:
    """One card read. `fingerprint` is None for a 30 01 read, bytes (maybe empty) for 30 10."""

    text: CardText
    photo_wlt: bytes
    photo_sha256: str
    fingerprint: bytes | None = None

    def __post_init__(self) -> None:
        if not self.photo_wlt or len(self.photo_wlt) > _MAX_PART:
            raise LocalProtocolError(
                f"a card photo is 1..{_MAX_PART} bytes of WLT, got {len(self.photo_wlt)}"
            )
        if hashlib.sha256(self.photo_wlt).hexdigest() != self.photo_sha256:
            raise LocalProtocolError("photo_sha256 is not the SHA-256 of photo_wlt")
        if self.fingerprint is not None and len(self.fingerprint) > _MAX_PART:
            raise LocalProtocolError(
                f"fingerprint data is at most {_MAX_PART} bytes, got {len(self.fingerprint)}"
            )

    @classmethod
    def of(cls, text: CardText, photo_wlt: bytes, fingerprint: bytes | None = None) -> ReadResult:
        """A result with the photo hash computed."""
        return cls(
            text=text,
            photo_wlt=photo_wlt,
            photo_sha256=hashlib.sha256(photo_wlt).hexdigest(),
            fingerprint=fingerprint,
        )

    def __repr__(self) -> str:
        fp = "none" if self.fingerprint is None else f"{len(self.fingerprint)} bytes"
        return (
            f"ReadResult(text={self.text!r}, photo=<{len(self.photo_wlt)} bytes WLT "
            f"sha256 {self.photo_sha256[:12]}…>, fingerprint={fp})"
        )


def _parts(data: bytes, count: int) -> list[bytes]:
    header = 2 * count
    if len(data) < header:
        raise RemoteProtocolError(
            f"card read data is {len(data)} bytes, too short for its {count} length fields"
        )
    sizes = [int.from_bytes(data[i : i + 2], "big") for i in range(0, header, 2)]
    if header + sum(sizes) != len(data):
        raise RemoteProtocolError(
            f"card read declares parts of {sizes} bytes but carries {len(data) - header}; "
            "the frame is truncated or this is not a read response"
        )
    out, at = [], header
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    return out


def parse_read(response: Response, *, with_fingerprint: bool = False) -> ReadResult:
    """The result in an OK response to READ_TEXT_PHOTO (or READ_WITH_FINGERPRINT if
    `with_fingerprint`). Raises `RemoteProtocolError` (`CardDataError` for the text)."""
    if response.status is not Status.OK:
        raise LocalProtocolError(
            f"parse_read needs an OK (0x90) response, got SW3 0x{response.sw3:02X}; check the "
            "status before parsing"
        )
    parts = _parts(response.data, 3 if with_fingerprint else 2)
    text, photo = parts[0], parts[1]
    if len(text) != TEXT_BLOCK_SIZE:
        raise RemoteProtocolError(
            f"card text is {TEXT_BLOCK_SIZE} bytes, the reader declared {len(text)}"
        )
    if not photo or len(photo) > _MAX_PART or (with_fingerprint and len(parts[2]) > _MAX_PART):
        raise RemoteProtocolError(
            f"card photo and fingerprint are at most {_MAX_PART} bytes (photo non-empty), "
            f"the reader declared {[len(p) for p in parts[1:]]}"
        )
    return ReadResult.of(parse_text_block(text), photo, parts[2] if with_fingerprint else None)


def encode_read_data(text: CardText, photo_wlt: bytes, fingerprint: bytes | None = None) -> bytes:
    """The data bytes (after SW1..SW3) of a read response, as a reader sends them.

    With `fingerprint` None this is a 30 01 response; otherwise a 30 10 one.
    """
    parts = [encode_text_block(text), photo_wlt]
    if fingerprint is not None:
        parts.append(fingerprint)
    if any(len(p) > 0xFFFF for p in parts):
        raise LocalProtocolError("a read part is at most 65535 bytes (2-byte length field)")
    return b"".join(len(p).to_bytes(2, "big") for p in parts) + b"".join(parts)
