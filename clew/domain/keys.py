"""Keys and signatures as values: the store's signing keys, users' registered keys, a signed
decision and a signing-key rotation request.

The services that check and store them live in ``service/signing.py`` and
``service/user_keys.py``; a remote client sends and receives these same values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SigningKey:
    """One entry of the store's key history: the key, who made it current, when, and the key it
    replaced (None for the first)."""

    key_id: str
    public_key: str
    actor: str
    created_ms: int
    previous_key_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RotationRequest:
    """A new public key and its proof of possession: the private key never leaves the caller,
    so a rotation through a server sends only these."""

    public_key: str
    previous_key_id: str | None
    proof: str


@dataclass(frozen=True)
class SignedStatement:
    """What a client sends with a decision: its public key, the time in the statement it
    signed (the store's, from ``statement``) and the signature, hex."""

    public_key: str
    signed_ms: int
    signature: str


@dataclass(frozen=True)
class UserKey:
    """A registered public key: whose, who registered it when, and its revocation if any."""

    key_id: str
    user_name: str
    public_key: str
    created_ms: int
    created_by: str
    revoked_ms: int | None
    revoked_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
