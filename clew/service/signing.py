"""The store's Ed25519 signing key: created on first use, private half never leaves the store.

The private key lives in ``<store>/keys/capture-ed25519.pem`` readable only by its owner
(0600), or in the file ``CLEW_SIGNING_KEY`` names: every replica of a team server must sign
with the same key, so they share one file (made once with ``clew keys create PATH``). The
first key to sign for a store is bound to it: its public half is recorded in the store's
metadata, which is where verification and ``clew keys public`` read it, and a process holding
any other key is refused rather than allowed to sign batches nobody could verify. A key's id
is the digest of its raw public bytes, recorded with every signature.

A leaked or aged key is replaced with ``rotate``: the new public key becomes the store's
current key and joins the store's key history (table ``signing_keys``, each row audited), from
which verification picks every batch's public key by the key id it was signed with, so batches
signed before a rotation still verify. A process still holding a retired key is refused, at
its first batch after the rotation too, not only when it starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from clew.domain import digests, signatures
from clew.domain.keys import RotationRequest, SigningKey
from clew.errors import ConflictError, IntegrityError, InvalidInputError
from clew.service import audit
from clew.service.runs import now_ms
from clew.store import schema

if TYPE_CHECKING:  # cryptography is imported when a key is used, not when clew connects
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from clew.store.location import Store

PRIVATE_FILE = "capture-ed25519.pem"
PUBLIC_FILE = "capture-ed25519.pub.pem"


KEY_ENV = "CLEW_SIGNING_KEY"
_BOUND_KEY = "capture_public_key"


_AUDIT_TARGET = "store:capture-key"
_ROTATION_KIND = "clew.signing.rotate"


class Signer:
    """Signs capture batch roots with the store's key."""

    def __init__(self, store: Store) -> None:
        self._key = _private_key(store)
        self.public_pem = signatures.public_pem(self._key.public_key())
        self.key_id = signatures.key_id(self.public_pem)
        _bind(store, self.public_pem)

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()

    def is_current(self, connection: Connection) -> bool:
        return self._rotated_to(connection) is None

    def require_current(self, connection: Connection) -> None:
        """Refuse to record a batch once this key has been rotated out (a rotation committed
        while the batch was being written)."""
        rotated_to = self._rotated_to(connection)
        if rotated_to is not None:
            raise _refusal(connection, self.public_pem, rotated_to.encode())

    def _rotated_to(self, connection: Connection) -> str | None:
        """The key the store is bound to now, when that is not this one."""
        bound = _info(connection)
        return None if bound is None or bound.encode() == self.public_pem else bound


def current_signer(store: Store, signer: Signer | None) -> Signer:
    """The signer for a process's next batch: ``signer`` while its key is the store's current
    one, else the key loaded afresh, since the file ``CLEW_SIGNING_KEY`` names may hold the new
    key by now (a long-running process then follows a rotation without losing a batch, and one
    still given the old key is refused at its next batch, not only when it restarts)."""
    if signer is not None:
        with store.db.read() as connection:
            if signer.is_current(connection):
                return signer
    return Signer(store)


def public_keys(store: Store) -> dict[str, bytes]:
    """Every public key the store has signed with, by key id: what verification looks a
    batch's key id up in."""
    return {key.key_id: key.public_key.encode() for key in key_history(store)}


def key_history(store: Store) -> list[SigningKey]:
    """The store's signing keys, oldest first; the last is the current one.

    Only rows that are exactly what their ``signing.bind``/``signing.rotate`` audit entry
    recorded: a key written into the table any other way (or altered there) is left out and so
    verifies nothing; forging batches would take rewriting the hash-chained audit log too.
    """
    with store.db.read() as connection:
        rows = connection.execute(select(schema.signing_keys)).all()
    following = {row.previous_key_id: SigningKey(**row._mapping) for row in rows}
    ordered: list[SigningKey] = []
    key = following.get(None)
    while key is not None:
        ordered.append(key)
        key = following.get(key.key_id)
    vouched = _audited_digests(store)
    return [key for key in ordered if not vouched.isdisjoint(_recorded_digests(key))]


def _audited_digests(store: Store) -> set[str]:
    entries = audit.entries(store, _AUDIT_TARGET, action="signing.")
    return {entry.payload_digest for entry in entries}


def _recorded_digests(key: SigningKey) -> set[str]:
    """What the audit entry of ``key`` may hold: its history row, or for a key bound before the
    history existed (schema 0004), the key id and public key its ``signing.bind`` recorded."""
    digests_ = {digests.digest_json(key.to_dict())}
    if key.previous_key_id is None:
        digests_.add(digests.digest_json({"key_id": key.key_id, "public_key": key.public_key}))
    return digests_


def rotation_message(new_key_id: str, previous_key_id: str | None) -> bytes:
    """What the new key signs to prove its holder asked for this rotation, from this key."""
    return digests.canonical_json(
        {"kind": _ROTATION_KIND, "key_id": new_key_id, "previous_key_id": previous_key_id}
    )


def rotation_request(path: Path, previous_key_id: str | None) -> RotationRequest:
    """Read the new private key at ``path`` and sign the rotation with it."""
    key = _user_key(path)
    public = signatures.public_pem(key.public_key())
    proof = key.sign(rotation_message(signatures.key_id(public), previous_key_id)).hex()
    return RotationRequest(public.decode(), previous_key_id, proof)


def rotate(store: Store, request: RotationRequest, actor: str) -> SigningKey:
    """Make the request's key the store's current signing key, appended to its history.

    Refused, with nothing changed: a proof the key did not sign, the current key again, a
    retired key (it may be the leaked one), or a request prepared against a key that is no
    longer current (another rotation won).
    """
    public = load_and_export(request.public_key)
    new_id = signatures.key_id(public)
    if not signatures.verify(
        public, rotation_message(new_id, request.previous_key_id), request.proof
    ):
        raise InvalidInputError(
            f"the rotation to key {_short(new_id)} is not signed by that key; run "
            "`clew keys rotate NEW_KEY_FILE` with the new key's private file."
        )
    with store.db.write() as connection:
        bound = _info(connection)
        current = signatures.key_id(bound.encode()) if bound is not None else None
        _check_rotation(connection, new_id, current, request.previous_key_id)
        entry = SigningKey(new_id, public.decode(), actor, now_ms(), current)
        connection.execute(schema.signing_keys.insert().values(**entry.to_dict()))
        audit.stage(connection, schema.signing_keys, entry.to_dict())
        if bound is None:
            connection.execute(
                schema.store_info.insert().values(key=_BOUND_KEY, value=entry.public_key)
            )
        else:
            connection.execute(
                schema.store_info.update()
                .where(schema.store_info.c.key == _BOUND_KEY)
                .values(value=entry.public_key)
            )
        audit.append(connection, actor, "signing.rotate", _AUDIT_TARGET, entry.to_dict())
    return entry


def load_and_export(public_key_pem: str) -> bytes:
    """The PEM re-exported from the parsed key, so one key always has one stored text."""
    return signatures.public_pem(signatures.load_public(public_key_pem.encode()))


def _check_rotation(
    connection: Connection, new_id: str, current: str | None, expected: str | None
) -> None:
    if new_id == current:
        raise InvalidInputError(
            f"key {_short(new_id)} is already the store's capture key; make a new one with "
            "`clew keys create NEW_KEY_FILE` and rotate to that."
        )
    if current != expected:
        raise ConflictError(
            f"the store's capture key is now {_short(current)}, not {_short(expected)} as "
            "when this rotation was prepared; run `clew keys rotate` again."
        )
    table = schema.signing_keys
    if connection.execute(select(table.c.key_id).where(table.c.key_id == new_id)).first():
        raise InvalidInputError(
            f"key {_short(new_id)} was retired from this store and can not sign for it again; "
            "make a new one with `clew keys create NEW_KEY_FILE` and rotate to that."
        )


def store_public_key(store: Store) -> bytes:
    """The store's public key (PEM): the one bound to the store, else the key this process
    would sign with (created if there is none yet; reading never binds it)."""
    with store.db.read() as connection:
        bound = store.db.info(_BOUND_KEY, connection)
    return (
        bound.encode()
        if bound is not None
        else signatures.public_pem(_private_key(store).public_key())
    )


def create_key_file(path: Path) -> bytes:
    """Write a new private key to ``path`` (0600) for replicas to share; returns its public
    PEM. An existing file is never overwritten."""
    if path.exists():
        raise InvalidInputError(f"{path} already exists; choose a new path or keep using it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    _create(path)
    return signatures.public_pem(_load(path).public_key())


def _private_key(store: Store) -> Ed25519PrivateKey:
    shared = os.environ.get(KEY_ENV)
    if not shared:
        return _load_or_create(store.keys)
    path = Path(shared).expanduser()
    if not path.is_file():
        raise InvalidInputError(
            f"{KEY_ENV} names {path}, which does not exist; create the key once with "
            f"`clew keys create {path}` and give every replica the same file."
        )
    return _load(path)


def _bind(store: Store, public: bytes) -> None:
    """Record the first signing key's public half; refuse a different one afterwards."""
    with store.db.read() as connection:
        bound = _info(connection)
    if bound is None:
        with store.db.write() as connection:
            bound = _info(connection)
            if bound is None:
                entry = SigningKey(
                    signatures.key_id(public), public.decode(), "clew", now_ms(), None
                )
                connection.execute(
                    schema.store_info.insert().values(key=_BOUND_KEY, value=entry.public_key)
                )
                connection.execute(schema.signing_keys.insert().values(**entry.to_dict()))
                audit.stage(connection, schema.signing_keys, entry.to_dict())
                audit.append(connection, "clew", "signing.bind", _AUDIT_TARGET, entry.to_dict())
                return
    if bound.encode() != public:
        with store.db.read() as connection:
            raise _refusal(connection, public, bound.encode())


def _refusal(connection: Connection, public: bytes, bound: bytes) -> IntegrityError:
    """Why a process holding ``public`` may not sign for a store whose key is ``bound``."""
    mine, current = signatures.key_id(public), signatures.key_id(bound)
    table = schema.signing_keys
    retired = connection.execute(select(table.c.key_id).where(table.c.key_id == mine)).first()
    if retired:
        return IntegrityError(
            f"this process signs with key {_short(mine)}, which was rotated out; the store's "
            f"capture key is now {_short(current)}, so set {KEY_ENV} to that key's file and "
            "restart (docs/deployment.md#rotating-the-signing-key)."
        )
    return IntegrityError(
        f"this process signs with key {_short(mine)}, but the store's capture key is "
        f"{_short(current)}; set {KEY_ENV} to the key file every replica shares "
        "(docs/deployment.md)."
    )


def _info(connection: Connection) -> str | None:
    row = connection.execute(
        select(schema.store_info.c.value).where(schema.store_info.c.key == _BOUND_KEY)
    ).first()
    return row[0] if row else None


def _short(key: str | None) -> str:
    return "(none)" if key is None else f"{key[:19]}..."


def _user_key(path: Path) -> Ed25519PrivateKey:
    """A private key file the user names to rotate to."""
    if not path.is_file():
        raise InvalidInputError(
            f"{path} does not exist; make the new key with `clew keys create {path}` first."
        )
    return read_private_key(
        path, "make one with `clew keys create NEW_KEY_FILE` and rotate to that"
    )


def read_private_key(path: Path, remedy: str) -> Ed25519PrivateKey:
    """A private key file a user supplies: wrong input is theirs to fix (``remedy`` says how),
    not damage."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError, UnsupportedAlgorithm) as error:
        raise InvalidInputError(
            f"{path} is not an unencrypted PEM Ed25519 private key; {remedy}."
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInputError(f"{path} is not an Ed25519 private key; {remedy}.")
    return key


def _load_or_create(directory: Path) -> Ed25519PrivateKey:
    """The store directory's own key, made on first use with its public half beside it."""
    path = directory / PRIVATE_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        _create(path)
        public = directory / PUBLIC_FILE
        # A name of its own per call: threads of one server making the key at once (the first
        # captures on a new store) each replace with their own staged copy.
        descriptor, staged = tempfile.mkstemp(dir=directory, prefix=f".{PUBLIC_FILE}.")
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(signatures.public_pem(_load(path).public_key()))
        os.replace(staged, public)
    return _load(path)


def _load(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, OSError) as error:
        raise IntegrityError(
            f"the signing key {path} is unreadable or damaged; restore it from a backup."
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityError(
            f"the signing key {path} is not an Ed25519 key; restore it from a backup."
        )
    return key


def _create(path: Path) -> None:
    """Write a new private key at ``path`` (0600); if another process wins the race, keep
    its key instead."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        os.unlink(temp)
