"""`cunlink config ...` commands: check a configuration file before the daemon ever reads it.

    cunlink config check PATH [--role station|hub] [--json] [--lang zh-CN|en]

The summary and headers are in the user's language (gateway.i18n: --lang, $CUNLINK_LANG, the
locale, then the checked file's own [station]/[hub] language once it loads); the loader's
problem lines stay as they are, and --json is the same in every language.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import LangOption, messages
from gateway.config import (
    ConfigError,
    HubConfig,
    Role,
    detect_role,
    effective_dict,
    load_config,
    render_effective,
)
from gateway.i18n import Messages

app = typer.Typer(no_args_is_help=True, help="Check configuration files.")


class RoleOption(StrEnum):
    station = "station"
    hub = "hub"


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="The station.toml or hub.toml to check.")],
    role: Annotated[
        RoleOption | None,
        typer.Option(
            help="Read the file as this role (default: a file with a hub table is a hub's)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option(
            "--json", help="Print the result as JSON on stdout (the same in every language).")
    ] = False,
    lang: LangOption = None,
) -> None:
    """Validate PATH and print the effective configuration (defaults filled in, secrets as ***).

    Exits 0 when the file is valid, 1 with every problem listed when it is not.
    Environment variables CUNLINK__SECTION__KEY override single keys, as for the daemon.
    """
    chosen: Role | None = role.value if role else None
    t = messages(lang)
    try:
        chosen = chosen or detect_role(path)
        cfg = load_config(path, role=chosen)
    except ConfigError as exc:
        _fail(t, path, chosen, exc, as_json)
        raise typer.Exit(1) from None
    t = messages(lang, cfg)
    actual = "hub" if isinstance(cfg, HubConfig) else "station"
    if as_json:
        result = {"ok": True, "role": actual, "path": str(path), "config": effective_dict(cfg)}
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    typer.echo(t("config.effective", role=t(f"role.{actual}"), path=path))
    typer.echo(t("config.effective_note"))
    typer.echo(render_effective(cfg), nl=False)


def _fail(t: Messages, path: Path, role: str | None, exc: ConfigError, as_json: bool) -> None:
    if as_json:
        result = {"ok": False, "role": role, "path": str(path), "errors": exc.errors}
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for line in exc.errors:  # the loader's lines (file, key, what was expected): as they are
        typer.echo(line, err=True)
    count = len(exc.errors)
    key = "config.problems.one" if count == 1 else "config.problems.many"
    typer.echo(t(key, count=count, path=path), err=True)
