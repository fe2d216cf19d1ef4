"""ID-card reads per second through the emulated reader, against the 8N1 wire-time limit.

The emulator paces its replies to 115200 baud 8N1 (10 bits a byte), so a text+photo reply
(1295 bytes) cannot arrive in less than ~112 ms: that is the limit a real reader on a real
cable imposes. The run reads the card again and again with the driver (find -> select -> read,
each a full command/response exchange over a pseudo-terminal), then repeats briefly with pacing
off: that baseline, measured in the same run, is what the driver and emulator cost in software.

    python -m bench.devices_idcard [--seconds 5]

`measure_idcard_reads(seconds)` returns the figures as a dict, for bench/devices.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, bench/ is sys.path[0], where bench/devices.py would shadow the devices
    # package: put the repository root first instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from devices.emulators.idcard import EmulatorSettings, IdCardEmulator, wire_seconds
from devices.idcard import IdCardReader, ReaderSettings

BAUD = 115200
READ_REPLY = 1295  # bytes of a text+photo reply
# One read cycle on the wire: three 10-byte commands, replies of 15 (find), 19 (select), 1295.
CYCLE_BYTES = 3 * 10 + 15 + 19 + READ_REPLY


async def _reads(seconds: float, *, pace: bool) -> list[float]:
    """Durations of back-to-back reads (seconds each) for about `seconds`."""
    settings = EmulatorSettings(baud=BAUD, pace=pace, card="resident")
    with IdCardEmulator(settings) as emulator:
        async with IdCardReader(emulator.path, ReaderSettings(bauds=(BAUD,))) as reader:
            await reader.read_once(2.0)  # warm up: first-use costs are not a read's
            took: list[float] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end or len(took) < 3:
                started = time.perf_counter()
                await reader.read_once(2.0)
                took.append(time.perf_counter() - started)
    return took


async def measure_idcard_reads_async(seconds: float = 5.0) -> dict[str, float | int]:
    """As `measure_idcard_reads`, for callers already inside an event loop."""
    paced = await _reads(seconds, pace=True)
    unpaced = await _reads(max(seconds / 4, 0.5), pace=False)
    limit = wire_seconds(READ_REPLY, BAUD)
    cycle = wire_seconds(CYCLE_BYTES, BAUD)
    mean = statistics.fmean(paced)
    return {
        "baud": BAUD,
        "reads": len(paced),
        "seconds": round(sum(paced), 3),
        "reads_per_s": round(len(paced) / sum(paced), 2),
        "mean_ms": round(mean * 1000, 1),
        "p50_ms": round(statistics.median(paced) * 1000, 1),
        "p95_ms": round(sorted(paced)[int(0.95 * (len(paced) - 1))] * 1000, 1),
        "wire_limit_ms": round(limit * 1000, 1),
        "wire_limit_reads_per_s": round(1 / limit, 2),
        "cycle_wire_ms": round(cycle * 1000, 1),
        # 1.0 would be a read exactly as fast as its reply's wire time allows.
        "ratio_to_wire_limit": round(limit / mean, 3),
        "ratio_to_cycle_wire": round(cycle / mean, 3),
        "unpaced_mean_ms": round(statistics.fmean(unpaced) * 1000, 2),
        "unpaced_reads_per_s": round(len(unpaced) / sum(unpaced), 1),
    }


def measure_idcard_reads(seconds: float = 5.0) -> dict[str, float | int]:
    """Read a card through the paced emulator for about `seconds`; figures as a dict.

    Keys: reads, reads_per_s, mean_ms, p50_ms, p95_ms (paced, 115200 baud); wire_limit_ms
    (1295-byte reply, ~112 ms) and its reads_per_s; cycle_wire_ms (all bytes of find + select +
    read); ratio_to_wire_limit / ratio_to_cycle_wire (wire time / measured mean, <= 1);
    unpaced_mean_ms / unpaced_reads_per_s (the software baseline, pacing off).
    Starts its own event loop: from async code use `measure_idcard_reads_async`.
    """
    return asyncio.run(measure_idcard_reads_async(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="paced run length")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    figures = measure_idcard_reads(args.seconds)
    if args.json:
        print(json.dumps(figures))
        return
    f = figures
    rows = [
        ("reads", f"{f['reads']} in {f['seconds']} s = {f['reads_per_s']} reads/s"),
        ("mean / p50 / p95", f"{f['mean_ms']} / {f['p50_ms']} / {f['p95_ms']} ms"),
        ("wire limit (reply)", f"{f['wire_limit_ms']} ms = {f['wire_limit_reads_per_s']} reads/s"),
        ("ratio to the limit", f"{f['ratio_to_wire_limit']} (1.0 = as fast as the wire)"),
        ("wire time (cycle)", f"{f['cycle_wire_ms']} ms; ratio {f['ratio_to_cycle_wire']}"),
        ("baseline, no pacing", f"{f['unpaced_mean_ms']} ms = {f['unpaced_reads_per_s']} reads/s"),
    ]
    print(f"ID-card reads through the emulator at {BAUD} baud 8N1, wire pacing on")
    for label, value in rows:
        print(f"  {label:<20} {value}")

if __name__ == "__main__":
    main()
