"""Baseline: the host application's tables that the spec's migration builds on.

Each table is created only where the database lacks it. On an empty database this creates all
five; on a host's database, which has them, it creates none and changes nothing of the host's, so
one `upgrade head` adopts a host database without any `stamp`. The tables it did create are listed
in `symbol_onboarding_baseline_tables`, and the downgrade drops exactly those (none on a host's
database) and that list.

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


RECORD = "symbol_onboarding_baseline_tables"


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=UUID_DEFAULT, nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(255)),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
        sa.UniqueConstraint("email", name="users_email_key"),
    )


def _create_portfolios() -> None:
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


def _create_symbol_universe() -> None:
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


def _create_market_data_cache() -> None:
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


def _create_symbol_factor_exposures() -> None:
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


# In dependency order: a table's foreign keys point to tables before it.
BASELINE = {
    "users": _create_users,
    "portfolios": _create_portfolios,
    "symbol_universe": _create_symbol_universe,
    "market_data_cache": _create_market_data_cache,
    "symbol_factor_exposures": _create_symbol_factor_exposures,
}


def upgrade() -> None:
    record = op.create_table(
        RECORD,
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("table_name", name=f"{RECORD}_pkey"),
    )
    # to_regclass follows search_path, as every later statement does.
    bind = op.get_bind()
    for name, create in BASELINE.items():
        if bind.execute(sa.text("SELECT to_regclass(:t)"), {"t": name}).scalar() is None:
            create()
            op.bulk_insert(record, [{"table_name": name}])


def downgrade() -> None:
    created = {row[0] for row in op.get_bind().execute(sa.text(f"SELECT table_name FROM {RECORD}"))}
    for name in reversed(BASELINE):
        if name in created:
            op.drop_table(name)
    op.drop_table(RECORD)
