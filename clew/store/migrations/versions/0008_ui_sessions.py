"""web UI sessions

The UI's cookie holds an opaque session id instead of the API token; this table keeps only
its SHA-256, with the session's idle and absolute lifetimes and its revocation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("user_name", sa.String(length=100), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("token_id", sa.String(length=26), sa.ForeignKey("api_tokens.id"), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("idle_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger()),
        sa.Column("revoked_by", sa.String(length=200)),
    )
    op.create_index("ix_ui_sessions_user", "ui_sessions", ["user_name"])


def downgrade() -> None:
    op.drop_index("ix_ui_sessions_user", table_name="ui_sessions")
    op.drop_table("ui_sessions")
