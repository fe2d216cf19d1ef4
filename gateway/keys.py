"""Key files and enrollment files: create, load, and refuse unsafe ones.

A key directory (mode 0700) holds one identity:

    signing.key     Ed25519 private key, PEM PKCS#8, mode 0600
    encryption.key  X25519 private key, PEM PKCS#8, mode 0600
    signing.pub     the public halves, PEM SubjectPublicKeyInfo, mode 0644
    encryption.pub
    <id>.enrollment.json   public: role, id, creation time, raw public keys, key ids

The enrollment file is what the other side imports (the hub enrolls each station; each station
enrolls its hub). Every file is written to a temporary name, fsync'd and renamed, so a crash
never leaves half a key. Loading refuses a private key that group or others can access: the
daemon must not start on a key another account could have copied.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from protocols.envelope import EnvelopeArgumentError, LocalIdentity, PeerIdentity, key_id
from protocols.envelope_core import check_id
from sync.durable import fsync_dir, write_private

Role = Literal["station", "hub"]
ROLES: tuple[Role, ...] = ("station", "hub")
SIGNING_KEY = "signing.key"
ENCRYPTION_KEY = "encryption.key"
SIGNING_PUB = "signing.pub"
ENCRYPTION_PUB = "encryption.pub"
ENROLLMENT_SUFFIX = ".enrollment.json"
ENROLLMENT_FORMAT = "cunlink-enrollment/1"
MAX_ENROLLMENT_BYTES = 64 * 1024  # real files are ~500 bytes; checked before parsing
_ENROLLMENT_KEYS = frozenset({
    "format", "role", "id", "created", "signing_algorithm", "signing_public_key",
    "signing_key_id", "encryption_algorithm", "encryption_public_key", "encryption_key_id",
})  # fmt: skip


class KeyFileError(Exception):
    """A key or enrollment file is missing, unsafe, damaged, or would be overwritten."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrollment:
    """The public record of one identity, as written to `<id>.enrollment.json`."""

    role: Role
    id: str
    created: datetime
    signing_public: bytes  # raw 32-byte Ed25519 public key
    encryption_public: bytes  # raw 32-byte X25519 public key

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise KeyFileError(f"Enrollment.role: expected 'station' or 'hub', got {self.role!r}")
        try:
            check_id(self.id, "Enrollment.id")
        except EnvelopeArgumentError as exc:
            raise KeyFileError(str(exc)) from None
        if self.created.tzinfo is None:
            raise KeyFileError("Enrollment.created: expected a timezone-aware datetime")
        for name in ("signing_public", "encryption_public"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise KeyFileError(f"Enrollment.{name}: expected 32 raw bytes, got {value!r}")

    @property
    def signing_key_id(self) -> bytes:
        return key_id(self.signing_public)

    @property
    def encryption_key_id(self) -> bytes:
        return key_id(self.encryption_public)

    def peer(self) -> PeerIdentity:
        return PeerIdentity(
            id=self.id,
            signing_public=Ed25519PublicKey.from_public_bytes(self.signing_public),
            encryption_public=X25519PublicKey.from_public_bytes(self.encryption_public),
        )

    def to_json(self) -> str:
        doc = {
            "format": ENROLLMENT_FORMAT,
            "role": self.role,
            "id": self.id,
            "created": self.created.astimezone(UTC).isoformat(timespec="seconds"),
            "signing_algorithm": "Ed25519",
            "signing_public_key": base64.b64encode(self.signing_public).decode("ascii"),
            "signing_key_id": self.signing_key_id.hex(),
            "encryption_algorithm": "X25519",
            "encryption_public_key": base64.b64encode(self.encryption_public).decode("ascii"),
            "encryption_key_id": self.encryption_key_id.hex(),
        }
        return json.dumps(doc, indent=2) + "\n"


def enrollment_path(directory: Path, ident: str) -> Path:
    return directory / f"{ident}{ENROLLMENT_SUFFIX}"


# --- writing -----------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    try:
        write_private(path, data, mode)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _prepare_directory(directory: Path) -> None:
    """Create `directory` as 0700, or accept an existing one only if it is already private.

    An existing directory is never chmod'ed: `--dir /tmp` must fail, not lock /tmp down.
    """
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)  # mkdir's mode is masked by umask
            return
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as exc:
        raise KeyFileError(f"cannot create key directory {directory}: {exc.strerror}") from exc
    if not directory.is_dir():
        raise KeyFileError(f"{directory} exists and is not a directory; choose another --dir")
    if mode & 0o077:
        raise KeyFileError(
            f"{directory} is accessible by group or others (mode {mode:04o}); keys need a "
            "private directory: pass a --dir that does not exist yet (it is created 0700), "
            f"or, if {directory} is yours alone, run `chmod 700 {directory}`"
        )


def init_keys(role: Role, ident: str, directory: Path, *, force: bool, now: datetime) -> Enrollment:
    """Create a new identity in `directory`; refuse to replace existing keys unless `force`."""
    if role not in ROLES:
        raise KeyFileError(f"role: expected 'station' or 'hub', got {role!r}")
    try:
        check_id(ident, "id")
    except EnvelopeArgumentError as exc:
        raise KeyFileError(str(exc)) from None
    if not force:
        for name in (SIGNING_KEY, ENCRYPTION_KEY, SIGNING_PUB, ENCRYPTION_PUB):
            if (directory / name).exists():
                raise KeyFileError(
                    f"{directory / name} already exists: this directory holds keys already. "
                    "Pass --force to replace them (every peer must then import the new "
                    "enrollment file), or choose another --dir"
                )
    _prepare_directory(directory)
    signing = Ed25519PrivateKey.generate()
    encryption = X25519PrivateKey.generate()
    enrollment = Enrollment(
        role=role,
        id=ident,
        created=now.astimezone(UTC).replace(microsecond=0),
        signing_public=signing.public_key().public_bytes_raw(),
        encryption_public=encryption.public_key().public_bytes_raw(),
    )
    pkcs8 = (Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    spki = (Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    # Private keys first and the enrollment last: an enrollment file means a complete identity.
    _write_atomic(directory / SIGNING_KEY, signing.private_bytes(*pkcs8), 0o600)
    _write_atomic(directory / ENCRYPTION_KEY, encryption.private_bytes(*pkcs8), 0o600)
    _write_atomic(directory / SIGNING_PUB, signing.public_key().public_bytes(*spki), 0o644)
    _write_atomic(directory / ENCRYPTION_PUB, encryption.public_key().public_bytes(*spki), 0o644)
    _write_atomic(enrollment_path(directory, ident), enrollment.to_json().encode("utf-8"), 0o644)
    try:
        fsync_dir(directory)
    except OSError as exc:
        raise KeyFileError(f"cannot sync directory {directory}: {exc.strerror}") from exc
    return enrollment


# --- reading -----------------------------------------------------------------------------------


def _read_private(path: Path) -> bytes:
    """Read a private key file after checking, on the open file, that only its owner can use it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: private key not found; create keys with "
            f"`cunlink keys init --role station|hub --id ID --dir {path.parent}`"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{path}: private key is accessible by group or others (mode {mode:04o}); "
                f"run `chmod 600 {path}`"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(64 * 1024)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _load_private(path: Path) -> Ed25519PrivateKey | X25519PrivateKey:
    try:
        key = load_pem_private_key(_read_private(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{path}: not an unencrypted PEM PKCS#8 private key ({exc}); restore it from the "
            "backup or create new keys"
        ) from None
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 or X25519 key, found {type(key).__name__}")
    return key


def load_identity(directory: Path, ident: str) -> LocalIdentity:
    """Load the identity `ident` from `directory`, refusing unsafe or mismatched key files."""
    signing = _load_private(directory / SIGNING_KEY)
    encryption = _load_private(directory / ENCRYPTION_KEY)
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFileError(f"{directory / SIGNING_KEY}: expected an Ed25519 private key")
    if not isinstance(encryption, X25519PrivateKey):
        raise KeyFileError(f"{directory / ENCRYPTION_KEY}: expected an X25519 private key")
    try:
        identity = LocalIdentity(id=ident, signing_key=signing, encryption_key=encryption)
    except EnvelopeArgumentError as exc:
        raise KeyFileError(str(exc)) from None
    _check_enrollment_matches(directory, identity)
    return identity


def _check_enrollment_matches(directory: Path, identity: LocalIdentity) -> None:
    """Catch a config naming one id while the directory holds another identity's keys."""
    mine = enrollment_path(directory, identity.id)
    signing_public = identity.signing_key.public_key().public_bytes_raw()
    if mine.exists():
        enrollment = load_enrollment(mine)
        if enrollment.signing_public != signing_public or (
            enrollment.encryption_public != identity.encryption_key.public_key().public_bytes_raw()
        ):
            raise KeyFileError(
                f"{mine} does not match the private keys in {directory}: the keys were replaced "
                "or the files mixed up; re-run `cunlink keys init --force` and re-enroll"
            )
        return
    for other in sorted(directory.glob(f"*{ENROLLMENT_SUFFIX}")):
        try:
            enrollment = load_enrollment(other)
        except KeyFileError:
            continue  # an unrelated or damaged file must not hide the real problem
        if enrollment.signing_public == signing_public:
            raise KeyFileError(
                f"the keys in {directory} belong to {enrollment.id!r} ({other.name}), "
                f"not {identity.id!r}: fix the id in the configuration or the key directory"
            )


def _field(doc: dict[str, Any], name: str, path: Path) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: key {name!r}: expected a string, got {value!r}")
    return value


def _raw_key(doc: dict[str, Any], name: str, path: Path) -> bytes:
    text = _field(doc, name, path)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise KeyFileError(
            f"{path}: key {name!r}: expected base64 of a 32-byte raw public key, got {text!r}"
        )
    return raw


def load_enrollment(path: Path) -> Enrollment:
    """Read and check an enrollment file; every problem names the file and the key."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ENROLLMENT_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read enrollment file {path}: {exc.strerror}") from exc
    if len(data) > MAX_ENROLLMENT_BYTES:
        raise KeyFileError(f"{path}: larger than {MAX_ENROLLMENT_BYTES} bytes, not an enrollment")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - _ENROLLMENT_KEYS)
    missing = sorted(_ENROLLMENT_KEYS - set(doc))
    if unknown or missing:
        raise KeyFileError(
            f"{path}: unknown keys {unknown} / missing keys {missing}: "
            "not a cunlink enrollment file, or edited by hand"
        )
    if doc["format"] != ENROLLMENT_FORMAT:
        raise KeyFileError(
            f"{path}: key 'format': expected {ENROLLMENT_FORMAT!r}, got {doc['format']!r}"
        )
    for name, want in (("signing_algorithm", "Ed25519"), ("encryption_algorithm", "X25519")):
        if doc[name] != want:
            raise KeyFileError(f"{path}: key {name!r}: expected {want!r}, got {doc[name]!r}")
    role = doc["role"]
    if role not in ROLES:
        raise KeyFileError(f"{path}: key 'role': expected 'station' or 'hub', got {role!r}")
    created_text = _field(doc, "created", path)
    try:
        created = datetime.fromisoformat(created_text)
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise KeyFileError(
            f"{path}: key 'created': expected an ISO 8601 time with offset, got {created_text!r}"
        )
    try:
        enrollment = Enrollment(
            role=role,
            id=_field(doc, "id", path),
            created=created,
            signing_public=_raw_key(doc, "signing_public_key", path),
            encryption_public=_raw_key(doc, "encryption_public_key", path),
        )
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    for name, kid in (
        ("signing_key_id", enrollment.signing_key_id),
        ("encryption_key_id", enrollment.encryption_key_id),
    ):
        if doc[name] != kid.hex():
            raise KeyFileError(
                f"{path}: key {name!r} is {doc[name]!r} but the public key's id is {kid.hex()}: "
                "the file was damaged or edited; ask for a fresh copy"
            )
    return enrollment


def peer_map(enrollments: list[Enrollment]) -> dict[bytes, PeerIdentity]:
    """The `peers` mapping open_batch wants: signing key id -> peer, refusing duplicates."""
    peers: dict[bytes, PeerIdentity] = {}
    for enrollment in enrollments:
        kid = enrollment.signing_key_id
        if kid in peers:
            raise KeyFileError(
                f"signing key id {kid.hex()} is enrolled twice ({peers[kid].id!r} and "
                f"{enrollment.id!r}): remove the stale enrollment"
            )
        peers[kid] = enrollment.peer()
    return peers
