"""The county PKI: what it issues, what it refuses, and the broker config it renders."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from gateway import pki
from gateway.cli import pki_cmd


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_ca_broker_and_hub_certificates(tmp_path: Path) -> None:
    paths = pki.init_pki(
        tmp_path / "p", county="Xian", broker_hosts=["mqtt.county.gov.cn", "10.1.2.3"],
        hub_id="hub-01",
    )
    ca, server, hub = load(paths.ca_cert), load(paths.server_cert), load(paths.hub.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for cert in (server, hub):
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mqtt.county.gov.cn", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.1.2.3", "127.0.0.1"}
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (cn(hub), eku(hub)) == ("hub-01", [ExtendedKeyUsageOID.CLIENT_AUTH])
    for key in (paths.ca_key, paths.server_key, paths.hub.key):
        assert mode(key) == 0o600, key
    assert mode(paths.ca_key.parent) == 0o700
    assert pki.read_info(paths.dir).hub_ids == ("hub-01",)


def test_issue_station_certificate(tmp_path: Path) -> None:
    paths = pki.init_pki(tmp_path / "p")
    cert = pki.issue_client(paths.dir, "ST001", days=30)
    issued = load(cert.cert)
    issued.verify_directly_issued_by(load(paths.ca_cert))
    assert (cn(issued), eku(issued)) == ("ST001", [ExtendedKeyUsageOID.CLIENT_AUTH])
    lifetime = issued.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)
    key = serialization.load_pem_private_key(cert.key.read_bytes(), None)
    assert key.public_key() == issued.public_key()
    assert mode(cert.key) == 0o600 and cert.ca == paths.ca_cert
    assert pki.read_info(paths.dir).station_ids == ("ST001",)
    assert pki.client_cert(paths.dir, "ST001") == cert


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    paths = pki.init_pki(tmp_path / "p")
    first = load(pki.issue_client(paths.dir, "ST001").cert).serial_number
    with pytest.raises(pki.PkiError, match="--force"):
        pki.issue_client(paths.dir, "ST001")
    again = load(pki.issue_client(paths.dir, "ST001", force=True).cert).serial_number
    assert again != first
    with pytest.raises(pki.PkiError, match="already holds a county PKI"):
        pki.init_pki(paths.dir)
    old_ca = load(paths.ca_cert).serial_number
    pki.init_pki(paths.dir, force=True)
    assert load(paths.ca_cert).serial_number != old_ca
    # The old CA's certificates are cleared with it, so the station can be issued again.
    assert not (paths.dir / "clients" / "ST001.crt").exists()
    pki.issue_client(paths.dir, "ST001")


def test_one_name_cannot_be_both_hub_and_station(tmp_path: Path) -> None:
    paths = pki.init_pki(tmp_path / "p", hub_id="hub")
    with pytest.raises(pki.PkiError, match="already a hub identity"):
        pki.issue_client(paths.dir, "hub", force=True)
    pki.issue_client(paths.dir, "ST001")
    with pytest.raises(pki.PkiError, match="already a station identity"):
        pki.issue_client(paths.dir, "ST001", role="hub", force=True)


@pytest.mark.parametrize("bad", ["", "a/b", "st+", "#", "$SYS", "-x", "with space", "x" * 65])
def test_identities_that_would_break_topics_are_refused(tmp_path: Path, bad: str) -> None:
    paths = pki.init_pki(tmp_path / "p")
    with pytest.raises(pki.PkiError, match="invalid identity"):
        pki.issue_client(paths.dir, bad)


def test_revoke_puts_the_current_serial_in_the_crl(tmp_path: Path) -> None:
    paths = pki.init_pki(tmp_path / "p")
    assert pki.revoked_serials(paths.dir) == set()
    old = load(pki.issue_client(paths.dir, "ST001").cert).serial_number
    assert pki.revoke(paths.dir, "ST001") == old
    new = load(pki.issue_client(paths.dir, "ST001", force=True).cert).serial_number
    pki.revoke(paths.dir, "hub")
    assert pki.revoked_serials(paths.dir) == {old, load(paths.hub.cert).serial_number}
    assert new not in pki.revoked_serials(paths.dir)  # re-issued: let in again
    crl = x509.load_pem_x509_crl(paths.crl.read_bytes())
    assert crl.is_signature_valid(load(paths.ca_cert).public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert crl.next_update_utc == load(paths.ca_cert).not_valid_after_utc
    with pytest.raises(pki.PkiError, match="pki issue"):
        pki.revoke(paths.dir, "never-issued")


def test_missing_pki_is_explained(tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="pki init"):
        pki.issue_client(tmp_path / "nowhere", "ST001")


def test_acl_has_one_hub_block_per_hub_and_the_station_patterns() -> None:
    acl = pki.render_acl(pki.read_template("acl"), ["hub", "hub-2"])
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    hub_rules = ["topic read cl/+/u", "topic read cl/+/s", "topic read cl/+/h",
                 "topic write cl/+/d"]
    assert rules == [
        "user hub", *hub_rules, "user hub-2", *hub_rules,
        "pattern write cl/%u/u", "pattern write cl/%u/s", "pattern write cl/%u/h",
        "pattern read cl/%u/d",
    ]
    with pytest.raises(pki.PkiError, match="markers"):
        pki.render_acl("user hub\n", ["hub"])
    with pytest.raises(pki.PkiError, match="no hub identity"):
        pki.render_acl(pki.read_template("acl"), [])


def test_conf_overrides_replace_remove_and_append() -> None:
    template = "# c\nlog_type error\nlog_type warning\nuser mosquitto\nlistener 8883\n"
    out = pki.render_conf(template, {"log_type": "all", "user": None, "keyfile": "/k"})
    assert out == "# c\nlog_type all\nlistener 8883\nkeyfile /k\n"


def test_shipped_conf_uses_only_options_the_harness_rewrites_for_paths() -> None:
    conf = pki.read_template("mosquitto.conf")
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    path_options = {line.split()[0] for line in lines if " /" in line}
    # Every option holding a production path is rewritten by the test harness.
    assert path_options == {"acl_file", "persistence_location", "log_dest", "pid_file",
                            "cafile", "certfile", "keyfile", "crlfile"}
    assert lines[-1] == "use_username_as_clientid true"  # listener options end the file


def test_cli_init_and_issue(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "p")
    init = runner.invoke(pki_cmd.app, ["init", "--dir", d, "--broker-host", "mqtt.example"])
    assert init.exit_code == 0, init.output
    assert "county CA:" in init.output
    issued = runner.invoke(pki_cmd.app, ["issue", "--dir", d, "--station", "ST009"])
    assert issued.exit_code == 0, issued.output
    assert f'cert_file = "{(tmp_path / "p" / "clients" / "ST009.crt").resolve()}"' in (
        issued.output
    )
    assert "[mqtt]" in issued.output and "key_file = " in issued.output
    again = runner.invoke(pki_cmd.app, ["issue", "--dir", d, "--station", "ST009"])
    assert again.exit_code == 1 and "--force" in again.output
    both = runner.invoke(pki_cmd.app, ["issue", "--dir", d, "--station", "a", "--hub", "b"])
    assert both.exit_code == 1 and "exactly one" in both.output
    hub2 = runner.invoke(pki_cmd.app, ["issue", "--dir", d, "--hub", "hub-2"])
    assert hub2.exit_code == 0, hub2.output
    acl = runner.invoke(pki_cmd.app, ["acl", "--dir", d])
    assert acl.exit_code == 0 and "user hub-2\n" in acl.output
    revoked = runner.invoke(pki_cmd.app, ["revoke", "--dir", d, "--id", "ST009"])
    assert revoked.exit_code == 0 and "revoked 'ST009'" in revoked.output
