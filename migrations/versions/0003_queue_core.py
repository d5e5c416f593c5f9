"""Queue core: lifecycle columns, value checks, a claim index that serves the priority order,
enqueue/retry functions, normalising and notifying triggers.

Fixes the spec's defects for the queue:
- `priority` is text, so ORDER BY priority sorts high, low, normal. `priority_rank` (generated)
  gives the real order, and `idx_queue_claim`, a partial index on pending rows in claim order,
  lets a claim read the first runnable rows instead of sorting the whole pending set.
- Nothing said what happens to a job whose worker dies: `locked_by` and `heartbeat_at` let a
  sweep return it to pending (see worker/queue/store.py for the design).
- No retries: `attempts` and `run_after` give exponential backoff.
- Nothing bounded the table: `idx_queue_finished` serves pruning of old finished rows.
- `status`/`priority` accepted anything, including NULL: now NOT NULL with CHECKs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE = "symbol_onboarding_queue"

FUNCTIONS = (
    r"""
-- The one symbol rule in the database: trimmed, upper-cased, 1-20 of A-Z 0-9 . - ^ = /.
-- worker/core/symbols.py mirrors it so Python callers fail before touching their transaction.
CREATE FUNCTION symbol_onboarding_check_symbol(p_symbol text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_symbol text := upper(btrim(p_symbol, E' \t\r\n\f' || chr(11)));
BEGIN
    IF v_symbol IS NULL OR v_symbol !~ '^[A-Z0-9.^=/-]{1,20}$' THEN
        RAISE EXCEPTION 'invalid symbol %: expected 1-20 letters, digits or . - ^ = /',
            coalesce(quote_literal(p_symbol), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_symbol;
END $$;
""",
    r"""
CREATE FUNCTION symbol_onboarding_check_priority(p_priority text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_priority IS NULL OR p_priority NOT IN ('high', 'normal', 'low') THEN
        RAISE EXCEPTION 'invalid priority %: expected high, normal or low',
            coalesce(quote_literal(p_priority), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_priority;
END $$;
""",
    r"""
-- A plain INSERT of a value longer than 20 characters is refused by VARCHAR(20) itself
-- ("value too long"), before this trigger runs; the enqueue function checks first.
CREATE FUNCTION symbol_onboarding_normalize() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.symbol := symbol_onboarding_check_symbol(NEW.symbol);
    NEW.priority := symbol_onboarding_check_priority(NEW.priority);
    RETURN NEW;
END $$;
""",
    r"""
-- A backend that enqueues must see the symbol as 'pending' at once, whichever path it used.
-- Existing rows are never overwritten.
CREATE FUNCTION symbol_onboarding_register_symbol() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO symbol_universe (symbol, status, added_source)
    VALUES (NEW.symbol, 'pending', 'onboarding')
    ON CONFLICT (symbol) DO NOTHING;
    RETURN NULL;
END $$;
""",
    r"""
-- One NOTIFY per statement (not per row): it only wakes idle workers, which then claim.
CREATE FUNCTION symbol_onboarding_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('symbol_onboarding', '');
    RETURN NULL;
END $$;
""",
    r"""
CREATE TRIGGER symbol_onboarding_normalize
    BEFORE INSERT OR UPDATE OF symbol, priority ON symbol_onboarding_queue
    FOR EACH ROW EXECUTE FUNCTION symbol_onboarding_normalize();
""",
    r"""
CREATE TRIGGER symbol_onboarding_register_symbol
    AFTER INSERT ON symbol_onboarding_queue
    FOR EACH ROW EXECUTE FUNCTION symbol_onboarding_register_symbol();
""",
    r"""
CREATE TRIGGER symbol_onboarding_notify
    AFTER INSERT ON symbol_onboarding_queue
    FOR EACH STATEMENT EXECUTE FUNCTION symbol_onboarding_notify();
""",
    r"""
-- The enqueue path for non-Python callers (the Python helper calls it too): returns the live
-- job for the symbol, new or existing, raising its priority when the new request is higher.
CREATE FUNCTION enqueue_symbol_onboarding(
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
""",
    r"""
-- Operator retry of one failed job: back to pending with a fresh attempt budget. Returns false
-- when the job is not failed, or when the symbol already has a live job (nothing to do).
CREATE FUNCTION retry_symbol_onboarding(p_job_id uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_symbol text;
BEGIN
    SELECT symbol INTO v_symbol FROM symbol_onboarding_queue
    WHERE id = p_job_id AND status = 'failed' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM symbol_onboarding_queue
               WHERE symbol = v_symbol AND status IN ('pending', 'processing')) THEN
        RETURN false;
    END IF;
    BEGIN
        UPDATE symbol_onboarding_queue
        SET status = 'pending', attempts = 0, run_after = now(), started_at = NULL,
            completed_at = NULL, locked_by = NULL, heartbeat_at = NULL
        WHERE id = p_job_id;
    EXCEPTION WHEN unique_violation THEN
        RETURN false;  -- an enqueue of the same symbol won the race: it is live already
    END;
    UPDATE symbol_universe SET status = 'pending', updated_at = now()
    WHERE symbol = v_symbol AND status = 'error';
    PERFORM pg_notify('symbol_onboarding', '');
    RETURN true;
END $$;
""",
    r"""
-- Operator retry of every failed job whose symbol has no live job; returns how many.
CREATE FUNCTION retry_failed_symbol_onboarding() RETURNS integer
LANGUAGE sql AS $$
    SELECT count(*)::integer FROM (
        SELECT retry_symbol_onboarding(latest.id) AS retried
        FROM (SELECT DISTINCT ON (symbol) id FROM symbol_onboarding_queue
              WHERE status = 'failed' ORDER BY symbol, created_at DESC) AS latest
    ) AS r WHERE r.retried
$$;
""",
)

DROP_FUNCTIONS = (
    "DROP FUNCTION retry_failed_symbol_onboarding();",
    "DROP FUNCTION retry_symbol_onboarding(uuid);",
    "DROP FUNCTION enqueue_symbol_onboarding(text, text, uuid);",
    "DROP TRIGGER symbol_onboarding_notify ON symbol_onboarding_queue;",
    "DROP TRIGGER symbol_onboarding_register_symbol ON symbol_onboarding_queue;",
    "DROP TRIGGER symbol_onboarding_normalize ON symbol_onboarding_queue;",
    "DROP FUNCTION symbol_onboarding_notify();",
    "DROP FUNCTION symbol_onboarding_register_symbol();",
    "DROP FUNCTION symbol_onboarding_normalize();",
    "DROP FUNCTION symbol_onboarding_check_priority(text);",
    "DROP FUNCTION symbol_onboarding_check_symbol(text);",
)

PRIORITY_RANK = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 WHEN 'low' THEN 2 END"


def upgrade() -> None:
    op.execute(f"UPDATE {QUEUE} SET status = 'pending' WHERE status IS NULL")
    op.execute(f"UPDATE {QUEUE} SET priority = 'normal' WHERE priority IS NULL")
    op.execute(f"UPDATE {QUEUE} SET created_at = now() WHERE created_at IS NULL")
    op.alter_column(QUEUE, "status", nullable=False)
    op.alter_column(QUEUE, "priority", nullable=False)
    op.alter_column(QUEUE, "created_at", nullable=False)
    op.create_check_constraint(
        op.f(f"{QUEUE}_status_check"),
        QUEUE,
        "status IN ('pending', 'processing', 'completed', 'failed')",
    )
    op.create_check_constraint(
        op.f(f"{QUEUE}_priority_check"), QUEUE, "priority IN ('high', 'normal', 'low')"
    )
    op.create_check_constraint(
        op.f(f"{QUEUE}_symbol_check"), QUEUE, "symbol ~ '^[A-Z0-9.^=/-]{1,20}$'"
    )

    op.add_column(
        QUEUE,
        sa.Column("priority_rank", sa.SmallInteger(), sa.Computed(PRIORITY_RANK, persisted=True)),
    )
    op.add_column(
        QUEUE, sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    # clock_timestamp(), not now(): rows enqueued in one statement keep their insertion order.
    op.add_column(
        QUEUE,
        sa.Column(
            "run_after",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
    )
    op.add_column(QUEUE, sa.Column("locked_by", sa.Text()))
    op.add_column(QUEUE, sa.Column("heartbeat_at", sa.DateTime(timezone=True)))
    op.create_check_constraint(op.f(f"{QUEUE}_attempts_check"), QUEUE, "attempts >= 0")

    op.create_index(
        "idx_queue_claim",
        QUEUE,
        ["priority_rank", "run_after"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # The fenced statements (complete, fail, heartbeat) look jobs up by owner and id; the stall
    # sweep reads the whole (small) set of processing rows.
    op.create_index(
        "idx_queue_processing",
        QUEUE,
        ["locked_by", "id"],
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.create_index(
        "idx_queue_finished",
        QUEUE,
        ["status", "completed_at"],
        postgresql_where=sa.text("status IN ('completed', 'failed')"),
    )
    for statement in FUNCTIONS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_FUNCTIONS:
        op.execute(statement)
    op.drop_index("idx_queue_finished", table_name=QUEUE)
    op.drop_index("idx_queue_processing", table_name=QUEUE)
    op.drop_index("idx_queue_claim", table_name=QUEUE)
    for name in ("attempts", "symbol", "priority", "status"):
        op.drop_constraint(op.f(f"{QUEUE}_{name}_check"), QUEUE, type_="check")
    for column in ("heartbeat_at", "locked_by", "run_after", "attempts", "priority_rank"):
        op.drop_column(QUEUE, column)
    op.alter_column(QUEUE, "created_at", nullable=True)
    op.alter_column(QUEUE, "priority", nullable=True)
    op.alter_column(QUEUE, "status", nullable=True)
