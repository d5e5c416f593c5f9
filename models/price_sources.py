"""Shared state of each price source: a pause after a rate limit, block or run of failures, the
request schedule of its rate limiter, and its consecutive transient failures. One row per source, read and written by every worker process."""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base


class PriceSourceState(Base):
    __tablename__ = "price_source_state"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    # No request goes to the source before this moment (NULL or past: not paused).
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    # Who paused it (`python -m worker pause`): NULL for the worker's own pauses (revision 0013).
    paused_by: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The rate limiter's schedule: the earliest moment the next request may start.
    next_request_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The circuit breaker: transient failures in a row (jobs whose in-process retries all
    # failed), across every process; reset by a success.
    consecutive_failures: Mapped[int] = mapped_column(
        Integer, server_default=text("0"), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SymbolOnboardingQueuePause(Base):
    """A pause of the whole queue (`python -m worker pause --queue`): no worker claims while its
    row's paused_until is ahead; enqueueing goes on. One row per queue, deleted by `resume`."""

    __tablename__ = "symbol_onboarding_queue_pauses"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    paused_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
