"""``clew serve REF``: an HTTP inference endpoint for one model version.

The version is resolved, checked against its approvals and re-hashed before the server
starts; every prediction it answers is captured and signed like an in-process one. The
"serving ..." line is printed only once the endpoint accepts requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import clew
from clew.cli.output import console
from clew.extras import require_extra

if TYPE_CHECKING:
    from clew.client.serving import Health


def serve(
    ref: Annotated[str, typer.Argument(help="The version to serve, e.g. churn@production.")],
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Its name in `clew status` (default: the model's name)."),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            "--shadow", help="A challenger that gets a copy of each request, e.g. churn@challenger."
        ),
    ] = None,
) -> None:
    """Serve POST /predict and GET /health for REF until interrupted."""
    require_extra("server", "clew serve")
    from clew.client import serving

    model = clew.load_model(ref)
    challenger = clew.load_model(shadow) if shadow is not None else None

    def announce(health: Health) -> None:
        console.print(
            f"serving [bold]{model.version.ref}[/bold] ({model.version.digest}) on "
            f"http://{host}:{port}  POST /predict, GET /health; Ctrl-C stops"
        )
        if challenger is not None:
            console.print(
                f"shadow [bold]{challenger.version.ref}[/bold] gets a copy of each request"
            )
        if not health.ok:
            console.print(f"[yellow]unhealthy:[/yellow] {health.problem}")

    serving.serve(model, host, port, endpoint=endpoint, shadow=challenger, announce=announce)
