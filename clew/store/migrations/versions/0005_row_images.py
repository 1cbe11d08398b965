"""row images in the audit chain, signed checkpoints

Every audit entry now carries the images of the governance and lineage rows its transaction
wrote (``audit_records``), covered by the entry's hash through ``records_digest``, so an edited,
inserted or deleted row is found by ``clew audit verify``. Rows written before this revision
were never imaged: one ``audit.adopt`` entry records them as they are at the upgrade, so the
chain vouches for them from that moment on (docs/security.md says so). Signed checkpoints of
the chain head (``audit_checkpoints``) start with this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 23:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("records_digest", sa.String(length=71), nullable=True))
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("row_key", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_records_row", "audit_records", ["table_name", "row_key", "seq"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(length=71), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=71), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
    )
    _adopt_existing_rows()


def _adopt_existing_rows() -> None:
    # The chain's own append (hashing, head, request id) is imported rather than copied, so an
    # adopted entry is exactly what a live write would append.
    from clew.service import audit
    from clew.store.row_images import COVERED

    audit.adopt(op.get_bind(), COVERED, "rows written before row images (schema 0005)")


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_audit_records_row", table_name="audit_records")
    op.drop_table("audit_records")
    op.drop_column("audit_log", "records_digest")
