"""Helpers shared by the CLI modules: loading configuration and failing with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gateway.config import ConfigError, HubConfig, StationConfig, load_hub_config
from gateway.config import load_station_config as _load_station
from gateway.i18n import Lang, Messages, choose_lang, parse_lang

DEFAULT_STATION_CONFIG = Path("/etc/cunlink/station.toml")
StationConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Station configuration file (TOML).")
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (always in English).")
]
LangOption = Annotated[
    str | None,
    typer.Option(
        "--lang",
        help="zh-CN or en. Default: $CUNLINK_LANG, else the locale (LC_ALL, LC_MESSAGES, LANG), "
        "else the station language set in the configuration.",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_t(t: Messages, key: str, code: int = 1, **args: object) -> NoReturn:
    """fail() in the user's language: `key` is a gateway.i18n message."""
    typer.echo(t("cli.error", message=t(key, **args)), err=True)
    raise typer.Exit(code)


def fail_with(t: Messages, message: str, code: int = 1) -> NoReturn:
    """fail() framed in the user's language; `message` comes from a lower layer (the store,
    a driver, the key files) and stays as it is."""
    typer.echo(t("cli.error", message=message), err=True)
    raise typer.Exit(code)


def messages(lang: str | None, cfg: StationConfig | HubConfig | None = None) -> Messages:
    """The user's language: --lang, then $CUNLINK_LANG and the locale, then the configuration's
    [station] (or [hub]) language (a C or unset locale says nothing), then English."""
    if lang is not None and parse_lang(lang) is None:
        fail(f"--lang: expected zh-CN or en, got {lang!r}", 2)
    configured = (cfg.station.language if isinstance(cfg, StationConfig)
                  else cfg.hub.language if isinstance(cfg, HubConfig) else None)
    fallback: Lang = "zh-CN" if configured == "zh-CN" else "en"
    return Messages(choose_lang(lang, fallback=fallback))


def station_messages(path: Path, lang: str | None) -> tuple[StationConfig, Messages]:
    """The station configuration and the user's language: a configuration problem is told in
    the language of --lang / the environment, everything after in the full choice."""
    cfg = load_station_t(path, messages(lang))
    return cfg, messages(lang, cfg)


def columns(text: str) -> int:
    """Terminal columns `text` takes (a CJK character or full-width sign takes two)."""
    return sum(2 if ord(c) >= 0x2E80 else 1 for c in text)


def ljust(text: object, width: int) -> str:
    """f"{text:<width}" counted in terminal columns (the same for ASCII)."""
    s = str(text)
    return s + " " * max(0, width - columns(s))


def rjust(text: object, width: int) -> str:
    """f"{text:>width}" counted in terminal columns (the same for ASCII)."""
    s = str(text)
    return " " * max(0, width - columns(s)) + s


def load_station(path: Path) -> StationConfig:
    try:
        return _load_station(path)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def load_station_t(path: Path, t: Messages) -> StationConfig:
    """load_station() with the framing in the user's language (the loader's own lines name the
    file, the key and what was expected; they stay as they are)."""
    if not path.exists():
        fail_t(t, "cli.config_missing", path=path)
    try:
        return _load_station(path)
    except ConfigError as exc:
        fail_t(t, "cli.config_invalid", path=path, error=str(exc))
    except OSError as exc:
        fail_t(t, "cli.config_unreadable", path=path, error=exc.strerror or str(exc))


def load_hub(path: Path) -> HubConfig:
    try:
        return load_hub_config(path)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
