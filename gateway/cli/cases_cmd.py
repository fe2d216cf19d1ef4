"""`cunlink cases ...`: list, show and submit cases in the station's store.

    cunlink cases list   [--status S] [--json] [--lang zh-CN|en] --config PATH
    cunlink cases show   CASE [--reveal] [--json] [--lang zh-CN|en] --config PATH
    cunlink cases submit --service CODE --applicant FILE.json [--material FILE ...] --config PATH

These open the same SQLite store as the running daemon; that is safe (WAL readers, and a second
writer that waits its turn for the write lock). Run them as the daemon's user, so files the
store creates stay writable by the daemon. Personal data (names, ID numbers, addresses, phone
numbers, ...) is masked unless --reveal. If the store was found damaged and moved aside, every
command says so first.

Human output and errors are in Simplified Chinese or English (see gateway.i18n: --lang,
$CUNLINK_LANG, the locale, then [station] language); --json is the same in every language.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli.common import (
    LangOption,
    fail_t,
    fail_with,
    ljust,
    rjust,
    station_messages,
)
from gateway.config import StationConfig
from gateway.i18n import Messages, english
from protocols.idcard.idnumber import masked_id
from sync.events import CaseModelError, Event
from sync.hlc import physical_ms
from sync.model import CaseState, Side
from sync.store import Store, StoreError, StoreLayout, quarantine_reports

app = typer.Typer(no_args_is_help=True, help="List, show and submit the station's cases.")

T = TypeVar("T")
MB = 1024 * 1024
DEFAULT_CONFIG = Path("/etc/cunlink/station.toml")
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Station configuration file (TOML).")
]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON on stdout (the same in every language).")]
RevealOption = Annotated[
    bool, typer.Option("--reveal", help="Show names, ID numbers and addresses in full.")
]

# -- masking -------------------------------------------------------------------------------------

#: Applicant keys that are not personal and are shown as they are.
_PLAIN_APPLICANT_KEYS = frozenset({"id_type", "sex", "nation"})
#: A form field whose name contains one of these holds personal data.
_PERSONAL_FIELD_HINTS = ("name", "id", "phone", "mobile", "tel", "addr", "bank", "account",
                         "card", "birth", "mail", "photo")


def _mask_text(value: str, key: str) -> str:
    key = key.lower()
    if "id_number" in key or key in ("id", "idno", "id_no"):
        return masked_id(value)
    if any(k in key for k in ("phone", "mobile", "tel")) and len(value) >= 7:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    if "addr" in key:
        return value[:6] + "*" * min(8, max(1, len(value) - 6))
    if not value:
        return value
    return value[0] + "*" * max(1, min(8, len(value) - 1))  # 张三丰 -> 张**


def mask_value(key: str, value: object) -> object:
    """A shown-safe version of one personal value (strings and numbers; others hidden)."""
    if isinstance(value, str):
        return _mask_text(value, key)
    if isinstance(value, int) and not isinstance(value, bool):
        return _mask_text(str(value), key)
    return "***"


def mask_applicant(applicant: Mapping[str, object], reveal: bool) -> dict[str, object]:
    if reveal:
        return dict(applicant)
    return {k: v if k in _PLAIN_APPLICANT_KEYS else mask_value(k, v) for k, v in applicant.items()}


def mask_fields(fields: Mapping[str, object], reveal: bool) -> dict[str, object]:
    if reveal:
        return dict(fields)
    return {k: mask_value(k, v) if any(h in k.lower() for h in _PERSONAL_FIELD_HINTS) and
            v is not None else v for k, v in fields.items()}


def mask_body(event: Event, reveal: bool) -> dict[str, Any]:
    body = dict(event.body)
    if reveal:
        return body
    if "applicant" in body:
        body["applicant"] = mask_applicant(body["applicant"], reveal)
    if "fields" in body:
        body["fields"] = mask_fields(body["fields"], reveal)
    if "name" in body and "value" in body:  # field_set
        body["value"] = mask_fields({body["name"]: body["value"]}, reveal)[body["name"]]
    return body


# -- store access --------------------------------------------------------------------------------


def hlc_time(hlc: int) -> str:
    """The wall-clock part of an HLC as local time (what an operator reads)."""
    return datetime.fromtimestamp(physical_ms(hlc) / 1000).isoformat(timespec="seconds")


def warn_quarantine(cfg: StationConfig, t: Messages = english) -> list[dict[str, Any]]:
    """Print (stderr) any damaged store moved aside, and return the reports."""
    layout = StoreLayout.station(cfg.station.state_dir)
    reports = quarantine_reports(layout.db)
    for report in reports:
        typer.echo(t("cli.warning", message=report.describe()), err=True)
    if reports:
        typer.echo(t("store.quarantine_note", file=f"{layout.db.name}.quarantine.jsonl"),
                   err=True)
    return [{"detected_at": r.detected_at, "moved_to": [str(p) for p in r.moved_to],
             "reason": r.reason} for r in reports]


def run(coro: Awaitable[T], t: Messages = english) -> T:
    """Run one command's async body; store and intake errors become one clear line."""
    async def main() -> T:
        return await coro

    try:
        return asyncio.run(main())
    except (StoreError, CaseModelError) as exc:
        fail_with(t, str(exc))


def store_exists(cfg: StationConfig) -> bool:
    return StoreLayout.station(cfg.station.state_dir).db.exists()


async def open_store(cfg: StationConfig) -> Store:
    layout = StoreLayout.station(cfg.station.state_dir)
    station = cfg.station.id
    return await Store.open(
        layout.db, blob_dir=layout.blobs, sealed_dir=layout.sealed,
        disk_floor_bytes=cfg.store.disk_floor_mb * MB,
        clock_max_ahead_ms=None,  # as in gateway.station: a station never clamps the hub
        # On a station's store, every origin other than this station is the county hub.
        hub_origins=lambda origin: Side.STATION if origin == station else Side.HUB,
    )


def no_store(cfg: StationConfig, t: Messages = english) -> None:
    typer.echo(t("store.none", db=StoreLayout.station(cfg.station.state_dir).db), err=True)


# -- commands ------------------------------------------------------------------------------------


@app.command("list")
def list_cases(
    config: ConfigOption = DEFAULT_CONFIG,
    status: Annotated[
        str | None, typer.Option("--status", help="Only cases in this status, e.g. submitted.")
    ] = None,
    as_json: JsonOption = False,
    lang: LangOption = None,
) -> None:
    """Every case in the store with its merged status (oldest first)."""
    cfg, t = station_messages(config, lang)
    quarantine = warn_quarantine(cfg, t)
    if not store_exists(cfg):
        no_store(cfg, t)
        rows: list[dict[str, Any]] = []
    else:
        async def body() -> list[dict[str, Any]]:
            async with await open_store(cfg) as store:
                return [{"case": c.case, "status": c.status, "service": c.service,
                         "materials": c.materials, "conflicts": c.conflicts,
                         "updated": hlc_time(c.updated_hlc)}
                        for c in await store.list_cases(status)]

        rows = run(body(), t)
    if as_json:
        typer.echo(json.dumps({"cases": rows, "quarantine": quarantine}, ensure_ascii=False,
                              indent=2))
        return
    if not rows:
        typer.echo(t("cases.none_in_status", status=t.status(status)) if status
                   else t("cases.none"))
        return
    typer.echo(f"{ljust(t('cases.col.case'), 24)} {ljust(t('cases.col.status'), 17)} "
               f"{ljust(t('cases.col.service'), 16)} {rjust(t('cases.col.materials'), 3)} "
               f"{rjust(t('cases.col.conflicts'), 4)}  {t('cases.col.updated')}")
    for r in rows:
        typer.echo(f"{r['case']:<24} {ljust(t.status(r['status']), 17)} "
                   f"{r['service'] or '-':<16} {r['materials']:>3} {r['conflicts']:>4}  "
                   f"{r['updated']}")
    typer.echo(t("cases.count", n=len(rows)))


def describe_case(state: CaseState, events: list[Event], reveal: bool) -> dict[str, Any]:
    return {
        "case": state.case,
        "status": state.status.value,
        "service": state.service,
        "created_by": state.created_by,
        "applicant": mask_applicant(state.applicant, reveal),
        "fields": mask_fields(state.fields, reveal),
        "materials": [{"sha256": m.sha256, "kind": m.kind, "pages": m.pages, "size": m.size,
                       "mime": m.mime, "answers": m.answers, "superseded_by": m.superseded_by}
                      for m in state.materials],
        "supplements": [{"id": r.id, "what": r.what, "answered_by": list(r.answered_by)}
                        for r in state.supplements],
        "status_history": [{"from": c.from_status.value, "to": c.to_status.value,
                            "side": c.side.value, "at": hlc_time(c.hlc), "reason": c.reason}
                           for c in state.status_history],
        "conflicts": [{"event": c.event_id, "reason": c.reason} for c in state.conflicts],
        "events": [{"id": e.id, "origin": e.origin, "seq": e.seq, "at": hlc_time(e.hlc),
                    "hlc": e.hlc, "type": e.type.value, "body": mask_body(e, reveal)}
                   for e in events],
        "masked": not reveal,
    }


@app.command("show")
def show(
    case: Annotated[str, typer.Argument(help="Case number, e.g. ST001-20261122-0007.")],
    config: ConfigOption = DEFAULT_CONFIG,
    reveal: RevealOption = False,
    as_json: JsonOption = False,
    lang: LangOption = None,
) -> None:
    """One case: merged state, its events and any conflicts (personal data masked)."""
    cfg, t = station_messages(config, lang)
    warn_quarantine(cfg, t)
    if not store_exists(cfg):
        no_store(cfg, t)
        fail_t(t, "cases.no_case_empty", case=case)

    async def body() -> dict[str, Any] | None:
        async with await open_store(cfg) as store:
            events = await store.events_for_case(case)
            state = await store.case_state(case)
        return None if state is None else describe_case(state, events, reveal)

    shown = run(body(), t)
    if shown is None:
        fail_t(t, "cases.no_case", case=case, db=StoreLayout.station(cfg.station.state_dir).db)
    if as_json:
        typer.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    _print_case(t, shown)


def _side(t: Messages, side: str) -> str:
    return t(f"side.{side}") if t.has(f"side.{side}") else side


def _print_case(t: Messages, shown: dict[str, Any]) -> None:
    # Keys and values of the data (field names, event types, bodies) are shown as stored.
    sep = t("cli.sep")
    typer.echo(t("cases.head", case=shown["case"], status=t.status(shown["status"]),
                 service=shown["service"]))
    typer.echo(t("cases.applicant",
                 values=sep.join(f"{k}={v}" for k, v in shown["applicant"].items())))
    if shown["fields"]:
        typer.echo(t("cases.fields",
                     values=sep.join(f"{k}={v}" for k, v in shown["fields"].items())))
    for m in shown["materials"]:
        typer.echo(t("cases.material", sha=m["sha256"][:16], kind=m["kind"], mime=m["mime"],
                     size=m["size"],
                     superseded=t("cases.superseded") if m["superseded_by"] else ""))
    for h in shown["status_history"]:
        typer.echo(t("cases.transition", old=t.status(h["from"]), new=t.status(h["to"]),
                     side=_side(t, h["side"]), at=h["at"]))
    for c in shown["conflicts"]:
        typer.echo(t("cases.conflict", event=c["event"], reason=c["reason"]))
    typer.echo(t("cases.events", n=len(shown["events"])))
    for e in shown["events"]:
        body = json.dumps(e["body"], ensure_ascii=False)
        typer.echo(f"  {e['at']}  {e['origin']}#{e['seq']:<5} {e['type']:<20} {body}")
    if shown["masked"]:
        typer.echo(t("cli.masked"))


@app.command("submit")
def submit(
    service: Annotated[str, typer.Option("--service", help="Service item code.")],
    applicant_file: Annotated[Path, typer.Option(
        "--applicant", help='JSON: the applicant (id_type, id_number, name, sex, ...), or '
        '{"applicant": {...}, "fields": {...}}.')],
    material: Annotated[list[Path] | None, typer.Option(
        "--material", help="A scanned material file; repeat for several.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    lang: LangOption = None,
) -> None:
    """Create, seal and queue a submitted case; prints its case number.

    Safe while the daemon runs: it picks the case up from the shared store's outbox."""
    # Imported here: keys, crypto and the transfer wiring are not needed to list or show.
    from gateway.keys import KeyFileError, load_enrollment, load_identity
    from gateway.wiring import suite as suite_named
    from protocols.envelope import EnvelopeError
    from sync.blobfile import BlobFileError
    from sync.intake import CaseIntake, IntakeError

    cfg, t = station_messages(config, lang)
    warn_quarantine(cfg, t)
    applicant, fields = _read_applicant(t, applicant_file)

    async def body() -> str:
        try:
            identity = load_identity(cfg.keys.dir, cfg.station.id)
            hub = load_enrollment(cfg.keys.hub_enrollment).peer()
            async with await open_store(cfg) as store:
                intake = CaseIntake(store, identity, hub, suite_named(cfg.keys.suite),
                                    cfg.station.id)
                return await intake.create_case(service, applicant, fields, material or [],
                                                submit=True)
        except (IntakeError, EnvelopeError, BlobFileError, KeyFileError) as exc:
            fail_with(t, str(exc))

    typer.echo(run(body(), t))


def _read_applicant(t: Messages, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail_t(t, "cases.unreadable_file", path=path, error=exc.strerror)
    except ValueError as exc:
        fail_t(t, "cases.bad_json", path=path, error=exc)
    if not isinstance(doc, dict):
        fail_t(t, "cases.not_object", path=path, type=type(doc).__name__)
    if "applicant" in doc:
        applicant, fields = doc["applicant"], doc.get("fields", {})
        if not isinstance(applicant, dict) or not isinstance(fields, dict):
            fail_t(t, "cases.bad_parts", path=path)
        return applicant, fields
    return doc, {}
