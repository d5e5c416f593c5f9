"""Generated prices for demos and benchmarks only: NOT market data.

Deterministic: the bar of a symbol on a date depends on nothing else (not on the window, not on
the run), so repeated onboarding stores the same values. One bar per weekday. Every fetch logs a
warning saying the data is not real.
"""

import hashlib
import math
import random
from datetime import date, timedelta
from decimal import Decimal

import structlog

from worker.prices.base import Bar, PriceSource, RawBar, Window
from worker.prices.validate import normalize

log = structlog.get_logger()

NAME = "synthetic"


class SyntheticSource(PriceSource):
    name = NAME

    async def fetch(self, symbol: str, window: Window) -> list[Bar]:
        log.warning(
            "synthetic_prices_not_real",
            source=NAME,
            symbol=symbol,
            note="generated prices for demos and benchmarks; never use them for analytics",
        )
        return normalize(NAME, symbol, generate(symbol, window), window)


def generate(symbol: str, window: Window) -> list[RawBar]:
    """One bar per weekday in `window`, derived only from the symbol and the date."""
    seed = _seed(symbol)
    base_ticks = 50_000 + seed % 4_000_000  # 5.0000 .. 405.0000, in ten-thousandths
    phase = (seed >> 24) % 1000 / 100
    rows = []
    day = window.start
    while day <= window.end:
        if day.weekday() < 5:
            rows.append(_bar(symbol, day, base_ticks, phase))
        day += timedelta(days=1)
    return rows


def _bar(symbol: str, day: date, base_ticks: int, phase: float) -> RawBar:
    rng = random.Random(_seed(f"{symbol}:{day.isoformat()}"))
    # A slow wave plus daily noise; computed in floats, stored as whole ticks (generated, not
    # parsed: no provider digits are at stake).
    level = base_ticks * (1 + 0.3 * math.sin(day.toordinal() / 45 + phase))
    close = level * (1 + rng.uniform(-0.02, 0.02))
    open_ = close * (1 + rng.uniform(-0.015, 0.015))
    high = max(open_, close) * (1 + rng.uniform(0, 0.01))
    low = min(open_, close) * (1 - rng.uniform(0, 0.01))
    return RawBar(
        price_date=day,
        open=_ticks(open_),
        high=_ticks(high),
        low=_ticks(low),
        close=_ticks(close),
        adj_close=_ticks(close),
        volume=rng.randint(100_000, 20_000_000),
    )


def _ticks(value: float) -> Decimal:
    return Decimal(max(int(value), 1)).scaleb(-4)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
