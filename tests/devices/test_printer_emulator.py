"""The printer emulator: status replies, the PNG it draws (Chinese text, a QR code that scans),
lost receipts, recovery from garbage, unplug/replug of its pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from devices.emulators.printer import PrinterEmulator
from devices.emulators.receipt_render import MARGIN_DOTS, TEXT_KEY, RenderedReceipt
from protocols.escpos import Receipt, compose_case_receipt

CASE_NUMBER = "ST001-20261122-0007"
WAIT = 10.0


def case_receipt(encoding: str = "gb18030") -> bytes:
    return compose_case_receipt(
        station="东坡村便民服务站", case_number=CASE_NUMBER, service="医保参保登记",
        applicant_name="阿卜杜·热合曼", id_number="11010519491231002X", materials=3,
        accepted_at=datetime(2026, 11, 22, 10, 30), encoding=encoding,
    ).to_bytes()


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator(out_dir=tmp_path / "out") as emu:
        yield emu


async def send(port: int, data: bytes, reply_bytes: int = 0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            return await reader.readexactly(reply_bytes)
    finally:
        writer.close()
        await writer.wait_closed()


async def printed(emulator: PrinterEmulator, port: int, data: bytes) -> RenderedReceipt:
    await send(port, data)
    async with asyncio.timeout(WAIT):
        return await emulator.next_receipt()


async def test_png_holds_the_chinese_text_and_a_qr_code_that_scans(
    emulator: PrinterEmulator,
) -> None:
    port = await emulator.serve_tcp(0)
    rendered = await printed(emulator, port, case_receipt())
    image = Image.open(rendered.png)
    text = image.text[TEXT_KEY]  # type: ignore[attr-defined]
    assert text == rendered.text == rendered.txt.read_text(encoding="utf-8").rstrip("\n")
    lines = text.splitlines()
    assert lines[0] == "受理回执" and lines[1] == "东坡村便民服务站"
    assert "受理编号：   ST001-20261122-0007" in lines
    assert "申请人：" + " " * 16 + "阿******" in lines  # 8 + 16 + 8 = 32 columns; masked
    assert "身份证号：    1101**********002X" in lines
    assert f"[QR] {CASE_NUMBER}" in lines
    assert "热合曼" not in text and "11010519491231002X" not in text

    grey = image.convert("L")
    for top, bottom in rendered.line_rows:  # every text line left ink on its rows …
        band = grey.crop((0, top, grey.width, bottom))
        dark = sum(band.histogram()[:96])
        assert dark > 20, f"no ink in text rows {top}..{bottom}"
    margin = grey.crop((0, 0, grey.width, MARGIN_DOTS))  # … and the top margin is blank
    assert margin.getextrema() == (255, 255)
    title_top, title_bottom = rendered.line_rows[0]
    assert title_bottom - title_top > rendered.line_rows[1][1] - rendered.line_rows[1][0]

    [code] = zxingcpp.read_barcodes(image)
    assert code.text == CASE_NUMBER
    assert code.format == zxingcpp.BarcodeFormat.QRCode
    assert len(rendered.qr_boxes) == 1


async def test_gb2312_printer_prints_a_gb2312_job(tmp_path: Path) -> None:
    async with PrinterEmulator(out_dir=tmp_path, encoding="gb2312") as emulator:
        port = await emulator.serve_tcp(0)
        rendered = await printed(emulator, port, Receipt(32, "gb2312").text("，。：（）")
                                 .text("受理回执").cut().to_bytes())
    assert rendered.text.splitlines() == ["，。：（）", "受理回执"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (None, "12121212"),
        ("paper-out", "1a32127e"),  # offline; stopped at paper end; near end + end
        ("cover-open", "1a161212"),
        ("offline", "1a121212"),
    ],
)
async def test_status_replies_follow_the_condition(
    emulator: PrinterEmulator, command: str | None, expected: str
) -> None:
    port = await emulator.serve_tcp(0)
    if command:
        emulator.command(command)
    replies = await send(port, b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04", 4)
    assert replies.hex() == expected


async def test_a_job_sent_while_not_ready_is_lost(emulator: PrinterEmulator) -> None:
    port = await emulator.serve_tcp(0)
    emulator.command("paper-out")
    await send(port, case_receipt() + b"\x10\x04\x01", 1)  # the reply shows it was all read
    assert emulator.lost == 1 and emulator.printed == 0


async def test_recovers_after_garbage(emulator: PrinterEmulator) -> None:
    port = await emulator.serve_tcp(0)
    await send(port, b"\x1d(k\xff\xff\x31\x50\x30" + b"\x10\x04\x01", 0)  # over the QR bound
    rendered = await printed(emulator, port, case_receipt())
    assert CASE_NUMBER in rendered.text


async def test_pty_unplug_and_replug_keep_the_link(emulator: PrinterEmulator,
                                                   tmp_path: Path) -> None:
    link = await emulator.serve_pty(tmp_path / "printer")
    first = emulator.pty_path
    assert link.resolve() == first
    await emulator.unplug()
    assert emulator.pty_path is None and not link.is_symlink()  # the node goes too
    await emulator.replug()
    assert emulator.pty_path is not None and link.resolve() == emulator.pty_path
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, case_receipt())
        async with asyncio.timeout(WAIT):
            rendered = await emulator.next_receipt()
    finally:
        os.close(fd)
    assert CASE_NUMBER in rendered.text


def test_unknown_command_is_refused() -> None:
    emulator = PrinterEmulator(out_dir=Path("unused"))
    with pytest.raises(ValueError, match="unknown command 'jam'.*paper-out"):
        emulator.command("jam")
    assert emulator.command("cover-open") == "cover-open: printer now cover open, offline"
