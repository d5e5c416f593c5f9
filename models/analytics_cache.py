"""Cached portfolio-level computations, keyed by a hash of the portfolio's positions."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base


class PortfolioAnalyticsCache(Base):
    __tablename__ = "portfolio_analytics_cache"
    __table_args__ = (
        UniqueConstraint("portfolio_id", "cache_type", "cache_key"),
        Index("idx_cache_portfolio", "portfolio_id"),
        Index("idx_cache_valid", "valid_until"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    # ON DELETE CASCADE (revision 0008): the cache of a deleted portfolio means nothing.
    portfolio_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    cache_key: Mapped[str] = mapped_column(String(255))
    cache_type: Mapped[str] = mapped_column(String(50))
    cached_data: Mapped[Any] = mapped_column(JSONB)
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
