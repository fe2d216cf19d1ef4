"""`cunlink status`: ask the running station daemon how it is doing.

    cunlink status [--config PATH] [--json] [--lang zh-CN|en] [--timeout SECONDS]

The daemon answers `GET /api/v1/status` on its Unix socket `<state_dir>/cunlink.sock` (the
socket's permissions are the authentication). When it does not answer, the command says so,
shows the backlog read straight from the store (read-only), and exits 3 (not running, as
`systemctl status` does) or 1 (running but not answering: permission, timeout, bad answer).

--json prints `{"running": true, "socket": ..., "status": <the daemon's snapshot>}` or
`{"running": false, "socket": ..., "reason": ..., "error": ..., "outbox": {...} | null,
"store_error": ... | null}`; keys and values never depend on the language.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from gateway import probe
from gateway.cli.common import (
    DEFAULT_STATION_CONFIG,
    JsonFlag,
    LangOption,
    StationConfigOption,
    load_station_t,
    messages,
)
from gateway.i18n import Messages

EXIT_NOT_RUNNING = 3
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, max=300.0, help="Seconds to wait for the daemon.")
]


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    config: StationConfigOption = DEFAULT_STATION_CONFIG,
    as_json: JsonFlag = False,
    lang: LangOption = None,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Ask the running daemon: link, backlog, devices, recent errors."""
    cfg = load_station_t(config, messages(lang))
    t = messages(lang, cfg)
    sock = probe.socket_path(cfg.station.state_dir)
    try:
        snapshot = asyncio.run(probe.fetch_status(sock, wait_s=timeout))
    except probe.DaemonUnavailable as exc:
        _not_running(t, cfg.station.state_dir, sock, exc, as_json)
    if as_json:
        typer.echo(json.dumps({"running": True, "socket": str(sock), "status": snapshot},
                              ensure_ascii=False, indent=2))
        return
    for line in render_status(t, snapshot):
        typer.echo(line)


def _not_running(
    t: Messages, state_dir: Path, sock: Path, exc: probe.DaemonUnavailable, as_json: bool
) -> NoReturn:
    db = probe.store_db(state_dir)
    figures: probe.OutboxFigures | None = None
    store_error: str | None = None
    try:
        figures = probe.read_outbox(db, now_ms=time.time_ns() // 1_000_000)
    except probe.StoreUnreadable as err:
        store_error = str(err)
    code = EXIT_NOT_RUNNING if exc.reason in ("no_socket", "refused") else 1
    if as_json:
        typer.echo(json.dumps({
            "running": False, "socket": str(sock), "reason": exc.reason, "error": exc.detail,
            "outbox": None if figures is None else figures.as_dict(), "store_error": store_error,
        }, ensure_ascii=False, indent=2))
        raise typer.Exit(code)
    key = {"no_socket": "status.not_running", "refused": "status.not_running",
           "denied": "status.denied", "timeout": "status.timeout"}.get(exc.reason, "status.error")
    typer.echo(t(key, socket=sock, detail=exc.detail), err=True)
    if code == EXIT_NOT_RUNNING:
        typer.echo(t("status.start_hint"), err=True)
    if figures is not None:
        typer.echo(t("status.from_store", db=db))
        typer.echo(_label(t, "status.backlog") + backlog_line(t, figures.as_dict()))
    else:
        typer.echo(t("status.no_store", error=store_error or ""))
    raise typer.Exit(code)


# -- rendering (pure: snapshot in, lines out) -----------------------------------------------------


def size(n: object) -> str:
    # binary units, as the configuration counts them ([store] disk_floor_mb is MiB)
    value = float(n) if isinstance(n, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # not reached


def duration(t: Messages, seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    d, h, m = s // 86_400, s % 86_400 // 3600, s % 3600 // 60
    if d:
        return t("unit.dh", d=d, h=h)
    if h:
        return t("unit.hm", h=h, m=m)
    if m:
        return t("unit.ms", m=m, s=s % 60)
    return t("unit.s", s=s)


def pad(text: str, columns: int) -> str:
    """`text` padded to `columns` terminal columns (a CJK character takes two), at least one
    space after it."""
    width = sum(2 if ord(c) >= 0x2E80 else 1 for c in text)
    return text + " " * max(1, columns - width)


def _label(t: Messages, key: str) -> str:
    return pad(t(key), 10)


INDENT = " " * 10


def _num(value: object) -> str:
    return str(value) if isinstance(value, int | float) else "-"


def backlog_line(t: Messages, outbox: Mapping[str, Any]) -> str:
    count = outbox.get("count") or 0
    if not count:
        return t("status.backlog_empty")
    by_class = outbox.get("by_class") or {}
    classes = ", ".join(f"{t('class.' + name) if name in probe.CLASS_NAMES.values() else name} "
                        f"{n}" for name, n in by_class.items())
    return t("status.backlog_line", count=count, classes=classes,
             bytes=size(outbox.get("bytes_pending")),
             oldest=duration(t, outbox.get("oldest_age_seconds")), held=outbox.get("held") or 0)


def render_status(t: Messages, snap: Mapping[str, Any]) -> list[str]:
    """The snapshot as the lines a technician reads; tolerant of missing parts."""
    lines = [t("status.header", station=snap.get("station", "?"),
               software=snap.get("software", "?"),
               uptime=duration(t, snap.get("uptime_seconds")),
               started=snap.get("started_at") or "?")]
    link: Mapping[str, Any] = snap.get("link") or {}
    if link.get("up"):
        rtt = link.get("rtt_seconds")
        offset = link.get("hub_offset_ms")
        first = t("status.link_up", since=link.get("since") or "?",
                  rtt="-" if rtt is None else f"{rtt * 1000:.0f} ms",
                  offset="-" if offset is None else f"{offset / 1000:+.1f} s")
    else:
        first = t("status.link_down")
    lines.append(_label(t, "status.link") + first)
    lines.append(INDENT + t(
        "status.link_counters", connects=_num(link.get("connects")),
        disconnects=_num(link.get("disconnects")), stalls=_num(link.get("stalls")),
        up=size(link.get("bytes_up")), down=size(link.get("bytes_down"))))
    lines.append(INDENT + t(
        "status.link_delivery", chunks=_num(link.get("chunks_sent")),
        resent=_num(link.get("chunks_resent")), resent_bytes=size(link.get("bytes_resent")),
        delivered=_num(link.get("delivered")), rejected=_num(link.get("rejected"))))
    if link.get("last_error"):
        lines.append(INDENT + t("status.last_error", error=link["last_error"]))
    outbox: Mapping[str, Any] = snap.get("outbox") or {}
    lines.append(_label(t, "status.backlog") + backlog_line(t, outbox))
    if outbox.get("held"):
        lines.append(INDENT + t("status.held_hint"))
    devices = snap.get("devices") or []
    if not devices:
        lines.append(_label(t, "status.devices") + t("status.devices_none"))
    for i, device in enumerate(devices):
        head = _label(t, "status.devices") if i == 0 else INDENT
        state = str(device.get("state", "?"))
        shown = t(f"state.{state}") if t.has(f"state.{state}") else state
        # DeviceHealth.as_dict() calls it last_error; accept a plain "message" too.
        message = device.get("message") or device.get("last_error") or ""
        name = str(device.get("name", "?"))
        lines.append(f"{head}{pad(name, 11)}{pad(shown, 9)}{message}".rstrip())
    disk: Mapping[str, Any] = snap.get("disk") or {}
    if disk:
        lines.append(_label(t, "status.disk") + t(
            "status.disk_line", free=size(disk.get("free_bytes")),
            floor=size(disk.get("floor_bytes"))))
    cases: Mapping[str, Any] = snap.get("cases") or {}
    if cases:
        by_status = cases.get("by_status") or {}
        listed = ", ".join(f"{t.status(k)} {v}" for k, v in by_status.items()) or "-"
        lines.append(_label(t, "status.cases") + t(
            "status.cases_line", statuses=listed, conflicts=_num(cases.get("conflicts"))))
    errors = snap.get("recent_errors") or []
    if errors:
        lines.append(t("status.errors_title"))
        for err in errors:
            lines.append(f"{INDENT}{err.get('at', '?')} {err.get('where', '?')}: "
                         f"{err.get('message', '')}")
    else:
        lines.append(_label(t, "status.errors") + t("status.errors_none"))
    return lines
