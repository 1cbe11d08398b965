"""The store's Ed25519 signing key: created on first use, private half never leaves the store.

The private key lives in ``<store>/keys/capture-ed25519.pem`` readable only by its owner
(0600); the public key beside it is what an auditor needs, and nothing else, to check a
signed capture batch. A key's id is the digest of its raw public bytes, recorded with every
signature so a rotated key is never confused with the one that signed old batches.
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
from clew.store.location import Store

PRIVATE_FILE = "capture-ed25519.pem"
PUBLIC_FILE = "capture-ed25519.pub.pem"


class Signer:
    """Signs capture batch roots with the store's key."""

    def __init__(self, store: Store) -> None:
        self._key = _load_or_create(store.keys)
        self.public_pem = public_pem(self._key.public_key())
        self.key_id = key_id(self.public_pem)

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
    """The store's public key (PEM), creating the key pair if the store has none yet."""
    return Signer(store).public_pem


def _load_or_create(directory: Path) -> Ed25519PrivateKey:
    path = directory / PRIVATE_FILE
    if not path.exists():
        _create(directory)
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


def _create(directory: Path) -> None:
    """Write a new key pair; if another process wins the race, keep its key instead."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor, temp = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, directory / PRIVATE_FILE)
    finally:
        os.unlink(temp)
    existing = serialization.load_pem_private_key(
        (directory / PRIVATE_FILE).read_bytes(), password=None
    )
    assert isinstance(existing, Ed25519PrivateKey)
    public = directory / PUBLIC_FILE
    staged = public.with_name(f".{PUBLIC_FILE}.{os.getpid()}")
    staged.write_bytes(public_pem(existing.public_key()))
    staged.replace(public)
