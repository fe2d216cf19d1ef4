"""`cunlink doctor` against a healthy station and broken ones: a real county PKI, a real TLS
Mosquitto on a loopback port, a station set up by `cunlink init`, real key files, real device
nodes (pseudo-terminals), and a real Unix-socket server standing in for the daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from gateway import doctor, pki
from gateway.cli.main import app
from gateway.doctor import CheckResult, Outcome, run_checks
from gateway.keys import enrollment_path, init_keys
from gateway.testbed.broker import BrokerTls, MosquittoBroker, client_tls_context
from gateway.testbed.ports import free_port
from sync.events import EventType
from sync.store import EventDraft, Store, StoreLayout
from tests.conftest import CountyPki

STATION = "ST001"
runner = CliRunner()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cld-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def set_up_station(
    tmp: Path, pki_: CountyPki, *, host: str, port: int, state: Path, extra: tuple[str, ...] = ()
) -> Path:
    """What a technician does: keys at the county, `cunlink init` with the county's files."""
    pki_.issue(STATION)
    init_keys("hub", "HUB01", tmp / "hub-keys", force=False, now=dt.datetime.now(dt.UTC))
    cert = pki_.cert(STATION)
    config = tmp / "etc" / "station.toml"
    result = runner.invoke(app, [
        "init", "--config", str(config), "--station-id", STATION, "--broker-host", host,
        "--broker-port", str(port), "--state-dir", str(state),
        "--copy-ca", str(cert.ca), "--copy-cert", str(cert.cert), "--copy-key", str(cert.key),
        "--copy-hub-enrollment", str(enrollment_path(tmp / "hub-keys", "HUB01")), *extra,
    ], env={"LANG": "en_US.UTF-8"})
    assert result.exit_code == 0, result.output
    return config


def by_check(results: tuple[CheckResult, ...] | list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def outcomes(results: tuple[CheckResult, ...]) -> dict[str, str]:
    return {r.check: r.outcome.value for r in results}


async def doctor_of(config: Path, **kwargs: Any) -> dict[str, CheckResult]:
    report = await run_checks(config, wait_s=10, env={}, **kwargs)
    return by_check(report.results)


# -- a healthy station ---------------------------------------------------------------------------


def test_a_station_set_up_by_init_passes_every_check(
    tmp_path: Path, pki: CountyPki, broker: MosquittoBroker, short_dir: Path
) -> None:
    config = set_up_station(tmp_path, pki, host="127.0.0.1", port=broker.port,
                            state=short_dir / "state")
    result = runner.invoke(app, ["doctor", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    got = {c["check"]: c["outcome"] for c in report["checks"]}
    assert got == {
        "config": "ok", "keys": "ok", "hub_enrollment": "ok", "state_dir": "ok", "disk": "ok",
        "clock": "ok", "devices": "info", "ca_cert": "ok", "client_cert": "ok",
        "client_key": "ok", "daemon": "info", "dns": "ok", "tcp": "ok", "tls": "ok",
        "mqtt": "ok",
    }
    assert report["ok"] is True and report["counts"]["fail"] == 0
    assert all(c["fix"] is None for c in report["checks"])
    mqtt = next(c for c in report["checks"] if c["check"] == "mqtt")
    assert mqtt["code"] == "doctor.mqtt.ok"
    assert mqtt["message"] == "the broker accepted station ST001"
    # The human report, in both languages, one line per check and a summary.
    en = runner.invoke(app, ["doctor", "--config", str(config)], env={"LANG": "en_US.UTF-8"})
    assert en.exit_code == 0
    lines = en.stdout.splitlines()
    assert len(lines) == 16 and lines[-1] == "Everything checked is fine."
    assert "[  ok] broker TLS: 127.0.0.1: TLSv1.3, broker certificate verified" in en.stdout
    zh = runner.invoke(app, ["doctor", "--config", str(config)], env={"LANG": "zh_CN.UTF-8"})
    assert zh.exit_code == 0
    assert "[通过] 服务器 MQTT 登录：服务器接受了站点 ST001 的登录" in zh.stdout
    assert zh.stdout.splitlines()[-1] == "所有检查均通过。"


async def test_the_login_test_keeps_the_stations_session_and_its_queued_message(
    tmp_path: Path, pki: CountyPki, broker: MosquittoBroker, short_dir: Path
) -> None:
    """The doctor logs in as the station itself: the county's message waiting in the
    station's session must still reach the daemon afterwards."""
    config = set_up_station(tmp_path, pki, host="127.0.0.1", port=broker.port,
                            state=short_dir / "state")
    topic = f"cl/{STATION}/d"

    def station_client() -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        return aiomqtt.Client("127.0.0.1", broker.port, identifier=STATION,
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                              properties=props,
                              tls_context=client_tls_context(pki.cert(STATION)))

    async with station_client() as client:
        await client.subscribe(topic, qos=1)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="hub",
                              protocol=aiomqtt.ProtocolVersion.V5,
                              tls_context=client_tls_context(pki.hub)) as hub:
        await hub.publish(topic, b"approved", qos=1)
    results = await doctor_of(config)
    assert results["mqtt"].outcome is Outcome.OK
    async with station_client() as client:
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert message.payload == b"approved"


# -- broken stations -----------------------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path, pki: CountyPki, broker: MosquittoBroker, short_dir: Path) -> Path:
    return set_up_station(tmp_path, pki, host="127.0.0.1", port=broker.port,
                          state=short_dir / "state")


def test_open_key_permissions_fail_with_the_chmod_to_run(station: Path) -> None:
    keys = station.parent / "keys"
    (keys / "signing.key").chmod(0o644)
    (station.parent / "tls" / "station.key").chmod(0o640)
    result = runner.invoke(app, ["doctor", "--config", str(station)], env={"LANG": "en_US.UTF-8"})
    assert result.exit_code == 1
    out = result.stdout
    assert (f"[FAIL] keys: {keys / 'signing.key'} is readable by group or others (mode 0644)\n"
            f"       -> run `chmod 600 {keys / 'signing.key'}`") in out
    assert f"[FAIL] station TLS key: {station.parent / 'tls' / 'station.key'} is readable" in out
    assert "2 check(s) FAILED" in out.splitlines()[-1]

    (keys / "signing.key").chmod(0o600)
    keys.chmod(0o755)
    results = asyncio.run(doctor_of(station))
    assert results["keys"].code == "doctor.keys.dir_mode"
    assert results["keys"].args["mode"] == "0755"


def test_a_missing_certificate_fails_and_the_tls_test_says_why(station: Path) -> None:
    (station.parent / "tls" / "station.pem").unlink()
    results = asyncio.run(doctor_of(station))
    assert results["client_cert"].code == "doctor.cert.missing_client"
    assert results["client_cert"].outcome is Outcome.FAIL
    assert results["tls"].code == "doctor.tls.files"
    assert results["mqtt"].outcome is Outcome.SKIP
    assert results["tcp"].outcome is Outcome.OK  # the broker is there; our side is not


def _craft_cert(pki_dir: Path, key_path: Path, out: Path, *, cn: str, not_before: dt.datetime,
                not_after: dt.datetime) -> None:
    """A client certificate signed by the county CA with any validity (pki.py cannot make
    one in the past, on purpose)."""
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (pki_dir / "private" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_an_expired_certificate_fails_and_the_broker_refuses_it(
    station: Path, pki: CountyPki
) -> None:
    now = dt.datetime.now(dt.UTC)
    tls = station.parent / "tls"
    _craft_cert(pki.dir, tls / "station.key", tls / "station.pem", cn=STATION,
                not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=3))
    results = asyncio.run(doctor_of(station))
    assert results["client_cert"].code == "doctor.cert.expired_client"
    assert results["client_cert"].fix == "doctor.cert.expired_client.fix"
    assert results["client_key"].outcome is Outcome.OK  # still the certificate's key
    assert results["tls"].outcome is Outcome.OK  # the broker's own certificate is fine ...
    # ... but the broker refuses ours (TLS 1.3: its alert arrives after the handshake).
    assert results["mqtt"].code in ("doctor.mqtt.cert_refused", "doctor.mqtt.closed")
    assert results["mqtt"].outcome is Outcome.FAIL


def test_a_certificate_near_its_end_warns_and_one_for_another_station_fails(
    station: Path, pki: CountyPki
) -> None:
    now = dt.datetime.now(dt.UTC)
    tls = station.parent / "tls"
    _craft_cert(pki.dir, tls / "station.key", tls / "station.pem", cn=STATION,
                not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=12))
    results = asyncio.run(doctor_of(station))
    assert results["client_cert"].outcome is Outcome.WARN
    assert results["client_cert"].code == "doctor.cert.expires_soon_client"
    assert results["client_cert"].args["days"] in (11, 12)
    assert results["mqtt"].outcome is Outcome.OK  # still valid: the link works
    result = runner.invoke(app, ["doctor", "--config", str(station)], env={"LANG": "en_US.UTF-8"})
    assert result.exit_code == 0  # a warning is not a failure
    assert "No failures; 1 warning(s) to look at." in result.stdout

    _craft_cert(pki.dir, tls / "station.key", tls / "station.pem", cn="ST002",
                not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=300))
    results = asyncio.run(doctor_of(station))
    assert results["client_cert"].code == "doctor.cert.wrong_cn"
    assert results["client_cert"].args == {
        "path": str(tls / "station.pem"), "cn": "ST002", "id": STATION}


def test_a_certificate_from_another_county_is_refused(station: Path, tmp_path: Path) -> None:
    other = pki.init_pki(tmp_path / "other-county", county="other")
    mine = pki.issue_client(tmp_path / "other-county", STATION)
    tls = station.parent / "tls"
    shutil.copy(mine.cert, tls / "station.pem")
    shutil.copy(mine.key, tls / "station.key")
    results = asyncio.run(doctor_of(station))
    assert results["client_cert"].code == "doctor.cert.other_ca"
    assert results["tls"].outcome is Outcome.OK  # we still trust the right broker
    assert results["mqtt"].outcome is Outcome.FAIL
    # And the other way round: the wrong CA file makes the broker untrusted.
    shutil.copy(other.ca_cert, tls / "ca.pem")
    results = asyncio.run(doctor_of(station))
    assert results["tls"].code == "doctor.tls.wrong_ca"
    # OpenSSL's own words ("self-signed certificate in certificate chain": the broker sends
    # its CA along) are kept for the technician.
    assert "certificate" in str(results["tls"].args["error"])
    assert results["mqtt"].outcome is Outcome.SKIP


def state_dir_of(config: Path, *, create: bool = False) -> Path:
    state = Path(config.read_text().split('state_dir = "')[1].split('"')[0])
    if create:
        state.mkdir(parents=True, exist_ok=True)
    return state


def _rewrite(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new), encoding="utf-8")


def test_nothing_listening_fails_at_tcp_and_skips_the_rest(
    station: Path, broker: MosquittoBroker
) -> None:
    _rewrite(station, f"port = {broker.port}", f"port = {free_port()}")
    result = runner.invoke(app, ["doctor", "--config", str(station)], env={"LANG": "en_US.UTF-8"})
    assert result.exit_code == 1
    assert "refused the connection" in result.stdout
    assert "[skip] broker TLS: not checked: needs broker TCP first" in result.stdout
    assert "[skip] broker MQTT login: not checked: needs broker TCP first" in result.stdout


def test_a_broker_certificate_for_another_name_fails_the_hostname_check(
    station: Path, pki: CountyPki, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A broker whose certificate names only another host (the county moved the broker, or
    [mqtt] host has a typo that still resolves)."""
    ca_cert = x509.load_pem_x509_certificate((pki.dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "private" / "ca.key").read_bytes(),
                                                None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("broker.elsewhere.example")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "elsewhere.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "elsewhere.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "elsewhere.key").chmod(0o600)
    tls = BrokerTls(ca_file=pki.dir / "ca.crt", cert_file=tmp_path / "elsewhere.crt",
                    key_file=tmp_path / "elsewhere.key", crl_file=None, hub_ids=("hub",))
    with MosquittoBroker(tmp_path / "elsewhere", tls=tls) as other:
        _rewrite(station, f"port = {broker.port}", f"port = {other.port}")
        results = asyncio.run(doctor_of(station))
    assert results["tcp"].outcome is Outcome.OK
    assert results["tls"].code == "doctor.tls.hostname", results["tls"].args
    assert results["tls"].fix == "doctor.tls.hostname.fix"
    assert results["mqtt"].outcome is Outcome.SKIP


def test_missing_hub_enrollment_and_a_station_file_in_its_place(
    station: Path, tmp_path: Path
) -> None:
    hub_file = station.parent / "hub.enrollment.json"
    hub_file.unlink()
    results = asyncio.run(doctor_of(station))
    assert results["hub_enrollment"].code == "doctor.hub.missing"
    shutil.copy(enrollment_path(station.parent / "keys", STATION), hub_file)
    results = asyncio.run(doctor_of(station))
    assert results["hub_enrollment"].code == "doctor.hub.not_hub"


def test_a_broken_configuration_stops_at_the_first_line(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text('[station]\nid = "ST-1"\n[mqtt]\nhost = "x"\ntls = false\n')
    report = asyncio.run(run_checks(config, env={}))
    assert [(r.check, r.code) for r in report.results] == [("config", "doctor.config.invalid")]
    assert '"ST-1"' in str(report.results[0].args["error"])
    config.write_text('[station]\nid = "ST1"\n[mqtt]\nhost = "x"\nkeepalive = "abc"\n')
    result = runner.invoke(app, ["doctor", "--config", str(config), "--json"])
    assert result.exit_code == 1
    check = json.loads(result.stdout)["checks"][0]
    assert check["code"] == "doctor.config.invalid" and "keepalive" in check["message"]
    assert check["fix"] == f"correct the keys named above, then `cunlink config check {config}`"
    missing = runner.invoke(app, ["doctor", "--config", str(tmp_path / "none.toml")],
                            env={"LANG": "zh_CN.UTF-8"})
    assert missing.exit_code == 1
    assert f"[失败] 配置：{tmp_path / 'none.toml'} 不存在" in missing.stdout


# -- devices, clock, the running daemon ----------------------------------------------------------


async def test_devices_present_and_absent(station: Path) -> None:
    master, slave = os.openpty()
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        _rewrite(station, '[devices.idcard]\nenabled = false\nport = "/dev/cunlink-idcard"',
                 f'[devices.idcard]\nenabled = true\nport = "{os.ttyname(slave)}"')
        _rewrite(station, '[devices.camera]\nenabled = false', '[devices.camera]\nenabled = true')
        _rewrite(station, '[devices.printer]\nenabled = false',
                 f'[devices.printer]\nenabled = true\nconnection = "tcp"\n'
                 f'host = "127.0.0.1"\ntcp_port = {port}')
        results = await doctor_of(station)
    finally:
        listener.close()
        await listener.wait_closed()
        os.close(master)
        os.close(slave)
    assert results["device:idcard"].outcome is Outcome.OK
    assert results["device:printer"].code == "doctor.device.tcp_ok"
    assert results["device:camera"].code == "doctor.device.missing"
    assert results["device:camera"].args["path"] == "/dev/cunlink-camera"
    assert "devices" not in results


def test_clock_rules() -> None:
    from gateway.config import MqttSettings, StationConfig, StationSettings

    cfg = StationConfig(station=StationSettings(id="ST001"),
                        mqtt=MqttSettings(host="h", tls=False))
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    now_ms = int(now.timestamp() * 1000)
    ok = doctor.check_clock(cfg, now=now, store_last_ms=now_ms - 5000, hub_offset_ms=None)
    assert ok.outcome is Outcome.OK
    booted_in_1970 = doctor.check_clock(cfg, now=dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC),
                                        store_last_ms=None, hub_offset_ms=None)
    assert booted_in_1970.code == "doctor.clock.before_release"
    went_back = doctor.check_clock(cfg, now=now, store_last_ms=now_ms + 301_000,
                                   hub_offset_ms=None)
    assert went_back.code == "doctor.clock.behind_store"
    within = doctor.check_clock(cfg, now=now, store_last_ms=now_ms + 299_000, hub_offset_ms=None)
    assert within.outcome is Outcome.OK
    skewed = doctor.check_clock(cfg, now=now, store_last_ms=None, hub_offset_ms=-400_000)
    assert skewed.outcome is Outcome.WARN and skewed.args["offset_s"] == -400.0


async def test_a_clock_behind_the_stores_timestamps_fails(station: Path) -> None:
    """The store remembers the latest time it handed out; a box whose clock went back (no RTC
    battery, no network yet) is caught by comparing with it."""
    layout = StoreLayout.station(state_dir_of(station))
    async with await Store.open(layout.db, blob_dir=layout.blobs) as store:
        await store.append_local(STATION, [EventDraft(
            case="ST001-20261122-0001", type=EventType.NOTE_ADDED, body={"text": "x"})])
    back = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    results = await doctor_of(station, now=back)
    assert results["clock"].code == "doctor.clock.behind_store"


async def _status_server(sock: Path, snapshot: dict[str, Any]) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.json_response(snapshot)

    application = web.Application()
    application.router.add_get("/api/v1/status", handle)
    runner_ = web.AppRunner(application)
    await runner_.setup()
    await web.UnixSite(runner_, str(sock)).start()
    return runner_


async def test_while_the_daemon_runs_its_link_is_reported_and_no_login_is_tried(
    station: Path,
) -> None:
    state = state_dir_of(station, create=True)
    link = {"up": True, "since": "2026-11-22T08:00:00Z", "hub_offset_ms": -1200,
            "last_error": ""}
    server = await _status_server(state / "cunlink.sock", {"station": STATION, "link": link})
    try:
        results = await doctor_of(station)
        assert results["daemon"].code == "doctor.daemon.link_up"
        assert results["mqtt"].code == "doctor.mqtt.daemon_running"
        assert results["mqtt"].outcome is Outcome.INFO
        assert results["tls"].outcome is Outcome.OK  # a TLS probe does not disturb the daemon
        assert results["clock"].code == "doctor.clock.ok_hub"
        assert results["clock"].args["offset_s"] == -1.2
        link.update(up=False, last_error="connection refused")
        results = await doctor_of(station)
        assert results["daemon"].outcome is Outcome.WARN
        assert results["daemon"].args == {"error": "connection refused"}
    finally:
        await server.cleanup()


async def test_plain_mqtt_on_a_test_bench(
    tmp_path: Path, plain_broker: MosquittoBroker
) -> None:
    config = bench_config(tmp_path, plain_broker.port)
    results = await doctor_of(config)
    assert results["tls"].code == "doctor.tls.off" and results["tls"].outcome is Outcome.WARN
    assert results["mqtt"].outcome is Outcome.OK
    assert "ca_cert" not in results
    assert results["state_dir"].code == "doctor.state.missing"


def bench_config(tmp_path: Path, port: int) -> Path:
    now = dt.datetime.now(dt.UTC)
    init_keys("station", STATION, tmp_path / "keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp_path / "hub-keys", force=False, now=now)
    config = tmp_path / "station.toml"
    config.write_text(f"""
[station]
id = "{STATION}"
state_dir = "{tmp_path / 'state'}"
[keys]
dir = "{tmp_path / 'keys'}"
hub_enrollment = "{enrollment_path(tmp_path / 'hub-keys', 'HUB01')}"
[mqtt]
host = "127.0.0.1"
port = {port}
tls = false
""", encoding="utf-8")
    return config


def test_connack_packet_layout() -> None:
    packet = doctor.mqtt5_connect("ST001", keepalive=60, session_expiry=604800)
    # type CONNECT, remaining length, "MQTT" v5, flags 0 (no Clean Start), keepalive 60,
    # properties: Session Expiry Interval 604800, then the client id.
    assert packet == (b"\x10\x17\x00\x04MQTT\x05\x00\x00\x3c\x05\x11\x00\x09\x3a\x80"
                      b"\x00\x05ST001")
    assert doctor._varint(321) == b"\xc1\x02"

