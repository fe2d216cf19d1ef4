"""Print a loaded configuration back out (TOML or plain data for JSON), secrets redacted."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from gateway.config.fields import meta_of

REDACTED = "***"

Plain = dict[str, Any]


def effective_dict(cfg: object, *, redact: bool = True) -> Plain:
    """The settings as nested dicts of TOML/JSON values; unset optional paths become None."""
    if not is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a settings dataclass instance, got {type(cfg).__name__}")
    out: Plain = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if redact and meta_of(f).secret and value:
            out[f.name] = REDACTED  # an empty secret stays "" so "not set" is still visible
        else:
            out[f.name] = _plain(value, redact)
    return out


def _plain(value: object, redact: bool) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return effective_dict(value, redact=redact)
    if isinstance(value, tuple):
        return [_plain(item, redact) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def render_json(cfg: object, *, redact: bool = True) -> str:
    return json.dumps(effective_dict(cfg, redact=redact), ensure_ascii=False, indent=2)


def render_effective(cfg: object, *, redact: bool = True) -> str:
    """The whole configuration as TOML, defaults included; loading it back gives `cfg` again
    (when not redacted)."""
    return render_toml(effective_dict(cfg, redact=redact))


def render_toml(table: Plain) -> str:
    """Nested dicts of TOML values (the shape effective_dict gives, or a part of it) as TOML
    text: scalars first, then each sub-table, arrays of tables as [[name]] blocks."""
    lines: list[str] = []
    _emit_table(table, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit_table(
    table: Plain, path: tuple[str, ...], lines: list[str], *, array: bool = False
) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path and (scalars or array):
        lines.append("")
        name = ".".join(path)
        lines.append(f"[[{name}]]" if array else f"[{name}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit_table(value, (*path, key), lines)
        elif _is_table_array(value):
            for item in value:
                _emit_table(item, (*path, key), lines, array=True)


def _toml_value(value: object) -> str:
    if value is None:
        return '""'  # TOML has no null; "" is how a file leaves an optional path unset
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
