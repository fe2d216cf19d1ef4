"""The Mosquitto harness: config from the shipped template, restarts, crashes, limits."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.pki import ClientCert
from gateway.testbed.broker import BrokerError, BrokerTls, MosquittoBroker, client_tls_context
from gateway.testbed.ports import free_port
from tests.conftest import STATION_A, STATION_B, CountyPki


def client(
    broker: MosquittoBroker, cert: ClientCert | None = None, *, client_id: str | None = None,
    persistent: bool = False,
) -> aiomqtt.Client:
    props = None
    if persistent:  # MQTT 5: without a session expiry the session ends with the connection
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
    return aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent, properties=props, timeout=5,
        tls_context=client_tls_context(cert) if cert else None,
    )


async def first_message(c: aiomqtt.Client, within: float) -> aiomqtt.Message | None:
    try:
        async with asyncio.timeout(within):
            return await anext(aiter(c.messages))
    except TimeoutError:
        return None


async def queue_for_offline_station(broker: MosquittoBroker, pki: CountyPki) -> None:
    """Station B subscribes with a persistent session and leaves; the hub sends it one message."""
    async with client(broker, pki.station_b, client_id=STATION_B, persistent=True) as b:
        await b.subscribe(f"cl/{STATION_B}/d", qos=1)
    async with client(broker, pki.hub) as hub:
        await hub.publish(f"cl/{STATION_B}/d", b"queued", qos=1)


async def station_b_receives(broker: MosquittoBroker, pki: CountyPki) -> bytes | None:
    async with client(broker, pki.station_b, client_id=STATION_B, persistent=True) as b:
        msg = await first_message(b, 1)
    return None if msg is None else bytes(msg.payload)


def wait_for_file_change(path: Path, mtime_ns: int, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not path.exists() or path.stat().st_mtime_ns == mtime_ns:
        assert time.monotonic() < deadline, f"{path} was not written within {within} s"
        time.sleep(0.05)


async def test_plain_broker_carries_messages(plain_broker: MosquittoBroker) -> None:
    async with client(plain_broker) as sub, client(plain_broker) as pub:
        await sub.subscribe("t/x", qos=1)
        await pub.publish("t/x", b"hello", qos=1)
        msg = await first_message(sub, 5)
    assert msg is not None and msg.payload == b"hello"


def test_config_comes_from_the_template_with_only_local_paths(
    pki: CountyPki, tmp_path: Path
) -> None:
    b = MosquittoBroker(tmp_path / "b", tls=BrokerTls.from_pki(pki.dir), max_packet_size=4096)
    conf = b.render_config()
    for production_path in ("/etc/", "/var/", "/run/"):
        assert production_path not in conf
    lines = set(conf.splitlines())
    assert f"listener {b.port} 127.0.0.1" in lines
    assert {"require_certificate true", "use_identity_as_username true",
            "allow_anonymous false", "max_packet_size 4096", "autosave_interval 60"} <= lines
    assert f"user {pwd.getpwuid(os.geteuid()).pw_name}" in lines
    assert f"user {pki.hub_id}" in (tmp_path / "b" / "acl").read_text()


async def test_clean_restart_keeps_a_queued_downlink(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    await queue_for_offline_station(broker, pki)
    port = broker.port
    await broker.arestart()
    assert broker.port == port
    assert await station_b_receives(broker, pki) == b"queued"


async def test_crash_keeps_only_what_was_saved(broker: MosquittoBroker, pki: CountyPki) -> None:
    await queue_for_offline_station(broker, pki)
    broker.kill()  # before any autosave: the queued message is gone
    await broker.astart()
    assert await station_b_receives(broker, pki) is None

    await queue_for_offline_station(broker, pki)
    db = broker.data_dir / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    broker.save()
    await asyncio.to_thread(wait_for_file_change, db, before)
    broker.kill()
    await broker.astart()
    assert await station_b_receives(broker, pki) == b"queued"


async def test_reload_lets_a_newly_issued_hub_worker_in(
    broker: MosquittoBroker, pki: CountyPki
) -> None:
    worker2 = pki.issue("hub-2", role="hub")
    broker.reload()
    await asyncio.sleep(0.3)  # SIGHUP is handled by the broker's main loop
    async with client(broker, worker2) as hub2, client(broker, pki.station_a) as station:
        await hub2.subscribe("$share/cunlink-hub/cl/+/u", qos=1)
        await station.publish(f"cl/{STATION_A}/u", b"x", qos=1)
        msg = await first_message(hub2, 5)
    assert msg is not None and str(msg.topic) == f"cl/{STATION_A}/u"


async def test_oversized_packet_disconnects_the_client(tmp_path: Path) -> None:
    async with MosquittoBroker(tmp_path / "b", max_packet_size=2048) as small:
        async with client(small) as sub:
            await sub.subscribe("t/#", qos=1)
            with pytest.raises(aiomqtt.MqttError):
                async with client(small) as pub:
                    # aiomqtt notices only when the PUBACK wait times out
                    await pub.publish("t/big", b"x" * 8192, qos=1, timeout=1)
            assert await first_message(sub, 0.5) is None
        assert "disconnected due to oversize packet" in small.log_text()


def test_a_bad_config_fails_with_the_brokers_own_words(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b", extra_config=["no_such_option 1"])
    with pytest.raises(BrokerError, match="no_such_option"):
        broker.start()
    assert not broker.running


def test_stop_ends_the_process_and_start_reuses_the_port(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "b") as broker:
        pid, port = broker.pid, broker.port
        assert pid is not None
        broker.restart(hard=True)
        assert broker.port == port and broker.pid != pid
    assert not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_free_port_is_loopback_only() -> None:
    assert 0 < free_port() < 65536
    with pytest.raises(ValueError, match="loopback"):
        free_port("0.0.0.0")
