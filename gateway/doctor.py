"""`cunlink doctor`'s checks: one function per check, each returning CheckResult(s).

A result carries a stable message code and its arguments, not text: `gateway.i18n` turns it
into Chinese or English, and `--json` prints the code, the arguments and the English text, so
scripts never depend on the language. The checks only read: no file is changed, no key loaded
into anything but memory, and the MQTT login test is skipped while the daemon is running
(the broker would hand the station's session to the test and cut the daemon off).

What the clock check can honestly know: the time is not before this release; it is not behind
timestamps the store already handed out (a board that booted without its clock); and, when the
daemon is running and has heard from the hub, how far it is from the hub's clock. The TLS check
adds one more: a clock outside the broker certificate's validity fails the handshake, and the
line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import stat
import struct
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from gateway import probe
from gateway.config import ConfigError, StationConfig, load_station_config
from gateway.keys import (
    ENCRYPTION_KEY,
    SIGNING_KEY,
    KeyFileError,
    enrollment_path,
    load_enrollment,
    load_identity,
)
from sync.ids import IdError, check_station_id

#: This release's date. A clock before it is certainly wrong (boards without a battery-backed
#: clock boot in 1970 or at their image's build date). Move it forward at each release.
EARLIEST_SANE = datetime(2026, 11, 1, tzinfo=UTC)
#: A certificate closer than this to its end gets a warning: a county needs time to re-issue.
WARN_DAYS = 30
MB = 1024 * 1024
ArgValue = str | int | float


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # could not be checked because an earlier check failed
    INFO = "info"  # neither good nor bad (the daemon is not running yet)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One line of the report: `code` and `fix` are message codes of gateway.i18n."""

    check: str
    outcome: Outcome
    code: str
    args: Mapping[str, ArgValue] = field(default_factory=dict)
    fix: str | None = None


def _ok(check: str, code: str, **args: ArgValue) -> CheckResult:
    return CheckResult(check=check, outcome=Outcome.OK, code=code, args=args)


def _bad(outcome: Outcome, check: str, code: str, **args: ArgValue) -> CheckResult:
    """A failure or warning; its fix is the message `<code>.fix`."""
    return CheckResult(check=check, outcome=outcome, code=code, args=args, fix=f"{code}.fix")


def _fail(check: str, code: str, **args: ArgValue) -> CheckResult:
    return _bad(Outcome.FAIL, check, code, **args)


def _warn(check: str, code: str, **args: ArgValue) -> CheckResult:
    return _bad(Outcome.WARN, check, code, **args)


def _skip(check: str, because: str) -> CheckResult:
    return CheckResult(check=check, outcome=Outcome.SKIP, code="doctor.skipped",
                       args={"because": because})


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- configuration and files ---------------------------------------------------------------------


def check_config(
    path: Path, env: Mapping[str, str] | None = None
) -> tuple[CheckResult, StationConfig | None]:
    """The configuration loads (every problem at once) and the station id is usable."""
    if not path.exists():
        return _fail("config", "doctor.config.missing", path=str(path)), None
    try:
        cfg = load_station_config(path, env)
    except ConfigError as exc:
        return _fail("config", "doctor.config.invalid", path=str(path), error=str(exc)), None
    except OSError as exc:
        return _fail("config", "doctor.config.unreadable", path=str(path),
                     error=exc.strerror or str(exc)), None
    try:
        check_station_id(cfg.station.id)
    except IdError as exc:
        # The file format allows '-', but case numbers use it as their separator.
        return _fail("config", "doctor.config.bad_id", path=str(path), error=str(exc)), None
    return _ok("config", "doctor.config.ok", path=str(path), station=cfg.station.id), cfg


def check_keys(cfg: StationConfig) -> CheckResult:
    """The key directory is private (0700), each private key file is 0600, and they load."""
    directory, ident = cfg.keys.dir, cfg.station.id
    if not directory.is_dir():
        return _fail("keys", "doctor.keys.missing_dir", dir=str(directory), id=ident)
    if _mode(directory) & 0o077:
        return _fail("keys", "doctor.keys.dir_mode", dir=str(directory),
                     mode=f"{_mode(directory):04o}")
    for name in (SIGNING_KEY, ENCRYPTION_KEY):
        path = directory / name
        if not path.is_file():
            return _fail("keys", "doctor.keys.missing_file", path=str(path), dir=str(directory),
                         id=ident)
        if _mode(path) & 0o077:
            return _fail("keys", "doctor.keys.file_mode", path=str(path),
                         mode=f"{_mode(path):04o}")
    try:
        load_identity(directory, ident)
    except KeyFileError as exc:
        return _fail("keys", "doctor.keys.unusable", dir=str(directory), error=str(exc))
    return _ok("keys", "doctor.keys.ok", dir=str(directory),
               enrollment=str(enrollment_path(directory, ident)))


def check_hub_enrollment(cfg: StationConfig) -> CheckResult:
    """The county hub's enrollment file is present, valid, and really a hub's."""
    path = cfg.keys.hub_enrollment
    if not path.is_file():
        return _fail("hub_enrollment", "doctor.hub.missing", path=str(path))
    try:
        enrollment = load_enrollment(path)
    except KeyFileError as exc:
        return _fail("hub_enrollment", "doctor.hub.invalid", path=str(path), error=str(exc))
    if enrollment.role != "hub":
        return _fail("hub_enrollment", "doctor.hub.not_hub", path=str(path),
                     role=enrollment.role, id=enrollment.id)
    return _ok("hub_enrollment", "doctor.hub.ok", path=str(path), hub=enrollment.id)


def check_state_dir(cfg: StationConfig) -> CheckResult:
    """The state directory exists and this account can create files in it."""
    directory = cfg.station.state_dir
    if not directory.exists():
        return _warn("state_dir", "doctor.state.missing", dir=str(directory))
    if not directory.is_dir():
        return _fail("state_dir", "doctor.state.not_dir", dir=str(directory))
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-"):
            pass
    except OSError as exc:
        return _fail("state_dir", "doctor.state.not_writable", dir=str(directory),
                     error=exc.strerror or str(exc))
    return _ok("state_dir", "doctor.state.ok", dir=str(directory))


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(cfg: StationConfig) -> CheckResult:
    """Free space where the store lives, against [store] disk_floor_mb (warn below twice it)."""
    where = _existing_ancestor(cfg.station.state_dir)
    free_mb = shutil.disk_usage(where).free // MB
    floor_mb = cfg.store.disk_floor_mb
    args: dict[str, ArgValue] = {"dir": str(where), "free_mb": free_mb, "floor_mb": floor_mb}
    if free_mb < floor_mb:
        return _fail("disk", "doctor.disk.below_floor", **args)
    if free_mb < 2 * floor_mb:
        return _warn("disk", "doctor.disk.low", **args)
    return _ok("disk", "doctor.disk.ok", **args)


def check_clock(
    cfg: StationConfig, *, now: datetime, store_last_ms: int | None, hub_offset_ms: int | None
) -> CheckResult:
    """See the module docstring for what this can and cannot know."""
    if now < EARLIEST_SANE:
        return _fail("clock", "doctor.clock.before_release", now=_utc(now),
                     earliest=_utc(EARLIEST_SANE))
    ahead_ms = cfg.store.clock_max_ahead_seconds * 1000
    now_ms = int(now.timestamp() * 1000)
    if store_last_ms is not None and store_last_ms > now_ms + ahead_ms:
        seen = datetime.fromtimestamp(store_last_ms / 1000, UTC)
        return _fail("clock", "doctor.clock.behind_store", now=_utc(now), seen=_utc(seen))
    if hub_offset_ms is not None and abs(hub_offset_ms) > ahead_ms:
        return _warn("clock", "doctor.clock.hub_offset", now=_utc(now),
                     offset_s=round(hub_offset_ms / 1000, 1))
    code = "doctor.clock.ok_hub" if hub_offset_ms is not None else "doctor.clock.ok"
    return _ok("clock", code, now=_utc(now),
               offset_s=round((hub_offset_ms or 0) / 1000, 1))


# -- devices -------------------------------------------------------------------------------------


def check_device_node(device: str, path: Path) -> CheckResult:
    """An enabled serial or video device: its node exists, is a character device, is usable."""
    check = f"device:{device}"
    if not path.exists():
        return _fail(check, "doctor.device.missing", device=device, path=str(path))
    if not stat.S_ISCHR(path.stat().st_mode):
        return _fail(check, "doctor.device.not_char", device=device, path=str(path))
    if not os.access(path, os.R_OK | os.W_OK):
        return _fail(check, "doctor.device.no_access", device=device, path=str(path))
    return _ok(check, "doctor.device.ok", device=device, path=str(path))


async def check_device_tcp(device: str, host: str, port: int, *, wait_s: float) -> CheckResult:
    """A network printer answers on its raw port."""
    check = f"device:{device}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
    except (OSError, TimeoutError) as exc:
        return _fail(check, "doctor.device.tcp_failed", device=device, host=host, port=port,
                     error=_os_error_text(exc))
    await _close(writer)
    return _ok(check, "doctor.device.tcp_ok", device=device, host=host, port=port)


async def check_devices(cfg: StationConfig, *, wait_s: float) -> list[CheckResult]:
    d = cfg.devices
    results: list[CheckResult] = []
    if d.idcard.enabled:
        results.append(check_device_node("idcard", d.idcard.port))
    if d.printer.enabled:
        if d.printer.connection == "tcp":
            results.append(await check_device_tcp(
                "printer", d.printer.host, d.printer.tcp_port, wait_s=wait_s))
        else:
            results.append(check_device_node("printer", d.printer.port))
    if d.camera.enabled:
        if d.camera.source == "v4l2":
            results.append(check_device_node("camera", d.camera.device))
        else:
            results.append(CheckResult(check="device:camera", outcome=Outcome.INFO,
                                       code="doctor.device.http_camera",
                                       args={"url": d.camera.url}))
    if not results:
        results.append(CheckResult(check="devices", outcome=Outcome.INFO,
                                   code="doctor.device.none"))
    return results


# -- certificates --------------------------------------------------------------------------------


def _load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _validity(
    check: str, what: str, path: Path, cert: x509.Certificate, now: datetime
) -> CheckResult | None:
    """A failure/warning about the certificate's validity period, or None when it is fine."""
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < before:
        return _fail(check, "doctor.cert.not_yet_valid", what=what, path=str(path),
                     not_before=_utc(before), now=_utc(now))
    if now > after:
        return _fail(check, f"doctor.cert.expired_{what}", what=what, path=str(path),
                     not_after=_utc(after))
    days = (after - now).days
    if days < WARN_DAYS:
        return _warn(check, f"doctor.cert.expires_soon_{what}", what=what, path=str(path),
                     not_after=_utc(after), days=days)
    return None


def check_ca_file(path: Path | None, *, now: datetime) -> CheckResult:
    """The county CA file: PEM certificates, each within its validity (warn under 30 days)."""
    if path is None or not path.is_file():
        return _fail("ca_cert", "doctor.cert.missing_ca", path=str(path))
    try:
        certs = _load_certs(path)
    except ValueError as exc:
        return _fail("ca_cert", "doctor.cert.unreadable", what="ca", path=str(path),
                     error=str(exc))
    for cert in sorted(certs, key=lambda c: c.not_valid_after_utc):
        problem = _validity("ca_cert", "ca", path, cert, now)
        if problem is not None:
            return problem
    last = min(c.not_valid_after_utc for c in certs)
    return _ok("ca_cert", "doctor.cert.ok", what="ca", path=str(path), not_after=_utc(last),
               days=(last - now).days)


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _signed_by_any(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    for ca in cas:
        with contextlib.suppress(ValueError, TypeError, InvalidSignature):
            cert.verify_directly_issued_by(ca)
            return True
    return False


def check_client_cert(cfg: StationConfig, *, now: datetime) -> CheckResult:
    """This station's TLS certificate: valid now, CN = station id, signed by the county CA."""
    path, ident = cfg.mqtt.cert_file, cfg.station.id
    if path is None or not path.is_file():
        return _fail("client_cert", "doctor.cert.missing_client", path=str(path), id=ident)
    try:
        cert = _load_certs(path)[0]
    except ValueError as exc:
        return _fail("client_cert", "doctor.cert.unreadable", what="client", path=str(path),
                     error=str(exc))
    problem = _validity("client_cert", "client", path, cert, now)
    if problem is not None:
        return problem
    cn = _common_name(cert)
    if cn != ident:
        # The broker takes the CN as the MQTT user name; its ACL lets a station use only
        # cl/<user>/..., so a mismatch means every publish is silently dropped.
        return _fail("client_cert", "doctor.cert.wrong_cn", path=str(path), cn=cn, id=ident)
    ca_path = cfg.mqtt.ca_file
    if ca_path is not None and ca_path.is_file():
        with contextlib.suppress(ValueError):
            if not _signed_by_any(cert, _load_certs(ca_path)):
                return _fail("client_cert", "doctor.cert.other_ca", path=str(path),
                             ca=str(ca_path))
    after = cert.not_valid_after_utc
    return _ok("client_cert", "doctor.cert.ok", what="client", path=str(path),
               not_after=_utc(after), days=(after - now).days)


def check_client_key(cfg: StationConfig) -> CheckResult:
    """The TLS private key: private to its owner, and the key of the client certificate."""
    path = cfg.mqtt.key_file
    if path is None or not path.is_file():
        return _fail("client_key", "doctor.tlskey.missing", path=str(path))
    mode = _mode(path)
    if mode & 0o077:
        return _fail("client_key", "doctor.tlskey.mode", path=str(path), mode=f"{mode:04o}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        return _fail("client_key", "doctor.tlskey.unreadable", path=str(path), error=str(exc))
    cert_path = cfg.mqtt.cert_file
    if cert_path is not None and cert_path.is_file():
        with contextlib.suppress(ValueError):
            cert = _load_certs(cert_path)[0]
            spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
                return _fail("client_key", "doctor.tlskey.mismatch", path=str(path),
                             cert=str(cert_path))
    return _ok("client_key", "doctor.tlskey.ok", path=str(path))


# -- the broker ----------------------------------------------------------------------------------


def _os_error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


async def check_dns(host: str, port: int, *, wait_s: float) -> CheckResult:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), wait_s)
    except (OSError, TimeoutError) as exc:
        return _fail("dns", "doctor.dns.failed", host=host, error=_os_error_text(exc))
    addresses = sorted({str(info[4][0]) for info in infos})
    return _ok("dns", "doctor.dns.ok", host=host, addresses=", ".join(addresses))


async def check_tcp(host: str, port: int, *, wait_s: float) -> CheckResult:
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
    except ConnectionRefusedError:
        return _fail("tcp", "doctor.tcp.refused", host=host, port=port)
    except TimeoutError:
        return _fail("tcp", "doctor.tcp.timeout", host=host, port=port, seconds=wait_s)
    except OSError as exc:
        return _fail("tcp", "doctor.tcp.failed", host=host, port=port, error=_os_error_text(exc))
    await _close(writer)
    return _ok("tcp", "doctor.tcp.ok", host=host, port=port,
               ms=round((time.monotonic() - started) * 1000))


def tls_context(cfg: StationConfig) -> ssl.SSLContext:
    """The context the daemon's link uses: verify the broker by the county CA, present our
    certificate. Raises ssl.SSLError / OSError when the files do not load."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.mqtt.ca_file))
    ctx.load_cert_chain(str(cfg.mqtt.cert_file), str(cfg.mqtt.key_file))
    return ctx


# OpenSSL verify codes worth their own advice (X509_V_ERR_*).
_CLOCK_CODES = {9: "not yet valid", 10: "expired"}
_CA_CODES = {2, 19, 20, 21}  # unable to get issuer / self-signed in chain / unknown issuer
_HOST_CODES = {62, 64}  # host name mismatch, IP address mismatch


async def check_tls(
    cfg: StationConfig, *, wait_s: float, now: datetime
) -> tuple[CheckResult, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
    """TLS handshake with the configured CA and client certificate; returns the open stream
    for the MQTT test (the caller closes it)."""
    host, port = cfg.mqtt.host, cfg.mqtt.port
    try:
        ctx = tls_context(cfg)
    except (ssl.SSLError, OSError) as exc:
        return _fail("tls", "doctor.tls.files", error=_os_error_text(exc)), None
    try:
        stream = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host,
                                    ssl_handshake_timeout=wait_s), wait_s + 1)
    except ssl.SSLCertVerificationError as exc:
        args: dict[str, ArgValue] = {"host": host, "error": exc.verify_message or str(exc)}
        if exc.verify_code in _CLOCK_CODES:
            return _fail("tls", "doctor.tls.server_time", now=_utc(now), **args), None
        if exc.verify_code in _HOST_CODES:
            return _fail("tls", "doctor.tls.hostname", **args), None
        if exc.verify_code in _CA_CODES:
            return _fail("tls", "doctor.tls.wrong_ca", ca=str(cfg.mqtt.ca_file), **args), None
        return _fail("tls", "doctor.tls.verify", **args), None
    except ssl.SSLError as exc:
        return _fail("tls", "doctor.tls.refused", host=host, error=exc.reason or str(exc)), None
    except TimeoutError:
        return _fail("tls", "doctor.tls.timeout", host=host, seconds=wait_s), None
    except OSError as exc:
        return _fail("tls", "doctor.tls.failed", host=host, error=_os_error_text(exc)), None
    # From what asyncio kept at the end of the handshake: under TLS 1.3 a broker that refuses
    # our certificate may already have closed the connection, and the SSL object with it.
    peercert = stream[1].get_extra_info("peercert") or {}
    cipher = stream[1].get_extra_info("cipher")
    version = str(cipher[1]) if isinstance(cipher, tuple) and len(cipher) > 1 else "?"
    not_after_text = peercert.get("notAfter") if isinstance(peercert, dict) else None
    if not isinstance(not_after_text, str):
        return _ok("tls", "doctor.tls.ok", host=host, version=version, not_after="?"), stream
    after = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after_text), UTC)
    if (after - now).days < WARN_DAYS:
        return _warn("tls", "doctor.tls.server_expires_soon", host=host,
                     not_after=_utc(after), days=(after - now).days), stream
    return _ok("tls", "doctor.tls.ok", host=host, version=version, not_after=_utc(after)), stream


# MQTT 5 CONNACK reason codes a station may meet (MQTT 5.0, 3.2.2.2).
CONNACK_REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
    0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded",
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt5_connect(client_id: str, *, keepalive: int, session_expiry: int) -> bytes:
    """A CONNECT that resumes the station's session as it is: Clean Start off and the
    configured session expiry, so neither the session nor the county's queued messages for
    the station are thrown away (unacknowledged messages are sent again to the daemon)."""
    ident = client_id.encode("utf-8")
    properties = b"\x11" + struct.pack(">I", session_expiry)  # Session Expiry Interval
    variable = (b"\x00\x04MQTT\x05" + b"\x00" + struct.pack(">H", keepalive)
                + _varint(len(properties)) + properties)
    payload = struct.pack(">H", len(ident)) + ident
    body = variable + payload
    return b"\x10" + _varint(len(body)) + body


async def _read_connack(reader: asyncio.StreamReader) -> int:
    """The CONNACK's reason code; ValueError if the first packet is not a CONNACK."""
    first = await reader.readexactly(1)
    if first[0] != 0x20:
        raise ValueError(f"expected CONNACK (0x20), got packet type 0x{first[0]:02x}")
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = await reader.readexactly(length)
    if len(body) < 2:
        raise ValueError("CONNACK too short")
    return body[1]


async def check_mqtt(
    cfg: StationConfig, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], *,
    wait_s: float,
) -> CheckResult:
    """Send CONNECT, expect CONNACK success, DISCONNECT. Under TLS 1.3 this is also where a
    broker's refusal of the client certificate shows (its alert comes after the handshake)."""
    reader, writer = stream
    m = cfg.mqtt
    try:
        writer.write(mqtt5_connect(cfg.station.id, keepalive=m.keepalive,
                                   session_expiry=m.session_expiry_seconds))
        await writer.drain()
        code = await asyncio.wait_for(_read_connack(reader), wait_s)
        if code == 0:
            writer.write(b"\xe0\x00")  # DISCONNECT, normal: the session stays as it was
            await writer.drain()
    except ssl.SSLError as exc:
        return _fail("mqtt", "doctor.mqtt.cert_refused", error=exc.reason or str(exc))
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
        return _fail("mqtt", "doctor.mqtt.closed", host=m.host)
    except TimeoutError:
        return _fail("mqtt", "doctor.mqtt.timeout", host=m.host, seconds=wait_s)
    except (OSError, ValueError) as exc:
        return _fail("mqtt", "doctor.mqtt.failed", error=_os_error_text(exc))
    if code != 0:
        return _fail("mqtt", "doctor.mqtt.refused", rc=f"0x{code:02x}",
                     reason=CONNACK_REASONS.get(code, "unknown"))
    return _ok("mqtt", "doctor.mqtt.ok", id=cfg.station.id)


async def check_broker(
    cfg: StationConfig, *, wait_s: float, now: datetime, daemon_running: bool
) -> list[CheckResult]:
    """DNS, TCP, TLS and MQTT, each skipped once an earlier step failed."""
    host, port = cfg.mqtt.host, cfg.mqtt.port
    dns = await check_dns(host, port, wait_s=wait_s)
    if dns.outcome is Outcome.FAIL:
        return [dns, _skip("tcp", "dns"), _skip("tls", "dns"), _skip("mqtt", "dns")]
    tcp = await check_tcp(host, port, wait_s=wait_s)
    if tcp.outcome is Outcome.FAIL:
        return [dns, tcp, _skip("tls", "tcp"), _skip("mqtt", "tcp")]
    results = [dns, tcp]
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        if cfg.mqtt.tls:
            tls, stream = await check_tls(cfg, wait_s=wait_s, now=now)
            results.append(tls)
            if stream is None:
                return [*results, _skip("mqtt", "tls")]
        else:
            results.append(_warn("tls", "doctor.tls.off", host=host))
        if daemon_running:
            # A second connection with the station's identity would take the session over and
            # cut the daemon off; the daemon's own link state is reported instead.
            results.append(CheckResult(check="mqtt", outcome=Outcome.INFO,
                                       code="doctor.mqtt.daemon_running"))
            return results
        if stream is None:
            stream = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
        results.append(await check_mqtt(cfg, stream, wait_s=wait_s))
    except (OSError, TimeoutError) as exc:
        results.append(_fail("mqtt", "doctor.mqtt.failed", error=_os_error_text(exc)))
    finally:
        if stream is not None:
            await _close(stream[1])
    return results


# -- the daemon ----------------------------------------------------------------------------------


def daemon_result(status: Mapping[str, Any] | None, problem: probe.DaemonUnavailable | None,
                  sock: Path) -> CheckResult:
    """What the running daemon says about its link (or that it is not running)."""
    if status is None:
        reason = problem.reason if problem is not None else "no_socket"
        if reason in ("no_socket", "refused"):
            return CheckResult(check="daemon", outcome=Outcome.INFO,
                               code="doctor.daemon.not_running", args={"socket": str(sock)})
        return _warn("daemon", "doctor.daemon.unreachable", socket=str(sock),
                     error=problem.detail if problem else "")
    link = status.get("link") if isinstance(status.get("link"), dict) else {}
    assert isinstance(link, dict)
    if link.get("up"):
        return _ok("daemon", "doctor.daemon.link_up", since=str(link.get("since") or "?"))
    return _warn("daemon", "doctor.daemon.link_down",
                 error=str(link.get("last_error") or "-"))


# -- all of it -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    results: tuple[CheckResult, ...]
    config: StationConfig | None = None  # None when it did not load

    @property
    def failed(self) -> bool:
        return any(r.outcome is Outcome.FAIL for r in self.results)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)


async def run_checks(
    config: Path, *, now: datetime | None = None, wait_s: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Every check in order; later ones are skipped when they need what an earlier one lacks."""
    now = now or datetime.now(UTC)
    first, cfg = check_config(config, env)
    if cfg is None:
        return Report(results=(first,), config=None)
    wait = float(wait_s if wait_s is not None else min(cfg.mqtt.connect_timeout_seconds, 30))
    results = [first, check_keys(cfg), check_hub_enrollment(cfg), check_state_dir(cfg),
               check_disk(cfg)]
    sock = probe.socket_path(cfg.station.state_dir)
    status: dict[str, Any] | None = None
    problem: probe.DaemonUnavailable | None = None
    try:
        status = await probe.fetch_status(sock, wait_s=min(wait, 10.0))
    except probe.DaemonUnavailable as exc:
        problem = exc
    store_last: int | None = None
    with contextlib.suppress(probe.StoreUnreadable):
        store_last = probe.read_clock(probe.store_db(cfg.station.state_dir))[0]
    offset = None
    if status is not None and isinstance(status.get("link"), dict):
        raw = status["link"].get("hub_offset_ms")
        offset = int(raw) if isinstance(raw, int | float) else None
    results.append(check_clock(cfg, now=now, store_last_ms=store_last, hub_offset_ms=offset))
    results += await check_devices(cfg, wait_s=wait)
    if cfg.mqtt.tls:
        results += [check_ca_file(cfg.mqtt.ca_file, now=now), check_client_cert(cfg, now=now),
                    check_client_key(cfg)]
    results.append(daemon_result(status, problem, sock))
    # A daemon that is there but slow or not ours to ask still holds the station's MQTT session:
    # logging in as the station would take it over. Only "no socket" / "refused" mean it is down.
    running = status is not None or (
        problem is not None and problem.reason not in ("no_socket", "refused"))
    results += await check_broker(cfg, wait_s=wait, now=now, daemon_running=running)
    return Report(results=tuple(results), config=cfg)
