"""Top-level station commands: `cunlink run`, `cunlink demo`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount the top-level commands on the root app."""
