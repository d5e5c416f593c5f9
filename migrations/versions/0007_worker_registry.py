"""Live workers: each worker process registers itself and heartbeats, so any process can list the
live workers and tell a dead one.

One row per worker process (its `locked_by` id), upserted every `QUEUE_HEARTBEAT_INTERVAL_S` with
what an operator asks first: where it runs (host, pid, version), since when, how many jobs it may
and does hold, and when its claim loop last went round. A row whose heartbeat is older than the
stall timeout belongs to a dead (or cut-off) process; housekeeping deletes such rows after
`WORKER_DEAD_RETENTION_S`. A worker that stops cleanly deletes its own row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "symbol_onboarding_workers",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("jobs_in_flight", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("stopping", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("http_url", sa.Text()),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("last_tick_at", sa.DateTime(timezone=True)),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("worker_id", name="symbol_onboarding_workers_pkey"),
    )


def downgrade() -> None:
    op.drop_table("symbol_onboarding_workers")
