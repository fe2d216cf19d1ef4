"""`cunlink keys ...`: create an identity's keys, and show the public side of a key directory.

    cunlink keys init --role station|hub --id ID --dir DIR [--force] [--lang zh-CN|en]
    cunlink keys show --dir DIR [--lang zh-CN|en]

Output is in the user's language (gateway.i18n: --lang, $CUNLINK_LANG, then the locale; there
is no configuration to fall back on); the key files' own error lines stay as they are.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import LangOption, fail_t, fail_with, messages
from gateway.i18n import Messages
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


def _describe(t: Messages, enrollment: Enrollment) -> list[str]:
    return [
        t("keys.signing", key_id=enrollment.signing_key_id.hex()),
        t("keys.encryption", key_id=enrollment.encryption_key_id.hex()),
    ]


def _role(t: Messages, role: str) -> str:
    return t(f"role.{role}") if t.has(f"role.{role}") else role


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
    lang: LangOption = None,
) -> None:
    """Create an Ed25519 signing key and an X25519 encryption key, and an enrollment file.

    Private keys are written 0600; give the printed enrollment file to the other side.
    """
    t = messages(lang)
    try:
        enrollment = init_keys(role.value, ident, directory, force=force, now=datetime.now(UTC))
    except KeyFileError as exc:
        fail_with(t, str(exc))
    typer.echo(t("keys.created", role=_role(t, enrollment.role), id=enrollment.id,
                 dir=directory))
    for line in _describe(t, enrollment):
        typer.echo(line)
    path = enrollment_path(directory, enrollment.id)
    # A station's file goes to the hub, the hub's to the stations.
    key = "keys.enrollment.station" if enrollment.role == "station" else "keys.enrollment.hub"
    typer.echo(t(key, path=path))


def _private_status(t: Messages, directory: Path) -> str:
    parts = []
    for name in (SIGNING_KEY, ENCRYPTION_KEY):
        try:
            mode = stat.S_IMODE((directory / name).stat().st_mode)
        except FileNotFoundError:
            parts.append(t("keys.key_missing", name=name))
            continue
        except OSError as exc:
            parts.append(t("keys.key_unreadable", name=name, error=exc.strerror))
            continue
        key = "keys.key_ok" if not mode & 0o077 else "keys.key_unsafe"
        parts.append(t(key, name=name, mode=f"{mode:04o}", path=directory / name))
    return t("cli.sep").join(parts)


@app.command("show")
def show(
    directory: Annotated[Path, typer.Option("--dir", help="Key directory to describe.")],
    lang: LangOption = None,
) -> None:
    """Print the public side of every identity in --dir (never any private key material)."""
    t = messages(lang)
    if not directory.is_dir():
        fail_t(t, "keys.no_dir", dir=directory)
    paths = sorted(directory.glob(f"*{ENROLLMENT_SUFFIX}"))
    if not paths:
        fail_t(t, "keys.no_enrollment", dir=directory, suffix=ENROLLMENT_SUFFIX)
    try:
        enrollments = [(path, load_enrollment(path)) for path in paths]
    except KeyFileError as exc:
        fail_with(t, str(exc))
    for path, enrollment in enrollments:
        typer.echo(t("keys.identity", role=_role(t, enrollment.role), id=enrollment.id,
                     created=enrollment.created.isoformat(timespec="seconds"), file=path.name))
        for line in _describe(t, enrollment):
            typer.echo(line)
    typer.echo(t("keys.private", status=_private_status(t, directory)))
