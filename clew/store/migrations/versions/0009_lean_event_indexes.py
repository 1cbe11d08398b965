"""lean registry event indexes: one index per question, ordered by seq

Since 0006 every reader orders registry events by ``seq``, so the three indexes ordered by the
ULID ``id`` answered nothing any more, while each registration, approval and promotion still
wrote all three (a durable registration's commit wrote ~24 pages; these were three of them).
The version index is rebuilt on ``seq``; the alias one already exists (0006), and both serve
a lookup by model alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:40:00.000000
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BY_ID = {
    "ix_registry_events_model": ["model_id", "id"],
    "ix_registry_events_alias": ["model_id", "alias", "id"],
    "ix_registry_events_version": ["model_id", "version", "id"],
}


def upgrade() -> None:
    for name in _BY_ID:
        op.drop_index(name, table_name="registry_events")
    op.create_index(
        "ix_registry_events_version_seq", "registry_events", ["model_id", "version", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_registry_events_version_seq", table_name="registry_events")
    for name, columns in _BY_ID.items():
        op.create_index(name, "registry_events", columns)
