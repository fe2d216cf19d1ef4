"""Page normalisation: size policy, greyscale, quality, EXIF orientation, bounds, reporting."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from devices.emulators.camera import PageSpec, render_page
from devices.normalise import (
    MAX_INPUT_BYTES,
    NormaliseError,
    NormalisePolicy,
    normalise,
    target_size,
)

# A quarter-size page (2 MP) keeps these tests fast; the 8 MP figures are in bench/devices.py.
PAGE = render_page(PageSpec(width=1632, height=1224, seed=7))


def _open(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def test_dpi_sets_the_short_side_from_the_page_width() -> None:
    policy = NormalisePolicy(dpi=100, max_pixels=None)
    page = normalise(PAGE, policy)
    assert (page.width, page.height) == (1102, 826)  # 100 dpi × 210 mm / 25.4 = 826.77
    assert page.dpi == pytest.approx(100, abs=0.2)
    assert _open(page.jpeg).info["dpi"] == pytest.approx((100, 100), abs=0.5)


def test_max_pixels_is_a_hard_bound() -> None:
    page = normalise(PAGE, NormalisePolicy(dpi=None, max_pixels=250_000))
    assert page.width * page.height <= 250_000
    assert page.width * page.height > 240_000
    assert page.width / page.height == pytest.approx(1632 / 1224, rel=0.01)


def test_the_stricter_limit_wins_and_images_are_never_enlarged() -> None:
    both = normalise(PAGE, NormalisePolicy(dpi=300, max_pixels=100_000))
    assert both.width * both.height <= 100_000
    unlimited = normalise(PAGE, NormalisePolicy(dpi=1200, max_pixels=None))
    assert (unlimited.width, unlimited.height) == (1632, 1224)


@given(
    st.integers(1, 12_000),
    st.integers(1, 12_000),
    st.one_of(st.none(), st.integers(10_000, 40_000_000)),
    st.one_of(st.none(), st.integers(50, 1200)),
)
def test_target_size_never_enlarges_and_keeps_within_budget(
    width: int, height: int, max_pixels: int | None, dpi: int | None
) -> None:
    w, h = target_size(width, height, NormalisePolicy(max_pixels=max_pixels, dpi=dpi))
    assert 1 <= w <= width and 1 <= h <= height
    if max_pixels is not None and (w, h) != (width, height):
        assert w * h <= max_pixels or min(w, h) == 1


def test_greyscale_stores_one_channel_and_colour_three() -> None:
    grey = normalise(PAGE, NormalisePolicy(greyscale=True))
    colour = normalise(PAGE, NormalisePolicy(greyscale=False))
    assert _open(grey.jpeg).mode == "L"
    assert _open(colour.jpeg).mode == "RGB"


def test_lower_quality_gives_fewer_bytes() -> None:
    sizes = [normalise(PAGE, NormalisePolicy(jpeg_quality=q)).bytes_out for q in (30, 60, 90)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_reports_bytes_in_and_out_ratio_and_time() -> None:
    page = normalise(PAGE, NormalisePolicy())
    assert page.bytes_in == len(PAGE)
    assert page.bytes_out == len(page.jpeg)
    assert page.ratio == pytest.approx(len(PAGE) / len(page.jpeg))
    assert page.ratio > 2  # even without scaling, greyscale + quality 60 more than halve it
    assert 0 < page.seconds < 10
    assert (page.source_width, page.source_height) == (1632, 1224)
    assert f"{page.bytes_in:,} B" in page.summary() and "smaller" in page.summary()


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_the_pixels(orientation: int) -> None:
    # The same page, stored rotated with an EXIF tag, must come out like the upright original.
    swaps = orientation in (6, 8)
    stored = render_page(PageSpec(width=800, height=600, orientation=orientation, seed=3))
    upright = render_page(
        PageSpec(width=600 if swaps else 800, height=800 if swaps else 600, seed=3)
    )
    policy = NormalisePolicy(dpi=None, max_pixels=None)
    got = _open(normalise(stored, policy).jpeg)
    want = _open(normalise(upright, policy).jpeg)
    assert got.size == want.size == ((600, 800) if swaps else (800, 600))
    assert _mean_difference(got, want) < 4  # sensor noise and JPEG only
    assert _mean_difference(got, want.transpose(Image.Transpose.ROTATE_180)) > 15
    assert 0x0112 not in got.getexif()  # no metadata travels with the page


def test_garbage_and_truncated_images_raise_the_device_error() -> None:
    with pytest.raises(NormaliseError, match="could not be decoded"):
        normalise(b"definitely not an image", NormalisePolicy())
    with pytest.raises(NormaliseError, match="could not be decoded"):
        normalise(PAGE[: len(PAGE) // 2], NormalisePolicy())


def test_inputs_over_the_byte_bound_are_refused_before_decoding() -> None:
    with pytest.raises(NormaliseError, match="exceeds the"):
        normalise(b"\xff" * (MAX_INPUT_BYTES + 1), NormalisePolicy())


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(8_000, 7_000), (60_000, 60_000)])
def test_images_over_the_pixel_bound_are_refused_from_their_header(size: tuple[int, int]) -> None:
    # Declared in 45 bytes; decoding them would need 56 MB and 3.6 GB (over Pillow's own bound).
    with pytest.raises(NormaliseError, match="pixel bound"):
        normalise(_png_header_only(*size), NormalisePolicy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_pixels": 100},
        {"dpi": 10},
        {"jpeg_quality": 0},
        {"jpeg_quality": 100},
        {"page_width_mm": 0},
    ],
)
def test_policy_refuses_values_that_make_no_sense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="normalise policy"):
        NormalisePolicy(**kwargs)  # type: ignore[arg-type]


def test_orientation_and_reduction_together() -> None:
    # libjpeg's reduced decode (draft) happens in the stored orientation, the turn after it.
    stored = render_page(PageSpec(width=1632, height=1224, orientation=6, seed=7))
    page = normalise(stored, NormalisePolicy(dpi=100, max_pixels=None))
    assert (page.width, page.height) == (826, 1102)
    assert _open(page.jpeg).size == (826, 1102)
    assert (page.source_width, page.source_height) == (1632, 1224)
