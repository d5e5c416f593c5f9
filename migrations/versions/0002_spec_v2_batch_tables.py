"""The spec's migration (03-database-schema-changes.md), exactly as its SQL declares it.

Unlike the spec's own Alembic code, this creates every index its SQL names, including
`idx_symbol_prices_symbol` and the partial unique index `idx_queue_pending_symbol`. The spec's
other defects (priority sorts alphabetically, no crash recovery, retries or pruning) are fixed in
later revisions, so this one stays a faithful copy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYMBOL_UNIVERSE_COLUMNS = ("status", "last_price_date", "last_factor_date", "added_source")


def upgrade() -> None:
    # symbol_universe first: the new tables reference it.
    op.add_column("symbol_universe", sa.Column("status", sa.String(20), server_default="active"))
    op.add_column("symbol_universe", sa.Column("last_price_date", sa.Date()))
    op.add_column("symbol_universe", sa.Column("last_factor_date", sa.Date()))
    op.add_column("symbol_universe", sa.Column("added_source", sa.String(50)))

    op.create_table(
        "symbol_prices_daily",
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("open_price", sa.Numeric(12, 4)),
        sa.Column("high_price", sa.Numeric(12, 4)),
        sa.Column("low_price", sa.Numeric(12, 4)),
        sa.Column("close_price", sa.Numeric(12, 4), nullable=False),
        sa.Column("adj_close_price", sa.Numeric(12, 4)),
        sa.Column("volume", sa.BigInteger()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("symbol", "price_date", name="symbol_prices_daily_pkey"),
        sa.ForeignKeyConstraint(
            ["symbol"], ["symbol_universe.symbol"], name="symbol_prices_daily_symbol_fkey"
        ),
    )
    op.create_index("idx_symbol_prices_date", "symbol_prices_daily", ["price_date"])
    op.create_index("idx_symbol_prices_symbol", "symbol_prices_daily", ["symbol"])

    op.create_table(
        "portfolio_analytics_cache",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("portfolio_id", sa.UUID(), nullable=False),
        sa.Column("cache_key", sa.String(255), nullable=False),
        sa.Column("cache_type", sa.String(50), nullable=False),
        sa.Column("cached_data", postgresql.JSONB(), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="portfolio_analytics_cache_pkey"),
        sa.ForeignKeyConstraint(
            ["portfolio_id"], ["portfolios.id"], name="portfolio_analytics_cache_portfolio_id_fkey"
        ),
        sa.UniqueConstraint(
            "portfolio_id",
            "cache_type",
            "cache_key",
            name="portfolio_analytics_cache_portfolio_id_cache_type_cache_key_key",
        ),
    )
    op.create_index("idx_cache_portfolio", "portfolio_analytics_cache", ["portfolio_id"])
    op.create_index("idx_cache_valid", "portfolio_analytics_cache", ["valid_until"])

    op.create_table(
        "symbol_onboarding_queue",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), server_default="pending"),
        sa.Column("requested_by", sa.UUID()),
        sa.Column("priority", sa.String(10), server_default="normal"),
        sa.Column("error_message", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="symbol_onboarding_queue_pkey"),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name="symbol_onboarding_queue_requested_by_fkey"
        ),
    )
    op.create_index(
        "idx_queue_status", "symbol_onboarding_queue", ["status", "priority", "created_at"]
    )
    op.create_index(
        "idx_queue_pending_symbol",
        "symbol_onboarding_queue",
        ["symbol"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )


def downgrade() -> None:
    op.drop_table("symbol_onboarding_queue")
    op.drop_table("portfolio_analytics_cache")
    op.drop_table("symbol_prices_daily")
    for column in SYMBOL_UNIVERSE_COLUMNS:
        op.drop_column("symbol_universe", column)
