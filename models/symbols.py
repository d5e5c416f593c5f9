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
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base

Price = Numeric(12, 4)
Beta = Numeric(12, 6)


class SymbolUniverse(Base):
    """The master list of symbols; `status` says whether analytics can use the symbol yet."""

    __tablename__ = "symbol_universe"

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
    status: Mapped[str | None] = mapped_column(String(20), server_default="active")
    last_price_date: Mapped[date | None] = mapped_column(Date)
    last_factor_date: Mapped[date | None] = mapped_column(Date)
    # Values: seed, onboarding, admin, batch.
    added_source: Mapped[str | None] = mapped_column(String(50))


class SymbolPricesDaily(Base):
    """One daily OHLCV bar per symbol and trading date (exchange-local date)."""

    __tablename__ = "symbol_prices_daily"
    __table_args__ = (
        Index("idx_symbol_prices_date", "price_date"),
        Index("idx_symbol_prices_symbol", "symbol"),
    )

    symbol: Mapped[str] = mapped_column(
        String(20), ForeignKey("symbol_universe.symbol"), primary_key=True
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
    """Position-level market data as deployed databases have it (no `adjusted_close` column)."""

    __tablename__ = "market_data_cache"
    __table_args__ = (UniqueConstraint("symbol", "date"),)

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
    """Per-symbol factor betas for one calculation date."""

    __tablename__ = "symbol_factor_exposures"
    __table_args__ = (UniqueConstraint("symbol", "calculation_date"),)

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
