"""users' public signing keys

Approvals, rejections, revocations and promotions are signed with the acting user's own
Ed25519 key; this table holds the registered public halves (and their revocation).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_keys",
        sa.Column("key_id", sa.String(length=71), primary_key=True),
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger()),
        sa.Column("revoked_by", sa.String(length=200)),
    )
    op.create_index("ix_user_keys_user", "user_keys", ["user_name"])


def downgrade() -> None:
    op.drop_index("ix_user_keys_user", table_name="user_keys")
    op.drop_table("user_keys")
