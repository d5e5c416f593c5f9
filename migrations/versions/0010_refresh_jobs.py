"""Refresh jobs: keep every known symbol current through the same queue.

- `symbol_onboarding_queue.kind` tells a user's onboarding from a scheduled refresh. The claim
  rank (`priority_rank`, which `idx_queue_claim` orders by) now puts every onboarding ahead of
  every refresh: onboarding high/normal/low rank 0/1/2, refresh high/normal/low 3/4/5. A generated
  column's expression cannot be altered in PostgreSQL 15, so the column and its index are rebuilt.
- `enqueue_symbol_onboarding` takes over a pending refresh of the same symbol: the job becomes an
  onboarding at the higher of the two priorities (one live job per symbol still holds).
- `symbol_refresh_state` (the worker's own, one row per symbol, removed with the symbol) counts
  consecutive refreshes on which every source called the symbol unknown or delisted.
- `refresh_schedule_runs`: one row per trading day whose scheduled refresh batch was enqueued,
  written in the same transaction as the batch, so it happens once across all workers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE = "symbol_onboarding_queue"
PRIORITY = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 WHEN 'low' THEN 2 END"
CLAIM_RANK = f"CASE kind WHEN 'refresh' THEN 3 ELSE 0 END + {PRIORITY}"

ENQUEUE_V1 = r"""
CREATE OR REPLACE FUNCTION enqueue_symbol_onboarding(
    p_symbol text, p_priority text DEFAULT 'normal', p_requested_by uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    INSERT INTO symbol_onboarding_queue AS q (symbol, priority, requested_by)
    VALUES (symbol_onboarding_check_symbol(p_symbol),
            symbol_onboarding_check_priority(p_priority), p_requested_by)
    ON CONFLICT (symbol) WHERE status IN ('pending', 'processing')
    DO UPDATE SET priority = CASE
        WHEN (CASE EXCLUDED.priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)
             < q.priority_rank
        THEN EXCLUDED.priority ELSE q.priority END
    RETURNING q.id
$$;
"""

# A user's request for a symbol whose refresh is still pending takes that job over: it becomes an
# onboarding (so it is claimed ahead of every refresh) at the higher of the two priorities, with
# the requester recorded. A refresh already running is left to finish (it brings the symbol
# current); only its priority is raised, as for any live job.
ENQUEUE_V2 = r"""
CREATE OR REPLACE FUNCTION enqueue_symbol_onboarding(
    p_symbol text, p_priority text DEFAULT 'normal', p_requested_by uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    INSERT INTO symbol_onboarding_queue AS q (symbol, priority, requested_by)
    VALUES (symbol_onboarding_check_symbol(p_symbol),
            symbol_onboarding_check_priority(p_priority), p_requested_by)
    ON CONFLICT (symbol) WHERE status IN ('pending', 'processing')
    DO UPDATE SET
        priority = CASE
            WHEN (CASE EXCLUDED.priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)
                 < (CASE q.priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)
            THEN EXCLUDED.priority ELSE q.priority END,
        kind = CASE WHEN q.status = 'pending' THEN 'onboarding' ELSE q.kind END,
        requested_by = coalesce(q.requested_by, EXCLUDED.requested_by)
    RETURNING q.id
$$;
"""


def _rebuild_claim_rank(expression: str) -> None:
    op.drop_index("idx_queue_claim", table_name=QUEUE)
    op.drop_column(QUEUE, "priority_rank")
    op.add_column(
        QUEUE,
        sa.Column("priority_rank", sa.SmallInteger(), sa.Computed(expression, persisted=True)),
    )
    op.create_index(
        "idx_queue_claim",
        QUEUE,
        ["priority_rank", "run_after"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def upgrade() -> None:
    op.add_column(
        QUEUE,
        sa.Column("kind", sa.String(20), server_default=sa.text("'onboarding'"), nullable=False),
    )
    op.create_check_constraint(
        op.f(f"{QUEUE}_kind_check"), QUEUE, "kind IN ('onboarding', 'refresh')"
    )
    _rebuild_claim_rank(CLAIM_RANK)
    op.execute(ENQUEUE_V2)

    op.create_table(
        "symbol_refresh_state",
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("consecutive_misses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_miss_reason", sa.Text()),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("symbol", name="symbol_refresh_state_pkey"),
        sa.ForeignKeyConstraint(
            ["symbol"],
            ["symbol_universe.symbol"],
            name="symbol_refresh_state_symbol_fkey",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "refresh_schedule_runs",
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column(
            "enqueued_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("through_session", sa.Date(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("trading_day", name="refresh_schedule_runs_pkey"),
    )


def downgrade() -> None:
    op.drop_table("refresh_schedule_runs")
    op.drop_table("symbol_refresh_state")
    op.execute(ENQUEUE_V1)
    # Refresh jobs become plain onboarding jobs (a full reload of the symbol: nothing is lost).
    _rebuild_claim_rank(PRIORITY)
    op.drop_constraint(op.f(f"{QUEUE}_kind_check"), QUEUE, type_="check")
    op.drop_column(QUEUE, "kind")
