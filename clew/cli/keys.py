"""``clew keys public|create``: the capture signing key an auditor and replicas need.

``public`` prints the store's public key (through the default client, so it works against a
server too): with it alone anyone can check a captured prediction's signature. ``create``
writes a new private key file for the replicas of a team server to share through
``CLEW_SIGNING_KEY``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import clew
from clew.cli.output import console
from clew.service import signing

app = typer.Typer(help="The capture signing key.", no_args_is_help=True)


@app.command("public")
def public() -> None:
    """Print the store's Ed25519 public key (PEM), all an auditor needs to verify captures."""
    typer.echo(clew.public_key(), nl=False)


@app.command("create")
def create(
    path: Annotated[Path, typer.Argument(help="Where to write the new private key (0600).")],
) -> None:
    """Write a new private signing key for every replica to share via CLEW_SIGNING_KEY."""
    public_pem = signing.create_key_file(path.expanduser())
    console.print(f"wrote a new signing key to {path} (mode 0600); its public key:")
    typer.echo(public_pem.decode(), nl=False)
    console.print(f"give every replica this file and set {signing.KEY_ENV}={path}")
