"""An emulated ESC/POS receipt printer on a pseudo-terminal and/or a TCP port (raw, like 9100).

What a host sends is decoded with `protocols.escpos_parse`; `DLE EOT n` is answered at once
with the status byte of the simulated condition; each receipt (ended by a cut) is drawn to a
PNG with its text and QR code (`receipt_render`). The driver opens the PTY path exactly as it
would open /dev/ttyUSB0, so the same code runs against the emulator and against hardware.

Conditions, set by tests or by the technician's stdin commands: paper out, cover open, offline
(independent flags, combined into the status a real printer would report). A receipt that
arrives while the printer is not ready is lost, as on a printer with a small buffer, and
counted in `lost`: the driver must not send while the printer is not ready.

`unplug()` closes the PTY and removes its link (the device node goes with the cable), and
closes the TCP listener with its connections; `replug()` opens a new PTY — with a new /dev/pts
path, so give a stable `link`, re-pointed atomically — and listens on the same TCP port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from devices.emulators.receipt_render import ReceiptRenderer, RenderedReceipt
from protocols.escpos import PrinterStatus, encode_status
from protocols.escpos_base import EscposReceiveError, TextEncoding
from protocols.escpos_parse import (
    NEED_DATA,
    EscposParser,
    Ignored,
    ParsedReceipt,
    ReceiptCut,
    StatusRequest,
)

__all__ = ["COMMANDS", "PrinterEmulator"]

log = logging.getLogger(__name__)

READ_CHUNK: Final = 4096
# stdin command -> (flag, value); `status` and `quit` are handled by the caller.
COMMANDS: Final = {
    "paper-out": ("paper_out", True),
    "paper-ok": ("paper_out", False),
    "cover-open": ("cover_open", True),
    "cover-close": ("cover_open", False),
    "offline": ("offline", True),
    "online": ("offline", False),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pty:
    master: int
    slave: int
    path: Path


class PrinterEmulator:
    """An async context manager; serve with `serve_pty()` and/or `serve_tcp()` inside it."""

    def __init__(
        self,
        *,
        out_dir: Path,
        encoding: TextEncoding | str = TextEncoding.GB18030,
        width_chars: int = 32,
        font_path: Path | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.encoding = TextEncoding(encoding)
        self.paper_out = False
        self.cover_open = False
        self.offline = False
        self.lost = 0
        self.printed = 0  # receipts cut while ready; `receipts` fills as they are drawn
        self.status_requests = 0
        self.receipts: list[RenderedReceipt] = []
        self._renderer = ReceiptRenderer(width_chars=width_chars, encoding=self.encoding.value,
                                         font_path=font_path)
        self._rendered: asyncio.Queue[RenderedReceipt] = asyncio.Queue()
        self._render_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pty: _Pty | None = None
        self._pty_parser: EscposParser | None = None
        self._link: Path | None = None
        self._pty_wanted = False
        self._tcp_port: int | None = None
        self._tcp_host = "127.0.0.1"
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._seq = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._pty_wanted = False
        await self._stop_links()
        for task in list(self._tasks):
            await task  # let receipts being drawn reach the disk

    # --- condition -----------------------------------------------------------------------------

    @property
    def status(self) -> PrinterStatus:
        return PrinterStatus(online=not (self.offline or self.paper_out or self.cover_open),
                             paper_end=self.paper_out, cover_open=self.cover_open)

    def command(self, line: str) -> str:
        """Apply a technician's command (`paper-out`, `cover-close` …); returns what it did."""
        name = line.strip().lower()
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}; try: {', '.join(COMMANDS)}, quit")
        flag, value = COMMANDS[name]
        setattr(self, flag, value)
        return f"{name}: printer now {', '.join(self.status.problems) or 'ready'}"

    # --- links ---------------------------------------------------------------------------------

    async def serve_pty(self, link: Path | None = None) -> Path:
        """Open a pseudo-terminal; returns the path to configure (the link, if given)."""
        self._link = link
        self._pty_wanted = True
        self._open_pty()
        return link if link is not None else self._pty_path()

    async def serve_tcp(self, port: int = 9100, host: str = "127.0.0.1") -> int:
        """Listen on host:port (0 = a free port); returns the port."""
        self._tcp_host = host
        self._server = await asyncio.start_server(self._tcp_client, host, port)
        self._tcp_port = self._server.sockets[0].getsockname()[1]
        return self._tcp_port

    def _pty_path(self) -> Path:
        if self._pty is None:
            raise RuntimeError("the emulator has no pseudo-terminal open (unplugged?)")
        return self._pty.path

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw mode: no echo, no CR/LF translation, so bytes pass untouched both ways. The
        # emulator keeps the slave open too, so reads on the master do not fail with EIO
        # between driver connections.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = _Pty(master=master, slave=slave, path=Path(os.ttyname(slave)))
        self._pty_parser = EscposParser(encoding=self.encoding)
        if self._link is not None:
            tmp = self._link.with_name(self._link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._pty.path)
            tmp.replace(self._link)  # atomic: the driver never sees a missing link
        asyncio.get_running_loop().add_reader(master, self._pty_readable)
        log.info("printer emulator: serial on %s", self._link or self._pty.path)

    def _pty_readable(self) -> None:
        pty, parser = self._pty, self._pty_parser
        if pty is None or parser is None:
            return
        try:
            data = os.read(pty.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            # The fd would stay readable with the same error: stop watching it, or we spin.
            asyncio.get_running_loop().remove_reader(pty.master)
            log.error("printer emulator: pseudo-terminal read failed (%s); unplug and replug "
                      "to reopen it", exc)
            return
        for reply in self._receive(parser, data):
            with contextlib.suppress(BlockingIOError):
                os.write(pty.master, reply)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._server is None or task is None:  # accepted just as the listener closed
            writer.close()
            return
        self._connections[writer] = task
        parser = EscposParser(encoding=self.encoding)
        try:
            while data := await reader.read(READ_CHUNK):
                for reply in self._receive(parser, data):
                    writer.write(reply)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("printer emulator: TCP client went away: %s", exc)
        finally:
            self._connections.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def unplug(self) -> None:
        """Close the PTY and the TCP listener and its connections, as a pulled cable does."""
        await self._stop_links()
        log.info("printer emulator: unplugged")

    async def replug(self) -> None:
        if self._pty_wanted and self._pty is None:
            self._open_pty()
        if self._tcp_port is not None and self._server is None:
            await self.serve_tcp(self._tcp_port, self._tcp_host)
        log.info("printer emulator: plugged in again")

    async def _stop_links(self) -> None:
        pty, self._pty, self._pty_parser = self._pty, None, None
        if pty is not None:
            asyncio.get_running_loop().remove_reader(pty.master)
            os.close(pty.master)
            os.close(pty.slave)
            # The device node goes with the cable (as /dev/ttyUSB0 does); a link left pointing
            # at a freed /dev/pts/N could lead a driver to whatever PTY gets that number next.
            if self._link is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._link.unlink()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Closing each connection ends its handler (the read sees EOF); wait for them, so
            # no socket outlives the emulator.
            for _ in range(10):
                if not self._connections:
                    break
                for writer in list(self._connections):
                    writer.close()
                await asyncio.wait(list(self._connections.values()), timeout=2.0)
            await server.wait_closed()

    # --- what arrives --------------------------------------------------------------------------

    def _receive(self, parser: EscposParser, data: bytes) -> list[bytes]:
        """Feed bytes; return the replies to send; queue receipts for drawing."""
        replies: list[bytes] = []
        try:
            parser.feed(data)
            while (event := parser.next_event()) is not NEED_DATA:
                match event:
                    case StatusRequest(n=n):
                        self.status_requests += 1
                        replies.append(bytes((encode_status(self.status.replies()[n - 1]),)))
                    case ReceiptCut(receipt=receipt):
                        if self.status.ready:
                            self.printed += 1
                            self._spawn(self._render(receipt))
                        else:
                            self.lost += 1
                            log.warning("printer emulator: receipt lost, printer is %s",
                                        ", ".join(self.status.problems))
                    case Ignored(command=command, reason=reason):
                        log.debug("printer emulator: ignored %s (%s)", command.hex(), reason)
        except EscposReceiveError as exc:
            # A printer fed garbage prints garbage and carries on; so do we, from a clean state.
            log.warning("printer emulator: %s; discarding the buffer", exc)
            parser.reset()
        return replies

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name="printer-emulator:render")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _render(self, receipt: ParsedReceipt) -> None:
        async with self._render_lock:  # one at a time, so files are numbered in print order
            self._seq += 1
            name = f"receipt-{datetime.now():%Y%m%d-%H%M%S}-{self._seq:04d}.png"
            try:
                rendered = await asyncio.to_thread(self._renderer.render, receipt,
                                                   self.out_dir / name)
            except Exception:
                log.exception("printer emulator: could not draw receipt %d", self._seq)
                return
            self.receipts.append(rendered)
            log.info("printer emulator: receipt %s", rendered.png)
            self._rendered.put_nowait(rendered)

    async def next_receipt(self) -> RenderedReceipt:
        """The next receipt drawn (bound the wait with asyncio.timeout)."""
        return await self._rendered.get()

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        return (self._tcp_host, self._tcp_port) if self._tcp_port is not None else None

    @property
    def pty_path(self) -> Path | None:
        return self._pty.path if self._pty is not None else None
