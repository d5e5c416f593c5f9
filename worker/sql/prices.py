"""Every runtime statement for prices and price sources, named after its operation.

Run by worker/onboarding.py (the write transaction), worker/prices/ratelimit.py (pauses and the
request schedule) and worker/prices/database.py (reading `market_data_cache`). Positional ($n)
parameters: they run on asyncpg directly.
"""

# Step 1 of a job: the symbol must have a universe row (the queue's trigger normally made it at
# enqueue). Existing rows are never overwritten.
ENSURE_SYMBOL = """
INSERT INTO symbol_universe (symbol, status, added_source)
VALUES ($1, 'pending', 'onboarding')
ON CONFLICT (symbol) DO NOTHING
"""

# The whole batch in one set-based statement: the arrays are parallel columns. Providers rewrite
# adjusted history, so a row that exists is updated, but only when a value differs (an unchanged
# row is not rewritten: no dead tuple, no WAL).
UPSERT_PRICES = """
INSERT INTO symbol_prices_daily AS p
    (symbol, price_date, open_price, high_price, low_price, close_price, adj_close_price, volume)
SELECT $1, t.price_date, t.open_price, t.high_price, t.low_price, t.close_price,
       t.adj_close_price, t.volume
FROM unnest($2::date[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
            $7::numeric[], $8::bigint[])
     AS t(price_date, open_price, high_price, low_price, close_price, adj_close_price, volume)
ON CONFLICT (symbol, price_date) DO UPDATE
SET open_price = EXCLUDED.open_price,
    high_price = EXCLUDED.high_price,
    low_price = EXCLUDED.low_price,
    close_price = EXCLUDED.close_price,
    adj_close_price = EXCLUDED.adj_close_price,
    volume = EXCLUDED.volume
WHERE (p.open_price, p.high_price, p.low_price, p.close_price, p.adj_close_price, p.volume)
      IS DISTINCT FROM
      (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price, EXCLUDED.close_price,
       EXCLUDED.adj_close_price, EXCLUDED.volume)
"""

# After the upsert, in the same transaction: the symbol is usable, up to its newest stored date.
MARK_ACTIVE = """
UPDATE symbol_universe
SET status = 'active',
    last_price_date = (SELECT max(price_date) FROM symbol_prices_daily WHERE symbol = $1),
    updated_at = now()
WHERE symbol = $1
RETURNING last_price_date
"""

# A job that failed for good: a pending symbol becomes 'error' (a missing one is created so);
# an active, delisted or already errored symbol keeps its status.
MARK_ERROR = """
INSERT INTO symbol_universe AS u (symbol, status, added_source)
VALUES ($1, 'error', 'onboarding')
ON CONFLICT (symbol) DO UPDATE
SET status = 'error', updated_at = now()
WHERE u.status = 'pending'
"""

# The `database` source: the symbol's rows already in the legacy cache, within the window.
CACHED_PRICES = """
SELECT date, open, high, low, close, volume
FROM market_data_cache
WHERE symbol = $1 AND date BETWEEN $2 AND $3
ORDER BY date
"""

# The paused sources among $1, with the seconds left.
PAUSED_SOURCES = """
SELECT source, extract(epoch FROM paused_until - now())::float8 AS paused_s, pause_reason
FROM price_source_state
WHERE source = ANY($1::text[]) AND paused_until > now()
"""

# Pause source $1 for $2 seconds because of $3. A longer pause already recorded wins (with its
# reason): several workers hitting the same limit must not shorten each other's pauses.
PAUSE_SOURCE = """
INSERT INTO price_source_state AS s (source, paused_until, pause_reason, updated_at)
VALUES ($1, now() + make_interval(secs => $2), $3, now())
ON CONFLICT (source) DO UPDATE
SET paused_until = greatest(s.paused_until, EXCLUDED.paused_until),
    pause_reason = CASE WHEN s.paused_until > EXCLUDED.paused_until
                        THEN s.pause_reason ELSE EXCLUDED.pause_reason END,
    updated_at = now()
RETURNING extract(epoch FROM paused_until - now())::float8 AS paused_s, pause_reason
"""

RESUME_SOURCE = """
UPDATE price_source_state
SET paused_until = NULL, pause_reason = NULL, updated_at = now()
WHERE source = $1 AND paused_until > now()
RETURNING source
"""

# Reserve the next request slot of source $1, whose requests are spaced $2 seconds apart; returns
# how long to wait for it. `next_request_at` is the earliest start of the next request: the slot
# starts at greatest(next_request_at, now()), and the one after it $2 seconds later. No row comes
# back (nothing is reserved) when the slot is more than $3 seconds away or the source is paused.
# The row lock taken by ON CONFLICT serialises concurrent reservations across processes.
RESERVE_REQUEST = """
INSERT INTO price_source_state AS s (source, next_request_at, updated_at)
VALUES ($1, now() + make_interval(secs => $2), now())
ON CONFLICT (source) DO UPDATE
SET next_request_at = greatest(s.next_request_at, now()) + make_interval(secs => $2),
    updated_at = now()
WHERE greatest(s.next_request_at, now()) <= now() + make_interval(secs => $3)
  AND NOT coalesce(s.paused_until > now(), false)
RETURNING extract(epoch FROM s.next_request_at - now())::float8 - $2 AS wait_s
"""

# Why RESERVE_REQUEST refused: the pause left, and the wait for the next slot, in seconds.
SOURCE_STATE = """
SELECT greatest(extract(epoch FROM paused_until - now()), 0)::float8 AS paused_s,
       pause_reason,
       greatest(extract(epoch FROM next_request_at - now()), 0)::float8 AS wait_s
FROM price_source_state
WHERE source = $1
"""
