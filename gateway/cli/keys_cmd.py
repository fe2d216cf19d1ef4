"""`cunlink keys ...`: create an identity's keys, and show the public side of a key directory."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gateway.keys import (
    ENCRYPTION_KEY,
    ENROLLMENT_SUFFIX,
    SIGNING_KEY,
    Enrollment,
    KeyFileError,
    enrollment_path,
    init_keys,
    load_enrollment,
)

app = typer.Typer(no_args_is_help=True, help="Create and inspect station / hub keys.")


class RoleOption(StrEnum):
    station = "station"
    hub = "hub"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _describe(enrollment: Enrollment) -> list[str]:
    return [
        f"  signing key     Ed25519  key id {enrollment.signing_key_id.hex()}",
        f"  encryption key  X25519   key id {enrollment.encryption_key_id.hex()}",
    ]


@app.command("init")
def init(
    role: Annotated[RoleOption, typer.Option(help="Whose keys these are.")],
    ident: Annotated[
        str, typer.Option("--id", help="Station or hub id, e.g. ST001 (A-Z a-z 0-9 . _ -).")
    ],
    directory: Annotated[
        Path, typer.Option("--dir", help="Key directory (created 0700 if missing).")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace keys that already exist in --dir.")
    ] = False,
) -> None:
    """Create an Ed25519 signing key and an X25519 encryption key, and an enrollment file.

    Private keys are written 0600; give the printed enrollment file to the other side.
    """
    try:
        enrollment = init_keys(role.value, ident, directory, force=force, now=datetime.now(UTC))
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"created {enrollment.role} identity {enrollment.id!r} in {directory}")
    for line in _describe(enrollment):
        typer.echo(line)
    path = enrollment_path(directory, enrollment.id)
    other = "hub" if enrollment.role == "station" else "stations"
    typer.echo(f"enrollment file: {path}  (give it to the {other} to import)")


def _private_status(directory: Path) -> str:
    parts = []
    for name in (SIGNING_KEY, ENCRYPTION_KEY):
        try:
            mode = stat.S_IMODE((directory / name).stat().st_mode)
        except FileNotFoundError:
            parts.append(f"{name} missing")
            continue
        except OSError as exc:
            parts.append(f"{name} unreadable ({exc.strerror})")
            continue
        verdict = "ok" if not mode & 0o077 else f"UNSAFE: run `chmod 600 {directory / name}`"
        parts.append(f"{name} mode {mode:04o} {verdict}")
    return ", ".join(parts)


@app.command("show")
def show(
    directory: Annotated[Path, typer.Option("--dir", help="Key directory to describe.")],
) -> None:
    """Print the public side of every identity in --dir (never any private key material)."""
    if not directory.is_dir():
        raise _fail(f"{directory}: no such directory; create keys with `cunlink keys init`")
    paths = sorted(directory.glob(f"*{ENROLLMENT_SUFFIX}"))
    if not paths:
        raise _fail(
            f"{directory}: no *{ENROLLMENT_SUFFIX} file; create keys with `cunlink keys init`"
        )
    try:
        enrollments = [(path, load_enrollment(path)) for path in paths]
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    for path, enrollment in enrollments:
        typer.echo(
            f"{enrollment.role} {enrollment.id!r}, created "
            f"{enrollment.created.isoformat(timespec='seconds')} ({path.name})"
        )
        for line in _describe(enrollment):
            typer.echo(line)
    typer.echo(f"private keys: {_private_status(directory)}")
