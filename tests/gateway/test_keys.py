"""Key directories and enrollment files: creation, safe loading, and every refusal."""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.keys import (
    ENROLLMENT_FORMAT,
    Enrollment,
    KeyFileError,
    enrollment_path,
    init_keys,
    load_enrollment,
    load_identity,
    peer_map,
)
from protocols.envelope import open_batch, seal_batch

NOW = datetime(2025, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_private_keys_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        enrollment = init_keys("station", "ST001", tmp_path / "keys", force=False, now=NOW)
    finally:
        os.umask(old)
    d = tmp_path / "keys"
    assert mode(d) == 0o700
    assert (mode(d / "signing.key"), mode(d / "encryption.key")) == (0o600, 0o600)
    assert (mode(d / "signing.pub"), mode(d / "ST001.enrollment.json")) == (0o644, 0o644)
    assert (d / "signing.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (d / "encryption.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert sorted(p.name for p in d.iterdir()) == [
        "ST001.enrollment.json", "encryption.key", "encryption.pub", "signing.key", "signing.pub",
    ]  # fmt: skip
    assert (enrollment.role, enrollment.id) == ("station", "ST001")
    assert enrollment.created == datetime(2025, 11, 22, 10, 0, 0, tzinfo=UTC)


def test_enrollment_file_content(tmp_path: Path) -> None:
    enrollment = init_keys("hub", "hub-0571", tmp_path, force=False, now=NOW)
    doc = json.loads(enrollment_path(tmp_path, "hub-0571").read_text())
    assert doc["format"] == ENROLLMENT_FORMAT
    assert (doc["role"], doc["id"], doc["created"]) == (
        "hub",
        "hub-0571",
        "2025-11-22T10:00:00+00:00",
    )
    assert doc["signing_key_id"] == enrollment.signing_key_id.hex()
    assert doc["encryption_key_id"] == enrollment.encryption_key_id.hex()
    assert load_enrollment(enrollment_path(tmp_path, "hub-0571")) == enrollment


def test_loaded_identities_seal_and_open_for_each_other(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path / "st", force=False, now=NOW)
    init_keys("hub", "hub-0571", tmp_path / "hub", force=False, now=NOW)
    station = load_identity(tmp_path / "st", "ST001")
    hub = load_identity(tmp_path / "hub", "hub-0571")
    station_enrollment = load_enrollment(enrollment_path(tmp_path / "st", "ST001"))
    hub_peer = load_enrollment(enrollment_path(tmp_path / "hub", "hub-0571")).peer()
    assert station.signing_key_id == station_enrollment.signing_key_id
    sealed = seal_batch(b"case", sender=station, recipient=hub_peer, package_id=bytes(16),
                        created_ms=1)  # fmt: skip
    opened = open_batch(
        sealed, me=hub, peers=peer_map([station_enrollment]), expected_sender="ST001",
        seen=lambda _: False,
    )  # fmt: skip
    assert opened.payload == b"case"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first = init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    before = (tmp_path / "signing.key").read_bytes()
    with pytest.raises(KeyFileError, match=r"signing\.key already exists.*--force"):
        init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    assert (tmp_path / "signing.key").read_bytes() == before
    second = init_keys("station", "ST001", tmp_path, force=True, now=NOW)
    assert second.signing_key_id != first.signing_key_id
    assert load_identity(tmp_path, "ST001").signing_key_id == second.signing_key_id


def test_init_refuses_an_existing_directory_open_to_others(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    with pytest.raises(KeyFileError, match=r"mode 0755.*does not exist yet.*chmod 700"):
        init_keys("station", "ST001", shared, force=False, now=NOW)
    assert mode(shared) == 0o755  # never chmod'ed behind the user's back
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("ident", ["", "ST/001", "x" * 65])
def test_init_refuses_a_bad_id(tmp_path: Path, ident: str) -> None:
    with pytest.raises(KeyFileError, match="expected an id"):
        init_keys("station", ident, tmp_path / "k", force=False, now=NOW)
    assert not (tmp_path / "k").exists()


def test_load_refuses_a_private_key_readable_by_others(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    key = tmp_path / "encryption.key"
    key.chmod(0o640)
    with pytest.raises(KeyFileError) as caught:
        load_identity(tmp_path, "ST001")
    assert str(caught.value) == (
        f"{key}: private key is accessible by group or others (mode 0640); run `chmod 600 {key}`"
    )
    key.chmod(0o600)
    assert load_identity(tmp_path, "ST001").id == "ST001"


def test_load_names_a_missing_key_and_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(
        KeyFileError, match=r"signing\.key: private key not found.*cunlink keys init"
    ):
        load_identity(tmp_path, "ST001")


def test_load_refuses_a_damaged_private_key(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    (tmp_path / "signing.key").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(KeyFileError, match=r"signing\.key: not an unencrypted PEM"):
        load_identity(tmp_path, "ST001")


def test_load_refuses_keys_of_the_wrong_type_in_a_slot(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    shutil.copy(tmp_path / "encryption.key", tmp_path / "signing.key")
    with pytest.raises(KeyFileError, match=r"signing\.key: expected an Ed25519"):
        load_identity(tmp_path, "ST001")


def test_load_refuses_a_directory_holding_another_identity(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    with pytest.raises(
        KeyFileError, match=r"belong to 'ST001' \(ST001\.enrollment\.json\), not 'ST002'"
    ):
        load_identity(tmp_path, "ST002")


def test_load_refuses_keys_that_do_not_match_the_enrollment(tmp_path: Path) -> None:
    init_keys("station", "ST001", tmp_path / "a", force=False, now=NOW)
    init_keys("station", "ST001", tmp_path / "b", force=False, now=NOW)
    shutil.copy(tmp_path / "b" / "signing.key", tmp_path / "a" / "signing.key")
    with pytest.raises(KeyFileError, match="does not match the private keys"):
        load_identity(tmp_path / "a", "ST001")


# --- enrollment files --------------------------------------------------------------------------


def _enrollment_doc(tmp_path: Path) -> dict[str, str]:
    init_keys("station", "ST001", tmp_path / "k", force=False, now=NOW)
    doc: dict[str, str] = json.loads(enrollment_path(tmp_path / "k", "ST001").read_text())
    return doc


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"role": "village"}, r"key 'role': expected 'station' or 'hub', got 'village'"),
        ({"format": "other/2"}, r"key 'format': expected 'cunlink-enrollment/1'"),
        ({"created": "2025-11-22T10:00:00"}, r"key 'created': expected an ISO 8601 time with"),
        ({"signing_public_key": "AAAA"}, r"key 'signing_public_key': expected base64 of a 32"),
        ({"signing_key_id": "0000000000000000"}, r"key 'signing_key_id' is '0{16}' but"),
        ({"encryption_algorithm": "SM2"}, r"key 'encryption_algorithm': expected 'X25519'"),
        ({"id": "a b"}, r"expected an id"),
        ({"extra": "x"}, r"unknown keys \['extra'\]"),
    ],
)
def test_enrollment_errors_name_the_file_and_the_key(
    tmp_path: Path, change: dict[str, str], match: str
) -> None:
    doc = _enrollment_doc(tmp_path)
    doc.update(change)
    path = tmp_path / "edited.enrollment.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match=match) as caught:
        load_enrollment(path)
    assert str(caught.value).startswith(str(path))


def test_enrollment_with_a_missing_key_is_refused(tmp_path: Path) -> None:
    doc = _enrollment_doc(tmp_path)
    del doc["created"]
    path = tmp_path / "e.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match=r"missing keys \['created'\]"):
        load_enrollment(path)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b" " * 70000])
def test_enrollment_that_is_not_an_object_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "e.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=str(path)):
        load_enrollment(path)


def test_enrollment_keeps_the_creation_offset_meaningful(tmp_path: Path) -> None:
    doc = _enrollment_doc(tmp_path)
    doc["created"] = "2025-11-22T18:00:00+08:00"
    path = tmp_path / "e.json"
    path.write_text(json.dumps(doc))
    assert load_enrollment(path).created == datetime(
        2025, 11, 22, 18, tzinfo=timezone(timedelta(hours=8))
    )


def test_peer_map_refuses_a_key_enrolled_twice(tmp_path: Path) -> None:
    enrollment = init_keys("station", "ST001", tmp_path, force=False, now=NOW)
    twin = Enrollment(
        role="station", id="ST002", created=NOW, signing_public=enrollment.signing_public,
        encryption_public=enrollment.encryption_public,
    )  # fmt: skip
    assert list(peer_map([enrollment])) == [enrollment.signing_key_id]
    with pytest.raises(KeyFileError, match="enrolled twice"):
        peer_map([enrollment, twin])
