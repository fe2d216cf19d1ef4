"""The sd_notify protocol against real AF_UNIX datagram sockets (a path and an abstract name)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import (
    Notifier,
    NotifyAddressError,
    monotonic_usec,
    socket_address,
    watchdog_usec,
)


def parse(datagram: bytes) -> dict[str, str]:
    lines = datagram.decode().split("\n")
    assert all("=" in line for line in lines), datagram
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    where = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(where)
    sock.settimeout(5.0)
    yield where, sock
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"cunlink-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5.0)
    yield "@" + name, sock
    sock.close()


@pytest.mark.parametrize("which", ["path_socket", "abstract_socket"])
def test_every_message_reaches_a_real_socket(which: str, request: pytest.FixtureRequest) -> None:
    env_value, sock = request.getfixturevalue(which)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": env_value})
    assert notifier.enabled
    try:
        assert notifier.ready("running; link down")
        assert parse(sock.recv(4096)) == {"READY": "1",
                                          "STATUS": "running; link down"}
        assert notifier.status("link up")
        assert parse(sock.recv(4096)) == {"STATUS": "link up"}
        before = monotonic_usec()
        assert notifier.reloading()
        msg = parse(sock.recv(4096))
        assert msg["RELOADING"] == "1"
        # systemd >= 253 rejects a reload whose timestamp is not CLOCK_MONOTONIC "now"
        stamp = int(msg["MONOTONIC_USEC"])
        assert before <= stamp <= monotonic_usec()
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert parse(sock.recv(4096))["STOPPING"] == "1"
        assert notifier.sent == 5
    finally:
        notifier.close()


def test_status_cannot_smuggle_a_second_assignment(path_socket: tuple[str, socket.socket]) -> None:
    where, sock = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": where})
    notifier.status("disk low\nREADY=1")
    assert parse(sock.recv(4096)) == {"STATUS": "disk low READY=1"}
    notifier.close()


def test_unset_socket_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.sent == 0


def test_a_vanished_socket_returns_false_and_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.sent == 0
    notifier.close()


def test_bad_socket_values_are_refused_with_a_clear_message() -> None:
    with pytest.raises(NotifyAddressError, match="absolute path or an abstract name"):
        socket_address("run/notify")
    with pytest.raises(NotifyAddressError):
        socket_address("@")
    assert socket_address("@x") == b"\0x"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    # a bad value disables notification instead of crashing the daemon
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid() -> None:
    me = os.getpid()
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env).watchdog_interval == 15.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": str(me)}).watchdog_interval == 15.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": str(me + 1)}).watchdog_interval is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}, me) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}, me) is None
    assert watchdog_usec({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}, me) is None
    assert watchdog_usec({}, me) is None
    # no socket, no watchdog: nobody would hear the pings
    assert Notifier.from_environ({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None


def test_monotonic_usec_is_clock_monotonic() -> None:
    a = monotonic_usec()
    b = int(time.monotonic() * 1_000_000)
    assert abs(a - b) < 1_000_000
