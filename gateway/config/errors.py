"""The configuration layer's one exception."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """A configuration file (or an override of it) cannot be used as it is.

    `errors` holds every problem found, each a complete line that names the file or environment
    variable, the key path, what was expected and what was found, e.g.
    `station.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"`.
    All of them are collected before raising, so a technician fixes the file in one pass.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        if not self.errors:
            raise ValueError("ConfigError needs at least one error line")
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)
