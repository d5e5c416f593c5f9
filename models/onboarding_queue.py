"""The symbol-onboarding job queue."""

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base

# The values the CHECK constraints below allow, as types for the code that reads and writes them.
Status = Literal["pending", "processing", "completed", "failed", "cancelled"]
Priority = Literal["high", "normal", "low"]  # claim order
STATUSES: tuple[Status, ...] = get_args(Status)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
Kind = Literal["onboarding", "refresh"]  # every onboarding is claimed before any refresh
KINDS: tuple[Kind, ...] = get_args(Kind)
SYMBOL_PATTERN = r"^[A-Z0-9.^=/-]{1,20}$"


class SymbolOnboardingQueue(Base):
    __tablename__ = "symbol_onboarding_queue"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')",
            name="status",
        ),
        CheckConstraint("priority IN ('high', 'normal', 'low')", name="priority"),
        CheckConstraint(f"symbol ~ '{SYMBOL_PATTERN}'", name="symbol"),
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("kind IN ('onboarding', 'refresh')", name="kind"),
        # The spec's index; it cannot serve the claim order (see idx_queue_claim).
        Index("idx_queue_status", "status", "priority", "created_at"),
        # At most one live job per symbol (the spec's SQL declares it; its Alembic code forgot it).
        Index(
            "idx_queue_pending_symbol",
            "symbol",
            unique=True,
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        # Exactly the claim's ORDER BY over exactly the rows it can claim.
        Index(
            "idx_queue_claim",
            "priority_rank",
            "run_after",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "idx_queue_processing",
            "locked_by",
            "id",
            postgresql_where=text("status = 'processing'"),
        ),
        Index(
            "idx_queue_finished",
            "status",
            "completed_at",
            postgresql_where=text("status IN ('completed', 'failed', 'cancelled')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    symbol: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    # ON DELETE SET NULL (revision 0008): deleting a user never fails on its old jobs.
    requested_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    priority: Mapped[str] = mapped_column(String(10), server_default="normal")
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the job ends, completed or failed.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Added by revision 0003 (queue core); the claim rank. Since the refresh-jobs revision
    # every onboarding (0-2) ranks ahead of every refresh (3-5).
    priority_rank: Mapped[int | None] = mapped_column(
        SmallInteger,
        Computed(
            "CASE kind WHEN 'refresh' THEN 3 ELSE 0 END"
            " + CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 WHEN 'low' THEN 2 END"
        ),
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    run_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    locked_by: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Added by the refresh-jobs revision: a user's onboarding, or a scheduled refresh (see KINDS).
    kind: Mapped[str] = mapped_column(String(20), server_default=text("'onboarding'"))
    # Added by the operator-controls revision: an operator asked to cancel this running job
    # (worker/control.py); its worker records `cancelled` once the job has stopped.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_by: Mapped[str | None] = mapped_column(Text)
