"""Bulk refresh: grouped daily bars (one request per session for the whole market) shared by every
refresh job through the database (worker/jobs/bulk.py).

- `price_bulk_days`: one row per (source, session): who is loading it (a lease, so one worker
  requests it while the others wait) and when it was loaded.
- `price_bulk_bars`: the loaded day's bars of the symbols in `symbol_universe`, read by each
  symbol's refresh job; swept by housekeeping after two weeks.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "price_bulk_days",
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("leased_by", sa.Text()),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("loaded_at", sa.DateTime(timezone=True)),
        sa.Column("tickers", sa.Integer()),
        sa.PrimaryKeyConstraint("source", "price_date", name="price_bulk_days_pkey"),
    )
    op.create_table(
        "price_bulk_bars",
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("open_price", sa.Numeric(12, 4)),
        sa.Column("high_price", sa.Numeric(12, 4)),
        sa.Column("low_price", sa.Numeric(12, 4)),
        sa.Column("close_price", sa.Numeric(12, 4), nullable=False),
        sa.Column("volume", sa.BigInteger()),
        sa.PrimaryKeyConstraint("source", "symbol", "price_date", name="price_bulk_bars_pkey"),
    )
    # The housekeeping sweep deletes by age.
    op.create_index("idx_price_bulk_bars_date", "price_bulk_bars", ["price_date"])


def downgrade() -> None:
    op.drop_index("idx_price_bulk_bars_date", table_name="price_bulk_bars")
    op.drop_table("price_bulk_bars")
    op.drop_table("price_bulk_days")
