"""Every runtime statement of the factor betas (worker/factors/store.py runs them).

Positional ($n) parameters: they run on asyncpg, inside the onboarding job's transaction or the
`factors` command's batches. Days travel as integers (days since 1970-01-01) and betas as
float8 arrays, NaN for "not computed": both encode fast, and the statements turn them back into
dates and NUMERIC (rounded to the column's scale) or NULL.
"""

from worker.factors.betas import FACTORS

EPOCH = "DATE '1970-01-01'"
WIDE_COLUMNS = tuple(f.column for f in FACTORS)

# The shape of symbol_factor_exposures: its columns (with NOT NULL and default facts) and its
# unique indexes, from the catalog. to_regclass follows search_path, as the writes do.
TABLE_COLUMNS = """
SELECT a.attname::text AS name, a.attnotnull AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
FROM pg_attribute AS a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
"""
UNIQUE_KEYS = """
SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
FROM pg_index AS i
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
GROUP BY i.indexrelid
"""

# The host's factor ids, by name ($1: the names the worker computes).
FACTOR_IDS = """
SELECT name::text AS name, id FROM factor_definitions WHERE name = ANY($1::text[])
"""

# Serialises reference-ETF jobs against every other job's factor step (see store.py,
# lock_references): shared by ordinary jobs, exclusive by a reference ETF's job.
REFERENCE_LOCK_KEY = 0x53594D464143  # "SYMFAC"
LOCK_REFERENCES_SHARED = "SELECT pg_advisory_xact_lock_shared($1)"
LOCK_REFERENCES_EXCLUSIVE = "SELECT pg_advisory_xact_lock($1)"

# Per reference ETF ($1): its latest stored price date (NULL: none), from the prices
# themselves (one backward step of the primary key each), not from symbol_universe; and whether
# symbol $2 is waiting for reference data (so that it stops waiting only when it was).
REFERENCE_DATES = """
SELECT r.symbol::text AS symbol,
       (SELECT max(p.price_date) FROM symbol_prices_daily AS p WHERE p.symbol = r.symbol)
           AS last_price_date,
       EXISTS (SELECT 1 FROM symbol_factor_waits AS w WHERE w.symbol = $2) AS waiting
FROM unnest($1::varchar[]) AS r(symbol)
"""

# Bring reference ETFs ($1) current at high priority: a refresh for an ETF that has prices (a
# few sessions, not the year an onboarding fetches), an onboarding for one without; a live job is
# reused and raised to high (never turned into another kind), so concurrent jobs needing the same
# ETF enqueue it once. Rows in symbol order, as every enqueue of several symbols, so two such
# statements cannot deadlock on each other's rows.
ENQUEUE_REFERENCES = """
INSERT INTO symbol_onboarding_queue AS q (symbol, kind, priority)
SELECT r.symbol,
       CASE WHEN EXISTS (SELECT 1 FROM symbol_prices_daily AS p WHERE p.symbol = r.symbol)
            THEN 'refresh' ELSE 'onboarding' END,
       'high'
FROM unnest($1::varchar[]) AS r(symbol)
ORDER BY r.symbol
ON CONFLICT (symbol) WHERE status IN ('pending', 'processing')
DO UPDATE SET priority = 'high'
WHERE q.priority <> 'high'
"""

# Symbol $1 waits for reference ETFs $2 (its prices are stored; its betas come when they land).
WAIT_FOR_REFERENCES = """
INSERT INTO symbol_factor_waits AS w (symbol, waiting_for)
VALUES ($1, $2::varchar[])
ON CONFLICT (symbol) DO UPDATE SET waiting_for = EXCLUDED.waiting_for
"""

# Up to $1 waiting symbols none of whose awaited ETFs has a live job any more: every job that
# could bring their reference data has ended (completed, or failed for good), so their betas are
# computed now from whatever landed.
READY_WAITERS = """
SELECT w.symbol::text
FROM symbol_factor_waits AS w
WHERE NOT EXISTS (
    SELECT 1 FROM symbol_onboarding_queue AS q
    WHERE q.symbol = ANY(w.waiting_for) AND q.status IN ('pending', 'processing'))
ORDER BY w.symbol
LIMIT $1
"""

STOP_WAITING = "DELETE FROM symbol_factor_waits WHERE symbol = ANY($1::varchar[])"

# Each symbol's ($1) price series in the window that ends on the latest date on or before $2
# (NULL: no limit) on which SPY has a price (the newest possible calculation date) and spans $3
# days, or, when $4 is set and SPY has that many prices in it, only from `recent_from`, the date
# of SPY's $4-th latest price: the adjusted close, else the close, as float8, with its dates as
# day numbers (int4). One row per symbol that has prices there, none at all when SPY has none.
# Per symbol, one range scan of the primary key. The reference ETFs are read like any symbol.
#
# Speed, measured by bench/factors.py: the arrays travel in PostgreSQL's binary array format
# (array_send), which numpy reads as it is instead of asyncpg building a Python object per
# element (3x faster for 2,000 symbols), without their 20-byte headers, so that numpy reads
# every symbol's elements in one call (store.py, binary_elements); the aggregates are unordered
# (PostgreSQL 15 sorts for an ORDER BY inside an aggregate): both arrays are built from the same
# rows in the same order, so they stay aligned, and the reader places each price by its date;
# the cut reads the 191 dates the longest regression can use instead of a year's 252 (the
# caller reads again without it the few symbols whose windows the cut left short:
# worker/factors/__init__.py, _recompute); a date bound costs less than a row LIMIT per symbol,
# and HAVING tests the row count, where a filter on the arrays would build them twice.
READ_PANEL = f"""
WITH window_end AS (
    SELECT max(price_date) AS day FROM symbol_prices_daily
    WHERE symbol = 'SPY' AND price_date <= coalesce($2::date, 'infinity'::date)
), bounds AS MATERIALIZED (
    SELECT e.day, e.day - $3::int AS before_window,
           (SELECT price_date FROM symbol_prices_daily
            WHERE symbol = 'SPY' AND price_date <= e.day AND price_date > e.day - $3::int
              AND $4::int IS NOT NULL
            ORDER BY price_date DESC OFFSET $4::int - 1 LIMIT 1) AS recent_from
    FROM window_end AS e
)
SELECT s.symbol::text AS symbol, b.recent_from, p.days, p.prices
FROM bounds AS b
CROSS JOIN unnest($1::varchar[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT substring(array_send(array_agg(price_date - {EPOCH})) FROM 21) AS days,
           substring(
               array_send(array_agg(coalesce(adj_close_price, close_price)::float8)) FROM 21
           ) AS prices
    FROM symbol_prices_daily
    WHERE symbol = s.symbol AND price_date <= b.day AND price_date > b.before_window
      AND price_date >= coalesce(b.recent_from, b.before_window)
    HAVING count(*) > 0
) AS p
"""

# Active symbols to recompute (every one, or those in $1), in symbol order.
ACTIVE_SYMBOLS = """
SELECT symbol::text FROM symbol_universe
WHERE status = 'active' AND ($1::varchar[] IS NULL OR symbol = ANY($1::varchar[]))
ORDER BY symbol
"""

# Requested symbols that are not active (unknown, pending, error, delisted): reported.
NOT_ACTIVE = """
SELECT s.symbol::text, u.status
FROM unnest($1::varchar[]) AS s(symbol)
LEFT JOIN symbol_universe AS u ON u.symbol = s.symbol
WHERE u.status IS DISTINCT FROM 'active'
ORDER BY s.symbol
"""

# last_factor_date moves to the new calculation date, never back (an --as-of run in the past
# does not make newer betas look missing). First in a batch's transaction: the universe rows
# are locked before the exposure rows, in the same order as the onboarding job's transaction.
ADVANCE_LAST_FACTOR_DATE = f"""
UPDATE symbol_universe AS u
SET last_factor_date = greatest(u.last_factor_date, {EPOCH} + t.day), updated_at = now()
FROM unnest($1::varchar[], $2::int[]) AS t(symbol, day)
WHERE u.symbol = t.symbol
"""


def _wide_upsert() -> str:
    arrays = ", ".join(f"${i + 3}::float8[]" for i in range(len(WIDE_COLUMNS)))
    values = ", ".join(f"round(nullif(t.{c}, 'NaN')::numeric, 6)" for c in WIDE_COLUMNS)
    updates = ",\n    ".join(f"{c} = EXCLUDED.{c}" for c in WIDE_COLUMNS)
    return f"""
INSERT INTO symbol_factor_exposures AS e (symbol, calculation_date, {", ".join(WIDE_COLUMNS)})
SELECT t.symbol, {EPOCH} + t.day, {values}
FROM unnest($1::varchar[], $2::int[], {arrays})
     AS t(symbol, day, {", ".join(WIDE_COLUMNS)})
ON CONFLICT (symbol, calculation_date) DO UPDATE
SET {updates}
"""


# Wide table (a fresh install): one row per (symbol, calculation date), upserted; a beta that
# was not computed is NULL. $1 symbols, $2 days, then one float8[] per factor column.
UPSERT_WIDE = _wide_upsert()

# Long table (the host's): one row per computed factor, upserted on (symbol, factor_id,
# calculation_date). A factor stored earlier for the same symbol and date that is not computed
# now is deleted ($11: the ids of every factor the worker computes), so a date's rows are exactly
# this computation's. The DELETE and the INSERT touch disjoint rows, so one statement does both.
UPSERT_LONG = f"""
WITH incoming AS (
    SELECT t.symbol, {EPOCH} + t.day AS calculation_date, t.factor_id,
           round(t.beta::numeric, 6) AS beta_value,
           round(nullif(t.r_squared, 'NaN')::numeric, 4) AS r_squared,
           t.observations, t.quality_flag, t.calculation_method,
           nullif(t.regularization_alpha, 'NaN')::numeric AS regularization_alpha,
           t.regression_window_days
    FROM unnest($1::varchar[], $2::int[], $3::uuid[], $4::float8[], $5::float8[], $6::int[],
                $7::varchar[], $8::varchar[], $9::float8[], $10::int[])
         AS t(symbol, day, factor_id, beta, r_squared, observations, quality_flag,
              calculation_method, regularization_alpha, regression_window_days)
), dropped AS (
    DELETE FROM symbol_factor_exposures AS e
    USING (SELECT DISTINCT symbol, calculation_date FROM incoming) AS k
    WHERE e.symbol = k.symbol AND e.calculation_date = k.calculation_date
      AND e.factor_id = ANY($11::uuid[])
      AND NOT EXISTS (SELECT 1 FROM incoming AS i
                      WHERE i.symbol = e.symbol AND i.calculation_date = e.calculation_date
                        AND i.factor_id = e.factor_id)
)
INSERT INTO symbol_factor_exposures AS e
    (symbol, factor_id, calculation_date, beta_value, r_squared, observations, quality_flag,
     calculation_method, regularization_alpha, regression_window_days)
SELECT symbol, factor_id, calculation_date, beta_value, r_squared, observations, quality_flag,
       calculation_method, regularization_alpha, regression_window_days
FROM incoming
ON CONFLICT (symbol, factor_id, calculation_date) DO UPDATE
SET beta_value = EXCLUDED.beta_value, r_squared = EXCLUDED.r_squared,
    observations = EXCLUDED.observations, quality_flag = EXCLUDED.quality_flag,
    calculation_method = EXCLUDED.calculation_method,
    regularization_alpha = EXCLUDED.regularization_alpha,
    regression_window_days = EXCLUDED.regression_window_days
"""
