"""Sealed event batches: round trips, one test per failure, truncation, bit flips, properties."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import (
    MAGIC_BATCH,
    MAX_BATCH_PACKAGE,
    MAX_BATCH_PAYLOAD,
    BadSignature,
    DecryptionFailed,
    EnvelopeArgumentError,
    EnvelopeError,
    LocalIdentity,
    MalformedEnvelope,
    OpenedBatch,
    PeerIdentity,
    ReplayedPackage,
    Suite,
    TruncatedEnvelope,
    UnexpectedSender,
    UnknownKeyId,
    UnsupportedSuite,
    UnsupportedVersion,
    WrongRecipient,
    encode_batch_signed,
    key_id,
    open_batch,
    package_kind,
    peek_header,
    seal_batch,
)
from protocols.envelope_core import pack, seal_frame
from tests.protocols.test_envelope_vectors import HUB, STATION, peers_of, seed

OTHER = LocalIdentity(
    id="ST002",
    signing_key=Ed25519PrivateKey.from_private_bytes(seed("ST002 signing")),
    encryption_key=X25519PrivateKey.from_private_bytes(seed("ST002 encryption")),
)
HUB_PUBLIC = HUB.public()
ALL_PEERS = peers_of(STATION, OTHER)
PID = bytes(range(16))
T0 = 1763805600000


def never(_: bytes) -> bool:
    return False


def seal(
    payload: bytes = b"events",
    *,
    recipient: PeerIdentity = HUB_PUBLIC,
    package_id: bytes = PID,
    created_ms: int = T0,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
) -> bytes:
    return seal_batch(
        payload, sender=STATION, recipient=recipient, package_id=package_id,
        created_ms=created_ms, suite=suite,
    )  # fmt: skip


def open_as_hub(
    data: bytes,
    *,
    peers: Mapping[bytes, PeerIdentity] = ALL_PEERS,
    expected_sender: str | None = "ST001",
    seen: Callable[[bytes], bool] = never,
) -> OpenedBatch:
    return open_batch(data, me=HUB, peers=peers, expected_sender=expected_sender, seen=seen)


def forge(plaintext: bytes, *, sender: str = "ST001", sender_kid: bytes | None = None) -> bytes:
    """A frame to the hub around an arbitrary plaintext: what an attacker can always build."""
    return seal_frame(
        magic=MAGIC_BATCH,
        suite=Suite.X25519_SHA256_AES256GCM,
        sender=sender,
        sender_key_id=STATION.signing_key_id if sender_kid is None else sender_kid,
        recipient=HUB.public(),
        package_id=PID,
        plaintext=plaintext,
    )


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite))
def test_round_trip_up_to_the_hub(suite: Suite) -> None:
    opened = open_batch(
        seal(b"\x93\x01\x02\x03", suite=suite),
        me=HUB,
        peers=peers_of(STATION),
        expected_sender="ST001",
        seen=never,
    )
    assert (opened.sender, opened.recipient, opened.package_id) == ("ST001", "hub-0571", PID)
    assert (opened.created_ms, opened.suite, opened.payload) == (T0, suite, b"\x93\x01\x02\x03")


def test_round_trip_down_to_the_station() -> None:
    sealed = seal_batch(
        b"status", sender=HUB, recipient=STATION.public(), package_id=PID, created_ms=0
    )
    opened = open_batch(
        sealed, me=STATION, peers=peers_of(HUB), expected_sender="hub-0571", seen=never
    )
    assert (opened.sender, opened.payload, opened.created_ms) == ("hub-0571", b"status", 0)


@pytest.mark.parametrize("size", [0, 1, MAX_BATCH_PAYLOAD])
def test_payload_sizes_at_the_bounds_round_trip(size: int) -> None:
    payload = bytes([7]) * size
    opened = open_as_hub(seal(payload), expected_sender=None)
    assert opened.payload == payload


def test_two_seals_of_the_same_batch_differ_but_both_open() -> None:
    a, b = seal(), seal()
    assert a != b  # fresh HPKE ephemeral key each time
    assert open_as_hub(a) == open_as_hub(b)


def test_kind_and_routing_header_are_readable_before_opening() -> None:
    sealed = seal()
    assert package_kind(sealed[:4]) == "batch"
    outer = peek_header(sealed)
    assert (outer.sender, outer.package_id, outer.suite) == ("ST001", PID, Suite(1))
    assert (
        outer.recipient_key_id
        == HUB.encryption_key_id
        == key_id(HUB.encryption_key.public_key().public_bytes_raw())
    )
    with pytest.raises(MalformedEnvelope, match="not a cunlink package"):
        package_kind(b"GET ")


# --- one test per failure ----------------------------------------------------------------------


def test_malformed_magic() -> None:
    with pytest.raises(MalformedEnvelope, match="CLBA"):
        open_as_hub(b"XXXX" + seal()[4:])


def test_a_blob_container_is_not_a_batch() -> None:
    with pytest.raises(MalformedEnvelope, match="blob container"):
        open_as_hub(b"CLBL" + seal()[4:])


def test_malformed_trailing_bytes() -> None:
    with pytest.raises(MalformedEnvelope, match="1 bytes after its end"):
        open_as_hub(seal() + b"\x00")


def test_malformed_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedEnvelope, match="exceeds"):
        open_as_hub(b"CLBA" + bytes(MAX_BATCH_PACKAGE))


def test_malformed_sender_id_in_frame() -> None:
    sealed = bytearray(seal())
    sealed[43] = ord("/")
    with pytest.raises(MalformedEnvelope, match="sender id"):
        open_as_hub(bytes(sealed), expected_sender=None)


def test_malformed_signed_content_that_is_not_msgpack() -> None:
    junk = b"\xc1not msgpack"
    with pytest.raises(MalformedEnvelope, match="not valid msgpack"):
        open_as_hub(forge(junk + STATION.signing_key.sign(junk)))


def test_malformed_signed_content_with_a_wrong_tag() -> None:
    signed = pack(["cunlink.blob", 1, 1, "ST001", "hub-0571", PID, T0, b"k" * 8, b"k" * 8, b""])
    with pytest.raises(MalformedEnvelope, match="expected"):
        open_as_hub(forge(signed + STATION.signing_key.sign(signed)))


def test_malformed_signed_content_with_an_oversized_string() -> None:
    signed = pack(["x" * 65, 1, 1, "ST001", "hub-0571", PID, T0, b"k" * 8, b"k" * 8, b""])
    with pytest.raises(MalformedEnvelope, match=r"max_str_len|exceeds"):
        open_as_hub(forge(signed + STATION.signing_key.sign(signed)))


def test_unsupported_version() -> None:
    sealed = bytearray(seal())
    sealed[8] = 2
    with pytest.raises(UnsupportedVersion, match="version 2"):
        open_as_hub(bytes(sealed))


def test_unsupported_suite() -> None:
    sealed = bytearray(seal())
    sealed[9] = 9
    with pytest.raises(UnsupportedSuite, match="suite 9"):
        open_as_hub(bytes(sealed))


def test_unknown_key_id() -> None:
    with pytest.raises(UnknownKeyId, match=STATION.signing_key_id.hex()):
        open_as_hub(seal(), peers=peers_of(OTHER))


def test_bad_signature() -> None:
    signed = encode_batch_signed(
        b"forged", sender=STATION, recipient=HUB.public(), package_id=PID, created_ms=T0,
        suite=Suite.X25519_SHA256_AES256GCM,
    )  # fmt: skip
    with pytest.raises(BadSignature, match="does not verify"):
        open_as_hub(forge(signed + OTHER.signing_key.sign(signed)))


def test_wrong_recipient_key_id() -> None:
    with pytest.raises(WrongRecipient, match="another identity"):
        open_as_hub(seal(recipient=OTHER.public()))


def test_wrong_recipient_when_a_recipient_forwards_a_signed_package() -> None:
    # ST002 received a package the station signed for it, and re-encrypts it to the hub.
    signed = encode_batch_signed(
        b"for ST002", sender=STATION, recipient=OTHER.public(), package_id=PID, created_ms=T0,
        suite=Suite.X25519_SHA256_AES256GCM,
    )  # fmt: skip
    with pytest.raises(WrongRecipient, match="'ST002'"):
        open_as_hub(forge(signed + STATION.signing_key.sign(signed)))


def test_unexpected_sender_from_the_transport() -> None:
    with pytest.raises(UnexpectedSender, match="arrived from 'ST002'"):
        open_as_hub(seal(), expected_sender="ST002")


def test_unexpected_sender_when_the_key_is_enrolled_for_another_id() -> None:
    impostor = PeerIdentity(
        id="ST009",
        signing_public=STATION.signing_key.public_key(),
        encryption_public=STATION.encryption_key.public_key(),
    )
    with pytest.raises(UnexpectedSender, match="enrolled for 'ST009'"):
        open_as_hub(seal(), peers={STATION.signing_key_id: impostor}, expected_sender=None)


def test_unexpected_sender_inside_the_signed_content() -> None:
    renamed = LocalIdentity(
        id="ST009", signing_key=STATION.signing_key, encryption_key=STATION.encryption_key
    )
    signed = encode_batch_signed(
        b"x", sender=renamed, recipient=HUB.public(), package_id=PID, created_ms=T0,
        suite=Suite.X25519_SHA256_AES256GCM,
    )  # fmt: skip
    with pytest.raises(UnexpectedSender, match="names sender 'ST009'"):
        open_as_hub(forge(signed + STATION.signing_key.sign(signed)))


def test_truncated() -> None:
    sealed = seal()
    with pytest.raises(TruncatedEnvelope, match="cut short"):
        open_as_hub(sealed[:-1])


def test_decryption_failed_when_a_routing_byte_changes() -> None:
    sealed = bytearray(seal())
    sealed[30] ^= 0x01  # inside the package id: bound by HPKE info
    with pytest.raises(DecryptionFailed, match="altered"):
        open_as_hub(bytes(sealed))


@pytest.mark.parametrize(
    "enc",
    [
        bytes(32),  # low-order X25519 points: the shared secret would be all zeros
        b"\x01" + bytes(31),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_decryption_failed_for_a_low_order_ephemeral_key(enc: bytes) -> None:
    sealed = seal()
    with pytest.raises(DecryptionFailed):
        open_as_hub(sealed[:48] + enc + sealed[80:])


def test_replayed_package_is_reported_only_once_authentic() -> None:
    asked: list[bytes] = []

    def seen(package_id: bytes) -> bool:
        asked.append(package_id)
        return True

    with pytest.raises(ReplayedPackage, match="acknowledge it again"):
        open_as_hub(seal(), seen=seen)
    assert asked == [PID]
    forged = bytearray(seal())
    forged[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        open_as_hub(bytes(forged), seen=seen)
    assert asked == [PID]  # a forgery never reaches the replay check


# --- local argument errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"package_id": b"short"}, "package_id"),
        ({"created_ms": -1}, "created_ms"),
        ({"created_ms": True}, "created_ms"),
        ({"suite": 3}, "suite"),
    ],
)
def test_sealing_refuses_bad_arguments(kw: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"package_id": PID, "created_ms": T0, "suite": Suite(1), **kw}
    with pytest.raises(EnvelopeArgumentError, match=match):
        seal_batch(b"", sender=STATION, recipient=HUB.public(), **args)


def test_sealing_refuses_an_oversized_payload() -> None:
    with pytest.raises(EnvelopeArgumentError, match="split the events"):
        seal(bytes(MAX_BATCH_PAYLOAD + 1))


@pytest.mark.parametrize("ident", ["", "a/b", "-x", "x" * 65, "站点"])
def test_identities_refuse_bad_ids(ident: str) -> None:
    with pytest.raises(EnvelopeArgumentError, match="expected an id"):
        LocalIdentity(id=ident, signing_key=STATION.signing_key,
                      encryption_key=STATION.encryption_key)  # fmt: skip


# --- exhaustive damage -------------------------------------------------------------------------


def test_every_truncation_is_reported_as_truncated() -> None:
    sealed = seal(b"short payload")
    for cut in range(len(sealed)):
        with pytest.raises(TruncatedEnvelope):
            open_as_hub(sealed[:cut])


def test_every_single_bit_flip_fails_with_an_envelope_error() -> None:
    sealed = seal(b"short payload")
    kinds: set[str] = set()
    for bit in range(len(sealed) * 8):
        damaged = bytearray(sealed)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            open_as_hub(bytes(damaged))
        except EnvelopeError as exc:
            assert type(exc) not in (EnvelopeError, EnvelopeArgumentError), exc
            kinds.add(type(exc).__name__)
        else:
            pytest.fail(f"bit {bit} flipped and the package still opened")
    assert {"MalformedEnvelope", "DecryptionFailed", "WrongRecipient", "UnknownKeyId"} <= kinds


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=4096),
    suite=st.sampled_from(list(Suite)),
    created_ms=st.integers(0, 2**63 - 1),
    package_id=st.binary(min_size=16, max_size=16),
)
def test_any_payload_round_trips(
    payload: bytes, suite: Suite, created_ms: int, package_id: bytes
) -> None:
    sealed = seal(payload, suite=suite, created_ms=created_ms, package_id=package_id)
    opened = open_as_hub(sealed)
    assert opened.payload == payload
    assert opened.created_ms == created_ms
    assert opened.package_id == package_id


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_envelope_errors(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_as_hub(data)


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=400), cut=st.integers(0, 60))
def test_a_real_header_with_arbitrary_rest_only_raises_envelope_errors(
    tail: bytes, cut: int
) -> None:
    with pytest.raises(EnvelopeError):
        open_as_hub(seal()[:cut] + tail)
