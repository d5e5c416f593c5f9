"""Operator controls: cancel a job, pause a price source or the whole queue.

- `symbol_onboarding_queue` gets the terminal status `cancelled` (the status CHECK and the
  partial index pruning walks, `idx_queue_finished`, include it), and `cancel_requested_at` /
  `cancel_requested_by`: a running job cannot be stopped from the database, so the cancel is
  recorded on its row; its worker sees it (NOTIFY on `symbol_onboarding_cancel`, or its next
  heartbeat) and records `cancelled` after rolling back the job's writes. Every statement that
  would end the claim any other way (completion, retry, hand-back) is fenced on it.
- `cancel_symbol_onboarding(job_id, by)`: the cancel for every caller (SQL, the CLI); returns
  what it did: cancelled, cancelling, already completed / failed / cancelled, not found.
- `price_source_state.paused_by` / `paused_at`: who paused a source (NULL: the worker itself,
  after a rate limit, a block or the circuit breaker). One pause mechanism for both.
- `symbol_onboarding_queue_pauses`: a pause of the whole queue (no claims on any worker;
  enqueueing goes on). A table of its own rather than a reserved name in price_source_state:
  every row there is read as a price source (the status page's sources, the circuit breakers).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE = "symbol_onboarding_queue"

CANCEL_FUNCTION = r"""
-- Cancel one job; returns what it did. A pending job is cancelled at once; a processing one is
-- marked, and its worker is told (it stops the job, rolls back and records `cancelled`). A
-- pending symbol whose job is cancelled becomes `error`, like a failed one: nothing will onboard
-- it now, and the daily refresh (which picks up pending symbols without prices) must not undo
-- the cancel. A new enqueue requests it again.
CREATE FUNCTION cancel_symbol_onboarding(p_job_id uuid, p_by text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_symbol text;
    v_by text := coalesce(nullif(p_by, ''), session_user::text);
BEGIN
    -- The row lock orders this cancel against the job's completion: whichever commits first
    -- wins, and the other sees it (COMPLETE is fenced on cancel_requested_at IS NULL).
    SELECT status, symbol INTO v_status, v_symbol
    FROM symbol_onboarding_queue WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not found';
    END IF;
    IF v_status = 'pending' THEN
        UPDATE symbol_onboarding_queue
        SET status = 'cancelled', completed_at = now(), cancel_requested_at = now(),
            cancel_requested_by = v_by, error_message = format('cancelled by %s', v_by),
            locked_by = NULL, heartbeat_at = NULL
        WHERE id = p_job_id;
        UPDATE symbol_universe SET status = 'error', updated_at = now()
        WHERE symbol = v_symbol AND status = 'pending';
        RETURN 'cancelled';
    ELSIF v_status = 'processing' THEN
        UPDATE symbol_onboarding_queue
        SET cancel_requested_at = coalesce(cancel_requested_at, now()),
            cancel_requested_by = coalesce(cancel_requested_by, v_by)
        WHERE id = p_job_id;
        PERFORM pg_notify('symbol_onboarding_cancel', p_job_id::text);
        RETURN 'cancelling';
    END IF;
    RETURN 'already ' || v_status;
END $$;
"""


def _status_check(statuses: str) -> None:
    op.drop_constraint(op.f(f"{QUEUE}_status_check"), QUEUE, type_="check")
    op.create_check_constraint(op.f(f"{QUEUE}_status_check"), QUEUE, f"status IN ({statuses})")


def _finished_index(statuses: str) -> None:
    op.drop_index("idx_queue_finished", table_name=QUEUE)
    op.create_index(
        "idx_queue_finished",
        QUEUE,
        ["status", "completed_at"],
        postgresql_where=sa.text(f"status IN ({statuses})"),
    )


def upgrade() -> None:
    _status_check("'pending', 'processing', 'completed', 'failed', 'cancelled'")
    _finished_index("'completed', 'failed', 'cancelled'")
    op.add_column(QUEUE, sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
    op.add_column(QUEUE, sa.Column("cancel_requested_by", sa.Text()))
    op.add_column("price_source_state", sa.Column("paused_by", sa.Text()))
    op.add_column("price_source_state", sa.Column("paused_at", sa.DateTime(timezone=True)))
    op.create_table(
        "symbol_onboarding_queue_pauses",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pause_reason", sa.Text()),
        sa.Column("paused_by", sa.Text(), nullable=False),
        sa.Column(
            "paused_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("queue", name="symbol_onboarding_queue_pauses_pkey"),
    )
    op.execute(CANCEL_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION cancel_symbol_onboarding(uuid, text)")
    op.drop_table("symbol_onboarding_queue_pauses")
    op.drop_column("price_source_state", "paused_at")
    op.drop_column("price_source_state", "paused_by")
    op.drop_column(QUEUE, "cancel_requested_by")
    op.drop_column(QUEUE, "cancel_requested_at")
    # The older schema has no word for a cancelled job: it ended without completing, so failed.
    op.execute(f"UPDATE {QUEUE} SET status = 'failed' WHERE status = 'cancelled'")
    _finished_index("'completed', 'failed'")
    _status_check("'pending', 'processing', 'completed', 'failed'")
