"""Price-source state shared by every worker process: pauses and the request schedule.

When a source signals a rate limit (HTTP 429, a quota message) or blocks us (an HTML challenge or
consent page), the whole source must pause for every worker process, not just the job that saw
it, and jobs waiting on it are rescheduled without spending attempts. The pause lives in the
database because the workers are separate processes (and may be on separate machines). The same
row carries the per-source request rate limiter's schedule (`next_request_at`), because the
providers' limits (Polygon's 5/minute per API key, Yahoo's per-IP limit) are shared by all of them.
It also counts the source's consecutive transient failures (the circuit breaker: enough of them in
a row pause the source, so an outage defers jobs instead of burning their attempts).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "price_source_state",
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
        sa.Column("pause_reason", sa.Text()),
        sa.Column("next_request_at", sa.DateTime(timezone=True)),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("source", name="price_source_state_pkey"),
    )


def downgrade() -> None:
    op.drop_table("price_source_state")
