"""The scheduled refresh: per-symbol miss counts (delisting) and the once-a-day batch record."""

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base


class SymbolRefreshState(Base):
    """The worker's own per-symbol refresh facts (removed with the symbol's universe row)."""

    __tablename__ = "symbol_refresh_state"

    symbol: Mapped[str] = mapped_column(
        String(20), ForeignKey("symbol_universe.symbol", ondelete="CASCADE"), primary_key=True
    )
    # Refreshes in a row on which every source called the symbol unknown or delisted.
    consecutive_misses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_miss_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshScheduleRun(Base):
    """One row per trading day whose scheduled refresh batch was enqueued (in the same
    transaction), so the batch happens once across every worker process."""

    __tablename__ = "refresh_schedule_runs"

    trading_day: Mapped[date] = mapped_column(Date, primary_key=True)
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The last completed session the batch refreshed up to.
    through_session: Mapped[date] = mapped_column(Date)
    jobs: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(Text)


class PriceBulkDay(Base):
    """One session of a bulk source (Polygon's grouped daily): who loads it, when it was loaded."""

    __tablename__ = "price_bulk_days"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    price_date: Mapped[date] = mapped_column(Date, primary_key=True)
    # The worker fetching it now, until lease_until (then another may take it over).
    leased_by: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    loaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The symbols the answer offered (each ticker under every host spelling it stands for).
    tickers: Mapped[int | None] = mapped_column(Integer)


class PriceBulkBar(Base):
    """A loaded bulk day's bar of one symbol of symbol_universe, read by its refresh job."""

    __tablename__ = "price_bulk_bars"
    __table_args__ = (Index("idx_price_bulk_bars_date", "price_date"),)

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    price_date: Mapped[date] = mapped_column(Date, primary_key=True)
    open_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    high_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    low_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    close_price: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    volume: Mapped[int | None] = mapped_column(BigInteger)
