"""The sd_notify protocol, spoken directly: no libsystemd, no extra dependency.

systemd passes a datagram socket in $NOTIFY_SOCKET (a filesystem path, or "@name" for a Linux
abstract socket) and reads newline-separated KEY=VALUE assignments from it:

- READY=1                 start-up finished (Type=notify holds `systemctl start` until then)
- STATUS=...              one line shown by `systemctl status`
- RELOADING=1 + MONOTONIC_USEC=...   a reload began (systemd >= 253 needs the timestamp for
                          Type=notify-reload; older versions accept and ignore it); READY=1 ends it
- STOPPING=1              shutdown began
- WATCHDOG=1              still alive; with WatchdogSec= set, missing pings get us restarted

The watchdog period comes from $WATCHDOG_USEC, and applies to us only if $WATCHDOG_PID is unset
or names this process (a shell wrapper must not inherit its child's watchdog). We ping at half
the period, as sd_watchdog_enabled(3) recommends.

Outside systemd (NOTIFY_SOCKET unset) every call is a cheap no-op, so the daemons call these
unconditionally. A failed send never raises: losing a notification must not kill the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("cunlink.sdnotify")

# A datagram to PID 1 goes out at once; only a wedged systemd makes it wait. Bounded so a stuck
# manager cannot freeze the event loop for long (the watchdog would then restart us anyway).
SEND_TIMEOUT_SECONDS = 1.0


class NotifyAddressError(ValueError):
    """$NOTIFY_SOCKET holds something this module cannot send to."""


def socket_address(value: str) -> str | bytes:
    """The address to sendto() for a $NOTIFY_SOCKET value.

    "/run/systemd/notify" is a path; "@name" is the abstract socket "\\0name". systemd >= 254
    also offers "vsock:CID:PORT" (for VMs), which a station box never gets.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # abstract namespace: a leading NUL, no filesystem entry; bytes keep the NUL intact
        return b"\0" + value[1:].encode()
    raise NotifyAddressError(
        f"NOTIFY_SOCKET={value!r}: expected an absolute path or an abstract name starting "
        "with '@'; unset it, or start the daemon from systemd with Type=notify"
    )


def watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in microseconds if it applies to process `pid`, else None."""
    raw = env.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != pid:
                return None  # meant for another process (we were started by a wrapper)
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not an integer", owner)
            return None
    return usec


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def one_line(text: str) -> str:
    # a newline would end the assignment and start a bogus one
    return " ".join(text.splitlines()).strip()


class Notifier:
    """Sends state changes to systemd. Build with from_environ() in the daemon.

    Keeps one socket open for the life of the process: the watchdog pings every few seconds.
    """

    def __init__(self, address: str | bytes | None, *, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._watchdog_usec = watchdog_usec if address is not None else None
        self.sent = 0  # datagrams that left (for tests and debugging)
        self._failed = False

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Read $NOTIFY_SOCKET / $WATCHDOG_USEC / $WATCHDOG_PID (default: os.environ)."""
        env = os.environ if env is None else env
        value = env.get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        try:
            address = socket_address(value)
        except NotifyAddressError as exc:
            log.warning("%s", exc)
            return cls(None)
        return cls(address, watchdog_usec=watchdog_usec(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout), or None if no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def send(self, *assignments: str) -> bool:
        """Send KEY=VALUE assignments in one datagram; True if it left, False if not sent."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.settimeout(SEND_TIMEOUT_SECONDS)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            # Log the first failure loudly and later ones quietly: a vanished socket would
            # otherwise fill the journal with one warning per watchdog ping.
            (log.debug if self._failed else log.warning)(
                "cannot notify systemd at %r: %s", self._address, exc)
            self._failed = True
            return False
        self._failed = False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        if status:
            return self.send("READY=1", f"STATUS={one_line(status)}")
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def reloading(self, status: str = "reloading configuration") -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}",
                         f"STATUS={one_line(status)}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
