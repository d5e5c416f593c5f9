"""Factor betas: the symbols whose betas wait for reference ETF prices.

A job that stores a symbol's prices computes its betas in the same transaction when the
reference ETFs (SPY, TLT, VTV, VUG, MTUM, QUAL, IWM, USMV) have prices that reach the symbol's
window; otherwise it enqueues the ETFs and records the symbol here, and the ETFs' jobs compute
its betas when they end (see worker/factors/__init__.py). A backend reads "betas pending" from
this table. The foreign key cascades, like the host's other children of symbol_universe.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "symbol_factor_waits",
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("waiting_for", postgresql.ARRAY(sa.String(20)), nullable=False),
        sa.Column(
            "since", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("symbol", name="symbol_factor_waits_pkey"),
        sa.ForeignKeyConstraint(
            ["symbol"],
            ["symbol_universe.symbol"],
            name="symbol_factor_waits_symbol_fkey",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("symbol_factor_waits")
