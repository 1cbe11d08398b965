"""The SDK for whoever runs a store: backup, restore, gc, schema upgrade, accounts, re-hashing
every blob, signing key files, and starting the API server and the web UI.

The CLI imports only the SDK (tests/test_cli_imports.py checks it); these are the SDK's
operations on a store itself. No server route does them: a backup must read the database and
the blob store, gc holds the store's write lock while it decides, and the first admin and their
token must exist before any request can be authenticated. So each opens the store that ``uri``
(default ``CLEW_URI`` / ``CLEW_HOME``, blobs at ``artifacts`` / ``CLEW_ARTIFACTS``) names, and
a server address is refused in one sentence that says to run it on the server host. What a
server does expose for administrators (audit verification and checkpoints, signing keys, user
keys, web sessions) is on ``Client`` and works against a server address too.

Results are the service layer's own value types, named in ``__all__`` so that callers (the
CLI) can annotate with them without importing ``clew.service``. Starting the server is the one
place the SDK imports ``clew.server``, and only when asked to.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.client.audit import server_host_only
from clew.errors import InvalidInputError
from clew.service import accounts, integrity, registry, signing
from clew.service import backup as backups
from clew.service import gc as collector
from clew.service.accounts import Grant, IssuedToken, Principal
from clew.service.backup import BackupSummary, RestoreSummary
from clew.service.gc import GcReport
from clew.service.identity import current_actor
from clew.service.integrity import BlobProblem, DatabaseCheck
from clew.service.reads import AUDIT_READS_ENV, ReadAudit, read_audit
from clew.store.location import Store, open_store
from clew.store.metadata import SCHEMA_HEAD

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DANGLING_FIX",
    "DEFAULT_GRACE_MINUTES",
    "MAX_TOKEN_DAYS",
    "SCHEMA_HEAD",
    "SIGNING_KEY_ENV",
    "BackupSummary",
    "BlobProblem",
    "DatabaseCheck",
    "GcReport",
    "Grant",
    "IssuedToken",
    "Principal",
    "ReadAudit",
    "RestoreSummary",
    "ServerSettings",
    "StoreBackup",
    "StoreVerification",
    "Upgraded",
    "backup",
    "collect_garbage",
    "configure_server",
    "create_signing_key",
    "create_token",
    "create_user",
    "grant",
    "grants",
    "is_name_prefix",
    "restore",
    "revoke_dangling_grants",
    "revoke_grant",
    "revoke_token",
    "run_server",
    "run_ui",
    "ui_app",
    "upgrade",
    "verify_store",
]

DANGLING_FIX = accounts.DANGLING_FIX
DEFAULT_GRACE_MINUTES = collector.DEFAULT_GRACE_MS // 60_000
MAX_TOKEN_DAYS = accounts.MAX_DAYS
SIGNING_KEY_ENV = signing.KEY_ENV
# uvicorn kills a worker that does not answer its supervisor's ping within this many seconds.
# Its default (5 s) killed workers still importing on a busy machine, and workers busy with
# a large metric batch, over and over; a hung worker is still replaced, just less eagerly.
WORKER_HEALTHCHECK_S = 60

Advance = Callable[[int], None]
"""Told how many more bytes were re-hashed, for a progress bar."""


@dataclass(frozen=True)
class StoreBackup:
    """The archive written and the store it was written from (``uri`` shows no password)."""

    uri: str
    summary: BackupSummary


@dataclass(frozen=True)
class Upgraded:
    """The schema revision a store is at now, and the names that look alike but for case."""

    uri: str
    revision: str | None
    look_alikes: list[tuple[str, str, list[str]]]


@dataclass(frozen=True)
class StoreVerification:
    """The database's structural check and every blob re-hashed against its digest."""

    uri: str
    database: DatabaseCheck
    blobs: int
    bytes: int
    problems: list[BlobProblem]


@dataclass(frozen=True)
class ServerSettings:
    """``clew server``'s options; ``None`` leaves a setting to its environment variable."""

    uri: str | None = None
    artifacts: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    anonymous_read: bool = False
    presigned_downloads: int | None = None
    allowed_hosts: str | None = None
    header_timeout: float | None = None
    body_timeout: float | None = None
    forwarded_allow_ips: str | None = None
    audit_reads: ReadAudit | None = None


@contextmanager
def _opened(
    uri: str | None, artifacts: str | None, *, create: bool = False, existing: bool = False
) -> Iterator[Store]:
    """The store ``uri`` names, closed afterwards; a server address is refused right here."""
    store = open_store(uri, artifacts, create=create, existing=existing)
    try:
        yield store
    finally:
        store.close()


def backup(
    destination: Path,
    compression: str = "auto",
    uri: str | None = None,
    artifacts: str | None = None,
) -> StoreBackup:
    """Write metadata, referenced blobs, capture files and keys to one verified archive."""
    with _opened(uri, artifacts, existing=True) as store, store.db.long_running():
        return StoreBackup(store.uri, backups.backup(store, destination, compression))


def restore(archive: Path, uri: str | None = None, artifacts: str | None = None) -> RestoreSummary:
    """Restore a backup into an empty store, then verify blobs, audit chain and counts."""
    with _opened(uri, artifacts) as store, store.db.long_running():
        return backups.restore(archive, store, current_actor())


def collect_garbage(
    delete: bool = False,
    grace_minutes: int = DEFAULT_GRACE_MINUTES,
    uri: str | None = None,
    artifacts: str | None = None,
) -> GcReport:
    """What gc finds unreferenced (and older than the grace period), deleted when ``delete``."""
    with _opened(uri, artifacts) as store:
        return collector.collect(
            store, current_actor(), delete=delete, grace_ms=grace_minutes * 60_000
        )


def upgrade(uri: str | None = None, artifacts: str | None = None, create: bool = False) -> Upgraded:
    """Apply schema migrations up to this clew's head (``SCHEMA_HEAD``); a no-op when there."""
    with _opened(uri, artifacts, create=create, existing=True) as store:
        store.db.upgrade()
        revision = store.db.schema_revision()
        with store.db.read() as connection:
            groups = registry.look_alikes(connection)
    return Upgraded(store.uri, revision, groups)


def create_user(
    name: str, role: str, uri: str | None = None, artifacts: str | None = None
) -> Principal:
    """A new user with a store-wide role, created by the current user (audited)."""
    with _opened(uri, artifacts) as store:
        return accounts.create_user(store, name, role, actor=current_actor())


def create_token(
    user: str,
    days: int = 90,
    signing_token: bool = False,
    description: str = "",
    uri: str | None = None,
    artifacts: str | None = None,
) -> IssuedToken:
    """An API token for ``user`` (or a signing token for e-signatures); only its hash is kept,
    so the returned secret is the one chance to hand it over."""
    purpose = accounts.SIGNING if signing_token else accounts.API
    with _opened(uri, artifacts) as store:
        return accounts.create_token(
            store, user, current_actor(), purpose=purpose, days=days, description=description
        )


def revoke_token(token_id: str, uri: str | None = None, artifacts: str | None = None) -> None:
    """Revoke a token at once: every server replica refuses it on its next request."""
    with _opened(uri, artifacts) as store:
        accounts.revoke_token(store, token_id, current_actor())


def grant(
    user: str, model: str, role: str, uri: str | None = None, artifacts: str | None = None
) -> None:
    """Give ``user`` at least ``role`` on one registered model or a name prefix ('fraud-*')."""
    with _opened(uri, artifacts) as store:
        accounts.grant(store, user, model, role, current_actor())


def grants(
    dangling: bool = False, uri: str | None = None, artifacts: str | None = None
) -> list[Grant]:
    """Every per-model grant (only the dangling ones with ``dangling``), each with the sentence
    saying why it is dangling: a name no model has, or a grant older than its model."""
    with _opened(uri, artifacts) as store:
        return accounts.dangling_grants(store) if dangling else accounts.list_grants(store)


def revoke_grant(
    user: str, model: str, uri: str | None = None, artifacts: str | None = None
) -> None:
    """Take ``user``'s grant on ``model`` (a name or ``prefix*``) away (audited)."""
    with _opened(uri, artifacts) as store:
        accounts.revoke_grant(store, user, model, current_actor())


def revoke_dangling_grants(uri: str | None = None, artifacts: str | None = None) -> list[Grant]:
    """Revoke every dangling grant at once (each audited); returns the grants revoked."""
    with _opened(uri, artifacts) as store:
        return accounts.revoke_dangling_grants(store, current_actor())


def is_name_prefix(model: str) -> bool:
    """Whether a grant on ``model`` covers every model whose name starts with it."""
    return model.endswith(accounts.PREFIX_MARK)


def verify_store(
    progress: Callable[[int, int], AbstractContextManager[Advance]],
) -> StoreVerification:
    """Check the default client's database and re-hash every blob it holds or records.

    ``progress(blobs, bytes)`` is entered around the re-hashing and fed byte counts. Every
    stored byte is read, which only makes sense next to the data, so a server is refused.
    """
    from clew.client.default import get_client  # the client (and pandas) only when used

    client = get_client()
    store = client.store
    if not isinstance(store, Store):
        raise server_host_only("clew verify", client.uri)
    database = integrity.check_database(store)
    blobs = integrity.inventory(store)
    total = sum(blobs.values())
    with progress(len(blobs), total) as advance:
        problems = integrity.verify_blobs(store, advance, blobs)
    return StoreVerification(store.uri, database, len(blobs), total, problems)


def create_signing_key(path: Path) -> str:
    """Write a new private capture signing key (mode 0600) for replicas to share through
    ``SIGNING_KEY_ENV``; returns its public key (PEM)."""
    return signing.create_key_file(path.expanduser()).decode()


def configure_server(settings: ServerSettings) -> None:
    """Check every setting and hand it to the workers through the environment, refusing a bad
    one (or a store that does not open) before any worker starts."""
    from clew.server.routes.artifacts import PRESIGNED_ENV, presigned_seconds

    if settings.presigned_downloads is not None:
        os.environ[PRESIGNED_ENV] = str(settings.presigned_downloads)
        presigned_seconds()
    _set_read_timeouts(settings.header_timeout, settings.body_timeout)
    _set_allowed_hosts(settings.host, settings.anonymous_read, settings.allowed_hosts)
    if settings.audit_reads is not None:
        os.environ[AUDIT_READS_ENV] = settings.audit_reads.value
    read_audit()
    if settings.uri:
        os.environ["CLEW_URI"] = settings.uri
    if settings.artifacts:
        os.environ["CLEW_ARTIFACTS"] = settings.artifacts
    os.environ["CLEW_ANONYMOUS_READ"] = "1" if settings.anonymous_read else "0"
    if settings.forwarded_allow_ips is not None:
        os.environ["CLEW_FORWARDED_ALLOW_IPS"] = settings.forwarded_allow_ips
    open_store(settings.uri, settings.artifacts).close()


def run_server(settings: ServerSettings) -> None:
    """Serve the API with uvicorn until interrupted (after ``configure_server``)."""
    import uvicorn

    uvicorn.run(
        "clew.server.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
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


def _log_config() -> dict[str, Any]:
    """Uvicorn's logging plus clew's one-JSON-line-per-request access log on stderr."""
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


def ui_app(host: str) -> FastAPI:
    """The web UI over the default client's store, answering to ``host`` (and loopback) only.

    It reads the store in this process; a clew server already serves the same UI itself.
    """
    from clew.client.default import get_client
    from clew.server.ui import create_ui_app

    client = get_client()
    store = client.store
    if not isinstance(store, Store):
        raise InvalidInputError(
            f"{client.uri} is a clew server, which serves the web UI itself at "
            f"{client.uri}/ui/; clew ui serves a store directory or database (CLEW_URI)."
        )
    hosts = None if host in ("127.0.0.1", "localhost") else [host, "127.0.0.1", "localhost"]
    return create_ui_app(store, allowed_hosts=hosts)


def run_ui(app: FastAPI, host: str, port: int) -> None:
    """Serve ``ui_app``'s app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
