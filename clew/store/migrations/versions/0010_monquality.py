"""monitor runs and schedules

``monitor_runs`` records each run of the monitor over one window (one row per attempt, so a
window runs once unless a rerun is asked for); ``monitor_schedules`` holds the cron schedules
``clew server`` runs.

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
        "monitor_runs",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("window_key", sa.String(length=300), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=26), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger()),
        sa.Column("end_ms", sa.BigInteger()),
        sa.Column("last_n", sa.Integer()),
        sa.Column("run_id", sa.String(length=26), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.Column("report_digest", sa.String(length=71), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("window_key", "attempt", name="uq_monitor_runs_window"),
    )
    op.create_index("ix_monitor_runs_model", "monitor_runs", ["model_id", "version", "created_ms"])
    op.create_table(
        "monitor_schedules",
        sa.Column("id", sa.String(length=26), primary_key=True),
        sa.Column("model_id", sa.String(length=26), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("window_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("target", "cron", "window_ms", name="uq_monitor_schedules"),
    )


def downgrade() -> None:
    op.drop_table("monitor_schedules")
    op.drop_index("ix_monitor_runs_model", table_name="monitor_runs")
    op.drop_table("monitor_runs")
