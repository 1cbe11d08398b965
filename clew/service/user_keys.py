"""Users' own Ed25519 keys: an approval, rejection, revocation or promotion is a signature.

21 CFR Part 11 §11.50/§11.70 asks that a signed record show who signed, when and what the
signature means, and that the signature be bound to the record so it can not be copied to
another record or survive an edit. So each decision is signed by the acting user's private key
over a *statement*: the decision, the version and its model digest, the alias, the actor, the
meaning, the comment, the policy digest, the evidence digests and the signing time. The store
recomputes the statement from what it is about to record and verifies the signature against a
public key registered for that user, then keeps the key id, time and signature beside the
event; status and trace recompute the statement from the stored rows and verify it again, so
an edited actor, comment, version or evidence is reported as a failed signature.

The store holds public keys only, each registered (or revoked) by an admin as an audited row:
a key row counts only while it is exactly what its latest ``user_key.*`` audit entry recorded.
Private keys live in the user's home, ``$XDG_CONFIG_HOME/clew/keys/<user>.pem`` (mode 0600),
or in the directory ``CLEW_USER_KEYS`` names. A key revoked at time T keeps the signatures it
made before T valid and can sign nothing at or after T.

Time: the store's clock, not the client's, decides. The statement a client signs is prepared by
the store (or server) with its own time, the signature is accepted only within ``MAX_SKEW_MS``
of the store's time when the decision is recorded, and revocation is judged by the recorded
event's time, so a client with a wrong clock can not backdate a signature past its revocation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from clew.domain import digests, records, signatures
from clew.domain.keys import SignedStatement, UserKey
from clew.domain.policy import Policy
from clew.domain.records import RegistryEvent
from clew.errors import ConflictError, InvalidInputError, NotFoundError, PolicyError
from clew.service import audit, policy, record_check, signing
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

if TYPE_CHECKING:  # cryptography is imported when a key is used, not when clew connects
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEYS_ENV = "CLEW_USER_KEYS"
MAX_SKEW_MS = 5 * 60 * 1000
STATEMENT_TYPE = "clew.decision.v1"
# What each recorded event kind means when signed (an approval carries its own meaning).
MEANINGS = {"approved": "approved", "rejected": "rejected", "revoked": "revoked"}
PROMOTED = "promoted"
VERIFIED, UNSIGNED, UNREGISTERED, FAILED = "verified", "unsigned", "unregistered", "failed"
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")  # as server accounts


@dataclass(frozen=True)
class Verdict:
    """Whether one recorded decision's signature holds: ``state`` is verified, unsigned,
    unregistered (signed by a key the store does not know) or failed (``detail`` says why)."""

    state: str
    key_id: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the statement ------------------------------------------------------------------------


def statement(
    *,
    decision: str,
    ref: str,
    digest: str,
    alias: str | None,
    actor: str,
    meaning: str,
    comment: str,
    policy_digest: str,
    evidence: Sequence[str],
    signed_ms: int,
) -> dict[str, Any]:
    """The record a decision signs; its canonical JSON is the signed message."""
    return {
        "type": STATEMENT_TYPE,
        "decision": decision,
        "ref": ref,
        "model_digest": digest,
        "alias": alias,
        "actor": actor,
        "meaning": meaning,
        "comment": comment,
        "policy_digest": policy_digest,
        "evidence": list(evidence),
        "signed_ms": signed_ms,
    }


def event_statement(event: RegistryEvent, digest: str, signed_ms: int) -> dict[str, Any]:
    """The statement a stored decision event was signed over, rebuilt from its row."""
    evidence = event.evidence
    decision = PROMOTED if event.alias else MEANINGS.get(event.kind, event.kind)
    return statement(
        decision=decision,
        ref=f"{event.model}/{event.version}",
        digest=digest,
        alias=event.alias,
        actor=event.actor,
        meaning=str(evidence.get("meaning", decision)),
        comment=event.comment,
        policy_digest=str(evidence.get("policy_digest", "")),
        evidence=[str(item.get("digest")) for item in evidence.get("artifacts", [])],
        signed_ms=signed_ms,
    )


def sign(key: Ed25519PrivateKey, prepared: Mapping[str, Any]) -> SignedStatement:
    """Sign a statement the store prepared; only the public half leaves this process."""
    public = signatures.public_pem(key.public_key()).decode()
    signature = key.sign(digests.canonical_json(dict(prepared))).hex()
    return SignedStatement(public, int(prepared["signed_ms"]), signature)


# --- recording a decision -----------------------------------------------------------------


def accept(
    connection: Connection,
    rules: Policy,
    prepared: Mapping[str, Any],
    signed: SignedStatement | None,
) -> dict[str, Any] | None:
    """Check a decision's signature before it is recorded; returns what to keep with the
    event (key id, signing time, signature), or None for an unsigned decision the policy
    allows. Refused: a bad or stale signature, another user's key, a revoked key, and under
    ``approvals.require_registered_keys`` anything not signed by a key registered to the actor.
    """
    actor = str(prepared["actor"])
    if signed is None:
        if rules.require_registered_keys:
            raise PolicyError(_needs_key(connection, actor))
        return None
    public = signing.load_and_export(signed.public_key)
    key_id = signatures.key_id(public)
    _check_time(prepared, signed)
    message = digests.canonical_json({**prepared, "signed_ms": signed.signed_ms})
    if not signatures.verify(public, message, signed.signature):
        raise InvalidInputError(
            f"the signature by key {_short(key_id)} does not match this {prepared['decision']} "
            f"of {prepared['ref']} (the version, policy or evidence changed while it was "
            "signed); run the command again."
        )
    key = find_key(connection, key_id)
    if key is not None:
        _check_owner(key, actor)
    elif rules.require_registered_keys:
        raise PolicyError(_needs_key(connection, actor, key_id))
    return {"key_id": key_id, "signed_ms": signed.signed_ms, "signature": signed.signature}


def _check_time(prepared: Mapping[str, Any], signed: SignedStatement) -> None:
    skew = abs(now_ms() - signed.signed_ms)
    if skew > MAX_SKEW_MS:
        raise ConflictError(
            f"this {prepared['decision']} of {prepared['ref']} was signed for "
            f"{records.ms_to_iso(signed.signed_ms)}, {skew // 1000} s from the store's time "
            f"(at most {MAX_SKEW_MS // 1000} s allowed); run the command again."
        )


def _check_owner(key: UserKey, actor: str) -> None:
    if key.user_name != actor:
        raise PolicyError(
            f"key {_short(key.key_id)} is registered to {key.user_name}, not {actor}; {actor} "
            f"must sign with their own key (`clew keys init`, then ask an admin to run "
            f"`clew keys register {actor} KEYFILE`)."
        )
    if key.revoked_ms is not None:
        raise PolicyError(
            f"{actor}'s key {_short(key.key_id)} was revoked at "
            f"{records.ms_to_iso(key.revoked_ms)} by {key.revoked_by} and can sign nothing "
            f"after; make a new key with `clew keys init --new` and ask an admin to run "
            f"`clew keys register {actor} KEYFILE`."
        )


def _needs_key(connection: Connection, actor: str, key_id: str | None = None) -> str:
    active = [key.key_id for key in user_keys(connection, actor) if key.revoked_ms is None]
    if not active:
        return (
            f"{actor} has no registered signing key and the policy requires one; ask an admin "
            f"to run `clew keys register {actor} KEYFILE` (make the key with `clew keys init`)."
        )
    used = f"key {_short(key_id)}" if key_id else "no key"
    return (
        f"{actor} signed with {used}, but the policy requires {actor}'s registered key "
        f"({', '.join(_short(k) for k in active)}); put its private file in "
        f"{key_directory()} (or set {KEYS_ENV}) and run the command again."
    )


# --- checking a recorded decision ---------------------------------------------------------


def verdict(connection: Connection, event: RegistryEvent, digest: str) -> Verdict:
    """Re-verify one stored decision against the registered key it names."""
    block = event.evidence.get("signature")
    if not isinstance(block, Mapping):
        return Verdict(UNSIGNED, None, "not signed")
    key_id, signed_ms = str(block.get("key_id")), block.get("signed_ms")
    key = find_key(connection, key_id)
    if key is None:
        return Verdict(UNREGISTERED, key_id, f"signed by {_short(key_id)}, not a registered key")
    problem = _recorded_problem(event, key, signed_ms)
    if problem is None and isinstance(signed_ms, int):
        message = digests.canonical_json(event_statement(event, digest, signed_ms))
        if not signatures.verify(key.public_key.encode(), message, str(block.get("signature"))):
            problem = f"the record differs from what {_short(key_id)} signed"
    if problem is not None:
        return Verdict(FAILED, key_id, problem)
    return Verdict(VERIFIED, key_id, f"signed by {event.actor} with {_short(key_id)}")


def _recorded_problem(event: RegistryEvent, key: UserKey, signed_ms: Any) -> str | None:
    if key.user_name != event.actor:
        return f"key {_short(key.key_id)} is {key.user_name}'s, not {event.actor}'s"
    if not isinstance(signed_ms, int) or abs(event.time_ms - signed_ms) > MAX_SKEW_MS:
        return f"the signing time does not match the time the {event.kind} was recorded"
    if key.revoked_ms is not None and event.time_ms >= key.revoked_ms:
        return f"recorded after key {_short(key.key_id)} was revoked"
    return None


def counts(verdict_: Verdict, rules: Policy) -> bool:
    """Whether a decision with this verdict counts: never when its signature failed, and only
    verified ones when the policy requires registered keys."""
    if verdict_.state == FAILED:
        return False
    return verdict_.state == VERIFIED or not rules.require_registered_keys


# --- registered keys ----------------------------------------------------------------------


def find_key(connection: Connection, key_id: str) -> UserKey | None:
    """The registered key ``key_id``, or None; a row that differs from its latest audit entry
    (inserted or edited in the database) is not a registered key."""
    table = schema.user_keys
    row = connection.execute(select(table).where(table.c.key_id == key_id)).first()
    if row is None:
        return None
    key = UserKey(**row._mapping)
    return key if _audited(connection, key) else None


def user_keys(connection: Connection, user: str | None = None) -> list[UserKey]:
    table = schema.user_keys
    query = select(table).order_by(table.c.created_ms, table.c.key_id)
    if user is not None:
        query = query.where(table.c.user_name == user)
    keys = [UserKey(**row._mapping) for row in connection.execute(query)]
    return [key for key in keys if _audited(connection, key)]


def _audited(connection: Connection, key: UserKey) -> bool:
    """The key row matches the image its audit entry recorded (clew/service/record_check.py)."""
    return not record_check.vouch(connection, "user_keys", [{"key_id": key.key_id}])


def _target(key_id: str) -> str:
    return f"user-key:{key_id}"


class UserKeyService:
    """Register, list and revoke users' public keys (admins: the policy's ``policy.roles``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, user: str, public_key: str, actor: str) -> UserKey:
        """Record ``public_key`` as ``user``'s; an audited, admin-only write."""
        _check_user(user)
        public = signing.load_and_export(_public_text(public_key))
        key = UserKey(signatures.key_id(public), user, public.decode(), now_ms(), actor, None, None)
        with self.store.db.write() as connection:
            _require_admin(connection, actor, f"register a signing key for {user}")
            existing = connection.execute(
                select(schema.user_keys.c.user_name).where(schema.user_keys.c.key_id == key.key_id)
            ).scalar()
            if existing is not None:
                raise ConflictError(
                    f"key {_short(key.key_id)} is already registered to {existing}; every user "
                    "makes their own key with `clew keys init`."
                )
            connection.execute(schema.user_keys.insert().values(**key.to_dict()))
            audit.stage(connection, schema.user_keys, key.to_dict())
            audit.append(connection, actor, "user_key.register", _target(key.key_id), key.to_dict())
        return key

    def revoke(self, key_id: str, actor: str) -> UserKey:
        """Revoke a key from now on: its earlier signatures stay valid, it signs nothing more.
        An admin may revoke any key, a user their own."""
        with self.store.db.write() as connection:
            key = find_key(connection, key_id)
            if key is None:
                raise NotFoundError(
                    f"no registered signing key {key_id!r}; list them with `clew keys list`."
                )
            if key.revoked_ms is not None:
                raise ConflictError(
                    f"key {_short(key_id)} of {key.user_name} was already revoked at "
                    f"{records.ms_to_iso(key.revoked_ms)}."
                )
            if actor != key.user_name:
                _require_admin(connection, actor, f"revoke {key.user_name}'s signing key")
            revoked = UserKey(**{**key.to_dict(), "revoked_ms": now_ms(), "revoked_by": actor})
            connection.execute(
                schema.user_keys.update()
                .where(schema.user_keys.c.key_id == key_id)
                .values(revoked_ms=revoked.revoked_ms, revoked_by=actor)
            )
            audit.stage(connection, schema.user_keys, revoked.to_dict())
            audit.append(connection, actor, "user_key.revoke", _target(key_id), revoked.to_dict())
        return revoked

    def list_keys(self, user: str | None = None) -> list[UserKey]:
        """Registered keys (of ``user``), oldest first, revoked ones included."""
        with self.store.db.read() as connection:
            return user_keys(connection, user)


def _require_admin(connection: Connection, actor: str, action: str) -> None:
    rules = policy.current(connection).rules
    policy.require_member(connection, rules, actor, rules.admin_roles, action)


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not _USER_NAME.match(user):
        raise InvalidInputError(
            f"user name {user!r} must be 1-100 letters, digits or . _ @ - (starting with a "
            "letter or digit)."
        )


def _public_text(public_key: str) -> str:
    if "PRIVATE KEY" in public_key:
        raise InvalidInputError(
            "that is a private key; register the public file `clew keys init` printed "
            "(<user>.pub.pem), and keep the private one where it is."
        )
    return public_key


# --- the user's private key, in their home ------------------------------------------------


def key_directory() -> Path:
    """Where users' private keys live: ``CLEW_USER_KEYS``, else ``~/.config/clew/keys``."""
    configured = os.environ.get(KEYS_ENV)
    if configured:
        return Path(configured).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "clew" / "keys"


def key_path(user: str) -> Path:
    _check_user(user)
    return key_directory() / f"{user}.pem"


def public_path(user: str) -> Path:
    return key_directory() / f"{user}.pub.pem"


def find_local_key(user: str) -> Ed25519PrivateKey | None:
    """``user``'s private key from their key directory, or None when they have none (a name
    no key can be registered for has none)."""
    if not _USER_NAME.match(user):
        return None
    path = key_path(user)
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise InvalidInputError(
            f"{path} can be read by other users; run `chmod 600 {path}` (a signing key must "
            "be yours alone)."
        )
    return _read_private(path)


def create_local_key(user: str, *, replace: bool = False) -> tuple[Path, str]:
    """Write a new private key for ``user`` (0600, directory 0700) and its public file;
    returns the public file and PEM. An existing key is kept unless ``replace``."""
    path = key_path(user)
    if path.exists() and not replace:
        raise ConflictError(
            f"{user} already has a signing key at {path}; register its public half "
            f"{public_path(user)}, or pass --new to replace a lost or revoked key."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if replace:
        path.unlink(missing_ok=True)
    signing.create_key_file(path)
    public = signatures.public_pem(_read_private(path).public_key())
    public_path(user).write_bytes(public)
    return public_path(user), public.decode()


def _read_private(path: Path) -> Ed25519PrivateKey:
    return signing.read_private_key(path, "make a new one with `clew keys init --new`")


def _short(key: str | None) -> str:
    return "(none)" if key is None else f"{key[:19]}..."
