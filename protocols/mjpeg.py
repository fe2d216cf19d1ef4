"""MJPEG frames → self-contained JPEG files (pure: bytes in, bytes out).

UVC cameras send each MJPEG frame as a baseline JPEG *without* its Huffman tables (DHT): the
Motion-JPEG convention (from the AVI1 format) is that a decoder uses the standard tables of the
JPEG specification, Annex K.3, whenever a frame carries none. A still file must carry them, so
`complete_jpeg` inserts those four standard tables in front of the first scan, as ffmpeg's
`mjpeg2jpeg` bitstream filter does. Frames that already carry tables pass through unchanged.

Only the marker segments up to the first scan (SOS) are walked; entropy-coded data is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANNEX_K_DHT",
    "MAX_FRAME_BYTES",
    "FrameInfo",
    "MjpegError",
    "complete_jpeg",
    "dht_segment",
    "inspect_frame",
    "strip_dht",
]

# A 10 MP frame at the highest MJPEG quality stays well under this; anything larger is not a
# camera frame but a fault (or a hostile source), refused before any parsing.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_SOI = 0xD8
_EOI = 0xD9
_SOS = 0xDA
_DHT = 0xC4
# Markers that stand alone (no length field): TEM, RST0..7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), _SOI, _EOI})
# Start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {_DHT, 0xC8, 0xCC}


class MjpegError(ValueError):
    """The bytes are not a JPEG/MJPEG frame this module can complete; the message says where."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameInfo:
    """What the marker segments in front of the first scan say about a frame.

    sos_offset:  offset of the first SOS marker (where missing tables are inserted).
    has_dht:     the frame carries at least one Huffman table before its first scan.
    sof_marker:  the start-of-frame marker (0xC0 = baseline, 0xC2 = progressive …).
    width, height, components: from the SOF segment.
    """

    sos_offset: int
    has_dht: bool
    sof_marker: int
    width: int
    height: int
    components: int

    def __post_init__(self) -> None:
        if self.sos_offset < 2:
            raise MjpegError(f"SOS offset {self.sos_offset} is inside the SOI marker")
        if self.sof_marker not in _SOF:
            raise MjpegError(f"marker 0x{self.sof_marker:02X} is not a start-of-frame marker")


# JPEG Annex K.3, tables K.3 to K.6: code-length counts (BITS, 16 entries) and symbol values
# (HUFFVAL), as libjpeg's std_huff_tables and ffmpeg's mjpeg tables also spell them.
_DC_LUMA_BITS = bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
_DC_CHROMA_BITS = bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
_DC_VALUES = bytes(range(12))
_AC_LUMA_BITS = bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D])
_AC_LUMA_VALUES = bytes.fromhex(
    "01 02 03 00 04 11 05 12 21 31 41 06 13 51 61 07 22 71 14 32 81 91 a1 08"
    "23 42 b1 c1 15 52 d1 f0 24 33 62 72 82 09 0a 16 17 18 19 1a 25 26 27 28"
    "29 2a 34 35 36 37 38 39 3a 43 44 45 46 47 48 49 4a 53 54 55 56 57 58 59"
    "5a 63 64 65 66 67 68 69 6a 73 74 75 76 77 78 79 7a 83 84 85 86 87 88 89"
    "8a 92 93 94 95 96 97 98 99 9a a2 a3 a4 a5 a6 a7 a8 a9 aa b2 b3 b4 b5 b6"
    "b7 b8 b9 ba c2 c3 c4 c5 c6 c7 c8 c9 ca d2 d3 d4 d5 d6 d7 d8 d9 da e1 e2"
    "e3 e4 e5 e6 e7 e8 e9 ea f1 f2 f3 f4 f5 f6 f7 f8 f9 fa"
)
_AC_CHROMA_BITS = bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77])
_AC_CHROMA_VALUES = bytes.fromhex(
    "00 01 02 03 11 04 05 21 31 06 12 41 51 07 61 71 13 22 32 81 08 14 42 91"
    "a1 b1 c1 09 23 33 52 f0 15 62 72 d1 0a 16 24 34 e1 25 f1 17 18 19 1a 26"
    "27 28 29 2a 35 36 37 38 39 3a 43 44 45 46 47 48 49 4a 53 54 55 56 57 58"
    "59 5a 63 64 65 66 67 68 69 6a 73 74 75 76 77 78 79 7a 82 83 84 85 86 87"
    "88 89 8a 92 93 94 95 96 97 98 99 9a a2 a3 a4 a5 a6 a7 a8 a9 aa b2 b3 b4"
    "b5 b6 b7 b8 b9 ba c2 c3 c4 c5 c6 c7 c8 c9 ca d2 d3 d4 d5 d6 d7 d8 d9 da"
    "e2 e3 e4 e5 e6 e7 e8 e9 ea f2 f3 f4 f5 f6 f7 f8 f9 fa"
)


def dht_segment(tables: list[tuple[int, int, bytes, bytes]]) -> bytes:
    """One DHT marker segment holding `tables`: (class 0=DC/1=AC, id 0..3, BITS, HUFFVAL)."""
    body = bytearray()
    for table_class, table_id, bits, values in tables:
        if table_class not in (0, 1) or not 0 <= table_id <= 3:
            raise MjpegError(f"Huffman table class {table_class} id {table_id} out of range")
        if len(bits) != 16 or sum(bits) != len(values) or len(values) > 256:
            raise MjpegError(
                f"Huffman table {table_class}/{table_id}: 16 counts summing to {sum(bits)} "
                f"do not describe {len(values)} values"
            )
        body += bytes([table_class << 4 | table_id]) + bits + values
    return b"\xff\xc4" + (len(body) + 2).to_bytes(2, "big") + bytes(body)


# The segment inserted into frames without tables: luminance tables as id 0 and chrominance
# tables as id 1, the assignment every MJPEG decoder assumes.
ANNEX_K_DHT = dht_segment(
    [
        (0, 0, _DC_LUMA_BITS, _DC_VALUES),
        (1, 0, _AC_LUMA_BITS, _AC_LUMA_VALUES),
        (0, 1, _DC_CHROMA_BITS, _DC_VALUES),
        (1, 1, _AC_CHROMA_BITS, _AC_CHROMA_VALUES),
    ]
)


def inspect_frame(frame: bytes) -> FrameInfo:
    """Walk the marker segments of `frame` up to its first scan.

    Raises `MjpegError` naming the offset when the frame is too large, does not start with SOI,
    is cut short before its first scan, or has no start-of-frame segment.
    """
    if len(frame) > MAX_FRAME_BYTES:
        raise MjpegError(
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES}-byte bound; "
            "this is not a camera still"
        )
    if frame[:2] != b"\xff\xd8":
        raise MjpegError(f"frame does not start with the JPEG SOI marker FF D8 (got {frame[:2]!r})")
    pos = 2
    has_dht = False
    sof: tuple[int, int, int, int] | None = None
    while True:
        # Any number of 0xFF fill bytes may precede a marker (ITU T.81 B.1.1.2).
        if pos >= len(frame) or frame[pos] != 0xFF:
            raise MjpegError(
                f"expected a marker at offset {pos}; the frame is cut short or corrupt"
            )
        while pos < len(frame) and frame[pos] == 0xFF:
            pos += 1
        if pos >= len(frame):
            raise MjpegError("frame ends inside a marker, before its first scan")
        marker = frame[pos]
        marker_at = pos - 1
        pos += 1
        if marker == _SOS:
            if sof is None:
                raise MjpegError(f"scan at offset {marker_at} comes before any start-of-frame")
            sof_marker, height, width, components = sof
            return FrameInfo(
                sos_offset=marker_at,
                has_dht=has_dht,
                sof_marker=sof_marker,
                width=width,
                height=height,
                components=components,
            )
        if marker in _STANDALONE:
            if marker == _EOI:
                raise MjpegError(f"end of image at offset {marker_at} before any scan")
            continue
        if pos + 2 > len(frame):
            raise MjpegError(f"segment 0x{marker:02X} at offset {marker_at} has no length")
        length = int.from_bytes(frame[pos : pos + 2], "big")
        if length < 2 or pos + length > len(frame):
            raise MjpegError(
                f"segment 0x{marker:02X} at offset {marker_at} claims {length} bytes; "
                f"only {len(frame) - pos} remain"
            )
        if marker == _DHT:
            has_dht = True
        elif marker in _SOF:
            if length < 8:
                raise MjpegError(f"start-of-frame at offset {marker_at} is {length} bytes, need 8")
            seg = frame[pos + 2 : pos + length]
            sof = (marker, int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"), seg[5])
        pos += length


def complete_jpeg(frame: bytes) -> bytes:
    """Return `frame` as a self-contained JPEG: the Annex K.3 tables inserted if it has none.

    A frame that already has tables is returned unchanged (the same object). Raises
    `MjpegError` if the frame is not a JPEG whose header can be walked.
    """
    info = inspect_frame(frame)
    if info.has_dht:
        return frame
    return frame[: info.sos_offset] + ANNEX_K_DHT + frame[info.sos_offset :]


def strip_dht(jpeg: bytes) -> bytes:
    """Remove every DHT segment in front of the first scan: the inverse of `complete_jpeg`.

    This is what a UVC camera's MJPEG frame looks like; emulators and tests use it to make such
    frames from ordinary JPEG files. Raises `MjpegError` as `inspect_frame` does.
    """
    end = inspect_frame(jpeg).sos_offset
    out = bytearray(jpeg[:2])
    pos = 2
    while pos < end:
        # inspect_frame has validated the layout up to `end`: markers, fill bytes, lengths.
        start = pos
        while jpeg[pos] == 0xFF:
            pos += 1
        marker = jpeg[pos]
        pos += 1
        if marker not in _STANDALONE:
            pos += int.from_bytes(jpeg[pos : pos + 2], "big")
        if marker != _DHT:
            out += jpeg[start:pos]
    return bytes(out) + jpeg[end:]
