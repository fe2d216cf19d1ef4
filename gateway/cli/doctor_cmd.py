"""`cunlink doctor`: check a station's setup, one line per check, with what to do.

    cunlink doctor [--config PATH] [--json] [--lang zh-CN|en] [--timeout SECONDS]

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed. The checks
themselves live in gateway.doctor; this module only prints them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from gateway.cli.common import (
    DEFAULT_STATION_CONFIG,
    JsonFlag,
    LangOption,
    StationConfigOption,
    messages,
)
from gateway.doctor import CheckResult, Outcome, Report, run_checks
from gateway.i18n import Messages, english

TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=0.5, max=300.0,
                 help="Seconds for each network step (default: the configured MQTT "
                 "connect_timeout_seconds, at most 30)."),
]


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    config: StationConfigOption = DEFAULT_STATION_CONFIG,
    as_json: JsonFlag = False,
    lang: LangOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Check configuration, keys, certificates, clock, disk, devices and the broker link."""
    messages(lang)  # reject a bad --lang before the (slow) checks
    report = asyncio.run(run_checks(config, wait_s=timeout))
    if as_json:
        typer.echo(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        t = messages(lang, report.config)
        for line in render_report(t, report):
            typer.echo(line)
    raise typer.Exit(1 if report.failed else 0)


def _text(t: Messages | None, key: str, result: CheckResult) -> str:
    args = dict(result.args)
    if "because" in args:
        args["because"] = (t or english).check_label(str(args["because"]))
    return (t or english)(key, **args)


def report_json(report: Report) -> dict[str, object]:
    return {
        "ok": not report.failed,
        "counts": {o.value: report.count(o) for o in Outcome},
        "checks": [{
            "check": r.check, "outcome": r.outcome.value, "code": r.code, "args": dict(r.args),
            "message": _text(None, r.code, r), "fix": _text(None, r.fix, r) if r.fix else None,
        } for r in report.results],
    }


def render_report(t: Messages, report: Report) -> list[str]:
    lines: list[str] = []
    for r in report.results:
        lines.append(t("doctor.line", outcome=t("outcome." + r.outcome.value),
                       check=t.check_label(r.check), text=_text(t, r.code, r)))
        if r.fix and r.outcome in (Outcome.FAIL, Outcome.WARN):
            lines.append(t("doctor.fix_line", text=_text(t, r.fix, r)))
    failed, warned = report.count(Outcome.FAIL), report.count(Outcome.WARN)
    if failed:
        lines.append(t("doctor.summary.failed", failed=failed, warned=warned))
    elif warned:
        lines.append(t("doctor.summary.warned", warned=warned))
    else:
        lines.append(t("doctor.summary.ok"))
    return lines
