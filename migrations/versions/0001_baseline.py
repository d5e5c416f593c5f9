"""Baseline: the tables deployed databases already have before the spec's migration.

An existing deployed database already has these tables: adopt it with `alembic stamp 0001`
(then `alembic upgrade head`) instead of running this revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID_DEFAULT = sa.text("gen_random_uuid()")
FACTOR_COLUMNS = (
    "market_beta",
    "ir_beta",
    "value_beta",
    "growth_beta",
    "momentum_beta",
    "quality_beta",
    "size_beta",
    "low_vol_beta",
    "growth_value_spread",
    "momentum_spread",
    "size_spread",
    "quality_spread",
)


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=UUID_DEFAULT, nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(255)),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
        sa.UniqueConstraint("email", name="users_email_key"),
    )
    op.create_table(
        "portfolios",
        sa.Column("id", sa.UUID(), server_default=UUID_DEFAULT, nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="portfolios_pkey"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="portfolios_user_id_fkey"),
    )
    op.create_index("ix_portfolios_user_id", "portfolios", ["user_id"])
    op.create_table(
        "symbol_universe",
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("asset_type", sa.String(20)),
        sa.Column("sector", sa.String(100)),
        sa.Column("industry", sa.String(100)),
        sa.Column("first_seen_date", sa.Date()),
        sa.Column("last_seen_date", sa.Date()),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("symbol", name="symbol_universe_pkey"),
    )
    op.create_table(
        "market_data_cache",
        sa.Column("id", sa.UUID(), server_default=UUID_DEFAULT, nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("open", sa.Numeric(12, 4)),
        sa.Column("high", sa.Numeric(12, 4)),
        sa.Column("low", sa.Numeric(12, 4)),
        sa.Column("close", sa.Numeric(12, 4), nullable=False),
        sa.Column("volume", sa.BigInteger()),
        sa.Column("sector", sa.String(100)),
        sa.Column("industry", sa.String(100)),
        sa.Column("exchange", sa.String(50)),
        sa.Column("country", sa.String(50)),
        sa.Column("market_cap", sa.Numeric(18, 2)),
        sa.Column("data_source", sa.String(50), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="market_data_cache_pkey"),
        sa.UniqueConstraint("symbol", "date", name="market_data_cache_symbol_date_key"),
    )
    op.create_table(
        "symbol_factor_exposures",
        sa.Column("id", sa.UUID(), server_default=UUID_DEFAULT, nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("calculation_date", sa.Date(), nullable=False),
        *[sa.Column(name, sa.Numeric(12, 6)) for name in FACTOR_COLUMNS],
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="symbol_factor_exposures_pkey"),
        sa.ForeignKeyConstraint(
            ["symbol"], ["symbol_universe.symbol"], name="symbol_factor_exposures_symbol_fkey"
        ),
        sa.UniqueConstraint(
            "symbol", "calculation_date", name="symbol_factor_exposures_symbol_calculation_date_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("symbol_factor_exposures")
    op.drop_table("market_data_cache")
    op.drop_table("symbol_universe")
    op.drop_index("ix_portfolios_user_id", table_name="portfolios")
    op.drop_table("portfolios")
    op.drop_table("users")
