"""The sealed envelope's cost, against the raw primitives it is built from, on one core.

Measured in the same run, pinned to one CPU, alternating rounds, median reported:

1. a 2 KB event batch: seal + open (HPKE to the hub, Ed25519 sign + verify, msgpack) in
   packages/s, with its ratio to raw AES-256-GCM encrypt + decrypt of the same 2 KB and to
   Ed25519 sign + verify alone;
2. a 5 MB blob in memory: SHA-256 + seal every 64 KiB chunk, then open every chunk + SHA-256, in
   MB/s, with its ratio to raw AES-256-GCM encrypt + decrypt of the same chunks;
3. peak RSS of a fresh process sealing and then opening a blob from disk to disk (200 MB, and
   20 MB to show the figure does not grow with the blob), read from getrusage(ru_maxrss); as a
   control, the same process then reads the blob into memory, and its peak must jump.

Usage:

    .venv/bin/python bench/envelope.py            # about a minute
    .venv/bin/python bench/envelope.py --quick    # a few seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocols.envelope import (
    BlobOpener,
    BlobSealer,
    LocalIdentity,
    Suite,
    open_batch,
    seal_batch,
)

BATCH_BYTES = 2048
BLOB_BYTES = 5 * 1024 * 1024
CHUNK = 65536
MB = 1_000_000  # throughput in decimal MB/s; RSS in MiB


def pin_to_one_core() -> int:
    """Run on one CPU (the last one: the first tends to take interrupts); return its number."""
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def identities() -> tuple[LocalIdentity, LocalIdentity]:
    def make(ident: str) -> LocalIdentity:
        return LocalIdentity(
            id=ident,
            signing_key=Ed25519PrivateKey.generate(),
            encryption_key=X25519PrivateKey.generate(),
        )

    return make("ST001"), make("hub-0571")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn` over about `seconds`."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def compare(
    cases: dict[str, Callable[[], object]], seconds: float, rounds: int
) -> dict[str, float]:
    """Median calls/s of each case, measured in alternating rounds so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(rate(fn, seconds / rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_batch(station: LocalIdentity, hub: LocalIdentity, seconds: float) -> dict[str, float]:
    payload = os.urandom(BATCH_BYTES)
    hub_public = hub.public()
    peers = {station.signing_key_id: station.public()}
    counter = iter(range(1 << 62))

    def envelope() -> None:
        package_id = next(counter).to_bytes(16, "big")
        sealed = seal_batch(
            payload, sender=station, recipient=hub_public, package_id=package_id, created_ms=1
        )
        opened = open_batch(
            sealed, me=hub, peers=peers, expected_sender="ST001", seen=lambda _: False
        )
        assert opened.payload == payload

    aes = AESGCM(os.urandom(32))
    nonce = os.urandom(12)

    def raw_aes() -> None:
        assert aes.decrypt(nonce, aes.encrypt(nonce, payload, None), None) == payload

    key = Ed25519PrivateKey.generate()
    public = key.public_key()

    def raw_ed25519() -> None:
        public.verify(key.sign(payload), payload)

    return compare(
        {"envelope": envelope, "aes": raw_aes, "ed25519": raw_ed25519}, seconds, rounds=5
    )


def bench_blob(station: LocalIdentity, hub: LocalIdentity, seconds: float) -> dict[str, float]:
    blob = os.urandom(BLOB_BYTES)
    pieces = [blob[i : i + CHUNK] for i in range(0, BLOB_BYTES, CHUNK)]
    hub_public = hub.public()
    peers = {station.signing_key_id: station.public()}

    def envelope() -> None:
        sealer = BlobSealer(
            sender=station, recipient=hub_public, package_id=os.urandom(16), created_ms=1,
            size=BLOB_BYTES, digest=hashlib.sha256(blob).digest(), chunk_size=CHUNK,
            suite=Suite.X25519_SHA256_AES256GCM,
        )  # fmt: skip
        opener = BlobOpener.from_header(
            sealer.header(), me=hub, peers=peers, expected_sender="ST001", seen=lambda _: False
        )
        h = hashlib.sha256()
        # Each chunk is opened as soon as it is sealed, as the baseline does, so neither side
        # pays for keeping 5 MB of ciphertext around.
        for i, piece in enumerate(pieces):
            h.update(opener.open_chunk(i, sealer.seal_chunk(i, piece)))
        opener.manifest.check_digest(h.digest())

    aes = AESGCM(os.urandom(32))
    nonce = os.urandom(12)

    def raw_aes() -> None:
        for piece in pieces:
            aes.decrypt(nonce, aes.encrypt(nonce, piece, b"aad"), b"aad")

    def raw_aes_sha() -> None:
        # the same primitives the envelope must run: SHA-256 and AEAD on both sides
        hashlib.sha256(blob).digest()
        raw_aes()
        hashlib.sha256(blob).digest()

    return compare(
        {"envelope": envelope, "aes": raw_aes, "aes_sha": raw_aes_sha}, seconds, rounds=5
    )


# --- peak RSS, in a fresh process --------------------------------------------------------------


def _vm(field: str) -> float:
    """VmHWM (peak) or VmRSS (current) of this process, in MiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {field}: this benchmark needs Linux")


def _reset_peak() -> None:
    # Linux >= 4.0: "5" resets VmHWM to the current RSS, so the next peak is this step's own.
    Path("/proc/self/clear_refs").write_text("5")


def rss_child(src: Path, workdir: Path) -> None:
    """Child process: seal then open `src` from disk to disk; print its RSS figures as JSON.

    ru_maxrss alone would mislead: the kernel carries the spawning process's peak into a child
    across exec (a child of a 300 MB parent reports 300 MB before doing anything), which is why
    the parent spawns this before it grows. VmHWM is the same high-water counter for this process
    image only; both are printed.
    """
    from sync.blobfile import open_file, seal_file

    pin_to_one_core()
    station, hub = identities()
    result = {"imports": _vm("VmRSS")}
    start = time.perf_counter()
    seal_file(
        src, workdir / "sealed", sender=station, recipient=hub.public(), package_id=bytes(16),
        created_ms=1, chunk_size=CHUNK,
    )  # fmt: skip
    result["seal_s"] = time.perf_counter() - start
    start = time.perf_counter()
    open_file(
        workdir / "sealed", workdir / "opened", me=hub,
        peers={station.signing_key_id: station.public()}, expected_sender="ST001",
        seen=lambda _: False,
    )  # fmt: skip
    result["open_s"] = time.perf_counter() - start
    result["hwm"] = _vm("VmHWM")
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    # Control: proves the measure sees a whole-blob buffer when there is one.
    _reset_peak()
    whole = src.read_bytes()
    result["control"] = _vm("VmHWM")
    del whole
    print(json.dumps(result))


def bench_rss(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="cunlink-bench-") as d:
        src = Path(d) / "scan.bin"
        block = os.urandom(1024 * 1024)
        with src.open("wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(src), d],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        result: dict[str, float] = json.loads(out.stdout)
        opened = Path(d) / "opened"
        if opened.stat().st_size != size:
            raise SystemExit(f"opened blob has {opened.stat().st_size} bytes, expected {size}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, small RSS blob")
    parser.add_argument("--rss-child", nargs=2, metavar=("SRC", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(Path(args.rss_child[0]), Path(args.rss_child[1]))
        return
    cpu = pin_to_one_core()
    seconds = 1.0 if args.quick else 10.0
    print(f"cunlink envelope benchmark: Python {sys.version.split()[0]}, pinned to CPU {cpu}")
    # The RSS children run first, while this process is still small (see rss_child).
    sizes = [20] if args.quick else [20, 200]
    rss = {mib: bench_rss(mib * 1024 * 1024) for mib in sizes}
    station, hub = identities()

    b = bench_batch(station, hub, seconds)
    print(f"\n2 KB event batch, seal + open (median of 5 alternating rounds, {seconds:.0f} s):")
    print(f"  envelope               {b['envelope']:>10,.0f} packages/s")
    print(f"  raw AES-256-GCM        {b['aes']:>10,.0f} enc+dec/s   envelope costs "
          f"{b['aes'] / b['envelope']:,.0f}x")  # fmt: skip
    print(f"  raw Ed25519            {b['ed25519']:>10,.0f} sign+verify/s  envelope costs "
          f"{b['ed25519'] / b['envelope']:.2f}x")  # fmt: skip

    blob = bench_blob(station, hub, seconds)
    env_mbs, aes_mbs = blob["envelope"] * BLOB_BYTES / MB, blob["aes"] * BLOB_BYTES / MB
    print(
        f"\n5 MiB blob in memory, {CHUNK // 1024} KiB chunks, seal + open incl. SHA-256 both ways:"
    )
    print(f"  envelope               {env_mbs:>10,.1f} MB/s")
    both_mbs = blob["aes_sha"] * BLOB_BYTES / MB
    print(f"  raw AES-256-GCM        {aes_mbs:>10,.1f} MB/s (enc+dec)   envelope reaches "
          f"{env_mbs / aes_mbs:.2f}x of it")  # fmt: skip
    print(f"  raw AES-GCM + SHA-256  {both_mbs:>10,.1f} MB/s (enc+dec, hash twice)   envelope "
          f"reaches {env_mbs / both_mbs:.2f}x of it")  # fmt: skip

    print("\nPeak RSS of a fresh process (spawned before the runs above), sealing then opening")
    print("a blob file to file, 64 KiB chunks:")
    for mib, r in rss.items():
        total = mib * 1024 * 1024 / MB
        print(
            f"  {mib:>4} MiB blob: RSS after imports {r['imports']:.1f} MiB; peak over imports + "
            f"seal + open: VmHWM {r['hwm']:.1f} MiB, ru_maxrss {r['ru_maxrss']:.1f} MiB"
        )
        print(
            f"             seal {total / r['seal_s']:.0f} MB/s, open {total / r['open_s']:.0f} "
            f"MB/s disk to disk; control (blob read into memory): peak {r['control']:.1f} MiB"
        )


if __name__ == "__main__":
    main()
