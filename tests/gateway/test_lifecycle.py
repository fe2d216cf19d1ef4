"""ServiceLifecycle with a real subprocess daemon and a real notify socket: readiness,
watchdog cadence (and its silence when unhealthy or wedged), SIGHUP reloads, SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.lifecycle import LifecycleError, ServiceLifecycle
from gateway.sdnotify import Notifier


@dataclass(frozen=True, slots=True)
class Message:
    at: float  # time.monotonic() on arrival
    fields: dict[str, str]


def parse(datagram: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in datagram.decode().split("\n"):
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r} in {datagram!r}"
        out[key] = value
    return out


class NotifyReceiver:
    """Bind at `address` (a path, or "@name" for an abstract socket); `env_value` goes into
    NOTIFY_SOCKET of the process under test."""

    def __init__(self, address: str | Path) -> None:
        self.env_value = str(address)
        raw: str | bytes = (b"\0" + self.env_value[1:].encode()
                            if self.env_value.startswith("@") else self.env_value)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(raw)
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-recv", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append(Message(time.monotonic(), parse(data)))

    @property
    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, key: str, value: str | None = None, *, after: int = 0,
                 timeout: float = 20.0) -> int:
        """Index of the first message from index `after` on that sets `key` (to `value`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.messages[after:], start=after):
                if key in m.fields and (value is None or m.fields[key] == value):
                    return i
            time.sleep(0.02)
        seen = [m.fields for m in self.messages[after:]]
        raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {seen}")

    def pings(self, start: float, end: float) -> list[float]:
        return [m.at for m in self.messages
                if m.fields.get("WATCHDOG") == "1" and start <= m.at < end]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._sock.close()


# --- the daemon under test ------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]

# A daemon in miniature: the same shape as `cunlink run` (lifecycle around an engine that stops
# when asked and drains for a moment). SIGUSR1 blocks its event loop, as a wedged daemon would.
DAEMON = '''
import asyncio, signal, sys, time
from pathlib import Path
from gateway.lifecycle import ServiceLifecycle

sick = Path(sys.argv[1])

async def main() -> None:
    stop = asyncio.Event()
    reloads = 0

    async def on_reload() -> str:
        nonlocal reloads
        reloads += 1
        await asyncio.sleep(0.2)
        print(f"reload {reloads}", flush=True)
        return f"reload {reloads} done"

    async with ServiceLifecycle("testd", on_stop=stop.set, on_reload=on_reload,
                                health=lambda: not sick.exists()) as life:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, time.sleep, 1.5)
        life.ready("testd up")
        print("ready", flush=True)
        await stop.wait()
        await asyncio.sleep(0.3)  # a real daemon lets the chunk in flight land here
    print("exited cleanly", flush=True)

asyncio.run(main())
'''


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    sick: Path

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@contextmanager
def daemon(tmp_path: Path, receiver: NotifyReceiver, **env: str) -> Iterator[Daemon]:
    script = tmp_path / "testd.py"
    script.write_text(DAEMON)
    sick = tmp_path / "sick"
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    environ.update(PYTHONPATH=str(REPO), NOTIFY_SOCKET=receiver.env_value, **env)
    proc = subprocess.Popen([sys.executable, str(script), str(sick)], env=environ, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield Daemon(proc, sick)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[NotifyReceiver]:
    r = NotifyReceiver(tmp_path / "notify")
    yield r
    r.close()


def test_ready_then_pings_at_half_the_period_only_while_healthy(
        tmp_path: Path, receiver: NotifyReceiver) -> None:
    # WatchdogSec=0.5 s -> a ping every 0.25 s
    with daemon(tmp_path, receiver, WATCHDOG_USEC="500000") as d:
        first = receiver.wait_for("READY", "1")
        assert receiver.messages[first].fields["STATUS"] == "testd up"

        start = time.monotonic()
        time.sleep(3.0)
        pings = receiver.pings(start, time.monotonic())
        # 12 expected; the CPU is shared, so only a gross error in the cadence fails
        assert 5 <= len(pings) <= 16, pings
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert min(gaps) > 0.1, gaps  # never faster than asked (the old bug: busy pinging)

        d.sick.touch()  # health() turns false: the engine died
        time.sleep(0.6)  # a ping decided before the file appeared may still land
        start = time.monotonic()
        time.sleep(2.0)
        assert receiver.pings(start, time.monotonic()) == []
        d.sick.unlink()
        start = time.monotonic()
        receiver.wait_for("WATCHDOG", "1", after=len(receiver.messages), timeout=10)
        assert time.monotonic() - start < 10

        # a wedged event loop cannot ping either
        sent = time.monotonic()
        d.signal(signal.SIGUSR1)
        time.sleep(3.0)
        # the gap straddles the signal: from the last ping before it to the first after
        around = receiver.pings(sent - 1.0, time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(around)]
        assert gaps and max(gaps) >= 1.2, gaps

        d.signal(signal.SIGTERM)
        code, out, err = d.finish(timeout=15)
    assert code == 0, err
    assert "exited cleanly" in out


def test_sighup_reloads_and_sigterm_stops_within_a_bound(
        tmp_path: Path, receiver: NotifyReceiver) -> None:
    with daemon(tmp_path, receiver) as d:
        ready = receiver.wait_for("READY", "1")
        assert d.proc.stdout is not None
        assert d.proc.stdout.readline().strip() == "ready"

        d.signal(signal.SIGHUP)
        reloading = receiver.wait_for("RELOADING", "1", after=ready + 1)
        assert "MONOTONIC_USEC" in receiver.messages[reloading].fields
        back = receiver.wait_for("READY", "1", after=reloading + 1)
        assert receiver.messages[back].fields["STATUS"] == "testd running; reload 1 done"
        assert d.proc.stdout.readline().strip() == "reload 1"

        # two SIGHUPs during one reload: one more reload follows, not two overlapping ones
        d.signal(signal.SIGHUP)
        time.sleep(0.05)
        d.signal(signal.SIGHUP)
        d.signal(signal.SIGHUP)
        again = receiver.wait_for("STATUS", "testd running; reload 3 done", after=back + 1)
        assert [m.fields.get("RELOADING") for m in receiver.messages[back + 1:again + 1]
                ].count("1") == 2

        asked = time.monotonic()
        d.signal(signal.SIGTERM)
        stopping = receiver.wait_for("STOPPING", "1", after=again + 1)
        code, out, err = d.finish(timeout=15)
        took = time.monotonic() - asked
    assert receiver.messages[stopping].fields["STATUS"] == "testd stopping"
    assert code == 0, err
    assert out.splitlines() == ["reload 2", "reload 3", "exited cleanly"]
    assert took < 10, took
    # no watchdog asked for, none sent
    assert receiver.pings(0, time.monotonic()) == []


def test_sigint_on_an_abstract_socket_and_a_watchdog_meant_for_another_pid(
        tmp_path: Path) -> None:
    receiver = NotifyReceiver(f"@cunlink-test-{uuid.uuid4().hex}")
    try:
        with daemon(tmp_path, receiver, WATCHDOG_USEC="200000", WATCHDOG_PID="1") as d:
            receiver.wait_for("READY", "1")
            time.sleep(1.0)  # 10 pings would be due if the watchdog were ours
            d.signal(signal.SIGINT)
            receiver.wait_for("STOPPING", "1")
            code, out, err = d.finish(timeout=15)
        assert code == 0, err
        assert "exited cleanly" in out
        assert receiver.pings(0, time.monotonic()) == []
    finally:
        receiver.close()


# --- in-process: handler restoration, failures -------------------------------------------------

async def test_exit_restores_handlers_and_reports_a_crash(tmp_path: Path) -> None:
    receiver = NotifyReceiver(tmp_path / "notify")
    seen: list[int] = []

    def mine(signum: int, frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGHUP, mine)
    sigint_before = signal.getsignal(signal.SIGINT)  # asyncio.Runner's own, under pytest
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": receiver.env_value})
        with pytest.raises(RuntimeError, match="engine died"):
            async with ServiceLifecycle("t", on_stop=lambda: None, notifier=notifier) as life:
                life.ready()
                raise RuntimeError("engine died")
        done = receiver.wait_for("STOPPING", "1")
        assert receiver.messages[done].fields["STATUS"] == "t failed: RuntimeError: engine died"
        assert signal.getsignal(signal.SIGHUP) is mine
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is sigint_before
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP]
        with pytest.raises(LifecycleError, match="already entered"):
            async with life:
                pass
    finally:
        signal.signal(signal.SIGHUP, old)
        receiver.close()


async def test_a_raising_reload_keeps_the_daemon_running(tmp_path: Path) -> None:
    receiver = NotifyReceiver(tmp_path / "notify")
    stops: list[str] = []

    async def broken() -> str:
        raise ValueError("disk on fire")

    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": receiver.env_value})
        async with ServiceLifecycle("t", on_stop=lambda: stops.append("x"), on_reload=broken,
                                    notifier=notifier) as life:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(200):
                if life.reloads:
                    break
                await asyncio.sleep(0.02)
            assert life.reloads == 1
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # the second one is only logged
            await asyncio.wait_for(life.stop_requested.wait(), timeout=5)
            await asyncio.sleep(0.05)
        ready = receiver.wait_for("READY", "1")
        assert receiver.messages[ready].fields["STATUS"] == (
            "t running; reload failed: ValueError: disk on fire")
        assert stops == ["x"]
        assert [m.fields.get("STOPPING") for m in receiver.messages].count("1") == 1
    finally:
        receiver.close()
