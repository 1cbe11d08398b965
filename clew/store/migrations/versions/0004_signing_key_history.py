"""signing key history

Capture signing keys can be rotated, so verification must find the public key a batch was
signed with by its key id, among every key the store has used. A store bound to a key before
this revision gets that key as its history's first entry, with the actor and time of its
``signing.bind`` audit entry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 08:30:00.000000
"""

import hashlib
import time

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives import serialization

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    keys = op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(length=71), primary_key=True),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("previous_key_id", sa.String(length=71), unique=True),
    )
    connection = op.get_bind()
    bound = connection.execute(
        sa.text("SELECT value FROM store_info WHERE key = 'capture_public_key'")
    ).scalar()
    if bound is None:
        return
    bind = connection.execute(
        sa.text(
            "SELECT actor, time_ms FROM audit_log WHERE action = 'signing.bind' "
            "ORDER BY seq LIMIT 1"
        )
    ).first()
    actor, created_ms = bind if bind is not None else ("clew", time.time_ns() // 1_000_000)
    op.bulk_insert(
        keys,
        [
            {
                "key_id": _key_id(bound.encode()),
                "public_key": bound,
                "actor": actor,
                "created_ms": created_ms,
                "previous_key_id": None,
            }
        ],
    )


def _key_id(public_pem: bytes) -> str:
    """As ``clew.domain.signatures.key_id``: ``sha256:`` and the digest of the raw 32 bytes
    (written out here so that this revision never changes with the service code)."""
    raw = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def downgrade() -> None:
    op.drop_table("signing_keys")
