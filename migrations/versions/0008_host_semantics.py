"""Host semantics: `status` agrees with the host's `is_active`, and the host's deletes work.

- `status` for existing rows. Revision 0002 (the spec's `ADD COLUMN status DEFAULT 'active'`)
  marks every row active, including rows the host marked inactive and rows with no price at all.
  Here each row the 0002 default made active gets what is known: `delisted` where `is_active` is
  false, `active` where prices exist (`symbol_prices_daily` or the host's `market_data_cache`),
  else `pending`. Rows the worker already moved (pending, error, delisted, active with prices)
  keep their status.
- `is_active` and `status` stay consistent from then on, whoever writes (a trigger on
  `symbol_universe`, the one project object on a host table besides the four columns):
  * the status moves to `active` or `delisted` (the worker, an operator): `is_active` follows
    (true, false);
  * the host marks a symbol inactive (UPDATE to false, or an INSERT with false): its status
    becomes `delisted`, which the worker never turns back to active;
  * the host re-activates a delisted symbol: `active` when it has a last price date, else
    `pending` (enqueue it to load prices).
  Without an `is_active` column there is nothing to keep consistent: no trigger, and the fill uses
  prices only.
- Foreign keys from the project's tables no longer block the host's deletes (deviations from the
  spec's plain REFERENCES): `symbol_prices_daily` -> `symbol_universe` ON DELETE CASCADE (the
  host deletes a symbol with a plain DELETE, and its own child tables cascade too);
  `portfolio_analytics_cache` -> `portfolios` ON DELETE CASCADE (a cache of a deleted portfolio
  means nothing); `symbol_onboarding_queue.requested_by` -> `users` ON DELETE SET NULL (the job
  history stays, without the deleted requester).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referred table, referred column, new ON DELETE)
FOREIGN_KEYS = (
    ("symbol_prices_daily", "symbol", "symbol_universe", "symbol", "CASCADE"),
    ("portfolio_analytics_cache", "portfolio_id", "portfolios", "id", "CASCADE"),
    ("symbol_onboarding_queue", "requested_by", "users", "id", "SET NULL"),
)

HAS_PRICES = """
    EXISTS (SELECT 1 FROM symbol_prices_daily AS p WHERE p.symbol = u.symbol)
    OR EXISTS (SELECT 1 FROM market_data_cache AS c WHERE c.symbol = u.symbol)
"""

SYNC_FUNCTION = r"""
CREATE FUNCTION symbol_onboarding_sync_is_active() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
        -- The status moved (the worker, an operator): is_active follows it.
        IF NEW.status = 'active' THEN
            NEW.is_active := true;
        ELSIF NEW.status = 'delisted' THEN
            NEW.is_active := false;
        END IF;
    ELSIF NOT NEW.is_active
          AND (TG_OP = 'INSERT' OR OLD.is_active)
          AND NEW.status IS DISTINCT FROM 'delisted' THEN
        -- The host marked the symbol inactive: it is not active for analytics either.
        NEW.status := 'delisted';
    ELSIF TG_OP = 'UPDATE' AND NEW.is_active AND NOT OLD.is_active
          AND NEW.status = 'delisted' THEN
        -- The host re-activated it.
        NEW.status := CASE WHEN NEW.last_price_date IS NOT NULL THEN 'active' ELSE 'pending' END;
    END IF;
    RETURN NEW;
END $$;
"""

SYNC_TRIGGER = """
CREATE TRIGGER symbol_onboarding_sync_is_active
    BEFORE INSERT OR UPDATE OF is_active, status ON symbol_universe
    FOR EACH ROW EXECUTE FUNCTION symbol_onboarding_sync_is_active();
"""


def _has_is_active() -> bool:
    return bool(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid ="
                " to_regclass('symbol_universe') AND attname = 'is_active' AND attnum > 0"
                " AND NOT attisdropped)"
            )
        )
        .scalar()
    )


def _replace_foreign_keys(on_delete: bool) -> None:
    for table, column, referred, referred_column, action in FOREIGN_KEYS:
        name = f"{table}_{column}_fkey"
        op.drop_constraint(name, table, type_="foreignkey")
        op.create_foreign_key(
            name,
            table,
            referred,
            [column],
            [referred_column],
            ondelete=action if on_delete else None,
        )


def upgrade() -> None:
    _replace_foreign_keys(on_delete=True)
    is_active = _has_is_active()
    inactive = "WHEN NOT u.is_active THEN 'delisted'" if is_active else ""
    # Only rows the 0002 default made active can be wrong: any other status was set knowingly.
    op.execute(
        f"""
        UPDATE symbol_universe AS u
        SET status = CASE {inactive} WHEN {HAS_PRICES} THEN 'active' ELSE 'pending' END
        WHERE u.status = 'active'
        """
    )
    if is_active:
        op.execute(SYNC_FUNCTION)
        op.execute(SYNC_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS symbol_onboarding_sync_is_active ON symbol_universe")
    op.execute("DROP FUNCTION IF EXISTS symbol_onboarding_sync_is_active()")
    _replace_foreign_keys(on_delete=False)
