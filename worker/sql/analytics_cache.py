"""Every statement of the portfolio analytics cache (worker/host/analytics_cache.py runs them).

Named parameters: they run through SQLAlchemy, on the backend's session or connection (the
housekeeping sweep's one statement also has a positional twin for asyncpg). Each
invalidate variant is its own statement rather than one with `:x IS NULL OR ...`: a generic plan
of that form could not use `idx_cache_portfolio`, and would scan the table on every call.
"""

# Expiry is judged by the database clock, like put's valid_until, so hosts' clocks never matter.
# The JSON comes back as text and is decoded in Python, the same way whatever codecs the
# connection has.
GET = """
SELECT cached_data::text
FROM portfolio_analytics_cache
WHERE portfolio_id = :portfolio_id AND cache_type = :cache_type AND cache_key = :cache_key
  AND valid_until > now()
"""

# An atomic upsert on the unique key: concurrent puts of one key leave one row (the last
# writer's value), never a unique violation. created_at restarts: it is when the value was made.
PUT = """
INSERT INTO portfolio_analytics_cache (portfolio_id, cache_type, cache_key, cached_data, valid_until)
VALUES (:portfolio_id, :cache_type, :cache_key, CAST(:cached_data AS jsonb),
        now() + CAST(:ttl AS interval))
ON CONFLICT (portfolio_id, cache_type, cache_key) DO UPDATE
SET cached_data = EXCLUDED.cached_data, valid_until = EXCLUDED.valid_until, created_at = now()
"""

INVALIDATE_PORTFOLIO_TYPE = """
DELETE FROM portfolio_analytics_cache
WHERE portfolio_id = :portfolio_id AND cache_type = :cache_type
"""

INVALIDATE_PORTFOLIO = """
DELETE FROM portfolio_analytics_cache WHERE portfolio_id = :portfolio_id
"""

INVALIDATE_TYPE = """
DELETE FROM portfolio_analytics_cache WHERE cache_type = :cache_type
"""

INVALIDATE_ALL = """
DELETE FROM portfolio_analytics_cache
"""

# One bounded batch of expired rows, oldest first, through idx_cache_valid. SKIP LOCKED: a row a
# put is refreshing right now is left alone (and, once refreshed, is no longer expired).
DELETE_EXPIRED = """
WITH expired AS (
    SELECT id
    FROM portfolio_analytics_cache
    WHERE valid_until <= now()
    ORDER BY valid_until
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
)
DELETE FROM portfolio_analytics_cache AS c
USING expired
WHERE c.id = expired.id
"""
# The same statement for the worker's housekeeping sweep, which runs on asyncpg directly.
DELETE_EXPIRED_POSITIONAL = DELETE_EXPIRED.replace(":batch_size", "$1")
