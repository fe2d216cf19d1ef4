"""An emulated document camera that serves stills over HTTP, as some 高拍仪 services do.

It renders one synthetic A4 page (a form with headings, ruled fields and lines of text, on a
desk, under a lamp that darkens the corners, with sensor noise) at the configured sensor size,
encodes it as a camera would (JPEG quality 92, optional EXIF orientation), and serves it at
``GET /snapshot.jpg`` (``HEAD`` too). With ``mjpeg=True`` the still is served as a UVC MJPEG
frame is delivered, without Huffman tables, to exercise `protocols.mjpeg.complete_jpeg`.

For tests and training it can be stopped and started again on the same port (the camera being
unplugged and replugged), and told to fail the next requests with an HTTP error.

No real person appears on the page: the text is generated from a fixed seed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import random
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web
from PIL import Image, ImageChops, ImageDraw, ImageFont

from protocols.mjpeg import strip_dht

__all__ = ["CameraEmulator", "PageSpec", "render_page"]

SNAPSHOT_PATH = "/snapshot.jpg"
# WenQuanYi Micro Hei ships with Debian (fonts-wqy-microhei, installed by run.sh); without it
# the page falls back to Pillow's built-in Latin font, which still looks like text to a codec.
_CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
_VOCABULARY = (
    "申请人 身份证明 户籍 地址 办理 事项 村民委员会 材料 复印件 原件 签字 日期 盖章 "
    "低保 医保 社保 养老 补贴 宅基地 承包 证明 核实 审核 县 乡镇 服务站 办件 编号"
)
_WORDS = tuple(_VOCABULARY.split())
# EXIF orientation → the transpose that turns an upright page into what the sensor stored
# (the inverse of what ImageOps.exif_transpose applies to display it).
_STORE_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PageSpec:
    """What the emulated camera captures.

    width, height: the stored (sensor) size in pixels; 3264×2448 is a typical 8 MP camera.
    orientation:   EXIF orientation tag, 1 (none) … 8; 6 = the page is stored rotated and the
                   viewer must turn it 90° clockwise.
    quality:       the camera's JPEG quality.
    mjpeg:         serve frames without Huffman tables, as UVC MJPEG delivers them.
    seed:          the page's text is a function of this.
    """

    width: int = 3264
    height: int = 2448
    orientation: int = 1
    quality: int = 92
    mjpeg: bool = False
    seed: int = 1

    def __post_init__(self) -> None:
        if not (64 <= self.width <= 10_000 and 64 <= self.height <= 10_000):
            raise ValueError(f"page size {self.width}×{self.height} is outside 64..10000 pixels")
        if not 1 <= self.orientation <= 8:
            raise ValueError(f"EXIF orientation {self.orientation} is outside 1..8")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"JPEG quality {self.quality} is outside 1..95")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _CJK_FONT.exists():
        return ImageFont.truetype(str(_CJK_FONT), size)
    return ImageFont.load_default(size)


def _draw_page(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: random.Random
) -> None:
    """A form: title, ruled fields with labels, then paragraphs of text."""
    left, top, right, bottom = box
    page_w = right - left
    unit = max(4, page_w // 60)  # about 3.5 mm on A4
    margin = unit * 4
    ink = (28, 28, 36)
    x0, x1 = left + margin, right - margin
    y = top + margin
    title = _font(unit * 2)
    draw.text(
        (left + page_w // 2, y), "村级便民服务站 办件申请表", font=title, fill=ink, anchor="mt"
    )
    y += unit * 4
    body = _font(max(8, unit))
    line_h = int(unit * 1.8)
    for _ in range(8):  # ruled fields: a label, then a line to write on
        label = "".join(rng.choice(_WORDS) for _ in range(2)) + "："
        draw.text((x0, y), label, font=body, fill=ink)
        draw.line((x0 + unit * 10, y + unit, x1, y + unit), fill=ink, width=max(1, unit // 6))
        draw.text((x0 + unit * 11, y - unit // 4), rng.choice(_WORDS) * 2, font=body, fill=ink)
        y += line_h + unit // 2
    y += unit
    while y < bottom - margin - line_h:  # paragraphs of running text, ragged right
        x = x0 + (unit * 2 if rng.random() < 0.15 else 0)
        end = x1 - rng.randrange(0, unit * 12)
        line = ""
        while draw.textlength(line, font=body) < end - x:
            line += rng.choice(_WORDS) + ("，" if rng.random() < 0.2 else "")
        draw.text((x, y), line[:-2], font=body, fill=ink)
        y += line_h
        if rng.random() < 0.12:
            y += line_h  # paragraph break


@functools.lru_cache(maxsize=8)
def render_page(spec: PageSpec) -> bytes:
    """The JPEG the emulated camera serves for `spec` (blocking: 0.5–2 s at 8 MP; cached)."""
    rng = random.Random(spec.seed)
    upright = spec.orientation not in (5, 6, 7, 8)
    width, height = (spec.width, spec.height) if upright else (spec.height, spec.width)
    image = Image.new("RGB", (width, height), (88, 76, 64))  # the desk
    # An A4 sheet (1 : √2) filling 94 % of the frame's height, centred.
    page_h = int(min(height * 0.94, width * 0.94 * 2**0.5))
    page_w = int(page_h / 2**0.5)
    left, top = (width - page_w) // 2, (height - page_h) // 2
    draw = ImageDraw.Draw(image)
    draw.rectangle((left, top, left + page_w, top + page_h), fill=(244, 241, 232))
    _draw_page(draw, (left, top, left + page_w, top + page_h), rng)
    # The lamp: brighter in the middle, 20 % darker in the corners.
    lamp = Image.radial_gradient("L").resize((width, height)).point(lambda v: 255 - v // 5)
    image = ImageChops.multiply(image, Image.merge("RGB", (lamp, lamp, lamp)))
    # Sensor noise (σ ≈ 2 grey levels, what is left after the camera's denoising): it is what
    # makes real stills cost what they cost to store.
    noise = Image.effect_noise((width, height), 2).convert("RGB")
    image = ImageChops.add(image, noise, scale=1.0, offset=-128)
    if spec.orientation != 1:
        image = image.transpose(_STORE_TRANSPOSE[spec.orientation])
    exif = Image.Exif()
    if spec.orientation != 1:
        exif[0x0112] = spec.orientation
    out = io.BytesIO()
    # optimize=False: the camera's encoder uses the standard Annex K Huffman tables, which is
    # what lets the MJPEG mode drop them and decoders assume them back.
    image.save(out, "JPEG", quality=spec.quality, optimize=False, exif=exif.tobytes())
    jpeg = out.getvalue()
    return strip_dht(jpeg) if spec.mjpeg else jpeg


class CameraEmulator:
    """An HTTP still camera on `host`:`port` (0 = any free port, kept across stop/start).

    Use as an async context manager; `url` is what goes into ``[devices.camera] url``.
    """

    def __init__(self, spec: PageSpec | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.spec = spec or PageSpec()
        self.host = host
        self.port = port
        self.requests = 0
        self._jpeg: bytes | None = None
        self._failures: list[int] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{SNAPSHOT_PATH}"

    @property
    def jpeg(self) -> bytes:
        """The still served (rendered on first start)."""
        if self._jpeg is None:
            raise RuntimeError("the camera emulator renders its page when started; start it first")
        return self._jpeg

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def turn_page(self) -> int:
        """Put the next sheet under the camera: the page's text (seed) changes, so the next
        snapshot is a different document, as when an operator scans a second page."""
        self.spec = dataclasses.replace(self.spec, seed=self.spec.seed + 1)
        self._jpeg = await asyncio.to_thread(render_page, self.spec)
        return self.spec.seed

    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        """Answer the next `count` snapshot requests with HTTP `status` (a camera fault)."""
        self._failures.extend([status] * count)

    async def start(self) -> None:
        """Start serving (again); the first start renders the page off the event loop."""
        if self._runner is not None:
            return
        if self._jpeg is None:
            self._jpeg = await asyncio.to_thread(render_page, self.spec)
        app = web.Application()
        app.router.add_get(SNAPSHOT_PATH, self._snapshot)  # HEAD is added alongside GET
        app.router.add_get("/", self._index)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if self.port == 0:
            server = site._server  # the only place aiohttp exposes the bound port
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and drop open connections: the camera is unplugged."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self._failures:
            status = self._failures.pop(0)
            return web.Response(status=status, text="emulated camera fault\n")
        return web.Response(body=self.jpeg, content_type="image/jpeg")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        s = self.spec
        return web.Response(
            text=(
                f"cunlink emulated document camera: {s.width}x{s.height}, EXIF orientation "
                f"{s.orientation}, {'MJPEG frames without DHT' if s.mjpeg else 'JPEG'}; "
                f"stills at {SNAPSHOT_PATH}\n"
            )
        )
