"""Every runtime statement for prices and price sources, named after its operation.

Run by worker/jobs/onboarding.py (the write transaction), worker/prices/ratelimit.py (pauses and the
request schedule) and worker/prices/database.py (reading `market_data_cache`). Positional ($n)
parameters: they run on asyncpg directly.
"""

# Store a batch, in one statement (one round trip; the job's transaction adds the completion):
# 1. the symbol's universe row becomes active (created if missing: the enqueue trigger normally
#    made it; only a pending, error, active or NULL status becomes active: a delisted symbol
#    stays delisted), with last_price_date the newest stored date: the newest of the rows already stored
#    (this statement's snapshot) and of the batch; the host's descriptive columns are filled only
#    while NULL (the host's values win): first_seen_date with $10 (the day the symbol first
#    reached the worker: its job's creation) and asset_type with $11 (what the provider said);
# 2. the bars are upserted, set-based from parallel column arrays. Providers rewrite adjusted
#    history, so an existing row is updated, but only when a value differs (an unchanged row is
#    not rewritten: no dead tuple, no WAL). A value the serving source lacks (NULL: Polygon and
#    FMP have no adjusted close) keeps the stored one, so a fallback source never erases better
#    data; close_price (NOT NULL) always comes from the new source. With $9 false (a source that
#    never replaces stored rows: synthetic) existing rows are left alone and only new ones added.
# Prices travel as whole ten-thousandths in bigint arrays ($3..$7): asyncpg encodes those about
# twice as fast as Decimal -> numeric, and `ticks * 0.0001` is exact in numeric arithmetic.
# The foreign key from the prices to the universe row is checked at the end of the statement, so
# a universe row created by the CTE satisfies it. Returns the rows written and last_price_date.
STORE_PRICES = """
WITH incoming AS (
    SELECT price_date, open_ticks * 0.0001 AS open_price, high_ticks * 0.0001 AS high_price,
           low_ticks * 0.0001 AS low_price, close_ticks * 0.0001 AS close_price,
           adj_close_ticks * 0.0001 AS adj_close_price, volume
    FROM unnest($2::date[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::bigint[], $8::bigint[])
         AS t(price_date, open_ticks, high_ticks, low_ticks, close_ticks, adj_close_ticks, volume)
), activated AS (
    INSERT INTO symbol_universe AS u
        (symbol, status, added_source, last_price_date, first_seen_date, asset_type)
    VALUES ($1::varchar, 'active', 'onboarding',
            greatest((SELECT max(price_date) FROM symbol_prices_daily
                      WHERE symbol = $1::varchar),
                     (SELECT max(price_date) FROM incoming)),
            $10::date, $11::varchar)
    ON CONFLICT (symbol) DO UPDATE
    SET status = CASE WHEN u.status IS NULL OR u.status IN ('pending', 'error', 'active')
                      THEN 'active' ELSE u.status END,
        last_price_date = EXCLUDED.last_price_date,
        first_seen_date = coalesce(u.first_seen_date, EXCLUDED.first_seen_date),
        asset_type = coalesce(u.asset_type, EXCLUDED.asset_type),
        updated_at = now()
    RETURNING u.last_price_date
), written AS (
    INSERT INTO symbol_prices_daily AS p
        (symbol, price_date, open_price, high_price, low_price, close_price, adj_close_price,
         volume)
    SELECT $1::varchar, price_date, open_price, high_price, low_price, close_price,
           adj_close_price, volume
    FROM incoming
    ON CONFLICT (symbol, price_date) DO UPDATE
    SET open_price = coalesce(EXCLUDED.open_price, p.open_price),
        high_price = coalesce(EXCLUDED.high_price, p.high_price),
        low_price = coalesce(EXCLUDED.low_price, p.low_price),
        close_price = EXCLUDED.close_price,
        adj_close_price = coalesce(EXCLUDED.adj_close_price, p.adj_close_price),
        volume = coalesce(EXCLUDED.volume, p.volume)
    WHERE $9::boolean
      AND (p.open_price, p.high_price, p.low_price, p.close_price, p.adj_close_price, p.volume)
          IS DISTINCT FROM
          (coalesce(EXCLUDED.open_price, p.open_price), coalesce(EXCLUDED.high_price, p.high_price),
           coalesce(EXCLUDED.low_price, p.low_price), EXCLUDED.close_price,
           coalesce(EXCLUDED.adj_close_price, p.adj_close_price),
           coalesce(EXCLUDED.volume, p.volume))
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS rows_written,
       (SELECT last_price_date FROM activated) AS last_price_date
"""

# A refresh that found the symbol's history re-adjusted replaces all of it: this runs first, in
# the transaction that stores the whole re-fetched lookback (worker/jobs/refresh.py).
DELETE_PRICES = "DELETE FROM symbol_prices_daily WHERE symbol = $1"

# The `synthetic` source: the symbol's stored rows, to tell its own generated bars from real ones.
STORED_PRICES = """
SELECT price_date, open_price, high_price, low_price, close_price, adj_close_price, volume
FROM symbol_prices_daily
WHERE symbol = $1
ORDER BY price_date
"""

# The `database` source: the symbol's rows already in the legacy cache, within the window, under
# any of its spellings $1 (worker/prices/spelling.py: the enqueued one first, then BRK.B, BRK-B,
# BRK/B). Per date the rows come in reverse order of $1 and the last one wins, so the enqueued
# spelling beats another spelling's row of that date.
CACHED_PRICES = """
SELECT date, open, high, low, close, volume
FROM market_data_cache
WHERE symbol = ANY($1::varchar[]) AND date BETWEEN $2 AND $3
ORDER BY date, array_position($1::varchar[], symbol) DESC
"""

# The paused sources among $1, with the seconds left, at most a day: a job deferred behind a long
# operator pause (or one until resumed, worker/sql/control.py) looks again daily, whatever
# happens to the resume's wake-up, and the deferral stays a sane interval.
PAUSED_SOURCES = """
SELECT source, least(extract(epoch FROM paused_until - now()), 86400)::float8 AS paused_s,
       pause_reason
FROM price_source_state
WHERE source = ANY($1::text[]) AND paused_until > now()
"""

# Pause source $1 for $2 seconds because of $3. A longer pause already recorded wins (with its
# reason, and who made it: an operator's, worker/sql/control.py): several workers hitting the same
# limit must not shorten each other's pauses, nor an operator's.
PAUSE_SOURCE = """
INSERT INTO price_source_state AS s (source, paused_until, pause_reason, updated_at)
VALUES ($1, now() + make_interval(secs => $2), $3, now())
ON CONFLICT (source) DO UPDATE
SET paused_until = greatest(s.paused_until, EXCLUDED.paused_until),
    pause_reason = CASE WHEN s.paused_until > EXCLUDED.paused_until
                        THEN s.pause_reason ELSE EXCLUDED.pause_reason END,
    paused_by = CASE WHEN s.paused_until > EXCLUDED.paused_until THEN s.paused_by END,
    paused_at = CASE WHEN s.paused_until > EXCLUDED.paused_until THEN s.paused_at ELSE now() END,
    updated_at = now()
RETURNING extract(epoch FROM paused_until - now())::float8 AS paused_s, pause_reason
"""

RESUME_SOURCE = """
UPDATE price_source_state
SET paused_until = NULL, pause_reason = NULL, paused_by = NULL, paused_at = NULL,
    updated_at = now()
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

# Reserve source $1's next free slot however far away it is (spacing $2 seconds), for a job that
# is deferred until exactly that slot (see SourceGate.reserve_ahead); returns how long until it.
# No row comes back when the source is paused.
RESERVE_AHEAD = """
INSERT INTO price_source_state AS s (source, next_request_at, updated_at)
VALUES ($1, now() + make_interval(secs => $2), now())
ON CONFLICT (source) DO UPDATE
SET next_request_at = greatest(s.next_request_at, now()) + make_interval(secs => $2),
    updated_at = now()
WHERE NOT coalesce(s.paused_until > now(), false)
RETURNING extract(epoch FROM s.next_request_at - now())::float8 - $2 AS wait_s
"""

# Why RESERVE_REQUEST refused: the pause left, and the wait for the next slot, in seconds.
SOURCE_STATE = """
SELECT least(greatest(extract(epoch FROM paused_until - now()), 0), 86400)::float8 AS paused_s,
       pause_reason,
       greatest(extract(epoch FROM next_request_at - now()), 0)::float8 AS wait_s
FROM price_source_state
WHERE source = $1
"""

# The circuit breaker. One more transient failure of source $1 (a job whose in-process retries
# all failed); returns the failures in a row so far.
RECORD_FAILURE = """
INSERT INTO price_source_state AS s (source, consecutive_failures, updated_at)
VALUES ($1, 1, now())
ON CONFLICT (source) DO UPDATE
SET consecutive_failures = s.consecutive_failures + 1, updated_at = now()
RETURNING consecutive_failures
"""

# Source $1 answered: the run of failures is over. Writes nothing when there was none.
RESET_FAILURES = """
UPDATE price_source_state
SET consecutive_failures = 0, updated_at = now()
WHERE source = $1 AND consecutive_failures > 0
"""

# `python -m worker prices SYMBOL`: the symbol's universe row, and its newest stored bars.
SYMBOL_STATUS = """
SELECT status, last_price_date,
       (SELECT count(*) FROM symbol_prices_daily p WHERE p.symbol = u.symbol) AS bars
FROM symbol_universe u
WHERE symbol = $1
"""

LATEST_PRICES = """
SELECT price_date, open_price, high_price, low_price, close_price, adj_close_price, volume
FROM symbol_prices_daily
WHERE symbol = $1
ORDER BY price_date DESC
LIMIT $2
"""
