"""``clew server`` (the team HTTP API) and ``clew admin`` (users, tokens, grants).

``clew admin`` works on the store directly (through the SDK's admin facade), so it needs the
same ``--uri`` the server uses and is run by whoever administers the deployment; that is how
the first admin user and token exist before any server request can be authenticated.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from clew.cli.output import console, fail, table
from clew.client import admin
from clew.extras import require_extra

UriOption = Annotated[
    str | None,
    typer.Option("--uri", help="Metadata store: a directory or database URL (default CLEW_URI)."),
]
ArtifactsOption = Annotated[
    str | None,
    typer.Option("--artifacts", help="Blob store location (default CLEW_ARTIFACTS or beside it)."),
]

admin_app = typer.Typer(help="Users, API tokens and per-model grants of a clew server.")


def server(
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 8080,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
    anonymous_read: Annotated[
        bool,
        typer.Option("--anonymous-read", help="Let requests without a token read (off)."),
    ] = False,
    presigned_downloads: Annotated[
        int | None,
        typer.Option(
            "--presigned-downloads",
            min=0,
            metavar="SECONDS",
            help="With an object store: how long the presigned URLs that blob downloads of "
            "8 MiB or more are redirected to stay valid (CLEW_PRESIGNED_DOWNLOADS; default "
            "900; 0 relays every byte through the server).",
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            metavar="NAMES",
            help="Comma-separated Host names the server answers to, e.g. clew.example.com,"
            "*.corp.example (CLEW_ALLOWED_HOSTS; default: the loopback names when bound to "
            "loopback; required with --anonymous-read on any other interface).",
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            "--header-timeout",
            metavar="SECONDS",
            help="Close a connection whose request headers take longer than this "
            "(CLEW_HEADER_TIMEOUT; default 15).",
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            "--body-timeout",
            metavar="SECONDS",
            help="Close a connection whose request body sends nothing for this long "
            "(CLEW_BODY_TIMEOUT; default 60).",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            metavar="ADDRESSES",
            help="Comma-separated proxy addresses or networks whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed (CLEW_FORWARDED_ALLOW_IPS; default none): behind a "
            "TLS-terminating proxy the session cookie is then Secure, and rate limits count "
            "the real client.",
        ),
    ] = None,
    audit_reads: Annotated[
        admin.ReadAudit | None,
        typer.Option(
            "--audit-reads",
            help="Which blob downloads append an audit entry: governed (blobs of registered "
            "versions, the default), all, or off (CLEW_AUDIT_READS).",
        ),
    ] = None,
) -> None:
    """Serve the clew API (/api/v1, OpenAPI at /api/v1/openapi.json) until interrupted."""
    require_extra("server", "clew server")
    settings = admin.ServerSettings(
        uri=uri,
        artifacts=artifacts,
        host=host,
        port=port,
        workers=workers,
        anonymous_read=anonymous_read,
        presigned_downloads=presigned_downloads,
        allowed_hosts=allowed_hosts,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        forwarded_allow_ips=forwarded_allow_ips,
        audit_reads=audit_reads,
    )
    admin.configure_server(settings)
    console.print(f"clew server on http://{host}:{port}/api/v1 ({workers} worker(s)); Ctrl-C stops")
    admin.run_server(settings)


@admin_app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="The user's name, e.g. alice@example.com.")],
    role: Annotated[
        str, typer.Option("--role", help="viewer, contributor, approver or admin.")
    ] = "contributor",
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Create a user with a role (grant per-model roles with `clew admin grant`)."""
    user = admin.create_user(name, role, uri, artifacts)
    console.print(f"created user {user.name} ({user.role.label})")


@admin_app.command("create-token")
def create_token(
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    days: Annotated[int, typer.Option("--days", min=1, max=admin.MAX_TOKEN_DAYS)] = 90,
    signing: Annotated[
        bool, typer.Option("--signing", help="A signing token for approvals (e-signatures).")
    ] = False,
    description: Annotated[str, typer.Option("--description")] = "",
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    issued = admin.create_token(user, days, signing, description, uri, artifacts)
    expires = dt.datetime.fromtimestamp(issued.expires_ms / 1000, tz=dt.UTC).date()
    console.print(f"{issued.purpose} token {issued.id} for {user}, expires {expires}")
    console.print("the token (shown only once):")
    typer.echo(issued.secret)


@admin_app.command("revoke-token")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token id printed when it was created.")],
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Revoke a token at once (every server replica refuses it on the next request)."""
    admin.revoke_token(token_id, uri, artifacts)
    console.print(f"revoked token {token_id}")


@admin_app.command("grant")
def grant(
    user: Annotated[str, typer.Argument()],
    model: Annotated[
        str,
        typer.Argument(
            help="A registered model's name, or a name prefix ending in * ('fraud-*') for "
            "every model whose name starts with it, including models created later."
        ),
    ],
    role: Annotated[str, typer.Argument(help="viewer, contributor, approver or admin.")],
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Give USER at least ROLE on one registered MODEL (or on a name prefix, 'fraud-*').

    A viewer with contributor grants is a contributor limited to those models. A model name
    that does not exist yet is refused: its rights would go to whoever registers it first.
    """
    admin.grant(user, model, role, uri, artifacts)
    scope = f"models named {model}" if admin.is_name_prefix(model) else f"model {model}"
    console.print(f"{user} is at least {role} on {scope}")


@admin_app.command("grants")
def grants(
    dangling: Annotated[
        bool,
        typer.Option(
            "--dangling",
            help="Only grants on a name no model has, or older than their model (accepted "
            "before grants were checked).",
        ),
    ] = False,
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Every per-model grant: user, model or prefix, role, and what is wrong with it if
    anything (fix dangling ones with `clew admin revoke-grant --dangling`)."""
    found = admin.grants(dangling, uri, artifacts)
    if not found:
        console.print("no dangling grants" if dangling else "no grants")
        return
    rows = [(g.user, g.model, g.role, g.created_by, g.problem or "") for g in found]
    console.print(table(["user", "model", "role", "granted by", "problem"], rows))
    if any(g.problem for g in found):
        console.print(f"{sum(bool(g.problem) for g in found)} dangling: {admin.DANGLING_FIX}.")


@admin_app.command("revoke-grant")
def revoke_grant(
    user: Annotated[str | None, typer.Argument(help="The user whose grant goes.")] = None,
    model: Annotated[
        str | None, typer.Argument(help="The model name or prefix ('fraud-*') it is on.")
    ] = None,
    dangling: Annotated[
        bool, typer.Option("--dangling", help="Revoke every dangling grant instead.")
    ] = False,
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Take USER's grant on MODEL away, or with --dangling every grant `clew admin grants
    --dangling` lists (audited)."""
    if dangling and user is None and model is None:
        revoked = admin.revoke_dangling_grants(uri, artifacts)
        for gone in revoked:
            console.print(f"revoked {gone.user}'s {gone.role} grant on {gone.model}")
        console.print(f"revoked {len(revoked)} dangling grant(s)")
        return
    if dangling or user is None or model is None:
        fail("name USER and MODEL, or pass --dangling alone.")
        return
    admin.revoke_grant(user, model, uri, artifacts)
    console.print(f"revoked {user}'s grant on {model}")
