"""lean pages: fewer b-trees written per durable registration; edges indexed for walks

A durable registration is bounded by the pages its commit writes to the WAL (~20, each one
b-tree touched). Measured page by page (docs/benchmarks.md), four of them were structural:

- ``audit_log.seq`` was a BIGINT primary key, which SQLite keeps in an index beside the table.
  On SQLite it becomes the table's own key (``INTEGER PRIMARY KEY``, the rowid); PostgreSQL keeps
  BIGINT.
- ``audit_records`` and ``registry_events`` are keyed by their primary key alone on SQLite
  (``WITHOUT ROWID``): no rowid table beside the key's index. Every reader already finds them
  by that key or by a secondary index, which in such a table carries the key.
- ``ix_registry_events_alias_seq`` only answers alias questions, so it now holds alias events
  only (``WHERE alias IS NOT NULL``): a registration or decision writes no page of it.

Lineage walks read ``edges`` by one end and return the other end, the association and its
kind. ``ix_edges_destination`` held the destination alone, so every upstream step also read the
table; it is replaced by ``ix_edges_upstream`` (destination, association, source, source kind),
which answers the step by itself. Downstream steps use ``uq_edges`` plus the table.

No row changes: images, hashes and the chain are untouched, so nothing is re-adopted.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 16:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_WITHOUT_ROWID = ("registry_events",)
_ALIAS_COLUMNS = ["model_id", "alias", "seq"]
_UPSTREAM_COLUMNS = ["destination_id", "association", "source_id", "source_kind"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("audit_log", recreate="always") as batch:
            batch.alter_column("seq", type_=sa.Integer(), existing_nullable=False)
        for table in _WITHOUT_ROWID:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_with_rowid": False}
            ):
                pass
    op.drop_index("ix_registry_events_alias_seq", table_name="registry_events")
    op.create_index(
        "ix_registry_events_alias_seq",
        "registry_events",
        _ALIAS_COLUMNS,
        sqlite_where=sa.text("alias IS NOT NULL"),
        postgresql_where=sa.text("alias IS NOT NULL"),
    )
    op.drop_index("ix_edges_destination", table_name="edges")
    op.create_index("ix_edges_upstream", "edges", _UPSTREAM_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_edges_upstream", table_name="edges")
    op.create_index("ix_edges_destination", "edges", ["destination_id"])
    op.drop_index("ix_registry_events_alias_seq", table_name="registry_events")
    op.create_index("ix_registry_events_alias_seq", "registry_events", _ALIAS_COLUMNS)
    if op.get_bind().dialect.name == "sqlite":
        for table in _WITHOUT_ROWID:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_with_rowid": True}
            ):
                pass
        with op.batch_alter_table("audit_log", recreate="always") as batch:
            batch.alter_column("seq", type_=sa.BigInteger(), existing_nullable=False)
