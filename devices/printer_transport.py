"""The two links a receipt printer is reached over: a serial port and raw TCP (port 9100).

Both offer the same four awaitables (open, write, read exactly n bytes, close), with one
timeout, and raise only `PrinterConnectionError` (translated from OSError / SerialException at
this boundary). Timeouts use asyncio.timeout, never wait_for, which on Python 3.11 can
swallow a cancellation. pyserial blocks, so every serial call runs in the transport's own single
thread: the event loop never waits on the port, and the port is never used from two threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import serial

from devices.health import DeviceError

_T = TypeVar("_T")


class PrinterError(DeviceError):
    """Base of the printer driver's errors (re-exported by `devices.printer`)."""


class PrinterConnectionError(PrinterError):
    """The link to the printer failed (cannot open, write or read in time, closed)."""


class Transport(Protocol):
    describe: str

    async def open(self) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def read(self, n: int) -> bytes: ...
    async def close(self) -> None: ...


class SerialTransport:
    """A serial or USB-serial port (or the emulator's pseudo-terminal) via pyserial."""

    def __init__(self, port: str, *, baudrate: int, timeout: float) -> None:
        self.describe = f"serial port {port}"
        self._port = port
        self._baudrate = baudrate
        self._timeout = timeout
        self._serial: serial.Serial | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="printer-serial")

    async def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn)
        except (OSError, serial.SerialException, termios.error) as exc:
            # termios.error (from tcdrain on a vanished port) is not an OSError.
            raise PrinterConnectionError(
                f"{what} {self.describe} failed: {exc}; check the cable and that no other "
                "program holds the port"
            ) from exc

    async def open(self) -> None:
        def _open() -> serial.Serial:
            port = serial.Serial(self._port, baudrate=self._baudrate, timeout=self._timeout,
                                 write_timeout=self._timeout, exclusive=True)
            # Bytes left from before (a reply nobody read) would be taken for status replies.
            port.reset_input_buffer()
            return port

        self._serial = await self._call("opening", _open)

    def _port_or_fail(self) -> serial.Serial:
        if self._serial is None:
            raise PrinterConnectionError(f"{self.describe} is not open")
        return self._serial

    async def write(self, data: bytes) -> None:
        port = self._port_or_fail()

        # pyserial's write timeout covers the whole write, so it must allow for the line
        # rate: a 20 KB logo takes 21 s at 9600 baud (10 bits per byte), and twice that is
        # still a clear sign of a stuck line.
        budget = self._timeout + 2 * len(data) * 10 / self._baudrate

        def _write() -> None:
            port.write_timeout = budget
            port.write(data)
            port.flush()

        await self._call("writing to", _write)

    async def read(self, n: int) -> bytes:
        port = self._port_or_fail()
        data = await self._call("reading from", lambda: port.read(n))
        if len(data) < n:
            raise PrinterConnectionError(
                f"{self.describe}: {len(data)} of {n} status bytes arrived within "
                f"{self._timeout} s; is the printer on and the baud rate right?"
            )
        return bytes(data)

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            # Closing a port that already vanished (unplugged) has nothing left to undo.
            with contextlib.suppress(OSError, serial.SerialException, termios.error):
                await asyncio.get_running_loop().run_in_executor(self._thread, port.close)
        self._thread.shutdown(wait=False)


class TcpTransport:
    """A network printer's raw port (9100) via asyncio streams."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.describe = f"tcp {host}:{port}"
        self._host = host
        self._port = port
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _fail(self, what: str, exc: BaseException) -> PrinterConnectionError:
        reason = f"no answer within {self._timeout} s" if isinstance(exc, TimeoutError) else exc
        return PrinterConnectionError(
            f"{what} {self.describe} failed: {reason}; check that the printer is on and "
            "reachable and that nothing else uses its port"
        )

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise self._fail("connecting to", exc) from exc

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise PrinterConnectionError(f"{self.describe} is not connected")
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise self._fail("writing to", exc) from exc

    async def read(self, n: int) -> bytes:
        if self._reader is None:
            raise PrinterConnectionError(f"{self.describe} is not connected")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise PrinterConnectionError(
                f"{self.describe} closed the connection after {len(exc.partial)} of {n} bytes"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise self._fail("reading from", exc) from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            # The peer may have vanished; the socket is closed on our side either way.
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await writer.wait_closed()
