"""`cunlink pki ...` commands: the county CA and the certificates the broker checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gateway import pki

app = typer.Typer(
    no_args_is_help=True,
    help="County CA: broker, hub and station TLS certificates (the broker's identities).",
)

DirOpt = Annotated[Path, typer.Option("--dir", help="The county PKI directory.")]
DaysOpt = Annotated[
    int, typer.Option("--days", help="Validity of the issued certificate(s), in days.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing files.")]


@app.command("init")
def init(
    dir: DirOpt,
    county: Annotated[str, typer.Option(help="County name, shown in the CA's name.")] = "county",
    broker_host: Annotated[
        list[str] | None,
        typer.Option(
            "--broker-host",
            help="DNS name or IP clients use to reach the broker (repeatable); "
            "localhost and 127.0.0.1 are always added.",
        ),
    ] = None,
    hub_id: Annotated[str, typer.Option("--hub-id", help="CN of the hub's certificate.")] = (
        pki.DEFAULT_HUB_ID
    ),
    days: DaysOpt = pki.DEFAULT_LEAF_DAYS,
    ca_days: Annotated[int, typer.Option("--ca-days", help="Validity of the CA.")] = (
        pki.DEFAULT_CA_DAYS
    ),
    force: ForceOpt = False,
) -> None:
    """Create a county CA, the broker's server certificate and the hub's client certificate."""
    try:
        paths = pki.init_pki(
            dir, county=county, broker_hosts=broker_host or (), hub_id=hub_id, days=days,
            ca_days=ca_days, force=force,
        )
    except pki.PkiError as exc:
        _fail(exc)
    typer.echo(f"county CA:          {paths.ca_cert.resolve()}")
    typer.echo(f"CA key (keep safe): {paths.ca_key.resolve()}")
    typer.echo(f"broker certificate: {paths.server_cert.resolve()}")
    typer.echo(f"broker key:         {paths.server_key.resolve()}")
    typer.echo(f"hub {hub_id!r} certificate: {paths.hub.cert.resolve()}")
    typer.echo("next: `cunlink pki issue --station ID` for each station; deploy the broker as in "
               "config/mosquitto/README.md")


@app.command("issue")
def issue(
    dir: DirOpt,
    station: Annotated[
        str | None, typer.Option("--station", help="Station id (becomes the CN).")
    ] = None,
    hub: Annotated[
        str | None, typer.Option("--hub", help="Hub worker id (becomes the CN).")
    ] = None,
    days: DaysOpt = pki.DEFAULT_LEAF_DAYS,
    force: ForceOpt = False,
) -> None:
    """Issue a client certificate and key for a station or a hub worker."""
    if (station is None) == (hub is None):
        _fail("give exactly one of --station ID or --hub ID")
    cn = station or hub
    assert cn is not None
    try:
        cert = pki.issue_client(
            dir, cn, days=days, role="station" if station else "hub", force=force
        )
    except pki.PkiError as exc:
        _fail(exc)
    where = "station.toml" if station else "hub.toml"
    typer.echo(f"# certificate for {cn!r} (valid {days} days); put these in {where}:")
    typer.echo("[mqtt]")
    typer.echo(f'ca_file = "{cert.ca.resolve()}"')
    typer.echo(f'cert_file = "{cert.cert.resolve()}"')
    typer.echo(f'key_file = "{cert.key.resolve()}"')
    if hub:
        typer.echo("# then refresh the broker's ACL: cunlink pki acl --dir DIR --out ACL_FILE")


@app.command("revoke")
def revoke(
    dir: DirOpt,
    id: Annotated[str, typer.Option("--id", help="Station or hub id whose certificate to revoke.")],
) -> None:
    """Revoke an identity's current certificate (lost or stolen box) via the CRL."""
    try:
        serial = pki.revoke(dir, id)
    except pki.PkiError as exc:
        _fail(exc)
    typer.echo(f"revoked {id!r} (serial {serial:x}) in {(Path(dir) / 'crl.pem').resolve()}")
    typer.echo("copy crl.pem to the broker's crlfile and reload it (systemctl reload mosquitto); "
               f"`cunlink pki issue --force` gives {id!r} a new certificate")


@app.command("acl")
def acl(
    dir: DirOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Render the broker ACL (config/mosquitto/acl) for every hub id of this PKI."""
    try:
        text = pki.render_acl(pki.read_template("acl"), pki.read_info(dir).hub_ids)
    except pki.PkiError as exc:
        _fail(exc)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}; reload the broker (systemctl reload mosquitto) to apply it")


def _fail(error: object) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(1)
