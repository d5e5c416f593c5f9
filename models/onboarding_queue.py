"""The symbol-onboarding job queue."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class SymbolOnboardingQueue(Base):
    __tablename__ = "symbol_onboarding_queue"
    __table_args__ = (
        Index("idx_queue_status", "status", "priority", "created_at"),
        # At most one live job per symbol (the spec's SQL declares it; its Alembic code forgot it).
        Index(
            "idx_queue_pending_symbol",
            "symbol",
            unique=True,
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    symbol: Mapped[str] = mapped_column(String(20))
    # Values: pending, processing, completed, failed.
    status: Mapped[str | None] = mapped_column(String(20), server_default="pending")
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    # Values: high, normal, low.
    priority: Mapped[str | None] = mapped_column(String(10), server_default="normal")
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
