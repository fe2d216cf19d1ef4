"""MJPEG frame completion: Annex K tables, insertion point, and the header walker's errors.

libjpeg-turbo (Pillow's decoder) quietly falls back to the standard tables when a frame has
none, so "Pillow decodes it" proves nothing about the insertion: these tests check instead that
the completed file carries, table for table, what the encoder used, and decodes to the same
pixels as the original file.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from protocols.mjpeg import (
    ANNEX_K_DHT,
    MAX_FRAME_BYTES,
    FrameInfo,
    MjpegError,
    complete_jpeg,
    dht_segment,
    inspect_frame,
    strip_dht,
)


def _jpeg(mode: str = "RGB", size: tuple[int, int] = (96, 64), **save: object) -> bytes:
    image = Image.effect_noise(size, 60).convert(mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, **save)
    return out.getvalue()


def _tables(jpeg: bytes) -> dict[int, tuple[bytes, bytes]]:
    """Huffman tables before the first scan, keyed by (class << 4 | id): (BITS, HUFFVAL)."""
    tables: dict[int, tuple[bytes, bytes]] = {}
    pos = 2
    while jpeg[pos + 1] != 0xDA:
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if jpeg[pos + 1] == 0xC4:
            seg, i = jpeg[pos + 4 : pos + 2 + length], 0
            while i < len(seg):
                bits = seg[i + 1 : i + 17]
                tables[seg[i]] = (bits, seg[i + 17 : i + 17 + sum(bits)])
                i += 17 + sum(bits)
        pos += 2 + length
    return tables


def _pixels(jpeg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.tobytes()


def test_annex_k_tables_are_the_ones_libjpeg_encodes_with() -> None:
    # Typed from the standard, checked against an independent encoder's defaults.
    assert _tables(b"\xff\xd8" + ANNEX_K_DHT + b"\xff\xda") == _tables(_jpeg())
    assert set(_tables(_jpeg())) == {0x00, 0x01, 0x10, 0x11}


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_completing_a_stripped_frame_restores_the_encoders_tables_and_pixels(mode: str) -> None:
    original = _jpeg(mode)
    frame = strip_dht(original)
    assert not inspect_frame(frame).has_dht
    assert _tables(frame) == {}

    completed = complete_jpeg(frame)

    assert inspect_frame(completed).has_dht
    used = _tables(original)
    assert {k: v for k, v in _tables(completed).items() if k in used} == used
    assert _pixels(completed) == _pixels(original)


def test_tables_go_right_before_the_first_scan_and_nothing_else_moves() -> None:
    frame = strip_dht(_jpeg())
    sos = inspect_frame(frame).sos_offset
    completed = complete_jpeg(frame)
    assert completed == frame[:sos] + ANNEX_K_DHT + frame[sos:]
    assert inspect_frame(completed).sos_offset == sos + len(ANNEX_K_DHT)


def test_a_frame_with_tables_passes_through_untouched() -> None:
    original = _jpeg()
    assert complete_jpeg(original) is original


def test_uvc_style_frame_with_avi1_header_fill_bytes_and_restart_markers() -> None:
    # What a UVC camera sends: an AVI1 APP0 instead of JFIF, a DRI segment (restart markers in
    # the scan), 0xFF fill bytes before a marker, and no DHT.
    original = _jpeg(restart_marker_blocks=1)
    frame = strip_dht(original)
    jfif_end = 2 + 2 + int.from_bytes(frame[4:6], "big")
    avi1 = b"\xff\xe0\x00\x10AVI1\x00" + bytes(7)
    uvc = b"\xff\xd8" + avi1 + b"\xff\xff\xff" + frame[jfif_end + 1 :]
    assert inspect_frame(uvc).sof_marker == 0xC0

    completed = complete_jpeg(uvc)

    assert _pixels(completed) == _pixels(original)


def test_frame_info_reports_the_start_of_frame() -> None:
    info = inspect_frame(_jpeg(size=(120, 40)))
    assert (info.width, info.height, info.components, info.sof_marker) == (120, 40, 3, 0xC0)
    assert inspect_frame(_jpeg("L", size=(8, 8))).components == 1
    assert inspect_frame(_jpeg(progressive=True)).sof_marker == 0xC2


def test_trailing_bytes_after_the_image_do_not_matter() -> None:
    frame = strip_dht(_jpeg())
    assert complete_jpeg(frame + b"\x00" * 100) == complete_jpeg(frame) + b"\x00" * 100


def test_every_truncation_of_the_header_is_refused_with_the_protocols_error() -> None:
    frame = strip_dht(_jpeg())
    sos = inspect_frame(frame).sos_offset
    for cut in range(sos + 1):  # fed one byte more each time, up to the SOS marker itself
        with pytest.raises(MjpegError):
            inspect_frame(frame[:cut])
    assert inspect_frame(frame[: sos + 2]).sos_offset == sos


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GIF89a....", "SOI"),
        (b"\xff\xd8\xff\xd9", "end of image"),
        (b"\xff\xd8\xff\xda\x00\x08", "before any start-of-frame"),
        (b"\xff\xd8\xff\xe0\x00\x01", "claims 1 bytes"),
        (b"\xff\xd8\xff\xe0\x00\x40abc", "claims 64 bytes"),
        (b"\xff\xd8\xff\xc0\x00\x05abc", "need 8"),
        (b"\xff\xd8\x00\x00", "expected a marker at offset 2"),
    ],
)
def test_malformed_headers_name_the_problem(data: bytes, words: str) -> None:
    with pytest.raises(MjpegError, match=words):
        complete_jpeg(data)


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(MjpegError, match="exceeds"):
        inspect_frame(b"\xff\xd8" + bytes(MAX_FRAME_BYTES))


def test_dht_segment_validates_its_tables() -> None:
    with pytest.raises(MjpegError, match="out of range"):
        dht_segment([(2, 0, bytes(16), b"")])
    with pytest.raises(MjpegError, match="do not describe"):
        dht_segment([(0, 0, bytes([1] + [0] * 15), b"")])
    assert dht_segment([(0, 3, bytes([1] + [0] * 15), b"\x05")]) == (
        b"\xff\xc4\x00\x14\x03" + bytes([1] + [0] * 15) + b"\x05"
    )


def test_frame_info_refuses_impossible_values() -> None:
    with pytest.raises(MjpegError):
        FrameInfo(sos_offset=0, has_dht=False, sof_marker=0xC0, width=1, height=1, components=1)
    with pytest.raises(MjpegError):
        FrameInfo(sos_offset=2, has_dht=False, sof_marker=0xC4, width=1, height=1, components=1)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_protocols_error(data: bytes) -> None:
    for candidate in (data, b"\xff\xd8" + data):
        try:
            out = complete_jpeg(candidate)
        except MjpegError:
            continue
        assert out.startswith(b"\xff\xd8")
        assert inspect_frame(out).has_dht


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=4))
def test_corrupting_one_header_byte_never_escapes_the_error_family(at: int, junk: bytes) -> None:
    frame = bytearray(strip_dht(_JPEG_FOR_FUZZ))
    at %= inspect_frame(bytes(frame)).sos_offset + 1
    frame[at : at + len(junk)] = junk
    try:
        out = complete_jpeg(bytes(frame))
    except MjpegError:
        return
    assert inspect_frame(out).has_dht


_JPEG_FOR_FUZZ = _jpeg(size=(16, 16))
