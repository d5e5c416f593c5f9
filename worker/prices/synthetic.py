"""Generated prices for demos and benchmarks only: NOT market data.

Deterministic: the bar of a symbol on a date depends on nothing else (not on the window, not on
the run), so repeated onboarding stores the same values. One bar per weekday. The source logs one
warning saying the data is not real when it is built: once per worker process (its chain is built
once and shared by every job), not once per symbol, which buried the worker's other lines.

Generated data never replaces real data: a symbol with any stored price that is not exactly its
generated bar (real prices from a provider or the backfill) is refused with a clear, permanent
error, and the store never overwrites a stored row for this source (`replaces_stored = False`),
so real rows written meanwhile by another process survive too.
"""

import hashlib
import math
from datetime import date
from decimal import Decimal

import asyncpg
import structlog

from worker.prices.base import Bars, PermanentSourceError, PriceSource, RawBar, Window
from worker.prices.validate import normalize
from worker.sql import prices as sql

log = structlog.get_logger()

NAME = "synthetic"


class SyntheticSource(PriceSource):
    name = NAME
    replaces_stored = False

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        log.warning(
            "synthetic_prices_not_real",
            source=NAME,
            note="every price this worker stores from this source is generated, for demos and"
            " benchmarks; never use them for analytics",
        )

    async def fetch(self, symbol: str, window: Window) -> Bars:
        await self._refuse_real_data(symbol)
        return normalize(NAME, symbol, generate(symbol, window), window)

    async def _refuse_real_data(self, symbol: str) -> None:
        """PermanentSourceError when the symbol has a stored price this source did not make."""
        stored = await self._pool.fetch(sql.STORED_PRICES, symbol)
        if not stored:
            return
        span = Window(stored[0]["price_date"], stored[-1]["price_date"])
        generated = {bar.price_date: tuple(bar) for bar in generate(symbol, span)}
        real = [row for row in stored if generated.get(row["price_date"]) != tuple(row)]
        if real:
            raise PermanentSourceError(
                NAME,
                f"{symbol} already has {len(stored)} stored prices, {len(real)} of them not "
                f"generated (the first on {real[0]['price_date'].isoformat()}): the synthetic "
                "source is for demos and benchmarks and never writes over real prices; "
                "onboard this symbol from a real source",
            )


def generate(symbol: str, window: Window) -> list[RawBar]:
    """One bar per weekday in `window`, derived only from the symbol and the date."""
    seed = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")
    base_ticks = (5 + seed % 400) * 10_000  # a price level of 5..404, in ten-thousandths
    phase = (seed >> 32) % 628 / 100
    # Ordinals, not date arithmetic: ordinal 1 (0001-01-01) is a Monday, so a weekday is
    # (ordinal - 1) % 7 < 5.
    return [
        _bar(seed, ordinal, base_ticks, phase)
        for ordinal in range(window.start.toordinal(), window.end.toordinal() + 1)
        if (ordinal - 1) % 7 < 5
    ]


def _bar(seed: int, ordinal: int, base_ticks: int, phase: float) -> RawBar:
    # Four 16-bit pseudo-random numbers from one integer hash of (symbol, date): cheap, and the
    # same on every machine and run (unlike hash() or a shared random generator).
    bits = _mix(seed ^ ordinal)
    r0, r1, r2, r3 = bits & 0xFFFF, (bits >> 16) & 0xFFFF, (bits >> 32) & 0xFFFF, bits >> 48
    # A slow wave plus daily noise, in whole ten-thousandths (at least 5 * 0.7 * 0.96 * 0.99,
    # never zero), so the stored values are exactly the generated ones.
    level = int(base_ticks * (1 + 0.3 * math.sin(ordinal / 45 + phase)))
    close = level * (98_000 + r0 * 4_000 // 0x10000) // 100_000
    open_ = close * (98_500 + r1 * 3_000 // 0x10000) // 100_000
    high = (open_ if open_ > close else close) * (100_000 + r2 * 1_000 // 0x10000) // 100_000
    low = (close if open_ > close else open_) * (100_000 - r3 * 1_000 // 0x10000) // 100_000
    close_price = Decimal(close).scaleb(-4)
    return RawBar(
        date.fromordinal(ordinal),
        Decimal(open_).scaleb(-4),
        Decimal(high).scaleb(-4),
        Decimal(low).scaleb(-4),
        close_price,
        close_price,
        100_000 + (bits >> 8) % 20_000_000,
    )


def _mix(value: int) -> int:
    """splitmix64's finaliser: 64 well-mixed bits from any integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


_MASK64 = (1 << 64) - 1
