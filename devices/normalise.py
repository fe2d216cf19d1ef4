"""Page normalisation: turn a camera still into the smallest JPEG that stays legible.

A raw 8 MP still of an A4 page is 1–2.5 MB; at 150–200 dpi in greyscale the same page is a
tenth of that, and on a 2G uplink that is the difference between minutes and hours. The policy
is configurable per station (`[devices.camera]`): a pixel budget and/or a target resolution in
dots per inch of the page, greyscale or colour, and the JPEG quality.

The resolution is reckoned on the frame's shorter side, taken as the page's width (210 mm for
A4): a document camera frames the page it photographs, so that is what a pixel of the still
covers. The EXIF orientation is applied to the pixels, and no metadata is written back (a
camera's EXIF block can hold serial numbers and GPS positions that nobody at the county needs).

`normalise` is CPU-bound and blocking (tens to hundreds of ms on an 8 MP page): call it through
`asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from devices.health import DeviceError

__all__ = [
    "A4_WIDTH_MM",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS",
    "NormaliseError",
    "NormalisePolicy",
    "NormalisedPage",
    "normalise",
    "target_size",
]

A4_WIDTH_MM = 210.0
# Bounds checked before any pixel is decoded: a 50 MP still is beyond any document camera sold
# for this work, and 64 MiB beyond any JPEG of one.
MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_INPUT_PIXELS = 50_000_000
_MM_PER_INCH = 25.4
# Orientations 5..8 swap width and height (EXIF 2.3, tag 0x0112).
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


class NormaliseError(DeviceError):
    """A captured image could not be normalised (not an image, corrupt, too large)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalisePolicy:
    """How a page is reduced. None disables a limit; with both set, the stricter one wins.

    max_pixels:    upper bound on width × height of the output.
    dpi:           target resolution, reckoned over the real width that the frame's shorter
                   side covers (`page_width_mm`; 210 mm for a camera set up to frame A4).
    greyscale:     store one 8-bit channel instead of three.
    jpeg_quality:  1..95 (Pillow's scale; above 95 JPEG only grows).
    Images are never enlarged. The defaults (150 dpi greyscale at quality 60) keep form-size
    print legible and make an 8 MP page about a tenth of its raw size (bench/devices.py).
    """

    max_pixels: int | None = 4_000_000
    dpi: int | None = 150
    page_width_mm: float = A4_WIDTH_MM
    greyscale: bool = True
    jpeg_quality: int = 60

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 10_000:
            raise ValueError(
                f"normalise policy: max_pixels={self.max_pixels} would make a page illegible; "
                "use at least 10000 (or None for no limit)"
            )
        if self.dpi is not None and not 50 <= self.dpi <= 1200:
            raise ValueError(f"normalise policy: dpi={self.dpi} is outside 50..1200")
        if not 10.0 <= self.page_width_mm <= 1000.0:
            raise ValueError(
                f"normalise policy: page_width_mm={self.page_width_mm} is outside 10..1000"
            )
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"normalise policy: jpeg_quality={self.jpeg_quality} is outside 1..95")


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalisedPage:
    """The normalised JPEG and what it cost: sizes in bytes and pixels, time in seconds."""

    jpeg: bytes
    width: int
    height: int
    source_width: int
    source_height: int
    bytes_in: int
    dpi: float
    seconds: float

    @property
    def bytes_out(self) -> int:
        return len(self.jpeg)

    @property
    def ratio(self) -> float:
        """How many times smaller than the raw capture (raw bytes / normalised bytes)."""
        return self.bytes_in / self.bytes_out

    def summary(self) -> str:
        return (
            f"{self.bytes_in:,} B → {self.bytes_out:,} B ({self.ratio:.1f}× smaller), "
            f"{self.source_width}×{self.source_height} → {self.width}×{self.height} px "
            f"({self.dpi:.0f} dpi), {self.seconds * 1000:.0f} ms"
        )


def target_size(width: int, height: int, policy: NormalisePolicy) -> tuple[int, int]:
    """Output size for a `width` × `height` image under `policy` (same orientation, ≤ input)."""
    if width < 1 or height < 1:
        raise NormaliseError(f"image of {width}×{height} pixels has nothing to normalise")
    scale = 1.0
    if policy.dpi is not None:
        wanted_short = policy.dpi * policy.page_width_mm / _MM_PER_INCH
        scale = min(scale, wanted_short / min(width, height))
    if policy.max_pixels is not None:
        scale = min(scale, math.sqrt(policy.max_pixels / (width * height)))
    if scale >= 1.0:
        return width, height
    # floor keeps the pixel budget a hard bound; max(1, …) keeps extreme aspect ratios valid.
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def normalise(data: bytes, policy: NormalisePolicy) -> NormalisedPage:
    """Decode `data` (JPEG or PNG), orient, reduce and re-encode it per `policy`. Blocking."""
    started = time.perf_counter()
    if len(data) > MAX_INPUT_BYTES:
        raise NormaliseError(
            f"captured image of {len(data):,} bytes exceeds the {MAX_INPUT_BYTES:,}-byte bound; "
            "check the camera's resolution setting"
        )
    try:
        # Pillow warns (and with warnings as errors, raises) on huge images; our own pixel bound
        # below is lower, so its warning would only ever be noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG"])
        with image:
            source_width, source_height = image.size
            if source_width * source_height > MAX_INPUT_PIXELS:
                raise NormaliseError(
                    f"captured image of {source_width}×{source_height} pixels exceeds the "
                    f"{MAX_INPUT_PIXELS:,}-pixel bound; lower the camera's resolution"
                )
            width, height = target_size(source_width, source_height, policy)
            mode = "L" if policy.greyscale else "RGB"
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale straight into the target mode when
            # the target is that much smaller: most of the time goes into decoding otherwise.
            # draft() never goes below the requested size, so the resize below still has work.
            image.draft(mode, (width, height))
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            page = ImageOps.exif_transpose(image)
            if orientation in _SWAPS_AXES:
                width, height = height, width
            if page.mode != mode:
                page = page.convert(mode)
            if page.size != (width, height):
                page = page.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
            dpi = min(width, height) / (policy.page_width_mm / _MM_PER_INCH)
            out = io.BytesIO()
            page.save(
                out,
                "JPEG",
                quality=policy.jpeg_quality,
                optimize=True,  # optimal Huffman tables: a few % smaller for a few ms
                dpi=(round(dpi), round(dpi)),
            )
    except NormaliseError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own, larger bound, hit in open()
        raise NormaliseError(
            f"captured image exceeds the {MAX_INPUT_PIXELS:,}-pixel bound ({exc}); "
            "lower the camera's resolution"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NormaliseError(
            f"captured image ({len(data):,} bytes) could not be decoded: {exc}; "
            "capture the page again, and check the camera if it keeps happening"
        ) from exc
    return NormalisedPage(
        jpeg=out.getvalue(),
        width=width,
        height=height,
        source_width=source_width,
        source_height=source_height,
        bytes_in=len(data),
        dpi=dpi,
        seconds=time.perf_counter() - started,
    )
