"""Ed25519 public-key checks: what anyone holding a public key can do, with no secret and no store.

A key's id is ``sha256:`` and the digest of its raw 32 public bytes, recorded with every
signature. These functions live in the domain because the remote client verifies captured
predictions and signatures with them and must not import the store; holding, binding and
rotating the store's private key stays in ``service/signing.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clew.domain import digests
from clew.errors import InvalidInputError

if TYPE_CHECKING:  # cryptography is imported when a key is read, not when clew connects
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key_pem: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    raw = load_public(public_key_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return digests.digest_bytes(raw)


def load_public(public_key_pem: bytes) -> Ed25519PublicKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, UnsupportedAlgorithm) as error:
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
    from cryptography.exceptions import InvalidSignature

    try:
        load_public(public_key_pem).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_for(keys: Mapping[str, bytes], wanted: Any) -> bytes | None:
    """The public key a batch names by id, or None when it is not one of ``keys``."""
    return keys.get(wanted) if isinstance(wanted, str) else None
