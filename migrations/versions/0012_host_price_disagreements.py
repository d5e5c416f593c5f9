"""Host fit: where the host's own price rows disagree with the worker's.

The worker keeps the host's `market_data_cache` current (worker/host/tables.py), but never overwrites a
row the host wrote itself (a `data_source` that is not one the worker writes). Where such a row's
close differs from the worker's by more than a tick, the mirror records it here (the latest
values per symbol and date; removed again once they agree), so `status` can say how many there
are and an operator can look at them. The foreign key cascades with the host's universe rows.
Rows the worker mirrored into `market_data_cache` stay there on downgrade: they are valid prices
in a host table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "host_price_disagreements",
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("data_source", sa.String(50), nullable=False),
        sa.Column("host_close", sa.Numeric(12, 4), nullable=False),
        sa.Column("worker_close", sa.Numeric(12, 4), nullable=False),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("symbol", "price_date", name="host_price_disagreements_pkey"),
        sa.ForeignKeyConstraint(
            ["symbol"],
            ["symbol_universe.symbol"],
            name="host_price_disagreements_symbol_fkey",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("host_price_disagreements")
