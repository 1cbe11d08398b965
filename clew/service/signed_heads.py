"""Signed checkpoints of the audit chain: proof that history was only ever appended to.

Whoever can write the database can recompute every hash of the chain, so the chain alone
cannot prove it was not rewritten. A checkpoint is the chain's head (seq and hash) signed with
the store's Ed25519 key, which never lives in the database (clew/service/signing.py): the
signed tree head of RFC 6962. Because each entry's hash covers the one before, a checkpoint
for entry N still matching the chain proves entries 1..N are exactly as they were when it was
signed. Checkpoints are kept in the store (``audit_checkpoints``) and, to survive someone who
deletes those too, exported to a file or an object-store bucket that the database's writers
cannot change (S3 Object Lock in compliance mode); ``verify_against`` checks a store against
such a copy.

A checkpoint is signed after every approval, rejection, revocation, archive, promotion,
rollback and policy change, and after every ``EVERY`` entries otherwise (see ``after_write``),
so bulk writes (runs, registrations) pay for a signature once per hundred entries.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from dataclasses import asdict
from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, func, select

from clew.domain import checkpoint_exports, digests, signatures
from clew.domain.audit import Checkpoint, CheckpointProblem, checkpoint_message
from clew.errors import ClewError
from clew.service import signing
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import Database

EVERY = 100
_signers: weakref.WeakKeyDictionary[Database, signing.Signer] = weakref.WeakKeyDictionary()
# Bulk writes since this process last looked at the head, per store: looking costs a read.
_unsigned: weakref.WeakKeyDictionary[Database, int] = weakref.WeakKeyDictionary()
_log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def checkpointed(decision: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a service method whose write should be followed by ``after_write``."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result = method(*args, **kwargs)
            service = args[0]
            assert hasattr(service, "store")
            after_write(service.store, decision=decision)
            return result

        return wrapper

    return decorate


def after_write(store: Store, *, decision: bool) -> Checkpoint | None:
    """Sign the head after a governance ``decision``, or once ``EVERY`` entries have passed.

    The write it follows has committed, so a checkpoint that cannot be signed (no key file) is
    logged, never raised: the next checkpoint covers the entries this one missed.
    """
    if not decision:
        count = _unsigned[store.db] = _unsigned.get(store.db, 0) + 1
        if count < EVERY:
            return None
    _unsigned[store.db] = 0
    try:
        return _sign_if_due(store, decision)
    except ClewError as error:
        _log.warning("the audit chain head was not signed: %s", error)
        return None


def _sign_if_due(store: Store, decision: bool) -> Checkpoint | None:
    with store.db.read() as connection:
        head = _head(connection)
        last = connection.execute(select(func.max(schema.audit_checkpoints.c.seq))).scalar() or 0
    if head is None or head[0] == last or (not decision and head[0] - last < EVERY):
        return None
    return sign_head(store)


def sign_head(store: Store) -> Checkpoint | None:
    """Sign the chain's current head (a no-op for an empty chain, or a head already signed)."""
    signer = _signer(store)
    with store.db.write() as connection:
        head = _head(connection)
        if head is None:
            return None
        table = schema.audit_checkpoints
        found = connection.execute(select(table).where(table.c.seq == head[0])).mappings().first()
        if found is not None:
            return Checkpoint(**found)
        seq, hash_ = head
        time_ms = now_ms()
        signature = signer.sign(checkpoint_message(seq, hash_, time_ms))
        checkpoint = Checkpoint(seq, hash_, time_ms, signer.key_id, signature)
        connection.execute(table.insert().values(**asdict(checkpoint)))
        return checkpoint


def checkpoints(store: Store) -> list[Checkpoint]:
    table = schema.audit_checkpoints
    with store.db.read() as connection:
        rows = connection.execute(select(table).order_by(table.c.seq)).mappings()
        return [Checkpoint(**row) for row in rows]


def export(store: Store, destination: str, *, retain_days: int | None = None) -> int:
    """Write every checkpoint (signing the head first) to ``destination``: a file path or an
    fsspec URI such as ``s3://audit-bucket/churn-store.jsonl``; returns how many.

    ``retain_days`` (S3 only) writes the object under Object Lock in compliance mode for that
    many days: nobody, the bucket's owner included, can overwrite or delete it until then.
    """
    checkpoint_exports.check_retention(destination, retain_days)
    sign_head(store)
    return checkpoint_exports.write_export(destination, checkpoints(store), retain_days)


def verify_stored(store: Store) -> tuple[int, list[CheckpointProblem]]:
    """Check the store's own checkpoints against the chain and the store's key history."""
    found = checkpoints(store)
    return len(found), _check(store, found)


def verify_against(store: Store, source: str) -> tuple[int, list[CheckpointProblem]]:
    """Check the chain against checkpoints exported earlier (file path or fsspec URI)."""
    return verify_given(store, checkpoint_exports.read_export(source))


def verify_given(store: Store, found: list[Checkpoint]) -> tuple[int, list[CheckpointProblem]]:
    """Check the chain against checkpoints handed over (from an export)."""
    return len(found), _check(store, found)


def _check(store: Store, found: list[Checkpoint]) -> list[CheckpointProblem]:
    keys = signing.public_keys(store)
    problems: list[CheckpointProblem] = []
    with store.db.read() as connection:
        log = schema.audit_log
        hashes: dict[int, str] = dict(
            connection.execute(
                select(log.c.seq, log.c.hash).where(log.c.seq.in_([c.seq for c in found]))
            )
            .tuples()
            .all()
        )
    for checkpoint in found:
        problem = _problem(checkpoint, keys, hashes.get(checkpoint.seq))
        if problem is not None:
            problems.append(CheckpointProblem(checkpoint.seq, problem))
    return problems


def _problem(checkpoint: Checkpoint, keys: dict[str, bytes], stored: str | None) -> str | None:
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"it is signed by key {digests.short(checkpoint.key_id)}, which this store never had"
    if not signatures.verify(public, checkpoint.message(), checkpoint.signature):
        return "its signature does not verify (the checkpoint was altered)"
    if stored is None:
        return f"the chain no longer has entry #{checkpoint.seq} (history was truncated)"
    if stored != checkpoint.hash:
        return (
            f"entry #{checkpoint.seq} now hashes to {digests.short(stored)} but was signed as "
            f"{digests.short(checkpoint.hash)}: the chain was rewritten up to that entry"
        )
    return None


def _head(connection: Connection) -> tuple[int, str] | None:
    log = schema.audit_log
    row = connection.execute(select(log.c.seq, log.c.hash).order_by(log.c.seq.desc()).limit(1))
    found = row.first()
    return None if found is None else (int(found[0]), str(found[1]))


def _signer(store: Store) -> signing.Signer:
    signer = signing.current_signer(store, _signers.get(store.db))
    _signers[store.db] = signer
    return signer
