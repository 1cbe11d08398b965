"""serving deployments

Which version answered which endpoint from when to when (clew serve, shadows included),
and which champion call each shadow call answered in parallel.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column(
            "version_id",
            sa.String(length=26),
            sa.ForeignKey("model_versions.id"),
            nullable=False,
        ),
        sa.Column("champion_id", sa.String(length=26), nullable=True),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("stopped_ms", sa.BigInteger(), nullable=True),
        sa.Column("stopped_by", sa.String(length=200), nullable=True),
    )
    op.create_index("ix_deployments_endpoint_started", "deployments", ["endpoint", "started_ms"])
    op.create_table(
        "shadow_pairs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "deployment_id",
            sa.String(length=26),
            sa.ForeignKey("deployments.id"),
            nullable=False,
        ),
        sa.Column("champion_call", sa.String(length=26), nullable=False),
        sa.Column("shadow_call", sa.String(length=26), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_shadow_pairs_deployment", "shadow_pairs", ["deployment_id", "time_ms"])


def downgrade() -> None:
    op.drop_index("ix_shadow_pairs_deployment", table_name="shadow_pairs")
    op.drop_table("shadow_pairs")
    op.drop_index("ix_deployments_endpoint_started", table_name="deployments")
    op.drop_table("deployments")
