"""One pyserial port, one thread: the blocking half of a serial driver.

pyserial blocks, and a `serial.Serial` object is not meant to be shared between threads. A
`PortThread` owns one port and one worker thread: the driver hands it plain blocking functions
(open, a whole command/response exchange, close) and awaits them, so the event loop never
blocks and the port is only ever touched from that one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import termios
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import serial

__all__ = [
    "PORT_ERRORS",
    "NoReply",
    "PortThread",
    "describe_open_error",
    "error_text",
    "open_serial",
]

T = TypeVar("T")

#: What pyserial and termios raise when a port fails or vanishes (tcflush on a pulled USB
#: adapter or a closed pseudo-terminal raises termios.error, which is not an OSError).
PORT_ERRORS: Final = (serial.SerialException, OSError, termios.error)
_MAX_READ: Final = 4096


class NoReply(Exception):
    """No complete reply arrived before the deadline (the driver decides what that means)."""


class PortThread:
    """A single worker thread for one serial port; `run` executes blocking calls on it."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial:{name}")
        self.port: serial.Serial | None = None
        self._closed = False

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the port's thread. If the caller is cancelled, `fn` still finishes
        there (pyserial calls cannot be interrupted); later calls queue behind it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def aclose(self) -> None:
        """Close the port on its thread, then let the thread end. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        done = self._executor.submit(self._close_port)
        self._executor.shutdown(wait=False)
        # The close is queued on the port's thread whatever happens to this await, so a
        # cancelled caller still leaves the port closed; shield keeps the wait itself tidy.
        await asyncio.shield(asyncio.wrap_future(done))

    def open_blocking(self, path: str, baud: int, *, read_timeout: float) -> None:
        """Open the port at `baud`, or switch the open port to `baud`. Raises PORT_ERRORS."""
        if self.port is None:
            self.port = open_serial(path, baud, read_timeout=read_timeout)
        else:
            self.port.baudrate = baud

    def exchange_blocking(self, wire: bytes, take: Callable[[bytes], T | None], wait: float) -> T:
        """Send `wire`, then pass received bytes to `take` until it returns a reply.

        Input already waiting is discarded first: a late reply to an earlier command is not
        the answer to this one. Raises NoReply after `wait` seconds, PORT_ERRORS if the port
        fails. Deadlines are checked every `read_timeout` the port was opened with.
        """
        port = self.port
        if port is None:
            raise serial.PortNotOpenError()
        port.reset_input_buffer()
        try:
            port.write(wire)
        except serial.SerialTimeoutException:
            raise NoReply() from None  # the line is stuck: to the caller, the same as silence
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            chunk = port.read(min(max(port.in_waiting, 1), _MAX_READ))
            if chunk and (reply := take(chunk)) is not None:
                return reply
        raise NoReply()

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            # A port whose device vanished fails to close cleanly; it is gone either way.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()


def open_serial(path: str, baud: int, *, read_timeout: float) -> serial.Serial:
    """Open `path` 8N1 at `baud`, exclusively (a second program on the line garbles both)."""
    return serial.Serial(
        path,
        baudrate=baud,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=read_timeout,
        write_timeout=1.0,
        exclusive=True,
    )


def error_text(exc: BaseException) -> str:
    """A port error in one line (termios.error carries a bare (errno, text) tuple)."""
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        return f"[Errno {exc.args[0]}] {exc.args[1]}"
    return str(exc)


def describe_open_error(path: str, exc: BaseException) -> str:
    """Why `path` could not be opened, and what to do about it, in one sentence."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return (
            f"serial port {path} does not exist: is the device plugged in, and is the port in "
            "the station config right? (`cunlink devices list` shows the ports present)"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"no permission to open serial port {path}: add the daemon's user to the dialout "
            "group or install the udev rules from config/"
        )
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in str(exc).lower():
        return f"serial port {path} is held by another program: stop it (e.g. a vendor service)"
    return f"cannot open serial port {path}: {error_text(exc)}"
