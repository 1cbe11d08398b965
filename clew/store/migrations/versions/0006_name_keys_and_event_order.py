"""name keys and event order: one name, one model; order from the store, not from clocks

``churn``, ``Churn`` and ``CHURN`` were three models. Model and context names now carry a
``name_key`` (NFC, case folding, NFC again) under a unique index, so the store refuses a
look-alike whatever client writes it.

A store may already hold look-alikes. They are never merged (their versions, approvals and
aliases stay exactly as recorded): the oldest of each group (by creation time, then id) gets
the key, the others keep working under their exact names with a NULL key and are listed by
every ``clew db upgrade`` (``registry.look_alikes``) so someone can archive the one nobody
means. NULL keys do not collide in the unique index, and a new look-alike is refused because
the oldest holds the key.

Filling ``name_key`` and ``seq`` changes those rows' images in the audit chain, so the upgrade
vouches for models, contexts and registry events as filled here (one ``audit.adopt`` entry).

Registry events were ordered by their ULID id, whose time part is the writer's clock, so a
writer whose clock was behind had to wait, holding the write lock, until its ids sorted last.
Events now carry ``seq``, the store's order, allocated in the writing transaction. Existing
events are numbered in their id order, which is the order every reader saw until now, so no
alias or decision changes its current state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 23:30:00.000000
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _name_key(name: str) -> str:
    """clew.domain.refs.name_key as of this revision (a migration does not follow later code)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def upgrade() -> None:
    op.add_column("models", sa.Column("name_key", sa.String(length=200), nullable=True))
    op.add_column("contexts", sa.Column("name_key", sa.String(length=200), nullable=True))
    connection = op.get_bind()
    _fill(connection, "SELECT id, '' AS type, name FROM models ORDER BY created_ms, id", "models")
    _fill(
        connection,
        "SELECT id, type, name FROM contexts ORDER BY created_ms, id",
        "contexts",
    )
    op.create_index("uq_models_name_key", "models", ["name_key"], unique=True)
    op.create_index("uq_contexts_type_name_key", "contexts", ["type", "name_key"], unique=True)
    _number_events(connection)
    # name_key and seq are now part of these rows' images: vouch for them as filled here.
    from clew.service import audit

    audit.adopt(connection, ["models", "contexts", "registry_events"], "name keys and event order")


def _number_events(connection: sa.Connection) -> None:
    op.add_column("registry_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    ids = connection.execute(sa.text("SELECT id FROM registry_events ORDER BY id")).scalars()
    numbered = [{"seq": seq, "id": event_id} for seq, event_id in enumerate(ids, 1)]
    if numbered:
        connection.execute(
            sa.text("UPDATE registry_events SET seq = :seq WHERE id = :id"), numbered
        )
    op.create_index("uq_registry_events_seq", "registry_events", ["seq"], unique=True)
    op.create_index("ix_registry_events_alias_seq", "registry_events", ["model_id", "alias", "seq"])


def _fill(connection: sa.Connection, query: str, table: str) -> None:
    """The oldest row of each look-alike group gets the key; the rest stay NULL (reported)."""
    taken: set[tuple[str, str]] = set()
    update = sa.text(f"UPDATE {table} SET name_key = :key WHERE id = :id")
    for row_id, type_, name in connection.execute(sa.text(query)).all():
        key = (type_, _name_key(name))
        if key in taken:
            continue
        taken.add(key)
        connection.execute(update, {"key": key[1], "id": row_id})


def downgrade() -> None:
    op.drop_index("ix_registry_events_alias_seq", table_name="registry_events")
    op.drop_index("uq_registry_events_seq", table_name="registry_events")
    with op.batch_alter_table("registry_events") as batch:
        batch.drop_column("seq")
    op.drop_index("uq_contexts_type_name_key", table_name="contexts")
    op.drop_index("uq_models_name_key", table_name="models")
    with op.batch_alter_table("contexts") as batch:
        batch.drop_column("name_key")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("name_key")
