"""`cunlink sim idcard`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount `sim idcard` on the `sim` group."""
