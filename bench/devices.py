"""Peripherals: ID-card reads per second against the wire limit, and page normalisation.

1. ID-card reader: reads per second through the emulator on a pseudo-terminal at 115200 baud
   (measured by bench/devices_idcard.py), against the wire-time limit: a 1295-byte text+photo
   response alone takes 1295 × 10 bits / 115200 ≈ 112 ms on an 8N1 line.
2. Document camera: an 8-megapixel (3264×2448) A4 page as the camera encodes it (JPEG quality
   92, the emulator's synthetic form with lamp fall-off and sensor noise) against the page
   normalised by `devices.normalise` under a few policies: bytes, ratio, milliseconds (median
   of the runs), and what the bytes mean on a 2G uplink.

Usage:

    .venv/bin/python bench/devices.py            # about half a minute
    .venv/bin/python bench/devices.py --quick    # a few seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script, bench/ is sys.path[0], where this very file would shadow the devices
    # package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from PIL import Image, ImageOps

from bench.devices_idcard import measure_idcard_reads
from devices.emulators.camera import PageSpec, render_page
from devices.normalise import NormalisePolicy, normalise
from protocols.mjpeg import complete_jpeg, strip_dht

# A 2G (GPRS/EDGE) uplink as village stations see it: a few tens of kbit/s once the radio and
# TCP overheads are paid. An assumption for scale, not a measurement.
UPLINK_BITS_PER_S = 40_000
READ_FRAME_BYTES = 1295

POLICIES: list[tuple[str, NormalisePolicy]] = [
    # The station config's defaults ([devices.camera]: max_pixels 3 MP, no dpi, quality 70).
    (
        "config default: ≤3 MP grey q70",
        NormalisePolicy(max_pixels=3_000_000, dpi=None, jpeg_quality=70),
    ),
    ("150 dpi grey q60 (library default)", NormalisePolicy()),
    ("200 dpi grey q75", NormalisePolicy(dpi=200, max_pixels=None, jpeg_quality=75)),
    (
        "200 dpi colour q75",
        NormalisePolicy(dpi=200, max_pixels=None, jpeg_quality=75, greyscale=False),
    ),
]


def _uplink(nbytes: int) -> str:
    seconds = nbytes * 8 / UPLINK_BITS_PER_S
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def bench_idcard(seconds: float) -> dict[str, Any]:
    f = measure_idcard_reads(seconds)
    print(f"ID-card reader: emulator on a pseudo-terminal, paced to {f['baud']} baud 8N1")
    print(
        f"  {f['reads']} reads in {f['seconds']} s = {f['reads_per_s']} reads/s; "
        f"mean {f['mean_ms']} ms, p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms"
    )
    print(
        f"  wire limit: the {READ_FRAME_BYTES}-byte response alone takes {f['wire_limit_ms']} ms "
        f"(≤ {f['wire_limit_reads_per_s']} reads/s); a whole find+select+read cycle "
        f"{f['cycle_wire_ms']} ms"
    )
    print(
        f"  ratio: wire limit / measured read = {f['ratio_to_wire_limit']:.2f}, "
        f"whole cycle on the wire / measured = {f['ratio_to_cycle_wire']:.2f}"
    )
    print(
        f"  software alone (pacing off, same run): {f['unpaced_mean_ms']} ms a read, "
        f"{f['unpaced_reads_per_s']} reads/s"
    )
    return f


def bench_camera(runs: int) -> None:
    spec = PageSpec()  # 3264×2448, quality 92
    started = time.perf_counter()
    raw = render_page(spec)
    print(
        f"\ndocument camera: one {spec.width}×{spec.height} page "
        f"({spec.width * spec.height / 1e6:.1f} MP) as the camera encodes it, JPEG quality "
        f"{spec.quality}: {len(raw):,} bytes (rendered in {time.perf_counter() - started:.1f} s)"
    )
    frame = strip_dht(raw)
    completions = []
    for _ in range(max(runs, 20)):
        t = time.perf_counter()
        complete_jpeg(frame)
        completions.append(time.perf_counter() - t)
    print(
        f"  MJPEG completion (Annex K tables into a {len(frame):,}-byte frame): "
        f"{statistics.median(completions) * 1e6:.0f} µs"
    )
    print(f"  raw still on a {UPLINK_BITS_PER_S // 1000} kbit/s 2G uplink: {_uplink(len(raw))}")
    print(
        f"  {'policy':<36} {'pixels':>11} {'dpi':>4} {'bytes':>9} {'ratio':>6} "
        f"{'ms (median)':>11} {'on 2G':>8}"
    )
    medians: dict[str, float] = {}
    for label, policy in POLICIES:
        pages = [normalise(raw, policy) for _ in range(runs)]
        page = pages[0]
        medians[label] = ms = statistics.median(p.seconds for p in pages) * 1000
        print(
            f"  {label:<36} {page.width:>5}×{page.height:<5} {page.dpi:>4.0f} "
            f"{page.bytes_out:>9,} {page.ratio:>5.1f}× {ms:>11.0f} {_uplink(page.bytes_out):>8}"
        )
    # Baseline for the time: the obvious Pillow code (decode every pixel, then resize), for
    # the library-default policy, against normalise(), which lets libjpeg decode at 1/2 scale.
    label, policy = POLICIES[1]
    target = normalise(raw, policy)
    naive = []
    for _ in range(runs):
        t = time.perf_counter()
        with Image.open(io.BytesIO(raw)) as image:
            page_image = ImageOps.exif_transpose(image.convert("L"))
            small = page_image.resize((target.width, target.height), Image.Resampling.LANCZOS)
            small.save(io.BytesIO(), "JPEG", quality=policy.jpeg_quality, optimize=True)
        naive.append(time.perf_counter() - t)
    naive_ms = statistics.median(naive) * 1000
    print(
        f"  baseline, full decode + resize ({label}): {naive_ms:.0f} ms; "
        f"normalise() is {naive_ms / medians[label]:.1f}× faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = parser.parse_args()
    bench_idcard(3.0 if args.quick else 15.0)
    bench_camera(2 if args.quick else 7)


if __name__ == "__main__":
    main()
