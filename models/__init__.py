"""Every mapped class, so `migrations/env.py` needs one import."""

from models.accounts import Portfolio, User
from models.analytics_cache import PortfolioAnalyticsCache
from models.base import Base
from models.onboarding_queue import SymbolOnboardingQueue
from models.price_sources import PriceSourceState
from models.refresh import RefreshScheduleRun, SymbolRefreshState
from models.symbols import MarketDataCache, SymbolFactorExposure, SymbolPricesDaily, SymbolUniverse

__all__ = [
    "Base",
    "MarketDataCache",
    "Portfolio",
    "PortfolioAnalyticsCache",
    "PriceSourceState",
    "RefreshScheduleRun",
    "SymbolFactorExposure",
    "SymbolOnboardingQueue",
    "SymbolPricesDaily",
    "SymbolRefreshState",
    "SymbolUniverse",
    "User",
]
