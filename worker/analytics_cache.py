"""The import path hosts already use for the portfolio analytics cache; it lives in worker.host.analytics_cache."""

from worker.host.analytics_cache import (
    CACHE_KEY_VERSION,
    CacheDataError,
    Position,
    PositionLike,
    cache_key,
    delete_expired,
    encode,
    get,
    invalidate,
    put,
    sweep_expired,
)

__all__ = [
    "CACHE_KEY_VERSION",
    "CacheDataError",
    "Position",
    "PositionLike",
    "cache_key",
    "delete_expired",
    "encode",
    "get",
    "invalidate",
    "put",
    "sweep_expired",
]
