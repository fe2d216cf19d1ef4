"""Draw a decoded receipt as the paper would look: a greyscale PNG, plus a UTF-8 sidecar.

The layout follows a 203 dpi thermal printer in Chinese mode: a column is 12 dots, a line is a
24-dot glyph plus 6 dots of spacing, a full-width (CJK) character takes two columns, and the
GS ! multipliers stretch glyphs. Text is drawn with WenQuanYi Micro Hei (Debian package
fonts-wqy-microhei, installed by run.sh); QR codes are drawn with segno from the payload the
printer stored, `module_size` dots per module, with a 4-module quiet zone, so they scan.

The receipt's text (lines, then `[QR] payload` for each code) is stored in the PNG under the
key "cunlink-text" — as an iTXt chunk, since a tEXt chunk may hold only Latin-1 and receipts
are Chinese — and in a .txt file beside it. Blocking (Pillow): call it from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import segno
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from devices.health import DeviceError
from protocols.escpos_base import Align
from protocols.escpos_parse import PaperFeed, ParsedReceipt, PrintedLine, PrintedQr, Span

__all__ = ["FONT_CANDIDATES", "TEXT_KEY", "ReceiptRenderer", "RenderError", "RenderedReceipt"]

TEXT_KEY: Final = "cunlink-text"
COLUMN_DOTS: Final = 12
GLYPH_DOTS: Final = 24
LINE_DOTS: Final = 30
MARGIN_DOTS: Final = 16
QUIET_MODULES: Final = 4
FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)


class RenderError(DeviceError):
    """The emulator cannot draw receipts (no CJK font, unwritable output folder)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedReceipt:
    """One receipt on disk. `line_rows` are the pixel rows (top, bottom) of each non-empty
    text line, in order; `qr_boxes` the (left, top, right, bottom) of each QR code."""

    png: Path
    txt: Path
    text: str
    qr_payloads: tuple[bytes, ...]
    line_rows: tuple[tuple[int, int], ...]
    qr_boxes: tuple[tuple[int, int, int, int], ...]


def receipt_text(receipt: ParsedReceipt, encoding: str) -> str:
    """What the sidecar holds: each printed line, and `[QR] payload` where a code was."""
    out: list[str] = []
    for item in receipt.items:
        if isinstance(item, PrintedLine):
            out.append(item.text.rstrip())
        elif isinstance(item, PrintedQr):
            out.append("[QR] " + item.payload.decode(encoding, errors="replace"))
    return "\n".join(out)


class ReceiptRenderer:
    def __init__(self, *, width_chars: int, encoding: str, font_path: Path | None = None) -> None:
        self.width_chars = width_chars
        self.encoding = encoding
        path = font_path or next((p for p in FONT_CANDIDATES if p.exists()), None)
        if path is None or not path.exists():
            raise RenderError(
                f"no CJK font found (looked for {', '.join(map(str, FONT_CANDIDATES))}); install "
                "the Debian package fonts-wqy-microhei (run.sh does) or pass a font path"
            )
        self._font = ImageFont.truetype(str(path), GLYPH_DOTS)
        # A font without CJK glyphs draws every one as the same box; printing those would hide
        # exactly the bug this emulator exists to show, so refuse instead.
        if self._glyph("受") == self._glyph("理"):
            raise RenderError(f"font {path} has no Chinese glyphs; use fonts-wqy-microhei")
        self.paper_dots = width_chars * COLUMN_DOTS + 2 * MARGIN_DOTS

    def _glyph(self, char: str) -> bytes:
        image = Image.new("L", (GLYPH_DOTS, GLYPH_DOTS), 255)
        ImageDraw.Draw(image).text((0, 0), char, font=self._font, fill=0)
        return image.tobytes()

    def render(self, receipt: ParsedReceipt, png: Path) -> RenderedReceipt:
        blocks: list[tuple[Image.Image, str]] = []
        for item in receipt.items:
            if isinstance(item, PrintedLine):
                blocks.append((self._line(item), "line" if item.text.strip() else "blank"))
            elif isinstance(item, PrintedQr):
                blocks.append((self._qr(item), "qr"))
            elif isinstance(item, PaperFeed) and item.lines:
                blocks.append((Image.new("L", (self.paper_dots, LINE_DOTS * item.lines), 255),
                               "blank"))
        width = max([self.paper_dots, *(b.width for b, _ in blocks)])
        height = MARGIN_DOTS * 2 + sum(b.height for b, _ in blocks)
        page = Image.new("L", (width, height), 255)
        top = MARGIN_DOTS
        rows: list[tuple[int, int]] = []
        boxes: list[tuple[int, int, int, int]] = []
        for block, kind in blocks:
            page.paste(block, (0, top))
            if kind == "line":
                rows.append((top, top + block.height))
            elif kind == "qr":
                boxes.append((0, top, block.width, top + block.height))
            top += block.height
        text = receipt_text(receipt, self.encoding)
        info = PngInfo()
        info.add_text(TEXT_KEY, text)  # Pillow writes iTXt for non-Latin-1 text
        txt = png.with_suffix(".txt")
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            page.save(png, format="PNG", pnginfo=info)
            txt.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise RenderError(
                f"cannot write receipt {png}: {exc}; check the output folder"
            ) from exc
        return RenderedReceipt(
            png=png, txt=txt, text=text,
            qr_payloads=tuple(q.payload for q in receipt.qr_codes),
            line_rows=tuple(rows), qr_boxes=tuple(boxes),
        )

    def _span(self, span: Span) -> Image.Image:
        cols = sum(1 if ord(c) < 0x80 else 2 for c in span.text)
        image = Image.new("L", (max(1, cols * COLUMN_DOTS), GLYPH_DOTS), 255)
        draw = ImageDraw.Draw(image)
        x = 0
        for char in span.text:
            cell = COLUMN_DOTS if ord(char) < 0x80 else 2 * COLUMN_DOTS
            # Centre each glyph in its cell: the printer's font is monospaced, this one is not.
            advance = self._font.getlength(char)
            draw.text((x + (cell - advance) / 2, 0), char, font=self._font, fill=0,
                      stroke_width=1 if span.bold else 0, stroke_fill=0)
            x += cell
        if span.underline:
            draw.line([(0, GLYPH_DOTS - 2), (image.width, GLYPH_DOTS - 2)], fill=0, width=2)
        if span.width > 1 or span.height > 1:
            image = image.resize((image.width * span.width, image.height * span.height),
                                 Image.Resampling.BICUBIC)
        return image

    def _line(self, line: PrintedLine) -> Image.Image:
        parts = [self._span(span) for span in line.spans if span.text]
        height = max([GLYPH_DOTS, *(p.height for p in parts)]) + LINE_DOTS - GLYPH_DOTS
        image = Image.new("L", (self.paper_dots, height), 255)
        used = sum(p.width for p in parts)
        x = MARGIN_DOTS + _offset(line.align, self.paper_dots - 2 * MARGIN_DOTS, used)
        for part in parts:
            image.paste(part, (x, height - part.height - (LINE_DOTS - GLYPH_DOTS)))
            x += part.width
        return image

    def _qr(self, qr: PrintedQr) -> Image.Image:
        symbol = segno.make(qr.payload, error=qr.level.value.lower(), micro=False,
                            boost_error=False)
        modules = int(symbol.symbol_size(scale=1, border=QUIET_MODULES)[0])
        code = Image.new("L", (modules, modules), 255)
        code.putdata([0 if dark else 255 for row in symbol.matrix_iter(border=QUIET_MODULES)
                      for dark in row])
        side = modules * qr.module_size
        code = code.resize((side, side), Image.Resampling.NEAREST)
        width = max(self.paper_dots, side)
        image = Image.new("L", (width, side), 255)
        image.paste(code, (_offset(qr.align, width, side), 0))
        return image


def _offset(align: Align, room: int, used: int) -> int:
    if used >= room or align is Align.LEFT:
        return 0
    return (room - used) // 2 if align is Align.CENTER else room - used
