"""Real Mosquitto brokers for tests, the demo and the benchmarks.

`MosquittoBroker` writes a config from the shipped template (config/mosquitto/mosquitto.conf and
acl — the same files a county deploys, with only paths, port and process user rewritten), starts
`mosquitto -c` on a free loopback port in its own directory, and can stop, SIGKILL and restart
it on the same port with the same persistence directory.

    with MosquittoBroker(tmp_path, tls=BrokerTls.from_pki(pki_dir)) as broker:
        ... connect to broker.host, broker.port with client_tls_context(cert) ...
        broker.kill(); broker.start()      # crash and come back: what autosave kept survives
        broker.restart()                   # clean stop (saves the database) and start

It never touches the machine's own broker: it always binds loopback and a port of its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway import pki
from gateway.testbed.ports import LOOPBACK, free_port

MOSQUITTO = os.environ.get("CUNLINK_MOSQUITTO", "/usr/sbin/mosquitto")
_TLS_OPTIONS = (
    "cafile", "certfile", "keyfile", "crlfile", "tls_version", "require_certificate",
    "use_identity_as_username", "use_username_as_clientid",
)
_PORT_ATTEMPTS = 3


class BrokerError(Exception):
    """The broker could not be started or stopped; the message carries its log's tail."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerTls:
    """TLS material for the broker's listener, and the hub ids its ACL names."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path | None
    hub_ids: tuple[str, ...]
    # False = authenticated clients may use any topic (a misconfigured broker, for tests that
    # show the hub's own checks).
    acl: bool = True
    # Set by from_pki: every (re)start and reload() re-reads the hub ids from the PKI, so hub
    # workers issued later are let in.
    pki_dir: Path | None = None

    @classmethod
    def from_pki(cls, pki_dir: Path, *, acl: bool = True) -> BrokerTls:
        info = pki.read_info(pki_dir)
        return cls(
            ca_file=Path(pki_dir) / "ca.crt",
            cert_file=Path(pki_dir) / "broker" / "server.crt",
            key_file=Path(pki_dir) / "broker" / "server.key",
            crl_file=Path(pki_dir) / "crl.pem",
            hub_ids=info.hub_ids,
            acl=acl,
            pki_dir=Path(pki_dir),
        )


def client_tls_context(
    cert: pki.ClientCert | None, *, ca_file: Path | None = None
) -> ssl.SSLContext:
    """An SSL context that verifies the broker against the county CA and presents `cert`
    (None: no client certificate, e.g. to show the broker refusing such clients)."""
    ca = cert.ca if cert is not None else ca_file
    if ca is None:
        raise ValueError("client_tls_context: give a client certificate or ca_file")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


class MosquittoBroker:
    """One Mosquitto process on a loopback port (see the module docstring)."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        tls: BrokerTls | None = None,
        port: int | None = None,
        host: str = LOOPBACK,
        max_packet_size: int | None = None,
        autosave_interval: int | None = None,
        extra_config: Sequence[str] = (),
        verbose: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cunlink-mosquitto-"))
        self.tls = tls
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.max_packet_size = max_packet_size
        self.autosave_interval = autosave_interval
        self.extra_config = tuple(extra_config)
        self.verbose = verbose
        self.start_timeout = start_timeout
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.out_path = self.workdir / "mosquitto.out"  # stderr, before the log file opens
        self.data_dir = self.workdir / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker and wait (bounded) until its port accepts connections."""
        for attempt in range(_PORT_ATTEMPTS):
            self._spawn()
            self._wait_ready()
            if self._started_or_retry(attempt):
                return

    async def astart(self) -> None:
        """`start()` for event loops: the process is spawned from the loop's thread, and only the
        wait for its port runs in a worker thread."""
        for attempt in range(_PORT_ATTEMPTS):
            self._spawn()
            await asyncio.to_thread(self._wait_ready)
            if self._started_or_retry(attempt):
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM): Mosquitto writes its persistence database on the way out."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash (SIGKILL): only what the last autosave (or `save()`) wrote survives."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def restart(self, *, hard: bool = False) -> None:
        """Stop (or kill, if `hard`) and start again on the same port and persistence dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        self._fixed_port = True
        self.start()

    async def arestart(self, *, hard: bool = False) -> None:
        await asyncio.to_thread(self.kill if hard else self.stop)
        self._fixed_port = True
        await self.astart()

    def reload(self) -> None:
        """Re-render the config and ACL (e.g. after issuing another hub certificate) and make
        the running broker re-read them (SIGHUP). Listener options need `restart()`."""
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError(f"broker on port {self.port} is not running; nothing to reload")
        self.conf_path.write_text(self.render_config(), encoding="utf-8")
        self._proc.send_signal(signal.SIGHUP)

    def save(self) -> None:
        """Ask the broker to write its persistence database now (SIGUSR1)."""
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError(f"broker on port {self.port} is not running; nothing to save")
        self._proc.send_signal(signal.SIGUSR1)

    def close(self) -> None:
        """Stop the broker (killing it if it will not stop) and remove a temp dir we created."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def log_text(self) -> str:
        files = (self.out_path, self.log_path)
        return "".join(p.read_text(errors="replace") for p in files if p.exists())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # --- config --------------------------------------------------------------------------------

    def render_config(self) -> str:
        """The config this broker runs with (also writes the rendered ACL next to it)."""
        if self.tls is not None and self.tls.pki_dir is not None:
            self.tls = BrokerTls.from_pki(self.tls.pki_dir, acl=self.tls.acl)
        overrides: dict[str, str | None] = {
            "listener": f"{self.port} {self.host}",
            "persistence_location": f"{self.data_dir}/",
            "log_dest": f"file {self.log_path}",
            "pid_file": None,
            # Started as root, Mosquitto would switch to the `mosquitto` user and then fail to
            # read the 0600 keys in our temp dir; keep the caller's user.
            "user": pwd.getpwuid(os.geteuid()).pw_name,
        }
        if self.tls is None:
            overrides |= {k: None for k in _TLS_OPTIONS}
            overrides |= {"allow_anonymous": "true", "acl_file": None}
        else:
            overrides |= {
                "cafile": str(self.tls.ca_file),
                "certfile": str(self.tls.cert_file),
                "keyfile": str(self.tls.key_file),
                "crlfile": str(self.tls.crl_file) if self.tls.crl_file else None,
                "acl_file": str(self.workdir / "acl") if self.tls.acl else None,
            }
            if self.tls.acl:
                self.workdir.mkdir(parents=True, exist_ok=True)
                acl = pki.render_acl(pki.read_template("acl"), self.tls.hub_ids)
                (self.workdir / "acl").write_text(acl, encoding="utf-8")
        if self.max_packet_size is not None:
            overrides["max_packet_size"] = str(self.max_packet_size)
        if self.autosave_interval is not None:
            overrides["autosave_interval"] = str(self.autosave_interval)
        if self.verbose:
            overrides["log_type"] = "all"
        conf = pki.render_conf(pki.read_template("mosquitto.conf"), overrides)
        return conf + "".join(line + "\n" for line in self.extra_config)

    # --- internals -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        if self.running:
            raise BrokerError(f"broker on port {self.port} is already running (pid {self.pid})")
        if not os.access(MOSQUITTO, os.X_OK):
            raise BrokerError(
                f"{MOSQUITTO} not found: install Mosquitto 2 (apt-get install mosquitto) or set "
                "CUNLINK_MOSQUITTO to its path"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.conf_path.write_text(self.render_config(), encoding="utf-8")
        with open(self.out_path, "ab") as out:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # Only from the main thread: the kernel ties the signal to the spawning *thread*,
                # and a broker started from a short-lived worker thread would die with it.
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread()
                else None,
            )

    def _wait_ready(self) -> None:
        """Return once the port accepts or the process has exited; raise after the timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while self._proc.poll() is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BrokerError(
                        f"mosquitto did not accept on {self.host}:{self.port} within "
                        f"{self.start_timeout} s; log {self.log_path}:\n{self._tail()}"
                    ) from None
                time.sleep(0.02)

    def _started_or_retry(self, attempt: int) -> bool:
        assert self._proc is not None
        if self._proc.poll() is None:
            return True
        log = self._tail()
        self._proc = None
        if "in use" in log and not self._fixed_port and attempt + 1 < _PORT_ATTEMPTS:
            self.port = free_port(self.host)  # someone took the port between probe and bind
            return False
        raise BrokerError(
            f"mosquitto exited at start (config {self.conf_path}); log:\n{log}"
        )

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
            raise BrokerError(
                f"mosquitto (port {self.port}) ignored {sig.name} for {timeout} s and was killed"
            ) from None

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _die_with_parent() -> None:
    # If the test run or demo dies without cleaning up, its brokers must not linger on the
    # machine: ask the kernel to SIGKILL the child when the parent (thread) goes away.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux/glibc: fixtures' finalisers still stop the broker
