"""Live worker processes: one row each, upserted by the worker's heartbeat (see revision 0007)."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base


class SymbolOnboardingWorker(Base):
    __tablename__ = "symbol_onboarding_workers"

    # The worker's `locked_by` id: `WORKER_NAME` (or host:pid) plus a random suffix per start.
    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(Text)
    concurrency: Mapped[int] = mapped_column(Integer)
    jobs_in_flight: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Set once the worker stopped claiming (SIGTERM): it drains and then deletes its row.
    stopping: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Where its status page and probes answer, when WORKER_HTTP_PORT is set.
    http_url: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The last time its claim loop went round (a stuck loop shows here while heartbeats go on).
    last_tick_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Older than QUEUE_STALL_TIMEOUT_S: the process is dead or cut off from the database.
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
