"""What each setting accepts: value specs, and the helpers that attach them to dataclass fields.

A settings class is a frozen dataclass whose fields carry a `Meta` in their metadata:

    keepalive: int = field(default=60, metadata=setting(Int(lo=5, hi=600)))
    host: str = field(metadata=setting(HOST))  # no default: the file must give it
    mqtt: MqttSettings = field(metadata=section(MqttSettings))
    tokens: tuple[ApiToken, ...] = field(default=(), metadata=tables(ApiToken))

The loader (loader.py) walks those fields; nothing here reads files or the environment.
A spec turns one raw TOML value into a typed value or raises `Invalid` with the words that go
after "expected" in the error line; it never formats the whole line itself.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeGuard, TypeVar

T_co = TypeVar("T_co", covariant=True)

META_KEY = "cunlink"


class Invalid(Exception):
    """A raw value does not fit its spec. Internal: the loader turns it into a ConfigError line.

    `expected` is what goes after "expected"; `hint` is an optional fix ("did you mean ...?").
    """

    def __init__(self, expected: str, *, hint: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


class InvalidItems(Exception):
    """Several items of one array are wrong; each is reported on its own line, by index."""

    def __init__(self, problems: list[tuple[int, object, Invalid]]) -> None:
        super().__init__(f"{len(problems)} invalid items")
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a spec may need besides the raw value."""

    base_dir: Path  # relative paths resolve against the config file's directory


class Spec(Generic[T_co]):
    """Turns a raw TOML value into a typed setting, or raises Invalid."""

    __slots__ = ()

    # An environment override for a string-like setting is taken verbatim (not parsed as TOML),
    # so `CUNLINK__STATION__ID=0042` stays the string "0042".
    wants_string: ClassVar[bool] = False

    def expected(self) -> str:
        raise NotImplementedError

    def parse(self, raw: object, ctx: Context) -> T_co:
        raise NotImplementedError


def _is_int(raw: object) -> TypeGuard[int]:
    # TOML booleans are Python bools, which are ints: `keepalive = true` must not pass as 1.
    return isinstance(raw, int) and not isinstance(raw, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Int(Spec[int]):
    lo: int
    hi: int
    also: tuple[int, ...] = ()  # extra values outside the range, e.g. 0 meaning "off"

    def expected(self) -> str:
        if self.also:
            extra = ", ".join(str(v) for v in self.also)
            return f"{extra} or an integer from {self.lo} to {self.hi}"
        return f"an integer from {self.lo} to {self.hi}"

    def parse(self, raw: object, ctx: Context) -> int:
        if _is_int(raw) and (self.lo <= raw <= self.hi or raw in self.also):
            return raw
        raise Invalid(self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class IntChoice(Spec[int]):
    values: tuple[int, ...]
    note: str = ""  # says what a special value means, e.g. "0 = probe 115200 then 9600"

    def expected(self) -> str:
        listed = ", ".join(str(v) for v in self.values)
        return f"one of {listed}" + (f" ({self.note})" if self.note else "")

    def parse(self, raw: object, ctx: Context) -> int:
        if _is_int(raw) and raw in self.values:
            return raw
        raise Invalid(self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class Float(Spec[float]):
    lo: float
    hi: float

    def expected(self) -> str:
        return f"a number from {self.lo:g} to {self.hi:g}"

    def parse(self, raw: object, ctx: Context) -> float:
        # TOML `keepalive = 4` is an integer; a number setting accepts it as 4.0.
        if isinstance(raw, float | int) and not isinstance(raw, bool):
            value = float(raw)
            if math.isfinite(value) and self.lo <= value <= self.hi:
                return value
        raise Invalid(self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class Bool(Spec[bool]):
    def expected(self) -> str:
        return "true or false"

    def parse(self, raw: object, ctx: Context) -> bool:
        if isinstance(raw, bool):
            return raw
        raise Invalid(self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice(Spec[str]):
    values: tuple[str, ...]
    wants_string: ClassVar[bool] = True

    def expected(self) -> str:
        return "one of " + ", ".join(f'"{v}"' for v in self.values)

    def parse(self, raw: object, ctx: Context) -> str:
        if isinstance(raw, str) and raw in self.values:
            return raw
        hint = ""
        if isinstance(raw, str):
            close = difflib.get_close_matches(raw, self.values, n=1, cutoff=0.5)
            close = close or [v for v in self.values if v.lower() == raw.lower()]
            if close:
                hint = f'did you mean "{close[0]}"?'
        raise Invalid(self.expected(), hint=hint)


@dataclass(frozen=True, slots=True, kw_only=True)
class Text(Spec[str]):
    """A string, optionally matching a pattern. `describe` is what the error calls it."""

    describe: str
    pattern: str | None = None
    min_len: int = 0
    max_len: int = 4096
    allow_empty: bool = False
    check: Callable[[str], bool] | None = None  # extra rule a regex cannot express
    wants_string: ClassVar[bool] = True

    def expected(self) -> str:
        return self.describe

    def parse(self, raw: object, ctx: Context) -> str:
        if isinstance(raw, str):
            if raw == "" and self.allow_empty:
                return raw
            if (
                self.min_len <= len(raw) <= self.max_len
                and (self.pattern is None or re.fullmatch(self.pattern, raw))
                and (self.check is None or self.check(raw))
            ):
                return raw
        raise Invalid(self.expected())


def _path_from(raw: object, ctx: Context, expected: str) -> Path:
    if not isinstance(raw, str) or raw == "" or "\0" in raw:
        raise Invalid(expected)
    path = Path(raw)
    # Relative to the config file, not the daemon's working directory (systemd starts it in /).
    return path if path.is_absolute() else ctx.base_dir / path


@dataclass(frozen=True, slots=True, kw_only=True)
class PathValue(Spec[Path]):
    """A file or directory path. Existence is not checked here: that is `cunlink doctor`'s job."""

    wants_string: ClassVar[bool] = True

    def expected(self) -> str:
        return "a path (a non-empty string; relative paths are taken from the config file's folder)"

    def parse(self, raw: object, ctx: Context) -> Path:
        return _path_from(raw, ctx, self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionalPath(Spec[Path | None]):
    """A path that may be left unset with "" (TOML has no null)."""

    wants_string: ClassVar[bool] = True

    def expected(self) -> str:
        return 'a path, or "" for none'

    def parse(self, raw: object, ctx: Context) -> Path | None:
        if raw == "":
            return None
        return _path_from(raw, ctx, self.expected())


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOf(Spec[tuple[str, ...]]):
    """An array of strings, each checked by `item`; every bad item is reported."""

    item: Text
    max_items: int = 64

    def expected(self) -> str:
        return f"an array of at most {self.max_items} strings, each {self.item.describe}"

    def parse(self, raw: object, ctx: Context) -> tuple[str, ...]:
        if not isinstance(raw, list) or len(raw) > self.max_items:
            raise Invalid(self.expected())
        values: list[str] = []
        problems: list[tuple[int, object, Invalid]] = []
        for index, value in enumerate(raw):
            try:
                values.append(self.item.parse(value, ctx))
            except Invalid as exc:
                problems.append((index, value, exc))
        if problems:
            raise InvalidItems(problems)
        return tuple(values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """What the loader needs to know about one dataclass field."""

    kind: Literal["setting", "section", "tables"]
    spec: Spec[object] | None = None  # for settings
    cls: type | None = None  # for sections and arrays of tables
    secret: bool = False  # redacted as "***" when printed, and never echoed in errors


def setting(spec: Spec[object], *, secret: bool = False) -> Mapping[str, Meta]:
    """Field metadata for one setting. A secret field also needs `repr=False` (tests check)."""
    return {META_KEY: Meta(kind="setting", spec=spec, secret=secret)}


def section(cls: type) -> Mapping[str, Meta]:
    """Field metadata for a [table] of settings held in `cls`."""
    return {META_KEY: Meta(kind="section", cls=cls)}


def tables(cls: type) -> Mapping[str, Meta]:
    """Field metadata for an array of tables (`[[api.tokens]]`), each one a `cls`."""
    return {META_KEY: Meta(kind="tables", cls=cls)}


def meta_of(f: Field[Any]) -> Meta:
    meta = f.metadata.get(META_KEY)
    if not isinstance(meta, Meta):
        raise TypeError(f"field {f.name} has no cunlink metadata; declare it with setting()")
    return meta


def walk(cls: type, table: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Field[Any]]]:
    """Every setting (and array of tables) of a schema with the table it lives in, in file order:
    (("devices", "printer"), <field encoding>), ... For docs, examples and their tests."""
    for f in dataclass_fields(cls):
        meta = meta_of(f)
        if meta.kind == "section":
            assert meta.cls is not None
            yield from walk(meta.cls, (*table, f.name))
        else:
            yield table, f
