"""Audited reads: who fetched the bytes of a governed model, when, and how.

A blob is *governed* when it belongs to a registered model version: the version's manifest
(its digest) or any file that manifest lists. Registering a version is what makes bytes
governed, because from then on they are what an approval vouches for and what serving loads.

Each read of a governed blob appends an ``artifact.read.<how>`` entry to the hash-chained audit
log (actor = the reader, target = the blob's digest, request id = the server's), where ``how``
is ``redirect`` (the server handed out a presigned object-store URL), ``stream`` (the server
sent the bytes, a whole blob or one byte range) or ``embedded`` (the SDK read the store in
its own process). ``CLEW_AUDIT_READS`` (``clew server --audit-reads``) picks what is recorded:
``governed`` (default), ``all`` blobs, or ``off`` for deployments that log reads elsewhere.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from clew.domain.audit import AuditEntry
from clew.errors import IntegrityError, InvalidInputError, StoreUnavailableError
from clew.service import audit
from clew.store import schema
from clew.store.location import Store

AUDIT_READS_ENV = "CLEW_AUDIT_READS"
READ_ACTION = "artifact.read."


class ReadAudit(StrEnum):
    """Which blob reads append an audit entry."""

    GOVERNED = "governed"
    ALL = "all"
    OFF = "off"


class ReadHow(StrEnum):
    """How the bytes left the store."""

    REDIRECT = "redirect"
    STREAM = "stream"
    EMBEDDED = "embedded"


def read_audit() -> ReadAudit:
    """The ``CLEW_AUDIT_READS`` setting; an unknown value stops the server, never audits less."""
    value = os.environ.get(AUDIT_READS_ENV, "").strip().lower() or ReadAudit.GOVERNED
    try:
        return ReadAudit(value)
    except ValueError:
        raise StoreUnavailableError(
            f"{AUDIT_READS_ENV}={value!r} is not one of governed, all, off; fix the server's "
            "environment (or `clew server --audit-reads`)."
        ) from None


def record_read(
    store: Store, actor: str, digest: str, how: ReadHow, byte_range: str | None = None
) -> AuditEntry | None:
    """Append the audit entry for one read of ``digest`` if the setting asks for it.

    Called before the bytes (or the URL to them) are handed out, so a read the log misses is
    a read that did not happen. ``byte_range`` is the ``Range`` header the reader sent.
    """
    setting = read_audit()
    if setting is ReadAudit.OFF:
        return None
    versions = _governed(store).versions_of(store, digest)
    if setting is ReadAudit.GOVERNED and not versions:
        return None
    payload = {"digest": digest, "how": how.value, "versions": versions, "range": byte_range}
    with store.db.write() as connection:
        return audit.append(connection, actor, READ_ACTION + how.value, digest, payload)


@dataclass
class GovernedDigests:
    """Every blob digest that belongs to a registered version, mapped to those versions' refs.

    Versions are immutable and never deleted, so the map only grows; it is reloaded whenever
    the store's count or newest id of versions differs from the last look (one small query
    per read), so a version another server process registered counts at once. A manifest is
    read once per process: its bytes never change under its digest.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: tuple[int, str | None] = (0, None)
    _versions: dict[str, str] = field(default_factory=dict)
    _refs: dict[str, set[str]] = field(default_factory=dict)

    def versions_of(self, store: Store, digest: str) -> list[str]:
        """The refs (``churn/3``) of every version ``digest`` belongs to, oldest first."""
        with store.db.read() as connection:
            state = connection.execute(
                select(func.count(), func.max(schema.model_versions.c.id))
            ).one()
        with self._lock:
            if tuple(state) != self._seen:
                self._load(store)
                self._seen = (state[0], state[1])
            return sorted(self._refs.get(digest, ()), key=_ref_order)

    def _load(self, store: Store) -> None:
        versions, models = schema.model_versions, schema.models
        query = select(versions.c.id, models.c.name, versions.c.version, versions.c.digest).join(
            models, models.c.id == versions.c.model_id
        )
        with store.db.read() as connection:
            rows = connection.execute(query).all()
        for version_id, name, number, digest in rows:
            if version_id in self._versions:
                continue
            ref = f"{name}/{number}"
            for member in {digest, *_members(store, digest)}:
                self._refs.setdefault(member, set()).add(ref)
            self._versions[version_id] = ref


def _members(store: Store, digest: str) -> list[str]:
    """The file digests a version's manifest lists (none when it is a single file, or when the
    manifest's bytes no longer match its digest: reading them is refused by the integrity
    check itself, with the version named, and the manifest's own digest stays governed)."""
    try:
        return list(store.blobs.read_manifest(digest).values())
    except (InvalidInputError, ValueError, IntegrityError):
        return []


def _ref_order(ref: str) -> tuple[str, int]:
    name, _, number = ref.rpartition("/")
    return name, int(number)


_caches: weakref.WeakKeyDictionary[Any, GovernedDigests] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _governed(store: Store) -> GovernedDigests:
    """One map per opened database, dropped with it (the server opens one; tests many)."""
    with _caches_lock:
        found = _caches.get(store.db)
        if found is None:
            found = _caches[store.db] = GovernedDigests()
        return found
