"""Read a TOML file, apply environment overrides, and build a settings dataclass from it.

Driven entirely by the field metadata of fields.py, so station.py and hub.py only declare their
schema and their cross-field rules. Every problem is collected, then raised as one ConfigError.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from gateway.config.errors import ConfigError
from gateway.config.fields import Context, Invalid, InvalidItems, Meta, Spec, meta_of

T = TypeVar("T")

ENV_PREFIX = "CUNLINK__"
MAX_FILE_BYTES = 1024 * 1024  # a config is a few KB; anything bigger is the wrong file


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """A cross-field rule's finding: `key` is dotted ("mqtt.ca_file"), `text` follows the key."""

    key: str
    text: str


class Unavailable(Exception):
    """A rule asked for a value that is itself invalid or missing; the rule is skipped."""


class Values:
    """Validated values (defaults included) by dotted key, for cross-field rules."""

    def __init__(self) -> None:
        self._values: dict[str, object] = {}

    def __setitem__(self, key: str, value: object) -> None:
        self._values[key] = value

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise Unavailable(key) from None


Rule = Callable[[Values], Iterable[Problem]]


def _fields(cls: type) -> tuple[Field[Any], ...]:
    return fields(cast(Any, cls))


def _default(f: Field[Any]) -> object:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default")


def describe(found: object, *, secret: bool = False) -> str:
    """How a found value reads after "got": TOML spelling, short, secrets never echoed."""
    if isinstance(found, dict):
        return "a table"
    if isinstance(found, list):
        return f"an array of {len(found)} item{'s' if len(found) != 1 else ''}"
    if secret:
        return f"a hidden value of {len(str(found))} characters"
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, str):
        shown = found if len(found) <= 60 else found[:57] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(found, dt.datetime | dt.date | dt.time):
        return f"the date/time {found.isoformat()}"
    return repr(found)


def where(key: tuple[str | int, ...], depth: int) -> str:
    """`[mqtt] keepalive` from ("mqtt", "keepalive"); the first `depth` parts are tables."""
    table = ".".join(str(p) for p in key[:depth])
    rest = ""
    for part in key[depth:]:
        rest += f"[{part}]" if isinstance(part, int) else (f".{part}" if rest else part)
    if not table:
        return rest
    return f"[{table}] {rest}" if rest else f"[{table}]"


def _suggest(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def read_toml(path: Path, label: str) -> dict[str, Any]:
    """Parse the file, turning every way it can fail into a ConfigError line naming it."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"{label}: cannot read the file: {reason}; check the path"]) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            [f"{label}: file is larger than {MAX_FILE_BYTES} bytes; is this the right file?"]
        )
    try:
        # utf-8-sig: files saved by Windows Notepad start with a BOM, which TOML would reject.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                f"{label}: line {line}: not UTF-8 text; save the file as UTF-8 (e.g. GB18030 "
                "files must be converted)"
            ]
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([toml_error_line(label, str(exc))]) from exc


def toml_error_line(label: str, message: str) -> str:
    """Python 3.11's tomllib puts the position only in the message: move it to the front."""
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        reason = message[: match.start()]
        return (
            f"{label}: line {match.group(1)}, column {match.group(2)}: invalid TOML: {reason}; "
            "fix the syntax there"
        )
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        reason = message[: match.start()]
        return f"{label}: at the end of the file: invalid TOML: {reason}; fix the syntax there"
    return f"{label}: invalid TOML: {message}"


class _TomlValue(Spec[object]):
    __slots__ = ()
    wants_string: ClassVar[bool] = False  # arrays of tables take TOML inline tables


_TOML_VALUE = _TomlValue()


def _env_value(text: str, spec: Spec[object]) -> object:
    """An override's value is a TOML value (30, true, ["a"]), or else the plain string."""
    if spec.wants_string and not text.startswith(('"', "'")):
        return text
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    # A value with a newline could smuggle in more keys: accept exactly one.
    return parsed["v"] if list(parsed) == ["v"] else text


def apply_env(
    data: dict[str, Any], schema: type, env: Mapping[str, str]
) -> tuple[dict[tuple[str | int, ...], str], list[str]]:
    """Write `CUNLINK__SECTION__KEY=value` overrides into `data`.

    Returns which key each variable set (so errors about it name the variable) and the errors
    about the variables themselves (unknown key, a section instead of a key).
    """
    origins: dict[tuple[str | int, ...], str] = {}
    errors: list[str] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        label = f"environment variable {name}"
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        cls: type | None = schema
        target = data
        for depth, part in enumerate(parts):
            known = {f.name: f for f in _fields(cls)} if cls else {}
            if part not in known:
                tables = ".".join(parts[:depth])
                what = f"[{tables}] {part}" if tables else part
                hint = _suggest(part, known)
                fix = f"did you mean {hint}?" if hint else f"known keys: {', '.join(known)}"
                errors.append(f"{label}: unknown key {what}; {fix}")
                break
            meta = meta_of(known[part])
            if meta.kind == "section":
                if depth == len(parts) - 1:
                    errors.append(
                        f"{label}: names the section [{'.'.join(parts)}], not a key; "
                        f"use {name}__<KEY>"
                    )
                    break
                cls = meta.cls
                sub = target.setdefault(part, {})
                if not isinstance(sub, dict):
                    break  # the file's own error ("expected a table") says what is wrong
                target = sub
                continue
            if depth != len(parts) - 1:
                errors.append(
                    f"{label}: {where(tuple(parts[: depth + 1]), depth)} is a key, not a "
                    f"section; remove the part after it"
                )
                break
            spec = meta.spec if meta.spec is not None else _TOML_VALUE
            target[part] = _env_value(env[name], spec)
            origins[tuple(parts)] = label
    return origins, errors


class Builder:
    """Builds one settings tree, collecting every error instead of stopping at the first."""

    def __init__(self, *, label: str, ctx: Context, origins: Mapping[Any, str]) -> None:
        self.label = label
        self.ctx = ctx
        self.origins = origins
        self.errors: list[str] = []
        self.values = Values()

    def source(self, key: tuple[str | int, ...]) -> str:
        """The file, or the variable that set this key (or the array of tables holding it):
        an error about an overridden value must not send the technician to the file."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.origins:
                return self.origins[key[:end]]
        return self.label

    def error(self, key: tuple[str | int, ...], depth: int, text: str) -> None:
        self.errors.append(f"{self.source(key)}: {where(key, depth)}: {text}")

    def table(self, cls: type[T], raw: object, key: tuple[str | int, ...], depth: int) -> T | None:
        """Build `cls` from a raw table; None (errors recorded) if anything in it is wrong."""
        if not isinstance(raw, dict):
            self.error(key, len(key), f"expected a table, got {describe(raw)}")
            return None
        before = len(self.errors)
        known = {f.name: f for f in _fields(cls)}
        for name in raw:
            if name not in known:
                self._unknown(key, depth, name, raw[name], known)
        kwargs: dict[str, object] = {}
        for f in known.values():
            meta = meta_of(f)
            sub = (*key, f.name)
            errors_before = len(self.errors)
            if meta.kind == "section":
                assert meta.cls is not None
                value = self.table(meta.cls, raw.get(f.name, {}), sub, len(sub))
            elif f.name not in raw:
                if f.default is MISSING and f.default_factory is MISSING:
                    assert meta.spec is not None
                    expected = meta.spec.expected()
                    self.error(sub, depth, f"required key is missing; expected {expected}")
                    continue
                value = _default(f)
            elif meta.kind == "tables":
                value = self._tables(meta, raw[f.name], sub, depth)
            else:
                value = self._setting(meta, raw[f.name], sub, depth)
            if len(self.errors) == errors_before:
                kwargs[f.name] = value
                self.values[".".join(str(p) for p in sub)] = value
        if len(self.errors) > before:
            return None
        return cls(**kwargs)

    def _unknown(
        self,
        key: tuple[str | int, ...],
        depth: int,
        name: str,
        value: object,
        known: Mapping[str, Any],
    ) -> None:
        source = self.source((*key, name))
        hint = _suggest(name, known)
        if isinstance(value, dict) and depth == len(key):
            path = ".".join(str(p) for p in (*key, name))
            fix = (
                f"did you mean [{'.'.join(str(p) for p in (*key, hint))}]?"
                if hint
                else (f"known sections here: {', '.join(known)}")
            )
            self.errors.append(f"{source}: unknown section [{path}]; {fix}")
            return
        at = where((*key, name), depth)
        fix = f"did you mean {hint}?" if hint else f"known keys here: {', '.join(known)}"
        place = "" if key else " at the top level"
        self.errors.append(f"{source}: unknown key {at}{place}; {fix}")

    def _setting(self, meta: Meta, raw: object, key: tuple[str | int, ...], depth: int) -> object:
        assert meta.spec is not None
        try:
            return meta.spec.parse(raw, self.ctx)
        except Invalid as exc:
            self._invalid(key, depth, raw, exc, meta.secret)
        except InvalidItems as many:
            for index, item, problem in many.problems:
                self._invalid((*key, index), depth, item, problem, meta.secret)
        return None

    def _invalid(
        self, key: tuple[str | int, ...], depth: int, raw: object, exc: Invalid, secret: bool
    ) -> None:
        text = f"expected {exc.expected}, got {describe(raw, secret=secret)}"
        self.error(key, depth, text + (f"; {exc.hint}" if exc.hint else ""))

    def _tables(self, meta: Meta, raw: object, key: tuple[str | int, ...], depth: int) -> object:
        assert meta.cls is not None
        table = ".".join(str(p) for p in key)
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            self.error(
                key,
                depth,
                f"expected an array of tables, written as [[{table}]] "
                f"sections, got {describe(raw)}",
            )
            return None
        items = [self.table(meta.cls, item, (*key, i), depth) for i, item in enumerate(raw)]
        return None if any(item is None for item in items) else tuple(items)

    def check(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            try:
                problems: Iterator[Problem] = iter(rule(self.values))
                for problem in problems:
                    # "api.tokens.0" -> ("api", "tokens", 0): the last name is the key.
                    parts = tuple(int(p) if p.isdigit() else p for p in problem.key.split("."))
                    depth = max(i for i, p in enumerate(parts) if isinstance(p, str))
                    self.error(parts, depth, problem.text)
            except Unavailable:
                continue  # an input of the rule is already reported as wrong


def load(
    path: Path,
    schema: type[T],
    *,
    rules: Iterable[Rule] = (),
    env: Mapping[str, str],
) -> T:
    """Load `path` into `schema`, or raise ConfigError listing every problem found."""
    label = str(path)
    data = read_toml(path, label)
    origins, env_errors = apply_env(data, schema, env)
    builder = Builder(label=label, ctx=Context(base_dir=path.absolute().parent), origins=origins)
    config = builder.table(schema, data, (), 0)
    builder.check(rules)
    errors = env_errors + builder.errors
    if errors or config is None:
        raise ConfigError(errors)
    return config
