"""validation findings and model cards

``validation_findings`` holds the findings validators record against model versions (SR 11-7);
``model_cards`` the edited part of each version's model card, one row per revision.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validation_findings",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("model_id", sa.String(length=26), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("remediation", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("due_ms", sa.BigInteger()),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
    )
    op.create_index(
        "ix_validation_findings_model", "validation_findings", ["model_id", "version", "status"]
    )
    op.create_table(
        "model_cards",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("model_id", sa.String(length=26), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("model_id", "version", "revision", name="uq_model_cards_revision"),
    )


def downgrade() -> None:
    op.drop_table("model_cards")
    op.drop_index("ix_validation_findings_model", table_name="validation_findings")
    op.drop_table("validation_findings")
