"""The scheduled refresh: per-symbol miss counts (delisting) and the once-a-day batch record."""

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, Text, func, text
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
