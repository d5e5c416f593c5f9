"""Every runtime statement of the refresh (worker/jobs/refresh.py) and its daily schedule
(worker/jobs/schedule.py), named after its operation. Positional ($n) parameters: asyncpg.
"""

from worker.models.onboarding_queue import SYMBOL_PATTERN

# What a refresh job needs to know about its symbol (no row: the host deleted it).
REFRESH_TARGET = """
SELECT u.status, u.last_price_date, coalesce(s.consecutive_misses, 0) AS misses
FROM symbol_universe AS u
LEFT JOIN symbol_refresh_state AS s ON s.symbol = u.symbol
WHERE u.symbol = $1
"""

# The stored rows of the overlap, to compare with what the provider now says.
STORED_OVERLAP = """
SELECT price_date, close_price, adj_close_price
FROM symbol_prices_daily
WHERE symbol = $1 AND price_date BETWEEN $2 AND $3
ORDER BY price_date
"""

# Every source called symbol $1 unknown or delisted ($2: what they said); returns the misses in a
# row so far. The universe row must exist (a deleted symbol is not refreshed).
RECORD_MISS = """
INSERT INTO symbol_refresh_state AS s (symbol, consecutive_misses, last_miss_reason, updated_at)
VALUES ($1, 1, $2, now())
ON CONFLICT (symbol) DO UPDATE
SET consecutive_misses = s.consecutive_misses + 1, last_miss_reason = EXCLUDED.last_miss_reason,
    updated_at = now()
RETURNING consecutive_misses
"""

# A source served the symbol: its run of misses is over. Writes nothing when there was none.
RESET_MISSES = """
UPDATE symbol_refresh_state
SET consecutive_misses = 0, last_miss_reason = NULL, updated_at = now()
WHERE symbol = $1 AND consecutive_misses > 0
"""

# The symbol is delisted: no longer refreshed, its prices kept. Where the host's table has
# is_active, revision 0008's trigger sets it false.
DELIST = "UPDATE symbol_universe SET status = 'delisted', updated_at = now() WHERE symbol = $1"

# Behind session $1 (alias `u` for symbol_universe): active (or no status) without a price on
# or after it, host rows with no prices at all included, and pending rows without prices (a
# live onboarding job keeps them: ON CONFLICT below). Also status's REFRESH_FACTS.
BEHIND_WHERE = """(coalesce(u.status, 'active') = 'active' AND coalesce(u.last_price_date < $1, true)
       OR u.status = 'pending' AND u.last_price_date IS NULL)"""
# The queue's spelling rule (worker/core/symbols.py, revision 0006's trigger): the pattern, and at
# least one letter or digit.
VALID_SYMBOL = f"(u.symbol ~ '{SYMBOL_PATTERN}' AND u.symbol ~ '[A-Z0-9]')"

# The symbols behind session $1, restricted to $2 when not NULL. Rows whose spelling the queue
# refuses (the host inserts rows itself) are left out rather than failing the whole batch;
# BEHIND_INVALID counts them.
BEHIND = f"""
SELECT u.symbol, u.last_price_date
FROM symbol_universe AS u
WHERE {BEHIND_WHERE}
  AND ($2::text[] IS NULL OR u.symbol = ANY($2::text[]))
  AND {VALID_SYMBOL}
ORDER BY u.last_price_date NULLS FIRST, u.symbol
"""

BEHIND_INVALID = f"""
SELECT count(*)
FROM symbol_universe AS u
WHERE {BEHIND_WHERE}
  AND ($2::text[] IS NULL OR u.symbol = ANY($2::text[]))
  AND NOT {VALID_SYMBOL}
"""

# Enqueue a refresh job for each symbol behind session $1 (as BEHIND). A symbol with a live job
# keeps it (one live job per symbol): a pending onboarding already brings it current. The
# reference ETFs ($3) at high priority, so they are claimed ahead of the symbols whose betas need
# their session (worker/factors). Returns one row per job created, oldest data first.
ENQUEUE_REFRESH = f"""
INSERT INTO symbol_onboarding_queue (symbol, kind, priority)
SELECT symbol, 'refresh', CASE WHEN symbol = ANY($3::text[]) THEN 'high' ELSE 'normal' END
FROM ({BEHIND}) AS behind
ON CONFLICT (symbol) WHERE status IN ('pending', 'processing') DO NOTHING
RETURNING id
"""

# The daily batch is made by one worker at a time (a transaction-level advisory lock, which also
# holds behind a transaction pooler) and once per trading day: the row below is inserted in the
# same transaction as the batch, so a crash in between leaves neither.
SCHEDULE_LOCK_KEY = 0x53594D524546  # "SYMREF"
TRY_LOCK_SCHEDULE = "SELECT pg_try_advisory_xact_lock($1)"

SCHEDULE_DONE = "SELECT 1 FROM refresh_schedule_runs WHERE trading_day = $1"

RECORD_SCHEDULE_RUN = """
INSERT INTO refresh_schedule_runs (trading_day, through_session, jobs, worker_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (trading_day) DO NOTHING
RETURNING trading_day
"""


# --- bulk refresh (worker/jobs/bulk.py): grouped daily days shared through the database -------------

# The sessions among $2 whose grouped bars of source $1 are loaded.
BULK_DAYS_LOADED = """
SELECT coalesce(array_agg(price_date), '{}')
FROM price_bulk_days
WHERE source = $1 AND price_date = ANY($2::date[]) AND loaded_at IS NOT NULL
"""

# Take the lease of day $2 for worker $3 for $4 seconds: 'leased' (ours: fetch it), 'loaded'
# (already there), or NULL (another worker's live lease: wait). An expired lease is taken over.
LEASE_BULK_DAY = """
WITH taken AS (
    INSERT INTO price_bulk_days AS d (source, price_date, leased_by, lease_until)
    VALUES ($1, $2, $3, now() + make_interval(secs => $4))
    ON CONFLICT (source, price_date) DO UPDATE
    SET leased_by = EXCLUDED.leased_by, lease_until = EXCLUDED.lease_until
    WHERE d.loaded_at IS NULL AND (d.lease_until IS NULL OR d.lease_until < now())
    RETURNING 'leased'::text AS state
)
SELECT state FROM taken
UNION ALL
SELECT 'loaded' FROM price_bulk_days WHERE source = $1 AND price_date = $2 AND loaded_at IS NOT NULL
LIMIT 1
"""

# The fetch failed: give the lease back so the next job tries again.
UNLEASE_BULK_DAY = """
UPDATE price_bulk_days SET leased_by = NULL, lease_until = NULL
WHERE source = $1 AND price_date = $2 AND leased_by = $3 AND loaded_at IS NULL
"""

# Store day $2's bars (parallel arrays, prices in ten-thousandths as in STORE_PRICES) of the
# symbols in symbol_universe, and mark the day loaded; fenced on the lease of worker $9 (nothing
# is stored when it was taken over). Returns the bars stored.
STORE_BULK_DAY = """
WITH marked AS (
    UPDATE price_bulk_days
    SET loaded_at = now(), tickers = cardinality($3::text[]), leased_by = NULL, lease_until = NULL
    WHERE source = $1 AND price_date = $2 AND leased_by = $9 AND loaded_at IS NULL
    RETURNING 1
), stored AS (
    INSERT INTO price_bulk_bars
        (source, symbol, price_date, open_price, high_price, low_price, close_price, volume)
    SELECT $1, t.symbol, $2, t.o * 0.0001, t.h * 0.0001, t.l * 0.0001, t.c * 0.0001, t.v
    FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
         AS t(symbol, o, h, l, c, v)
    JOIN symbol_universe AS u ON u.symbol = t.symbol
    WHERE EXISTS (SELECT 1 FROM marked)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM stored
"""

# Symbol $2's bars of source $1 on the sessions $3.
BULK_BARS = """
SELECT price_date, open_price, high_price, low_price, close_price, volume
FROM price_bulk_bars
WHERE source = $1 AND symbol = $2 AND price_date = ANY($3::date[])
ORDER BY price_date
"""

# Housekeeping: grouped days older than $1 days go, $2 bars at a time (the day rows with them).
SWEEP_BULK_DAYS = """
WITH doomed AS (
    SELECT source, symbol, price_date FROM price_bulk_bars
    WHERE price_date < current_date - $1::int
    LIMIT $2
), gone AS (
    DELETE FROM price_bulk_bars AS b
    USING doomed
    WHERE (b.source, b.symbol, b.price_date) = (doomed.source, doomed.symbol, doomed.price_date)
    RETURNING 1
), days AS (
    DELETE FROM price_bulk_days WHERE price_date < current_date - $1::int
)
SELECT count(*) FROM gone
"""
