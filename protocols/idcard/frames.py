"""SAM frames: the envelope both directions share, and an incremental, bounded decoder.

Wire format (GA/T 467 SAM module protocol)::

    AA AA AA 96 69 | LEN (2, big-endian) | payload (LEN - 1 bytes) | checksum (1)

LEN counts every byte after itself, checksum included. The checksum is the XOR of every byte
from the first LEN byte to the last payload byte. Host -> reader payloads are ``CMD PARA
[data]``; reader -> host payloads are ``SW1 SW2 SW3 [data]`` (see `messages`).

The decoder follows h11's shape: `feed(bytes)` then `next_frame()` until it returns
`NEED_DATA`. Bytes before a preamble are skipped (and counted); an impossible length or a bad
checksum raises `RemoteProtocolError` after skipping that preamble, so the next call resumes
with whatever follows. Its buffer never holds more than `BUFFER_LIMIT` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import reduce
from operator import xor
from typing import Final, Literal

from protocols.idcard.errors import FrameChecksumError, FrameLengthError, LocalProtocolError

__all__ = [
    "BUFFER_LIMIT",
    "MAX_FRAME_SIZE",
    "MAX_LENGTH",
    "MAX_PAYLOAD",
    "MIN_LENGTH",
    "NEED_DATA",
    "PREAMBLE",
    "Frame",
    "FrameDecoder",
    "NeedData",
    "checksum",
    "encode_frame",
]

PREAMBLE: Final = b"\xaa\xaa\xaa\x96\x69"
_HEADER: Final = len(PREAMBLE) + 2
#: Largest frame on the wire, preamble to checksum. The biggest real one (a read with
#: fingerprint) is 2321 bytes; anything claiming more than this is not a reader talking.
MAX_FRAME_SIZE: Final = 4095
MAX_LENGTH: Final = MAX_FRAME_SIZE - _HEADER
#: Two header bytes (CMD PARA or SW1 SW2 ...) and the checksum are the least a frame carries.
MIN_LENGTH: Final = 3
MAX_PAYLOAD: Final = MAX_LENGTH - 1
#: The decoder's buffer bound. After `next_frame()` has returned NEED_DATA the buffer holds
#: less than one frame, so feeding up to MAX_FRAME_SIZE bytes at a time always fits.
BUFFER_LIMIT: Final = 2 * MAX_FRAME_SIZE


class NeedData(Enum):
    """Sentinel type: the decoder needs more bytes before it can return a frame."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


def checksum(data: bytes | bytearray | memoryview) -> int:
    """XOR of every byte of `data` (pass the LEN bytes and the payload)."""
    return reduce(xor, data, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One checked frame: the payload between the length field and the checksum."""

    payload: bytes

    def __post_init__(self) -> None:
        if not MIN_LENGTH - 1 <= len(self.payload) <= MAX_PAYLOAD:
            raise LocalProtocolError(
                f"a frame payload is {MIN_LENGTH - 1}..{MAX_PAYLOAD} bytes, got {len(self.payload)}"
            )


def encode_frame(payload: bytes) -> bytes:
    """The wire bytes of one frame carrying `payload` (validated through `Frame`)."""
    frame = Frame(payload=payload)
    head = (len(frame.payload) + 1).to_bytes(2, "big")
    return PREAMBLE + head + frame.payload + bytes((checksum(head) ^ checksum(frame.payload),))


def _keep_from(buf: bytearray) -> int:
    """Index of the first byte that may still begin a frame (garbage lies before it)."""
    at = buf.find(PREAMBLE)
    if at >= 0:
        return at
    # No whole preamble: keep the longest tail that could be its beginning.
    for size in range(min(len(PREAMBLE) - 1, len(buf)), 0, -1):
        if buf.endswith(PREAMBLE[:size]):
            return len(buf) - size
    return len(buf)


class FrameDecoder:
    """Turns a byte stream into `Frame`s; see the module docstring for the contract.

    `skipped` counts garbage bytes dropped while looking for a preamble; `errors` counts
    frames rejected with `RemoteProtocolError`. Both are for health counters.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0
        self.errors = 0

    @property
    def buffered(self) -> int:
        """Bytes held that may still become (part of) a frame; never above BUFFER_LIMIT."""
        return len(self._buf)

    def clear(self) -> None:
        """Forget buffered bytes (e.g. before a new command, after a timeout)."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Garbage that cannot start a frame is dropped at once.

        Raises `LocalProtocolError`, leaving the buffer as it was, if the bytes would not fit:
        the caller must drain with `next_frame()` between feeds.
        """
        if len(self._buf) + len(data) > BUFFER_LIMIT:
            grown = self._buf + data
            drop = _keep_from(grown)
            if len(grown) - drop > BUFFER_LIMIT:
                raise LocalProtocolError(
                    f"ID-card frame decoder: {len(data)} bytes fed while {len(self._buf)} are "
                    f"buffered exceeds its {BUFFER_LIMIT}-byte bound; call next_frame() until "
                    "NEED_DATA before feeding more, or feed smaller pieces"
                )
            self._buf = grown
        else:
            self._buf += data
        self._drop_garbage()

    def next_frame(self) -> Frame | Literal[NeedData.NEED_DATA]:
        """The next complete, checked frame, or `NEED_DATA`.

        Raises `RemoteProtocolError` for a frame with an impossible length or a bad checksum;
        the decoder has then skipped that frame's preamble and can be called again.
        """
        self._drop_garbage()
        buf = self._buf
        if len(buf) < _HEADER:
            return NEED_DATA
        length = int.from_bytes(buf[len(PREAMBLE) : _HEADER], "big")
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            self._reject()
            raise FrameLengthError(
                f"ID-card frame length field is {length}, outside {MIN_LENGTH}..{MAX_LENGTH}; "
                "skipped it (line noise or not an ID-card reader on this port)"
            )
        end = _HEADER + length
        if len(buf) < end:
            return NEED_DATA
        with memoryview(buf) as view:
            expected = checksum(view[len(PREAMBLE) : end - 1])
        if expected != buf[end - 1]:
            got = buf[end - 1]
            self._reject()
            raise FrameChecksumError(
                f"ID-card frame of {end} bytes has checksum 0x{got:02X}, expected "
                f"0x{expected:02X}; skipped it (line noise or a wrong baud rate), resend the "
                "command"
            )
        payload = bytes(buf[_HEADER : end - 1])
        del buf[:end]
        return Frame(payload=payload)

    def _drop_garbage(self) -> None:
        drop = _keep_from(self._buf)
        if drop:
            del self._buf[:drop]
            self.skipped += drop

    def _reject(self) -> None:
        # Skip only the preamble, not the claimed length: if the length itself was corrupted,
        # the next real frame may start inside the span it claims.
        del self._buf[: len(PREAMBLE)]
        self.skipped += len(PREAMBLE)
        self.errors += 1
