"""Every runtime statement of the refresh (worker/refresh.py) and its daily schedule
(worker/schedule.py), named after its operation. Positional ($n) parameters: asyncpg.
"""

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

# The symbols that are behind session $1: active (or no status) without a price on or after it,
# host rows with no prices at all included, and pending rows without prices (a live onboarding
# job keeps them: ON CONFLICT below), restricted to $2 when not NULL. Rows whose spelling the queue refuses (the host inserts rows itself) are left out rather
# than failing the whole batch; BEHIND_INVALID counts them.
BEHIND = """
SELECT u.symbol, u.last_price_date
FROM symbol_universe AS u
WHERE (coalesce(u.status, 'active') = 'active' AND coalesce(u.last_price_date < $1, true)
       OR u.status = 'pending' AND u.last_price_date IS NULL)
  AND ($2::text[] IS NULL OR u.symbol = ANY($2::text[]))
  AND u.symbol ~ '^[A-Z0-9.^=/-]{1,20}$'
ORDER BY u.last_price_date NULLS FIRST, u.symbol
"""

BEHIND_INVALID = """
SELECT count(*)
FROM symbol_universe AS u
WHERE (coalesce(u.status, 'active') = 'active' AND coalesce(u.last_price_date < $1, true)
       OR u.status = 'pending' AND u.last_price_date IS NULL)
  AND ($2::text[] IS NULL OR u.symbol = ANY($2::text[]))
  AND u.symbol !~ '^[A-Z0-9.^=/-]{1,20}$'
"""

# Enqueue a refresh job for each symbol behind session $1 (as BEHIND). A symbol with a live job
# keeps it (one live job per symbol): a pending onboarding already brings it current. Returns
# one row per job created, oldest data first (that is also their claim order).
ENQUEUE_REFRESH = f"""
INSERT INTO symbol_onboarding_queue (symbol, kind, priority)
SELECT symbol, 'refresh', 'normal'
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
