"""`cunlink outbox ...`: what the station still has to deliver to the county.

    cunlink outbox list  [--limit N] [--json] --config PATH
    cunlink outbox stats [--json] --config PATH

An entry stays until the hub acknowledges its commit; nothing is dropped for age or space.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from gateway.cli.cases_cmd import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    no_store,
    open_store,
    run,
    store_exists,
    warn_quarantine,
)
from gateway.cli.common import load_station
from sync.store import OutboxStats

app = typer.Typer(no_args_is_help=True, help="Undelivered packages: list and totals.")

PRIORITY_NAMES = {0: "control", 1: "events", 2: "blobs"}


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms // 1000
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"


@app.command("list")
def list_entries(
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="Show at most this many.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Undelivered packages in sending order (priority, then oldest first)."""
    cfg = load_station(config)
    warn_quarantine(cfg)
    rows: list[dict[str, Any]] = []
    if not store_exists(cfg):
        no_store(cfg)
    else:
        async def body() -> list[dict[str, Any]]:
            async with await open_store(cfg) as store:
                entries = await store.outbox_all(limit)
            now = time.time_ns() // 1_000_000
            return [{"package_id": e.package_id.hex(), "kind": e.kind,
                     "priority": PRIORITY_NAMES.get(e.priority, str(e.priority)),
                     "case": e.case, "size": e.size, "bytes_acked": e.bytes_acked,
                     "attempts": e.attempts, "state": e.state,
                     "age_ms": max(0, now - e.first_queued_ms)} for e in entries]

        rows = run(body())
    if as_json:
        typer.echo(json.dumps({"entries": rows}, ensure_ascii=False, indent=2))
        return
    if not rows:
        typer.echo("outbox empty: everything was delivered")
        return
    typer.echo(f"{'package':<34} {'kind':<5} {'class':<7} {'case':<24} {'size':>9} "
               f"{'acked':>9} {'tries':>5} {'state':<6} age")
    for r in rows:
        typer.echo(f"{r['package_id']:<34} {r['kind']:<5} {r['priority']:<7} "
                   f"{r['case'] or '-':<24} {r['size']:>9} {r['bytes_acked']:>9} "
                   f"{r['attempts']:>5} {r['state']:<6} {_age(r['age_ms'])}")


@app.command("stats")
def stats(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Totals: entries per class, bytes still to send, age of the oldest."""
    cfg = load_station(config)
    warn_quarantine(cfg)
    if not store_exists(cfg):
        no_store(cfg)
        got = OutboxStats(count_by_priority={}, bytes_pending=0, oldest_age_ms=None)
    else:
        async def body() -> OutboxStats:
            async with await open_store(cfg) as store:
                return await store.outbox_stats()

        got = run(body())
    by_class = {PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(got.count_by_priority.items())}
    if as_json:
        typer.echo(json.dumps({"count": got.count, "by_class": by_class,
                               "bytes_pending": got.bytes_pending,
                               "oldest_age_ms": got.oldest_age_ms, "held": got.held}, indent=2))
        return
    classes = ", ".join(f"{name} {n}" for name, n in by_class.items()) or "none"
    typer.echo(f"undelivered: {got.count} ({classes}); held: {got.held}")
    typer.echo(f"bytes to send: {got.bytes_pending}")
    typer.echo(f"oldest: {_age(got.oldest_age_ms)}")
