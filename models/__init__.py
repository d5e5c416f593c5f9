"""Every mapped class, so `migrations/env.py` needs one import."""

from worker.models.accounts import Portfolio, User
from worker.models.adoption import BaselineTable
from worker.models.analytics_cache import PortfolioAnalyticsCache
from worker.models.base import Base
from worker.models.onboarding_queue import SymbolOnboardingQueue
from worker.models.price_sources import PriceSourceState, SymbolOnboardingQueuePause
from worker.models.refresh import (
    PriceBulkBar,
    PriceBulkDay,
    RefreshScheduleRun,
    SymbolRefreshState,
)
from worker.models.symbols import (
    HostPriceDisagreement,
    MarketDataCache,
    SymbolFactorExposure,
    SymbolFactorWait,
    SymbolPricesDaily,
    SymbolUniverse,
)
from worker.models.workers import SymbolOnboardingWorker

__all__ = [
    "Base",
    "BaselineTable",
    "HostPriceDisagreement",
    "MarketDataCache",
    "Portfolio",
    "PortfolioAnalyticsCache",
    "PriceBulkBar",
    "PriceBulkDay",
    "PriceSourceState",
    "RefreshScheduleRun",
    "SymbolFactorExposure",
    "SymbolFactorWait",
    "SymbolOnboardingQueue",
    "SymbolOnboardingQueuePause",
    "SymbolOnboardingWorker",
    "SymbolPricesDaily",
    "SymbolRefreshState",
    "SymbolUniverse",
    "User",
]
