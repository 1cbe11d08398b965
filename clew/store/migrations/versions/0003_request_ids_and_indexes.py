"""request ids and indexes

Audit entries take the server's request id, which may be a client's ``X-Request-ID`` of up to
64 characters. Capture counts per model version (model card, inventory) and the expiry sweep of
idempotency keys filter on columns that had no index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        # SQLite does not enforce VARCHAR lengths; rebuilding its audit table would only cost time.
        op.alter_column(
            "audit_log",
            "request_id",
            existing_type=sa.String(length=26),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
    op.create_index("ix_capture_batches_version", "capture_batches", ["model_version_id"])
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_ms"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_index("ix_capture_batches_version", table_name="capture_batches")
    if op.get_context().dialect.name != "sqlite":
        op.alter_column(
            "audit_log",
            "request_id",
            existing_type=sa.String(length=64),
            type_=sa.String(length=26),
            existing_nullable=False,
        )
