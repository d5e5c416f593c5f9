"""Symbol-level market data: the master list, daily prices, the legacy cache and factor betas."""

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import HOST_TABLE, PROJECT_COLUMN, Base

Price = Numeric(12, 4)
Beta = Numeric(12, 6)


class SymbolUniverse(Base):
    """The master list of symbols (the host's table); `status` says whether analytics can use the
    symbol yet. The project owns only the four columns the spec adds (PROJECT_COLUMN)."""

    __tablename__ = "symbol_universe"
    __table_args__ = {"info": HOST_TABLE}

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    asset_type: Mapped[str | None] = mapped_column(String(20))
    sector: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    first_seen_date: Mapped[date | None] = mapped_column(Date)
    last_seen_date: Mapped[date | None] = mapped_column(Date)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Added by the spec's migration. Values: pending, active, delisted, error.
    status: Mapped[str | None] = mapped_column(
        String(20), server_default="active", info=PROJECT_COLUMN
    )
    last_price_date: Mapped[date | None] = mapped_column(Date, info=PROJECT_COLUMN)
    last_factor_date: Mapped[date | None] = mapped_column(Date, info=PROJECT_COLUMN)
    # Values: seed, onboarding, admin, batch.
    added_source: Mapped[str | None] = mapped_column(String(50), info=PROJECT_COLUMN)


class SymbolPricesDaily(Base):
    """One daily OHLCV bar per symbol and trading date (exchange-local date)."""

    __tablename__ = "symbol_prices_daily"
    __table_args__ = (
        Index("idx_symbol_prices_date", "price_date"),
        Index("idx_symbol_prices_symbol", "symbol"),
    )

    symbol: Mapped[str] = mapped_column(
        # ON DELETE CASCADE (revision 0008): the host deletes symbols with a plain DELETE.
        String(20),
        ForeignKey("symbol_universe.symbol", ondelete="CASCADE"),
        primary_key=True,
    )
    price_date: Mapped[date] = mapped_column(Date, primary_key=True)
    open_price: Mapped[Decimal | None] = mapped_column(Price)
    high_price: Mapped[Decimal | None] = mapped_column(Price)
    low_price: Mapped[Decimal | None] = mapped_column(Price)
    close_price: Mapped[Decimal] = mapped_column(Price)
    adj_close_price: Mapped[Decimal | None] = mapped_column(Price)
    volume: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class MarketDataCache(Base):
    """The host's position-level market data, as a fresh install creates it (no `adjusted_close`
    column). A host's real table differs (`volume INTEGER`, no server defaults): never compared."""

    __tablename__ = "market_data_cache"
    __table_args__ = (UniqueConstraint("symbol", "date"), {"info": HOST_TABLE})

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    symbol: Mapped[str] = mapped_column(String(20))
    date: Mapped[date] = mapped_column(Date)
    open: Mapped[Decimal | None] = mapped_column(Price)
    high: Mapped[Decimal | None] = mapped_column(Price)
    low: Mapped[Decimal | None] = mapped_column(Price)
    close: Mapped[Decimal] = mapped_column(Price)
    volume: Mapped[int | None] = mapped_column(BigInteger)
    sector: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    exchange: Mapped[str | None] = mapped_column(String(50))
    country: Mapped[str | None] = mapped_column(String(50))
    market_cap: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    data_source: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SymbolFactorExposure(Base):
    """The host's per-symbol factor betas, in the spec's WIDE shape (one row per symbol and
    calculation date), which a fresh install creates. A deployed host has the LONG shape (one row
    per symbol, factor and date, see tests/fixtures/deployed/host-schema.sql); code that writes
    betas reads the shape from the catalog. Never compared on a host's database."""

    __tablename__ = "symbol_factor_exposures"
    __table_args__ = (UniqueConstraint("symbol", "calculation_date"), {"info": HOST_TABLE})

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    symbol: Mapped[str] = mapped_column(String(20), ForeignKey("symbol_universe.symbol"))
    calculation_date: Mapped[date] = mapped_column(Date)
    market_beta: Mapped[Decimal | None] = mapped_column(Beta)
    ir_beta: Mapped[Decimal | None] = mapped_column(Beta)
    value_beta: Mapped[Decimal | None] = mapped_column(Beta)
    growth_beta: Mapped[Decimal | None] = mapped_column(Beta)
    momentum_beta: Mapped[Decimal | None] = mapped_column(Beta)
    quality_beta: Mapped[Decimal | None] = mapped_column(Beta)
    size_beta: Mapped[Decimal | None] = mapped_column(Beta)
    low_vol_beta: Mapped[Decimal | None] = mapped_column(Beta)
    growth_value_spread: Mapped[Decimal | None] = mapped_column(Beta)
    momentum_spread: Mapped[Decimal | None] = mapped_column(Beta)
    size_spread: Mapped[Decimal | None] = mapped_column(Beta)
    quality_spread: Mapped[Decimal | None] = mapped_column(Beta)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SymbolFactorWait(Base):
    """A symbol whose prices are stored and whose betas wait for reference ETF prices."""

    __tablename__ = "symbol_factor_waits"

    symbol: Mapped[str] = mapped_column(
        String(20), ForeignKey("symbol_universe.symbol", ondelete="CASCADE"), primary_key=True
    )
    # The reference ETFs that were missing or stale when the symbol's job ran.
    waiting_for: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HostPriceDisagreement(Base):
    """A host-written `market_data_cache` row whose close differs from the worker's (0012)."""

    __tablename__ = "host_price_disagreements"

    symbol: Mapped[str] = mapped_column(
        String(20), ForeignKey("symbol_universe.symbol", ondelete="CASCADE"), primary_key=True
    )
    price_date: Mapped[date] = mapped_column(Date, primary_key=True)
    # The host's own data_source of the row it kept.
    data_source: Mapped[str] = mapped_column(String(50))
    host_close: Mapped[Decimal] = mapped_column(Price)
    worker_close: Mapped[Decimal] = mapped_column(Price)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
