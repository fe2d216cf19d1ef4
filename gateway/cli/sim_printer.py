"""`cunlink sim printer`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount `sim printer` on the `sim` group."""
