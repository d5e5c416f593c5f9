"""What revision 0001 created: it creates each host table only where the database lacks it, and
its downgrade drops exactly the tables listed here (none on a host's database)."""

from datetime import datetime

from sqlalchemy import DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from worker.models.base import Base


class BaselineTable(Base):
    __tablename__ = "symbol_onboarding_baseline_tables"

    table_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
