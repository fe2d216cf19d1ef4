"""The county PKI: a small CA that issues the broker's server certificate and one client
certificate per station and per hub worker, plus the Mosquitto config rendered for it.

The broker identifies every client by the CN of its certificate (`use_identity_as_username`),
so the CN *is* the identity the ACL checks: CN = station id for stations, CN = hub id for hub
workers. `pki.json` in the PKI directory records which CNs are hubs; the ACL's hub block is
rendered from that list, and a station id can never be issued under a hub's name (or the other
way round), because that would hand a station the hub's rights.

Layout of a PKI directory:

    ca.crt                  the county CA certificate (public; every client and the broker trust it)
    crl.pem                 revoked client certificates (the broker's `crlfile`)
    private/ca.key          the CA key (0600, directory 0700) — keep it offline after issuing
    broker/server.crt|key   the broker's TLS server certificate and key
    clients/<cn>.crt|key    one client certificate + key per station / hub worker
    pki.json                county name, broker host names, hub ids, station ids
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync.durable import write_private

Role = Literal["station", "hub"]

DEFAULT_CA_DAYS = 3650
# Stations may sit offline for months; a certificate that expires meanwhile strands them
# (peers.md, iotedge #2706). Five years, renewed during normal maintenance visits.
DEFAULT_LEAF_DAYS = 1825
DEFAULT_HUB_ID = "hub"
DEFAULT_BROKER_HOSTS = ("localhost", "127.0.0.1")
# Allow for boards whose clocks lag a little behind the CA's.
_BACKDATE = dt.timedelta(hours=1)
# An identity becomes an MQTT username and a topic level: no wildcards, no '/', no '$'.
_CN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

MOSQUITTO_TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "config" / "mosquitto"
_HUB_BLOCK_BEGIN = "# BEGIN hub identities"
_HUB_BLOCK_END = "# END hub identities"


class PkiError(Exception):
    """A PKI operation was refused or failed; the message says what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCert:
    """Paths for a client's `[mqtt] ca_file / cert_file / key_file`."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiPaths:
    dir: Path
    ca_cert: Path
    ca_key: Path
    crl: Path
    server_cert: Path
    server_key: Path
    hub: ClientCert
    hub_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiInfo:
    """What pki.json records."""

    county: str
    broker_hosts: tuple[str, ...]
    hub_ids: tuple[str, ...]
    station_ids: tuple[str, ...]


def check_identity(cn: str) -> str:
    """Return `cn` if it is usable as a certificate CN, MQTT username and topic level."""
    if not _CN_RE.match(cn):
        raise PkiError(
            f"invalid identity {cn!r}: use 1-64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit (it becomes the MQTT username and a topic level)"
        )
    return cn


def init_pki(
    dir: Path,
    *,
    county: str = "county",
    broker_hosts: Sequence[str] = (),
    hub_id: str = DEFAULT_HUB_ID,
    days: int = DEFAULT_LEAF_DAYS,
    ca_days: int = DEFAULT_CA_DAYS,
    force: bool = False,
) -> PkiPaths:
    """Create a county CA, the broker's server certificate and the hub's client certificate."""
    dir = Path(dir)
    check_identity(hub_id)
    _check_days(days)
    _check_days(ca_days)
    paths = _paths(dir, hub_id)
    existing = [p for p in (paths.ca_cert, paths.ca_key, dir / "pki.json") if p.exists()]
    if existing and not force:
        raise PkiError(
            f"{dir} already holds a county PKI ({existing[0].name}); pass --force to replace it "
            "(every certificate it issued stops working)"
        )
    # The old CA's certificates are worthless once it is replaced: clear them so re-issuing
    # the same names does not trip over stale files.
    for stale in (*dir.glob("clients/*.crt"), *dir.glob("clients/*.key")):
        stale.unlink()
    hosts = tuple(dict.fromkeys([*broker_hosts, *DEFAULT_BROKER_HOSTS]))
    now = dt.datetime.now(dt.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cunlink"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"cunlink CA {county}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, ca_days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.ca_key, ca_key)
    _write_public(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_crl(dir, ca_cert, ca_key, add=None, fresh=True)

    san: list[x509.GeneralName] = []
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    _issue(
        ca_key, ca_cert, hosts[0], now, days, paths.server_cert, paths.server_key,
        eku=ExtendedKeyUsageOID.SERVER_AUTH, san=san,
    )
    _write_info(dir, PkiInfo(county=county, broker_hosts=hosts, hub_ids=(), station_ids=()))
    issue_client(dir, hub_id, days=days, role="hub")
    return paths


def issue_client(
    dir: Path, cn: str, *, days: int = DEFAULT_LEAF_DAYS, role: Role = "station",
    force: bool = False,
) -> ClientCert:
    """Issue a client certificate (CN = `cn`, clientAuth) and its key, signed by the county CA."""
    dir = Path(dir)
    check_identity(cn)
    _check_days(days)
    info = read_info(dir)
    other = info.station_ids if role == "hub" else info.hub_ids
    if cn in other:
        raise PkiError(
            f"{cn!r} is already a {'station' if role == 'hub' else 'hub'} identity in {dir}; "
            "one name cannot be both (the broker would grant it both sets of topics)"
        )
    cert_path, key_path = dir / "clients" / f"{cn}.crt", dir / "clients" / f"{cn}.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise PkiError(
            f"a certificate for {cn!r} already exists ({cert_path}); pass --force to re-issue it"
        )
    ca_cert, ca_key = _load_ca(dir)
    _issue(
        ca_key, ca_cert, cn, dt.datetime.now(dt.UTC), days, cert_path, key_path,
        eku=ExtendedKeyUsageOID.CLIENT_AUTH, san=None,
    )
    if role == "hub":
        info = dataclasses.replace(info, hub_ids=_added(info.hub_ids, cn))
    else:
        info = dataclasses.replace(info, station_ids=_added(info.station_ids, cn))
    _write_info(dir, info)
    return ClientCert(cert=cert_path, key=key_path, ca=dir / "ca.crt")


def revoke(dir: Path, cn: str) -> int:
    """Revoke the current certificate of `cn` (a lost or stolen box): its serial goes into the
    CRL (crl.pem), which the broker checks on every connection (`crlfile`; reload the broker to
    apply it). Returns the serial. Re-issuing `cn` afterwards gives a new certificate with
    a new serial, so the old one stays shut out."""
    dir = Path(dir)
    cert_path = client_cert(dir, cn).cert
    serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    ca_cert, ca_key = _load_ca(dir)
    _write_crl(dir, ca_cert, ca_key, add=serial)
    return serial


def revoked_serials(dir: Path) -> set[int]:
    crl = x509.load_pem_x509_crl((Path(dir) / "crl.pem").read_bytes())
    return {entry.serial_number for entry in crl}


def client_cert(dir: Path, cn: str) -> ClientCert:
    """The paths of an already issued client certificate."""
    dir = Path(dir)
    cert = ClientCert(
        cert=dir / "clients" / f"{cn}.crt", key=dir / "clients" / f"{cn}.key", ca=dir / "ca.crt"
    )
    if not cert.cert.exists():
        raise PkiError(f"no certificate for {cn!r} in {dir}: run `cunlink pki issue` first")
    return cert


def read_info(dir: Path) -> PkiInfo:
    path = Path(dir) / "pki.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return PkiInfo(
            county=str(raw["county"]),
            broker_hosts=tuple(raw["broker_hosts"]),
            hub_ids=tuple(raw["hub_ids"]),
            station_ids=tuple(raw["station_ids"]),
        )
    except FileNotFoundError:
        raise PkiError(f"{dir} is not a county PKI (no pki.json): run `cunlink pki init`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PkiError(f"{path} is damaged ({exc}); restore it from a backup") from exc


# --- Mosquitto config --------------------------------------------------------------------------


def render_acl(template: str, hub_ids: Iterable[str]) -> str:
    """The shipped ACL with its hub block repeated once per hub identity.

    The block between the BEGIN/END markers is written for the hub id `hub`; each copy replaces
    that `user` line with one hub id. Patterns (the station rules) follow unchanged.
    """
    ids = [check_identity(h) for h in hub_ids]
    if not ids:
        raise PkiError("no hub identity for the ACL: issue one with `cunlink pki issue --hub ID`")
    try:
        head, rest = template.split(_HUB_BLOCK_BEGIN + "\n", 1)
        block, tail = rest.split(_HUB_BLOCK_END + "\n", 1)
    except ValueError:
        raise PkiError(
            f"the ACL template lacks the '{_HUB_BLOCK_BEGIN}' / '{_HUB_BLOCK_END}' markers"
        ) from None
    lines = block.splitlines(keepends=True)
    user_lines = [i for i, line in enumerate(lines) if line.startswith("user ")]
    if len(user_lines) != 1:
        raise PkiError("the ACL template's hub block must contain exactly one 'user' line")
    copies = []
    for hub in ids:
        copy = list(lines)
        copy[user_lines[0]] = f"user {hub}\n"
        copies.append("".join(copy))
    return head + _HUB_BLOCK_BEGIN + "\n" + "\n".join(copies) + _HUB_BLOCK_END + "\n" + tail


def render_conf(template: str, overrides: dict[str, str | None]) -> str:
    """The shipped mosquitto.conf with options replaced: `{option: value}` rewrites the first
    line that sets `option` (and drops later ones); `None` removes the option; an option the
    template lacks is appended at the end (after the listener, where listener options belong)."""
    out: list[str] = []
    done: set[str] = set()
    for line in template.splitlines():
        words = line.split(maxsplit=1)
        key = words[0] if words and not words[0].startswith("#") else ""
        if key in overrides:
            if key not in done and overrides[key] is not None:
                out.append(f"{key} {overrides[key]}")
            done.add(key)
            continue
        out.append(line)
    out += [f"{k} {v}" for k, v in overrides.items() if k not in done and v is not None]
    return "\n".join(out) + "\n"


def read_template(name: str) -> str:
    path = MOSQUITTO_TEMPLATE_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PkiError(
            f"Mosquitto template {path} not found: run from a cunlink source checkout"
        ) from None


# --- internals ---------------------------------------------------------------------------------


def _paths(dir: Path, hub_id: str) -> PkiPaths:
    return PkiPaths(
        dir=dir,
        ca_cert=dir / "ca.crt",
        ca_key=dir / "private" / "ca.key",
        crl=dir / "crl.pem",
        server_cert=dir / "broker" / "server.crt",
        server_key=dir / "broker" / "server.key",
        hub=ClientCert(
            cert=dir / "clients" / f"{hub_id}.crt",
            key=dir / "clients" / f"{hub_id}.key",
            ca=dir / "ca.crt",
        ),
        hub_id=hub_id,
    )


def _check_days(days: int) -> None:
    if not 1 <= days <= 36500:
        raise PkiError(f"validity of {days} days is out of range: give 1..36500")


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime, days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, now: dt.datetime,
    days: int, cert_path: Path, key_path: Path, *, eku: x509.ObjectIdentifier,
    san: list[x509.GeneralName] | None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cunlink"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((dir / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((dir / "private" / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise PkiError(
            f"the county CA is missing ({exc.filename}): issue certificates on the machine that "
            "holds private/ca.key, or run `cunlink pki init`"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{dir / 'private' / 'ca.key'} is not an EC key")
    return cert, key


def _write_crl(
    dir: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
    add: int | None, fresh: bool = False,
) -> None:
    # The CRL stays valid as long as the CA: once a broker checks CRLs, an expired CRL would
    # lock every station out.
    now = dt.datetime.now(dt.UTC)
    revoked: list[x509.RevokedCertificate] = []
    number = 1
    if not fresh:
        old = x509.load_pem_x509_crl((dir / "crl.pem").read_bytes())
        revoked = list(old)
        number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    if add is not None and add not in {r.serial_number for r in revoked}:
        revoked.append(
            x509.RevokedCertificateBuilder().serial_number(add).revocation_date(now).build()
        )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(ca_cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_public(dir / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(path, pem, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    _atomic_write(path, data, mode=0o644)


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    # Private keys are created 0600 from the start (never briefly world-readable) and written
    # via a temp file + rename so a crash leaves either the old file or the new one.
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name == "private":
        path.parent.chmod(0o700)
    write_private(path, data, mode)


def _write_info(dir: Path, info: PkiInfo) -> None:
    raw = {
        "county": info.county,
        "broker_hosts": list(info.broker_hosts),
        "hub_ids": list(info.hub_ids),
        "station_ids": list(info.station_ids),
    }
    _atomic_write(dir / "pki.json", (json.dumps(raw, indent=2) + "\n").encode(), mode=0o644)


def _added(ids: tuple[str, ...], cn: str) -> tuple[str, ...]:
    return ids if cn in ids else (*ids, cn)
