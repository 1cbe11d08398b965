"""``clew keys public|create|rotate``: the capture signing key an auditor and replicas need;
``clew keys init|register|list|revoke``: users' own keys, with which decisions are signed.

``public`` prints the store's public key (through the default client, so it works against a
server too): with it alone anyone can check a captured prediction's signature; ``--all``
lists every key the store has signed with, for batches signed before a rotation. ``create``
writes a new private key file for the replicas of a team server to share through
``CLEW_SIGNING_KEY``; ``rotate`` makes such a file the store's signing key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import clew
from clew.cli.output import console
from clew.client import admin
from clew.domain import records

app = typer.Typer(
    help="The capture signing key, and users' approval signing keys.", no_args_is_help=True
)


@app.command("public")
def public(
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="List every key the store has signed with, oldest first, with its id."
        ),
    ] = False,
) -> None:
    """Print the store's Ed25519 public key (PEM), all an auditor needs to verify captures."""
    if not every:
        typer.echo(clew.public_key(), nl=False)
        return
    history = clew.signing_keys()
    for number, key in enumerate(history, start=1):
        state = "current" if number == len(history) else "retired"
        replaced = key["previous_key_id"] or "-"
        typer.echo(
            f"# {key['key_id']} ({state}): made current {key['created_at']} by "
            f"{key['actor']}, replacing {replaced}"
        )
        typer.echo(key["public_key"], nl=False)


@app.command("rotate")
def rotate(
    new_key_file: Annotated[
        Path, typer.Argument(help="The new private key, made with `clew keys create`.")
    ],
) -> None:
    """Make NEW_KEY_FILE the store's signing key; batches signed before still verify.

    Only the new public key and a signature proving you hold its private half are recorded
    (on a server: admins only). Processes still signing with the old key are refused.
    """
    key = clew.rotate_signing_key(new_key_file)
    console.print(
        f"the store's capture key is now {key['key_id']} "
        f"(was {key['previous_key_id'] or 'none'}); set "
        f"{admin.SIGNING_KEY_ENV}={new_key_file} on every process that captures and restart them."
    )


@app.command("create")
def create(
    path: Annotated[Path, typer.Argument(help="Where to write the new private key (0600).")],
) -> None:
    """Write a new private signing key for every replica to share via CLEW_SIGNING_KEY."""
    public_pem = admin.create_signing_key(path)
    console.print(f"wrote a new signing key to {path} (mode 0600); its public key:")
    typer.echo(public_pem, nl=False)
    console.print(f"give every replica this file and set {admin.SIGNING_KEY_ENV}={path}")


@app.command("init")
def init(
    new: Annotated[
        bool, typer.Option("--new", help="Replace your key (lost or revoked); the old one is gone.")
    ] = False,
) -> None:
    """Make your own approval signing key (0600, in ~/.config/clew/keys or CLEW_USER_KEYS).

    Approvals, rejections, revocations and promotions are then signed with it; an admin
    registers its public half so the store can verify them.
    """
    made = clew.create_user_key(new=new)
    console.print(
        f"wrote {made['user']}'s signing key {made['key_id']} to {made['private_key_file']} "
        f"(mode 0600); ask an admin to run `clew keys register {made['user']} "
        f"{made['public_key_file']}`."
    )


@app.command("register")
def register(
    user: Annotated[str, typer.Argument(help="Whose key it is.")],
    key_file: Annotated[Path, typer.Argument(help="Their public key file (<user>.pub.pem).")],
) -> None:
    """Register USER's public key so their signed decisions verify (admins; audited)."""
    key = clew.register_user_key(user, key_file)
    console.print(f"registered {key['key_id']} as {key['user_name']}'s signing key.")


@app.command("list")
def list_keys(
    user: Annotated[str | None, typer.Argument(help="Only this user's keys.")] = None,
) -> None:
    """Every registered signing key (of USER): who, registered when and by whom, revoked."""
    for key in clew.user_keys(user):
        revoked = (
            f"revoked {records.ms_to_iso(key['revoked_ms'])} by {key['revoked_by']}"
            if key["revoked_ms"] is not None
            else "active"
        )
        typer.echo(
            f"{key['key_id']}  {key['user_name']}  registered "
            f"{records.ms_to_iso(key['created_ms'])} by {key['created_by']}  {revoked}"
        )


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, from `clew keys list`.")],
) -> None:
    """Revoke a signing key from now on: what it signed before stays valid (admins)."""
    key = clew.revoke_user_key(key_id)
    console.print(
        f"revoked {key['user_name']}'s key {key['key_id']} at "
        f"{records.ms_to_iso(key['revoked_ms'])}; it signs nothing from now on."
    )
