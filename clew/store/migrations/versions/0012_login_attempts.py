"""sign-in attempts shared by every server process

Failed token checks and sign-ins are counted in the store instead of each process's memory,
so a client spread over several replicas gets the same limit as on one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 12:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_login_attempts_key_time", "login_attempts", ["key", "time_ms"])
    op.create_index("ix_login_attempts_time", "login_attempts", ["time_ms"])
    op.create_table(
        "login_blocks",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_login_blocks_until", "login_blocks", ["until_ms"])


def downgrade() -> None:
    op.drop_index("ix_login_blocks_until", table_name="login_blocks")
    op.drop_table("login_blocks")
    op.drop_index("ix_login_attempts_time", table_name="login_attempts")
    op.drop_index("ix_login_attempts_key_time", table_name="login_attempts")
    op.drop_table("login_attempts")
