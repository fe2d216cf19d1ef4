"""`cunlink hub ...`: run the county hub, enroll stations, look at and act on cases."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli.common import fail, load_hub
from gateway.hubd import open_hub_store, registry, run_hub
from gateway.keys import KeyFileError, load_identity
from gateway.registry import EnrollmentError
from sync.hubactions import HubActionError, HubActions
from sync.model import Side, Status, fold

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="The county hub.")
case_app = typer.Typer(no_args_is_help=True, help="Act on a received case.")
app.add_typer(case_app, name="case")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="hub.toml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@app.command("run")
def run(config: ConfigOpt, worker: Annotated[str, typer.Option(
        help="worker name (several workers share one subscription); keep it fixed across "
             "restarts, it names the worker's MQTT session")] = "",
        metrics_port: Annotated[int | None, typer.Option(
            # "\\[" keeps Rich from taking [metrics] for markup and dropping it
            "--metrics-port", help="override \\[metrics] port for this worker; 0 = off")] = None,
        ) -> None:
    """Run a hub worker: verify, commit and acknowledge what stations send."""
    from gateway import logs
    from gateway.lifecycle import LifecycleError
    from sync.store import StoreError

    cfg = load_hub(config)
    logs.setup(cfg.log.level)
    try:
        asyncio.run(run_hub(cfg, worker=worker or None, metrics_port=metrics_port,
                            config_path=config.resolve()))
    except (KeyFileError, StoreError, LifecycleError) as exc:
        fail(str(exc))


@app.command("enroll")
def enroll(file: Path, config: ConfigOpt,
           force: Annotated[bool, typer.Option(help="replace a station's keys")] = False) -> None:
    """Import a station's enrollment file (made by `cunlink keys init --role station`)."""
    cfg = load_hub(config)
    try:
        enrollment = registry(cfg).enroll(file, force=force)
    except (EnrollmentError, KeyFileError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"enrolled station {enrollment.id}")


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a store query; a store that cannot be opened is one clear line, not a traceback."""
    from sync.store import StoreError

    try:
        return asyncio.run(work)
    except StoreError as exc:
        fail(str(exc))


@app.command("stations")
def stations(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Enrolled stations with last seen, backlog and link figures."""
    cfg = load_hub(config)

    async def collect() -> list[dict[str, object]]:
        async with await open_hub_store(cfg) as store:
            rows = []
            for station in registry(cfg).stations():
                raw = await store.kv_get(f"station:{station}")
                seen = json.loads(raw) if raw else {}
                rows.append({"station": station, **seen})
            return rows

    rows = _run(collect())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    now = time.time() * 1000
    typer.echo(f"{'station':<16} {'online':<7} {'last seen':>12} {'packages':>9} "
               f"{'bytes in':>12} {'backlog':>8}")
    for row in rows:
        last = row.get("last_seen_ms")
        ago = f"{(now - float(last)) / 1000:.0f} s ago" if isinstance(last, int | float) and last \
            else "never"
        typer.echo(f"{row['station']!s:<16} {'yes' if row.get('online') else 'no':<7} {ago:>12} "
                   f"{row.get('packages', 0)!s:>9} {row.get('bytes_in', 0)!s:>12} "
                   f"{row.get('backlog', '-')!s:>8}")


@app.command("cases")
def cases(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Received cases with their status and each material's SHA-256."""
    cfg = load_hub(config)

    async def collect() -> list[dict[str, object]]:
        async with await open_hub_store(cfg) as store:
            out: list[dict[str, object]] = []
            hub_id = cfg.hub.id
            for case in await store.case_ids():
                state = fold(await store.events_for_case(case),
                             hub_origins=lambda o: Side.HUB if o == hub_id else Side.STATION)
                out.append({
                    "case": case, "status": state.status.value, "service": state.service,
                    "conflicts": len(state.conflicts),
                    "materials": [{"sha256": m.sha256, "size": m.size, "mime": m.mime,
                                   "received": store.blob_path(m.sha256).exists()}
                                  for m in state.materials],
                })
            return out

    rows = _run(collect())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['case']}  {row['status']}  service={row['service']}  "
                   f"conflicts={row['conflicts']}")
        for m in row["materials"]:  # type: ignore[attr-defined]
            mark = "received" if m["received"] else "on its way"
            typer.echo(f"    {m['sha256']}  {m['size']} bytes  {mark}")


def _act(config: Path, action: str, case: str, **kwargs: object) -> None:
    cfg = load_hub(config)

    async def go() -> str:
        async with await open_hub_store(cfg) as store:
            actions = HubActions(store=store, identity=load_identity(cfg.keys.dir, cfg.hub.id),
                                 stations=registry(cfg).lookup)
            event = await getattr(actions, action)(case, **kwargs)
            return str(event.id)

    try:
        event_id = _run(go())
    except (HubActionError, KeyFileError) as exc:
        fail(str(exc))
    typer.echo(f"queued for the station: event {event_id}")


@case_app.command("set-status")
def set_status(case: str, status: Annotated[str, typer.Argument(
        help="received | in_review | needs_supplement | approved | rejected | completed")],
        config: ConfigOpt, reason: Annotated[str, typer.Option(help="why")] = "") -> None:
    """Change a case's status; the station gets it when it is next online."""
    try:
        target = Status(status)
    except ValueError:
        fail(f"unknown status {status!r}; one of: " + ", ".join(s.value for s in Status))
    _act(config, "set_status", case, status=target, reason=reason)


@case_app.command("request-material")
def request_material(case: str, config: ConfigOpt,
                     what: Annotated[str, typer.Option(help="what is needed")]) -> None:
    """Ask the station for more material (补正材料)."""
    _act(config, "request_material", case, what=what)
