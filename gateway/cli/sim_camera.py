"""`cunlink sim camera`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount `sim camera` on the `sim` group."""
