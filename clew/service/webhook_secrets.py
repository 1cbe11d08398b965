"""Webhook HMAC secrets at rest: sealed with a key that never lives in the database.

clew must sign every delivery, so it keeps each subscription's secret, but only as an AES-256-GCM
box under the store's webhook key: ``<store>/keys/webhook-secrets.key`` (0600, made on first
use), or the file ``CLEW_WEBHOOK_KEY`` names, which every replica of a team server shares like
``CLEW_SIGNING_KEY``. A database dump or backup alone therefore yields no secret. The box is
bound to its subscription id (GCM's associated data), so a box copied onto another subscription
does not open, and it records the key's id, so a deliverer holding another key says so plainly.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clew.domain import digests
from clew.errors import IntegrityError, InvalidInputError
from clew.store.location import Store

KEY_ENV = "CLEW_WEBHOOK_KEY"
KEY_FILE = "webhook-secrets.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretBox:
    """Seals and opens subscription secrets with one webhook key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = digests.digest_bytes(key)

    @classmethod
    def for_store(cls, store: Store) -> SecretBox:
        shared = os.environ.get(KEY_ENV)
        if not shared:
            return cls(_load_or_create(store.keys / KEY_FILE))
        path = Path(shared).expanduser()
        if not path.is_file():
            raise InvalidInputError(
                f"{KEY_ENV} names {path}, which does not exist; give every replica the same "
                f"{_KEY_BYTES}-byte key file (e.g. `head -c {_KEY_BYTES} /dev/urandom > {path}`)."
            )
        return cls(_read(path))

    def seal(self, secret: str, subscription_id: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), subscription_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, box: str, key_id: str, subscription_id: str) -> str:
        if key_id != self.key_id:
            raise IntegrityError(
                f"subscription {subscription_id}'s secret was sealed with webhook key "
                f"{key_id[:19]}, not this process's {self.key_id[:19]}; set {KEY_ENV} to "
                "that key's file, or remove and re-add the subscription."
            )
        raw = base64.b64decode(box)
        try:
            opened = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], subscription_id.encode()
            )
        except InvalidTag:
            raise IntegrityError(
                f"subscription {subscription_id}'s sealed secret does not open; it was altered "
                "or copied from another subscription; remove and re-add the subscription."
            ) from None
        return opened.decode()


def _load_or_create(path: Path) -> bytes:
    """The store directory's own webhook key, written once (0600); a racing writer's wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(_KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            os.unlink(temp)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise IntegrityError(
            f"the webhook key {path} is not {_KEY_BYTES} bytes; restore it from a backup."
        )
    return key
