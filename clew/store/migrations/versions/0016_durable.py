"""durable: an audit entry's row images keyed by one packed integer, no (seq, position) index

``audit_records`` was keyed by (seq, position). On SQLite a composite key is an index kept
beside the table, so every audited write put a page of it into the WAL. The key is now one
integer, ``record_id = seq << 24 | position`` (clew/store/row_images.py): on SQLite the table's
rowid, so an entry's images are a range of the table itself. ``seq`` and ``position`` stay as
plain columns; ``ix_audit_records_row`` is unchanged.

The table is rebuilt with every row copied as it is (the id computed from its seq and
position): no image, digest or hash changes, so nothing is re-adopted and the chain and the
row checks read the same afterwards.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 19:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ROW_INDEX = ["table_name", "row_key", "seq"]
_COLUMNS = "seq, position, table_name, row_key, image"


def _rebuild(packed: bool) -> None:
    """Copy ``audit_records`` into a table with the new (or, going down, the old) key."""
    if packed:
        key = [
            sa.Column(
                "record_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True,
                autoincrement=False,
            ),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
        ]
        copy = (
            f"INSERT INTO audit_records_rebuilt (record_id, {_COLUMNS}) "
            f"SELECT seq * 16777216 + position, {_COLUMNS} FROM audit_records"
        )
    else:
        key = [
            sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        ]
        copy = (
            f"INSERT INTO audit_records_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM audit_records"
        )
    op.create_table(
        "audit_records_rebuilt",
        *key,
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("row_key", sa.Text(), nullable=False),
        sa.Column("image", sa.Text()),
    )
    op.execute(copy)
    op.drop_index("ix_audit_records_row", table_name="audit_records")
    op.drop_table("audit_records")
    op.rename_table("audit_records_rebuilt", "audit_records")
    op.create_index("ix_audit_records_row", "audit_records", _ROW_INDEX)


def upgrade() -> None:
    _rebuild(packed=True)


def downgrade() -> None:
    _rebuild(packed=False)
