"""``clew server`` (the team HTTP API) and ``clew admin`` (users, tokens, grants).

``clew admin`` works on the store directly, so it needs the same ``--uri`` the server uses and
is run by whoever administers the deployment; that is how the first admin user and token exist
before any server request can be authenticated.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import typer

from clew.cli.output import console
from clew.extras import require_extra
from clew.service import accounts
from clew.service.identity import current_actor
from clew.service.reads import ReadAudit
from clew.store.location import Store, open_store

UriOption = Annotated[
    str | None,
    typer.Option("--uri", help="Metadata store: a directory or database URL (default CLEW_URI)."),
]
ArtifactsOption = Annotated[
    str | None,
    typer.Option("--artifacts", help="Blob store location (default CLEW_ARTIFACTS or beside it)."),
]

# uvicorn kills a worker that does not answer its supervisor's ping within this many seconds.
# Its default (5 s) killed workers still importing on a busy machine, and workers busy with
# a large metric batch, over and over; a hung worker is still replaced, just less eagerly.
WORKER_HEALTHCHECK_S = 60

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
        ReadAudit | None,
        typer.Option(
            "--audit-reads",
            help="Which blob downloads append an audit entry: governed (blobs of registered "
            "versions, the default), all, or off (CLEW_AUDIT_READS).",
        ),
    ] = None,
) -> None:
    """Serve the clew API (/api/v1, OpenAPI at /api/v1/openapi.json) until interrupted."""
    require_extra("server", "clew server")
    import uvicorn

    from clew.server.routes.artifacts import PRESIGNED_ENV, presigned_seconds
    from clew.service.reads import AUDIT_READS_ENV, read_audit

    if presigned_downloads is not None:
        os.environ[PRESIGNED_ENV] = str(presigned_downloads)
        presigned_seconds()  # refuses an out-of-range value before any worker starts
    _set_read_timeouts(header_timeout, body_timeout)
    _set_allowed_hosts(host, anonymous_read, allowed_hosts)
    if audit_reads is not None:
        os.environ[AUDIT_READS_ENV] = audit_reads.value
    read_audit()  # refuses a bad CLEW_AUDIT_READS before any worker starts
    if uri:
        os.environ["CLEW_URI"] = uri
    if artifacts:
        os.environ["CLEW_ARTIFACTS"] = artifacts
    os.environ["CLEW_ANONYMOUS_READ"] = "1" if anonymous_read else "0"
    if forwarded_allow_ips is not None:
        os.environ["CLEW_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    open_store(uri, artifacts).close()
    console.print(f"clew server on http://{host}:{port}/api/v1 ({workers} worker(s)); Ctrl-C stops")
    uvicorn.run(
        "clew.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="clew.server.read_timeouts:TimedH11Protocol",
        log_level="info",
        log_config=_log_config(),
        access_log=False,
        proxy_headers=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )


def _set_allowed_hosts(host: str, anonymous_read: bool, names: str | None) -> None:
    """Decide the Host allow-list once, before any worker starts (refusing a missing one)."""
    from clew.server import hosts

    given = hosts.parse(names if names is not None else os.environ.get(hosts.ALLOWED_HOSTS_ENV, ""))
    chosen = hosts.allowed_hosts(host, anonymous_read, given)
    os.environ[hosts.ALLOWED_HOSTS_ENV] = ",".join(chosen)


def _set_read_timeouts(header: float | None, body: float | None) -> None:
    """Hand the timeouts to every worker through the environment, refusing a bad one now."""
    from clew.server import read_timeouts

    for name, value, default in (
        (read_timeouts.HEADER_TIMEOUT_ENV, header, read_timeouts.DEFAULT_HEADER_TIMEOUT),
        (read_timeouts.BODY_TIMEOUT_ENV, body, read_timeouts.DEFAULT_BODY_TIMEOUT),
    ):
        if value is not None:
            os.environ[name] = repr(value)
        read_timeouts.timeout_from_environment(name, default)


def _log_config() -> dict[str, object]:
    """Uvicorn's logging plus clew's one-JSON-line-per-request access log on stderr."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["clew"] = {"format": "%(message)s"}
    config["handlers"]["clew"] = {
        "class": "logging.StreamHandler",
        "formatter": "clew",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["clew.server"] = {"handlers": ["clew"], "level": "INFO", "propagate": False}
    return config


def _store(uri: str | None, artifacts: str | None) -> Store:
    return open_store(uri, artifacts)


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
    store = _store(uri, artifacts)
    try:
        user = accounts.create_user(store, name, role, actor=current_actor())
    finally:
        store.close()
    console.print(f"created user {user.name} ({user.role.label})")


@admin_app.command("create-token")
def create_token(
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    days: Annotated[int, typer.Option("--days", min=1, max=accounts.MAX_DAYS)] = 90,
    signing: Annotated[
        bool, typer.Option("--signing", help="A signing token for approvals (e-signatures).")
    ] = False,
    description: Annotated[str, typer.Option("--description")] = "",
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    store = _store(uri, artifacts)
    purpose = accounts.SIGNING if signing else accounts.API
    try:
        issued = accounts.create_token(
            store, user, current_actor(), purpose=purpose, days=days, description=description
        )
    finally:
        store.close()
    expires = dt.datetime.fromtimestamp(issued.expires_ms / 1000, tz=dt.UTC).date()
    console.print(f"{purpose} token {issued.id} for {user}, expires {expires}")
    console.print("the token (shown only once):")
    typer.echo(issued.secret)


@admin_app.command("revoke-token")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token id printed when it was created.")],
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Revoke a token at once (every server replica refuses it on the next request)."""
    store = _store(uri, artifacts)
    try:
        accounts.revoke_token(store, token_id, current_actor())
    finally:
        store.close()
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
    store = _store(uri, artifacts)
    try:
        accounts.grant(store, user, model, role, current_actor())
    finally:
        store.close()
    scope = f"models named {model}" if model.endswith(accounts.PREFIX_MARK) else f"model {model}"
    console.print(f"{user} is at least {role} on {scope}")
