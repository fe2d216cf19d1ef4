"""`cunlink sim printer` as a technician runs it: a real process, driven over stdin, printed to
by the driver over TCP and over its pseudo-terminal."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from devices.printer import Printer, PrinterConfig
from protocols.escpos import Receipt

WAIT = 15.0
FAST = dict(status_poll_seconds=0.05, io_timeout=1.0, backoff_base=0.05, backoff_cap=0.2)


async def read_until(stream: asyncio.StreamReader, pattern: str,
                     stderr: Path | None = None) -> re.Match[str]:
    seen: list[str] = []
    async with asyncio.timeout(WAIT):
        while line := (await stream.readline()).decode():
            seen.append(line)
            if match := re.search(pattern, line):
                return match
    raise AssertionError(
        f"{pattern!r} never appeared in:\n{''.join(seen)}\nstderr:\n{_read(stderr)}")


def _read(path: Path | None) -> str:
    return path.read_text("utf-8") if path is not None and path.exists() else ""


async def test_sim_printer_command(tmp_path: Path) -> None:
    link, out = tmp_path / "printer", tmp_path / "out"
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from gateway.cli.main import main; main()",
            "sim", "printer", "--pty", "--link", str(link), "--tcp-port", "0", "--out", str(out),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        await read_until(proc.stdout, f'port = "{re.escape(str(link))}"', errors)
        match = await read_until(proc.stdout, r"TCP printer on 127\.0\.0\.1:(\d+)", errors)
        port = int(match[1])
        await read_until(proc.stdout, rf"tcp_port = {port}", errors)
        job = Receipt().text("受理回执", align="center").qr("ST001-1").cut().to_bytes()

        tcp = PrinterConfig(connection="tcp", host="127.0.0.1", tcp_port=port,
                            **FAST)  # type: ignore[arg-type]
        serial = PrinterConfig(connection="serial", port=str(link),
                               **FAST)  # type: ignore[arg-type]
        for config in (tcp, serial):
            async with Printer(config) as printer, asyncio.timeout(WAIT):
                await printer.print(job)
            match = await read_until(proc.stdout, r"receipt printed: (\S+\.png)", errors)
            png = Path(match[1])
            assert png.parent == out and "受理回执" in _read(png.with_suffix(".txt"))

        proc.stdin.write(b"paper-out\nstatus\n")
        await read_until(proc.stdout, r"^paper-out: printer now paper out, offline", errors)
        await read_until(proc.stdout, r"^status: paper out, offline; 2 printed, 0 lost", errors)
        proc.stdin.write(b"quit\n")
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
        assert not link.exists()  # the emulator removes its link when it stops
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
