"""webhooks: subscriptions and their delivery log

Registry and monitoring events (``registry_events``) are delivered to subscribers' URLs; each
subscription keeps a cursor over ``registry_events.seq`` and every (subscription, event) pair
becomes one row of the delivery log, the outbox the deliverers work from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("model_id", sa.String(length=26), sa.ForeignKey("models.id")),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("secret_box", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=71), nullable=False),
        sa.Column("cursor_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("deleted_ms", sa.BigInteger()),
        sa.Column("deleted_by", sa.String(length=200)),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.String(length=26),
            sa.ForeignKey("webhook_subscriptions.id"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=26), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_id", sa.String(length=26)),
        sa.Column("lease_until_ms", sa.BigInteger()),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger()),
        sa.UniqueConstraint("subscription_id", "event_seq", name="uq_webhook_deliveries_event"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_ms"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
