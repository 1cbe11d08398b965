"""The store's Ed25519 signing key: created on first use, private half never leaves the store.

The private key lives in ``<store>/keys/capture-ed25519.pem`` readable only by its owner
(0600), or in the file ``CLEW_SIGNING_KEY`` names: every replica of a team server must sign
with the same key, so they share one file (made once with ``clew keys create PATH``). The
first key to sign for a store is bound to it: its public half is recorded in the store's
metadata, which is where verification and ``clew keys public`` read it, and a process holding
any other key is refused rather than allowed to sign batches nobody could verify. A key's id
is the digest of its raw public bytes, recorded with every signature.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clew.domain import digests
from clew.errors import IntegrityError, InvalidInputError
from clew.service import audit
from clew.store import schema
from clew.store.location import Store

PRIVATE_FILE = "capture-ed25519.pem"
PUBLIC_FILE = "capture-ed25519.pub.pem"


KEY_ENV = "CLEW_SIGNING_KEY"
_BOUND_KEY = "capture_public_key"


class Signer:
    """Signs capture batch roots with the store's key."""

    def __init__(self, store: Store) -> None:
        self._key = _private_key(store)
        self.public_pem = public_pem(self._key.public_key())
        self.key_id = key_id(self.public_pem)
        _bind(store, self.public_pem)

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key_pem: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    raw = load_public(public_key_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return digests.digest_bytes(raw)


def load_public(public_key_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except ValueError as error:
        raise InvalidInputError(
            "the public key is not a PEM Ed25519 key; export it with `clew keys public`."
        ) from error
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInputError(
            "the public key is not an Ed25519 key; export it with `clew keys public`."
        )
    return key


def verify(public_key_pem: bytes, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is this key's signature of ``message``; needs no secret."""
    try:
        load_public(public_key_pem).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def store_public_key(store: Store) -> bytes:
    """The store's public key (PEM): the one bound to the store, else the key this process
    would sign with (created if there is none yet; reading never binds it)."""
    with store.db.read() as connection:
        bound = store.db.info(_BOUND_KEY, connection)
    return bound.encode() if bound is not None else public_pem(_private_key(store).public_key())


def create_key_file(path: Path) -> bytes:
    """Write a new private key to ``path`` (0600) for replicas to share; returns its public
    PEM. An existing file is never overwritten."""
    if path.exists():
        raise InvalidInputError(f"{path} already exists; choose a new path or keep using it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    _create(path)
    return public_pem(_load(path).public_key())


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
        bound = store.db.info(_BOUND_KEY, connection)
    if bound is None:
        with store.db.write() as connection:
            bound = store.db.info(_BOUND_KEY, connection)
            if bound is None:
                connection.execute(
                    schema.store_info.insert().values(key=_BOUND_KEY, value=public.decode())
                )
                audit.append(
                    connection,
                    "clew",
                    "signing.bind",
                    "store:capture-key",
                    {"key_id": key_id(public), "public_key": public.decode()},
                )
                return
    if bound.encode() != public:
        raise IntegrityError(
            f"this process signs with key {key_id(public)[:19]}..., but the store's capture "
            f"key is {key_id(bound.encode())[:19]}...; set {KEY_ENV} to the key file every "
            "replica shares (docs/deployment.md)."
        )


def _load_or_create(directory: Path) -> Ed25519PrivateKey:
    """The store directory's own key, made on first use with its public half beside it."""
    path = directory / PRIVATE_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        _create(path)
        public = directory / PUBLIC_FILE
        staged = public.with_name(f".{PUBLIC_FILE}.{os.getpid()}")
        staged.write_bytes(public_pem(_load(path).public_key()))
        staged.replace(public)
    return _load(path)


def _load(path: Path) -> Ed25519PrivateKey:
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
