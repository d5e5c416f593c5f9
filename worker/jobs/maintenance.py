"""The worker's housekeeping as a whole: the queue's own sweeps (worker/queue/housekeeping.py)
plus those of the other concerns: the analytics cache, the bulk refresh's old sessions, and the
symbols waiting for factor betas."""

import functools
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from worker.core.settings import Settings
from worker.factors.service import resolve_waiting
from worker.factors.switch import FactorSwitch
from worker.host import analytics_cache
from worker.host.tables import NO_HOST, HostTables
from worker.jobs.bulk import sweep_bulk_days
from worker.queue.housekeeping import Housekeeper, Sweep
from worker.queue.store import Queue


def housekeeper_for(
    settings: Settings,
    pool: asyncpg.Pool,
    queue: Queue,
    *,
    factors: FactorSwitch | None = None,
    host: HostTables = NO_HOST,
    periodic: Sequence[Callable[[], Awaitable[object]]] = (),
) -> Housekeeper:
    """The worker's housekeeping (also `worker prune`): the queue, the analytics cache, the bulk
    refresh's old sessions, and the symbols waiting for factor betas (with a factor store). Each
    sweep deletes one batch per call: the housekeeper commits each batch on its own. `periodic`:
    the running worker's daily refresh schedule."""
    sweeps: dict[str, Sweep] = {
        "expired_analytics_cache": functools.partial(analytics_cache.sweep_expired, max_batches=1),
        "old_bulk_days": sweep_bulk_days,
    }
    if factors is not None and factors.mode != "off":
        sweeps["factor_waits_resolved"] = functools.partial(
            sweep_factor_waits, factors=factors, host=host, settings=settings
        )
    return Housekeeper(settings, pool, queue, extra_sweeps=sweeps, periodic=periodic)


async def sweep_factor_waits(
    conn: asyncpg.Connection,
    _batch_size: int,
    *,
    factors: FactorSwitch,
    host: HostTables,
    settings: Settings,
) -> int:
    """Betas for one batch of waiting symbols whose reference jobs have ended (or that were
    skipped while the factor names were missing: looked for again first)."""
    if not await factors.look_again(conn):
        return 0
    assert factors.store is not None
    resolved, _ = await resolve_waiting(
        conn,
        factors.store,
        history_days=settings.factor_history_days,
        batch_size=settings.factor_batch_size,
        host=host,
    )
    return resolved
