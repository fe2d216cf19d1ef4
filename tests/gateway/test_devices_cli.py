"""`cunlink devices ...` end to end: real `cunlink` processes against the three emulators.

The emulators run in this test process (the ID-card reader on a pseudo-terminal, the printer on
a TCP port, the camera over HTTP); the CLI runs as a subprocess and opens them exactly as it
would open real devices. One test also starts `cunlink sim camera` as a process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import pytest
from PIL import Image

from devices.emulators.camera import CameraEmulator, PageSpec
from devices.emulators.idcard import EmulatorSettings, IdCardEmulator
from devices.emulators.printer import PrinterEmulator
from devices.emulators.sample_cards import SAMPLE_CARDS

PAGE = PageSpec(width=1632, height=1224, seed=11)  # 2 MP keeps the test quick
CLI_SECONDS = 60  # bound on one `cunlink` process; each takes about a second here
LANG_VARS = ("CUNLINK_LANG", "LC_ALL", "LC_MESSAGES", "LANG")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bench:
    reader: IdCardEmulator
    printer: PrinterEmulator
    camera: CameraEmulator
    config: Path


async def cunlink(*args: str, lang: str = "en_US.UTF-8") -> Result:
    env = {k: v for k, v in os.environ.items() if k not in LANG_VARS} | {"LANG": lang}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_SECONDS):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(code=proc.returncode, out=out.decode(), err=err.decode())


def _config(
    path: Path, *, reader: str, printer_port: int, camera_url: str, enabled: bool = True
) -> Path:
    on = "true" if enabled else "false"
    path.write_text(
        f"""
[station]
id = "cli_test_01"
[mqtt]
host = "127.0.0.1"
tls = false
[devices.idcard]
enabled = {on}
port = "{reader}"
timeout_seconds = 2.0
[devices.printer]
enabled = {on}
connection = "tcp"
host = "127.0.0.1"
tcp_port = {printer_port}
status_poll_seconds = 1.0
[devices.camera]
enabled = {on}
source = "http"
url = "{camera_url}"
max_pixels = 1000000
jpeg_quality = 60
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def reader() -> Iterator[IdCardEmulator]:
    with IdCardEmulator(EmulatorSettings(card="resident")) as emu:
        yield emu


@pytest.fixture
async def bench(tmp_path: Path, reader: IdCardEmulator) -> AsyncIterator[Bench]:
    async with (
        PrinterEmulator(out_dir=tmp_path / "receipts") as printer,
        CameraEmulator(PAGE) as camera,
    ):
        port = await printer.serve_tcp(0)
        config = _config(
            tmp_path / "station.toml", reader=reader.path, printer_port=port, camera_url=camera.url
        )
        yield Bench(reader=reader, printer=printer, camera=camera, config=config)


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err + result.out
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err


async def test_list_probes_every_configured_device(bench: Bench) -> None:
    result = await cunlink("devices", "list", "--config", str(bench.config), "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    by_name = {d["device"]: d for d in report["devices"]}
    assert all(d["ok"] for d in by_name.values()), by_name
    assert by_name["idcard"]["detail"]["sam_id"] == "05.01-20240101-1234567890-0000000042"
    assert by_name["idcard"]["detail"]["baud"] == "115200"
    assert by_name["printer"]["detail"] == {"status": "ready"}
    assert by_name["camera"]["detail"]["still_bytes"] == str(len(bench.camera.jpeg))
    assert isinstance(report["serial_ports"], list) and isinstance(report["video_devices"], list)


async def test_list_shows_a_device_that_is_gone(bench: Bench) -> None:
    await bench.camera.stop()
    result = await cunlink("devices", "list", "--config", str(bench.config))
    assert result.code == 1
    camera_line = next(line for line in result.out.splitlines() if "camera" in line)
    assert "FAILED" in camera_line and bench.camera.url in camera_line
    assert re.search(r"idcard\s+ok", result.out) and re.search(r"printer\s+ok", result.out)
    assert "serial ports present:" in result.out and "video devices present:" in result.out
    _no_traceback(result)
    assert "camera" in result.err


async def test_read_card_masks_personal_data_unless_revealed(bench: Bench) -> None:
    card = SAMPLE_CARDS["resident"].text
    number = card.document_number
    masked = await cunlink("devices", "read-card", "--config", str(bench.config))
    assert masked.code == 0, masked.err
    assert number not in masked.out and card.display_name not in masked.out
    assert f"{number[:4]}{'*' * (len(number) - 8)}{number[-4:]}" in masked.out
    assert "masked" in masked.out

    revealed = await cunlink(
        "devices", "read-card", "--config", str(bench.config), "--reveal", "--json"
    )
    assert revealed.code == 0, revealed.err
    data = json.loads(revealed.out)
    assert data["card"]["number"] == number and data["card"]["name"] == card.display_name
    photo = SAMPLE_CARDS["resident"].photo_wlt
    assert data["photo"] == {
        "format": "WLT",
        "bytes": len(photo),
        "sha256": sha256(photo).hexdigest(),
    }
    assert data["masked"] is False


async def test_read_card_without_a_card_fails_in_one_line(bench: Bench) -> None:
    bench.reader.remove()
    result = await cunlink("devices", "read-card", "--config", str(bench.config), "--timeout", "1")
    assert result.code == 1
    _no_traceback(result)
    assert "card" in result.err


async def test_print_test_prints_chinese_text_and_a_qr_code(bench: Bench) -> None:
    result = await cunlink("devices", "print-test", "--config", str(bench.config))
    assert result.code == 0, result.err
    async with asyncio.timeout(20):
        receipt = await bench.printer.next_receipt()
    assert "打印测试" in receipt.text and "中文与全角标点：，。" in receipt.text
    assert len(receipt.qr_payloads) == 1
    payload = receipt.qr_payloads[0].decode()
    assert payload.startswith("CUNLINK-TEST-cli_test_01-") and payload in result.out


async def test_print_test_reports_paper_out(bench: Bench) -> None:
    bench.printer.command("paper-out")
    result = await cunlink("devices", "print-test", "--config", str(bench.config))
    assert result.code == 1
    _no_traceback(result)
    assert "out of paper" in result.err and "not printed" in result.err
    assert bench.printer.printed == 0


async def test_capture_writes_the_normalised_page_and_reports_sizes(
    bench: Bench, tmp_path: Path
) -> None:
    out, raw = tmp_path / "page.jpg", tmp_path / "raw.jpg"
    result = await cunlink(
        "devices", "capture", str(out), "--config", str(bench.config), "--raw", str(raw)
    )
    assert result.code == 0, result.err
    assert raw.read_bytes() == bench.camera.jpeg
    page = out.read_bytes()
    with Image.open(io.BytesIO(page)) as image:
        assert image.mode == "L"  # greyscale is the configured default
        assert image.width * image.height <= 1_000_000
    assert f"{len(bench.camera.jpeg):,} B → {len(page):,} B" in result.out
    assert "smaller" in result.out and " ms" in result.out


async def test_the_commands_in_chinese(bench: Bench, tmp_path: Path) -> None:
    config = str(bench.config)
    out = tmp_path / "page.jpg"
    # Side by side: one device each.
    card, printed, captured = await asyncio.gather(
        cunlink("devices", "read-card", "--config", config, lang="zh_CN.UTF-8"),
        cunlink("devices", "print-test", "--config", config, lang="zh_CN.UTF-8"),
        cunlink("devices", "capture", str(out), "--config", config, lang="zh_CN.UTF-8"),
    )
    assert card.code == 0, card.err
    lines = card.out.splitlines()
    assert re.fullmatch(r"已在 \S+ 上读卡（115200 波特，用时 \d+ 毫秒）：", lines[0]), lines[0]
    text = SAMPLE_CARDS["resident"].text
    assert f"  姓名               {text.display_name[0]}" in card.out
    assert "  证件号码           " in card.out and "  住址               " in card.out
    assert re.search(r"^  性别               [男女]$", card.out, re.M)
    assert re.search(r"^  照片               \d+ 字节 WLT（保留原始数据；此处不解码）$", card.out,
                     re.M)
    assert lines[-1] == "（个人信息已隐去；加 --reveal 可完整显示）"
    assert printed.code == 0, printed.err
    assert re.fullmatch(r"测试回执已在 127\.0\.0\.1:\d+ 打印：\d+ 字节（\w+），二维码 "
                        r"CUNLINK-TEST-cli_test_01-\d+，打印机于 [\d.]+ 秒后确认（第 1 次尝试）\n",
                        printed.out), printed.out
    assert captured.code == 0, captured.err
    first, second = captured.out.splitlines()
    assert re.fullmatch(rf"已从 {re.escape(bench.camera.url)} 拍摄，用时 \d+ 毫秒", first)
    assert second.startswith(f"已写入 {out}：") and "smaller" in second  # the summary as is

    listed = await cunlink("devices", "list", "--config", config, lang="zh_CN.UTF-8")
    assert listed.code == 0, listed.err
    assert listed.out.startswith(f"{config} 中配置的设备：\n")
    assert re.search(r"^  printer  正常     \S+  status ready（\d+ 毫秒）$", listed.out, re.M)
    assert "本机串口：" in listed.out and "本机视频设备：" in listed.out

    bench.printer.command("paper-out")
    paper = await cunlink("devices", "print-test", "--config", config, lang="zh_CN.UTF-8")
    assert paper.code == 1
    assert re.fullmatch(r"错误：打印机 \S+ 缺纸：请装入纸卷；"
                        r"测试回执未打印，请再次运行 print-test\n", paper.err), paper.err


async def test_disabled_or_unreachable_devices_fail_in_one_line(
    tmp_path: Path, reader: IdCardEmulator
) -> None:
    off = _config(
        tmp_path / "off.toml",
        reader=reader.path,
        printer_port=9,
        camera_url="http://127.0.0.1:9/snapshot.jpg",
        enabled=False,
    )
    commands = (["read-card"], ["print-test"], ["capture", str(tmp_path / "x.jpg")])
    # Side by side: each process spends most of its second importing.
    results = await asyncio.gather(
        *(cunlink("devices", *c, "--config", str(off)) for c in commands)
    )
    for result in results:
        assert result.code == 1
        _no_traceback(result)
        assert "disabled" in result.err
    gone = _config(
        tmp_path / "gone.toml",
        reader="/dev/cunlink-test-no-such-port",
        printer_port=9,
        camera_url="http://127.0.0.1:9/snapshot.jpg",
    )
    failing = {
        "/dev/cunlink-test-no-such-port": ["read-card"],
        "http://127.0.0.1:9/snapshot.jpg": ["capture", str(tmp_path / "x.jpg")],
    }
    results = await asyncio.gather(
        *(cunlink("devices", *c, "--config", str(gone)) for c in failing.values())
    )
    for words, result in zip(failing, results, strict=True):
        assert result.code == 1
        _no_traceback(result)
        assert words in result.err
    assert not (tmp_path / "x.jpg").exists()


async def test_sim_camera_process_serves_what_capture_needs(tmp_path: Path) -> None:
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "sim",
        "camera",
        "--port",
        "0",
        "--width",
        "800",
        "--height",
        "600",
        "--mjpeg",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert sim.stdout is not None
        async with asyncio.timeout(CLI_SECONDS):
            first = (await sim.stdout.readline()).decode()
            snippet = [(await sim.stdout.readline()).decode() for _ in range(4)]
        url = re.search(r"(http://127\.0\.0\.1:\d+/snapshot\.jpg)", first)
        assert url is not None, first
        assert f'url = "{url.group(1)}"' in "".join(snippet)
        assert 'source = "http"' in "".join(snippet)
        config = _config(
            tmp_path / "station.toml", reader="/dev/null", printer_port=9, camera_url=url.group(1)
        )
        result = await cunlink("devices", "capture", str(tmp_path / "p.jpg"), "-c", str(config))
        assert result.code == 0, result.err
        assert "Huffman tables added" in result.out  # --mjpeg frames lack them
    finally:
        sim.send_signal(signal.SIGTERM)
        async with asyncio.timeout(CLI_SECONDS):
            await sim.wait()
    assert sim.returncode == 0
