"""Per-source pauses, request rates and failure counts, shared by every worker process through
the database.

A pause (after a rate limit, a block, or a run of consecutive transient failures: the circuit
breaker) stops every process from calling the source until it ends; jobs that need the source
are deferred without spending an attempt. The request rate
limiter spaces requests evenly: "2000/hour" lets one request start every 1.8 s, across all
processes, because providers count per API key or per IP, not per process. Each request
reserves the next free slot in one statement (`RESERVE_REQUEST`); a job whose slot is further
away than `max_wait_s` is deferred instead of holding a worker that long.

A deferred job gets a slot of its own (`reserve_ahead`) and is deferred until exactly then, so
a backlog of refused jobs comes back spread out, one job a slot, instead of all together to
fight over the few slots within `max_wait_s`. The reservation is remembered by this process:
when the job comes back here its first request takes that slot; when another process claims it
(or it comes back too late), the slot goes unused and that request takes the next free slot.
"""

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from worker.core.db import Connection
from worker.core.metrics import Metrics
from worker.core.settings import SettingsError
from worker.prices.base import SourcePaused
from worker.sql import prices as sql

log = structlog.get_logger()
_sleep = asyncio.sleep  # the wait for a request slot (a seam for tests)
_clock = time.monotonic  # when reserved-ahead slots fall due (a seam for tests)

PERIODS_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")


@dataclass(frozen=True)
class Rate:
    requests: int
    period: str

    @property
    def spacing_s(self) -> float:
        return PERIODS_S[self.period] / self.requests

    def __str__(self) -> str:
        return f"{self.requests}/{self.period}"


def parse_rate(env_name: str, text: str) -> Rate | None:
    """`"2000/hour"` -> Rate(2000, "hour"); `"off"` -> None. Raises SettingsError."""
    if text.strip().lower() in ("off", "none", "unlimited"):
        return None
    match = _RATE.match(text.lower())
    if match is None or int(match.group(1)) <= 0:
        raise SettingsError(
            f"{env_name}: expected a rate, N/second, N/minute, N/hour or N/day (e.g. 2000/hour),"
            f" or off, got {text!r}"
        )
    return Rate(int(match.group(1)), match.group(2))


class SourceGate:
    """Checks and records pauses, and reserves request slots, for the configured sources."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rates: Mapping[str, Rate | None],
        *,
        max_wait_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics or Metrics()
        self._rates = dict(rates)
        self._max_wait_s = max_wait_s
        # (source, symbol) -> the monotonic time of the slot reserved ahead for that job.
        self._reserved: dict[tuple[str, str], float] = {}

    async def paused(self, sources: Sequence[str]) -> dict[str, SourcePaused]:
        """The sources among `sources` that are paused right now."""
        rows = await self._pool.fetch(sql.PAUSED_SOURCES, list(sources))
        return {
            r["source"]: SourcePaused(r["source"], r["paused_s"], r["pause_reason"] or "paused")
            for r in rows
        }

    async def pause(self, source: str, seconds: float, reason: str) -> SourcePaused:
        """Pause `source` for every process for `seconds` (an existing longer pause stays)."""
        row = await self._pool.fetchrow(sql.PAUSE_SOURCE, source, seconds, reason)
        assert row is not None  # an upsert ... RETURNING always returns its row
        self._metrics.source_paused(source)
        log.warning(
            "price_source_paused",
            source=source,
            paused_s=round(row["paused_s"], 1),
            reason=row["pause_reason"],
        )
        return SourcePaused(source, row["paused_s"], row["pause_reason"])

    async def record_failure(self, source: str) -> int:
        """Count one more transient failure of `source` in a row; returns the count so far."""
        return int(await self._pool.fetchval(sql.RECORD_FAILURE, source))

    async def reset_failures(self, conn: Connection, source: str) -> None:
        """`source` answered: its run of transient failures is over."""
        await conn.execute(sql.RESET_FAILURES, source)

    async def acquire(self, source: str, symbol: str | None = None) -> None:
        """Wait for `source`'s next request slot; SourcePaused when paused or the slot is too far.
        The first request of a job that `reserve_ahead` gave a slot (`symbol`) takes that slot.

        Called before every request, in-process retries included: a pause recorded by any
        process (or by this job's previous attempt) stops the next request. Without a rate limit
        that is one pause check; with one, the reservation refuses a paused source, and the
        pause is checked again after waiting for the slot (another process may have paused the
        source meanwhile)."""
        rate = self._rates.get(source)
        if rate is None:
            await self._check_paused(source)
            return
        own = self._reserved.pop((source, symbol), None) if symbol is not None else None
        if own is not None and symbol is not None:
            wait_s = own - _clock()
            if wait_s > self._max_wait_s:  # back early (another source's pause ended first)
                self._reserved[(source, symbol)] = own
                raise self._slot_ahead(source, rate, wait_s)
            if wait_s >= -rate.spacing_s:  # its own slot: nothing more to reserve
                await self._wait(source, wait_s)
                await self._check_paused(source)
                return
            # Back too late for its slot, which went unused: take the next free one.
        wait_s = await self._pool.fetchval(
            sql.RESERVE_REQUEST, source, rate.spacing_s, self._max_wait_s
        )
        if wait_s is None:
            state = await self._pool.fetchrow(sql.SOURCE_STATE, source)
            if state is not None and state["paused_s"] > 0:
                raise SourcePaused(source, state["paused_s"], state["pause_reason"] or "paused")
            delay = state["wait_s"] if state is not None else self._max_wait_s
            raise SourcePaused(
                source,
                delay,
                f"request rate {rate} reached; the next free slot is {delay:.0f} s away",
                rate_slot=True,
            )
        if wait_s > 0:
            await self._wait(source, wait_s)
            await self._check_paused(source)

    async def reserve_ahead(self, source: str, symbol: str) -> SourcePaused | None:
        """Reserve `source`'s next free slot, however far, for `symbol`'s job, which is about to
        be deferred for want of a slot: the deferral until exactly that slot (its own, still
        held when the job comes back early), or None when the source has no rate or is paused."""
        rate = self._rates.get(source)
        if rate is None:
            return None
        now = _clock()
        # Forget the slots of jobs that did not come back here in time.
        for key, slot in list(self._reserved.items()):
            if slot < now - PERIODS_S["hour"]:
                del self._reserved[key]
        own = self._reserved.get((source, symbol))
        if own is not None and own > now:
            return self._slot_ahead(source, rate, own - now)
        wait_s = await self._pool.fetchval(sql.RESERVE_AHEAD, source, rate.spacing_s)
        if wait_s is None:
            return None
        self._reserved[(source, symbol)] = _clock() + wait_s
        return self._slot_ahead(source, rate, wait_s)

    def _slot_ahead(self, source: str, rate: Rate, wait_s: float) -> SourcePaused:
        return SourcePaused(
            source,
            wait_s,
            f"request rate {rate} reached; this job's own slot is reserved {wait_s:.0f} s away",
            rate_slot=True,
        )

    async def _wait(self, source: str, wait_s: float) -> None:
        if wait_s > 0:
            log.debug("price_request_slot_wait", source=source, wait_s=round(wait_s, 3))
            await _sleep(wait_s)

    async def _check_paused(self, source: str) -> None:
        paused = await self.paused([source])
        if source in paused:
            raise paused[source]


async def resume(pool: asyncpg.Pool | asyncpg.Connection, source: str) -> bool:
    """End a source's pause now (operator action); False if it was not paused."""
    return await pool.fetchval(sql.RESUME_SOURCE, source) is not None
