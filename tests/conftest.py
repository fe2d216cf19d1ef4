"""Shared fixtures: a county PKI and real Mosquitto brokers on free loopback ports.

`pki`: a fresh county CA with the hub (`HUB_ID`) and two stations (`STATION_A`, `STATION_B`).
`broker`: Mosquitto from the shipped config template (TLS, client certificates, the ACL),
  persistence in the test's temp dir; stopped (killed if need be) when the test ends.
`plain_broker`: the same template without TLS and ACL, for tests that only need MQTT.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import pki as pki_mod
from gateway.testbed.broker import BrokerTls, MosquittoBroker

HUB_ID = "hub"
STATION_A = "st-a"
STATION_B = "st-b"


@dataclass(frozen=True, slots=True, kw_only=True)
class CountyPki:
    dir: Path
    paths: pki_mod.PkiPaths
    hub_id: str
    hub: pki_mod.ClientCert
    station_a: pki_mod.ClientCert
    station_b: pki_mod.ClientCert

    def issue(self, cn: str, *, role: pki_mod.Role = "station") -> pki_mod.ClientCert:
        """Issue one more client certificate (a broker started later will know a new hub)."""
        return pki_mod.issue_client(self.dir, cn, role=role)

    def cert(self, cn: str) -> pki_mod.ClientCert:
        return pki_mod.client_cert(self.dir, cn)


def make_pki(dir: Path) -> CountyPki:
    paths = pki_mod.init_pki(dir, county="test", hub_id=HUB_ID)
    return CountyPki(
        dir=dir,
        paths=paths,
        hub_id=HUB_ID,
        hub=paths.hub,
        station_a=pki_mod.issue_client(dir, STATION_A),
        station_b=pki_mod.issue_client(dir, STATION_B),
    )


@pytest.fixture
def pki(tmp_path: Path) -> CountyPki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def broker(pki: CountyPki, tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "broker", tls=BrokerTls.from_pki(pki.dir)) as running:
        yield running


@pytest.fixture
def plain_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "plain-broker") as running:
        yield running
