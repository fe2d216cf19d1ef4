"""`cunlink outbox ...`: what the station still has to deliver to the county.

    cunlink outbox list  [--held] [--limit N] [--json] [--lang zh-CN|en] --config PATH
    cunlink outbox stats [--json] [--lang zh-CN|en] --config PATH
    cunlink outbox hold  ID [--json] [--lang zh-CN|en] --config PATH
    cunlink outbox retry ID [--json] [--lang zh-CN|en] --config PATH

An entry stays until the hub acknowledges its commit; nothing is dropped for age or space.

ID is a package id in hex as `outbox list` shows it, whole or a prefix of at least 4
characters that matches one package only, or a case number (ST001-20261122-0007), which
names every undelivered package of that case. `hold` keeps a package from being sent (the
daemon also holds a package the hub rejected, with the reason `list --held` shows); `retry`
puts it back in the queue. Both are safe while the daemon runs: they are single writes to the
store, which the daemon consults before it starts each package. A package the daemon is
already sending when it is held is not interrupted: it finishes, or, cut off, is not started
again.

Human output and errors follow the language rules of gateway.i18n; --json does not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gateway import probe
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
from gateway.cli.common import LangOption, fail_t, ljust, rjust, station_messages
from gateway.i18n import Messages
from sync.store import OutboxStats

app = typer.Typer(no_args_is_help=True,
                  help="Undelivered packages: list, totals, hold and retry.")

PRIORITY_NAMES = {0: "control", 1: "events", 2: "blobs"}


def _age(t: Messages, ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms // 1000
    if seconds < 120:
        return t("unit.s", s=seconds)
    if seconds < 7200:
        return t("age.m", m=seconds // 60)
    if seconds < 172_800:
        return t("age.h", h=seconds // 3600)
    return t("age.d", d=seconds // 86_400)


def _word(t: Messages, prefix: str, value: str) -> str:
    """A class or state name in the user's language (an unknown one as it is)."""
    return t(f"{prefix}.{value}") if t.has(f"{prefix}.{value}") else value


@app.command("list")
def list_entries(
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="Show at most this many.")] = 200,
    as_json: JsonOption = False,
    held: Annotated[
        bool, typer.Option("--held", help="Only held packages, with the reason.")] = False,
    lang: LangOption = None,
) -> None:
    """Undelivered packages in sending order (priority, then oldest first)."""
    cfg, t = station_messages(config, lang)
    warn_quarantine(cfg, t)
    rows: list[dict[str, Any]] = []
    if not store_exists(cfg):
        no_store(cfg, t)
    else:
        async def body() -> list[dict[str, Any]]:
            async with await open_store(cfg) as store:
                entries = await store.outbox_all(100_000 if held else limit)
                if held:
                    entries = [e for e in entries if e.state == "held"][:limit]
                reasons = {e.package_id: await store.kv_get(reject_key(e.package_id))
                           for e in entries if e.state == "held"}
            now = time.time_ns() // 1_000_000
            return [{"package_id": e.package_id.hex(), "kind": e.kind,
                     "priority": PRIORITY_NAMES.get(e.priority, str(e.priority)),
                     "case": e.case, "size": e.size, "bytes_acked": e.bytes_acked,
                     "attempts": e.attempts, "state": e.state,
                     "age_ms": max(0, now - e.first_queued_ms),
                     "reason": _reason(reasons.get(e.package_id))} for e in entries]

        rows = run(body(), t)
    if as_json:
        typer.echo(json.dumps({"entries": rows}, ensure_ascii=False, indent=2))
        return
    if not rows:
        typer.echo(t("outbox.no_held") if held else t("outbox.empty"))
        return
    typer.echo(f"{ljust(t('outbox.col.package'), 34)} {ljust(t('outbox.col.kind'), 5)} "
               f"{ljust(t('outbox.col.class'), 7)} {ljust(t('outbox.col.case'), 24)} "
               f"{rjust(t('outbox.col.size'), 9)} {rjust(t('outbox.col.acked'), 9)} "
               f"{rjust(t('outbox.col.tries'), 5)} {ljust(t('outbox.col.state'), 6)} "
               f"{t('outbox.col.age')}")
    for r in rows:
        typer.echo(f"{r['package_id']:<34} {r['kind']:<5} "
                   f"{ljust(_word(t, 'class', r['priority']), 7)} "
                   f"{r['case'] or '-':<24} {r['size']:>9} {r['bytes_acked']:>9} "
                   f"{r['attempts']:>5} {ljust(_word(t, 'outbox.state', r['state']), 6)} "
                   f"{_age(t, r['age_ms'])}")
        if r["reason"]:
            typer.echo(t("outbox.rejected", reason=r["reason"]))


@app.command("stats")
def stats(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False,
          lang: LangOption = None) -> None:
    """Totals: entries per class, bytes still to send, age of the oldest."""
    cfg, t = station_messages(config, lang)
    warn_quarantine(cfg, t)
    if not store_exists(cfg):
        no_store(cfg, t)
        got = OutboxStats(count_by_priority={}, bytes_pending=0, oldest_age_ms=None)
    else:
        async def body() -> OutboxStats:
            async with await open_store(cfg) as store:
                return await store.outbox_stats()

        got = run(body(), t)
    by_class = {PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(got.count_by_priority.items())}
    if as_json:
        typer.echo(json.dumps({"count": got.count, "by_class": by_class,
                               "bytes_pending": got.bytes_pending,
                               "oldest_age_ms": got.oldest_age_ms, "held": got.held}, indent=2))
        return
    classes = t("cli.sep").join(f"{_word(t, 'class', name)} {n}"
                                for name, n in by_class.items()) or t("cli.none")
    typer.echo(t("outbox.stats.count", count=got.count, classes=classes, held=got.held))
    typer.echo(t("outbox.stats.bytes", bytes=got.bytes_pending))
    typer.echo(t("outbox.stats.oldest", age=_age(t, got.oldest_age_ms)))


# -- hold / retry ---------------------------------------------------------------------------------

IdArgument = Annotated[str, typer.Argument(
    metavar="ID",
    help="Package id in hex (or a unique prefix of 4+ characters), or a case number "
    "(all of that case's packages).")]


def reject_key(package_id: bytes) -> str:
    """Where the uplink records why the hub rejected a package (sync/uplink.py)."""
    return f"reject:{package_id.hex()}"


def _reason(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


@app.command("hold")
def hold(ident: IdArgument, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False,
         lang: LangOption = None) -> None:
    """Keep a package (or a case's packages) from being sent until `outbox retry`."""
    _set_state(ident, config, lang, as_json, target="held")


@app.command("retry")
def retry(ident: IdArgument, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False,
          lang: LangOption = None) -> None:
    """Put held packages back in the queue; they go when the link allows."""
    _set_state(ident, config, lang, as_json, target="queued")


def _resolve(t: Messages, db: Path, ident: str) -> list[probe.PackageRef]:
    try:
        kind, refs = probe.find_packages(db, ident)
    except probe.BadPackageRef:
        fail_t(t, "outbox.bad_id", id=ident, min=probe.MIN_PREFIX)
    except probe.StoreUnreadable as exc:
        fail_t(t, "outbox.unreadable", error=str(exc))
    if not refs:
        fail_t(t, "outbox.unknown_case" if kind == "case" else "outbox.unknown", id=ident)
    if kind == "package" and len(refs) > 1:
        shown = ", ".join(r.package_id.hex() for r in refs[:5])
        fail_t(t, "outbox.ambiguous", id=ident, n=len(refs), ids=shown)
    return refs


def _set_state(ident: str, config: Path, lang: str | None, as_json: bool, *,
               target: Literal["held", "queued"]) -> None:
    cfg, t = station_messages(config, lang)
    warn_quarantine(cfg, t)
    db = probe.store_db(cfg.station.state_dir)
    if not db.exists():
        fail_t(t, "outbox.no_store", db=db)
    refs = _resolve(t, db, ident)

    async def body() -> dict[str, list[str]]:
        done: dict[str, list[str]] = {"changed": [], "unchanged": [], "gone": []}
        async with await open_store(cfg) as store:
            for ref in refs:
                pid = ref.package_id
                if ref.state == target:
                    done["unchanged"].append(pid.hex())
                    continue
                changed = await (store.outbox_hold(pid) if target == "held"
                                 else store.outbox_retry(pid))
                done["changed" if changed else "gone"].append(pid.hex())
                if changed and target == "queued":
                    await store.kv_delete(reject_key(pid))  # the old reason no longer applies
        return done

    done = run(body(), t)
    if as_json:
        typer.echo(json.dumps({"action": "hold" if target == "held" else "retry", **done},
                              indent=2))
        return
    verb = "hold" if target == "held" else "retry"
    by_id = {r.package_id.hex(): r for r in refs}
    for outcome in ("changed", "unchanged", "gone"):
        for pid in done[outcome]:
            ref = by_id[pid]
            typer.echo(t(f"outbox.{verb}.{outcome}", id=pid, kind=ref.kind,
                         case=ref.case or "-", size=ref.size))
    if done["changed"]:
        typer.echo(t(f"outbox.{verb}.note"))
