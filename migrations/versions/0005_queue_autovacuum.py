"""Queue table: vacuum it as often as a queue needs.

Every job updates its row three or more times (claim, heartbeats, completion), and finished rows
accumulate until pruned. With the default scale factor (20 % of the table) autovacuum waits for
about 200,000 dead rows at 1,000,000 finished rows, and until then the claim index scan walks the
dead entries at its head (measured by bench/claim_decay.py: 12 buffers per claim after a vacuum,
301 after ~60,000 jobs). A fixed threshold keeps that walk short whatever the table size.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE symbol_onboarding_queue SET ("
        " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,"
        " autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE symbol_onboarding_queue RESET ("
        " autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
        " autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
    )
