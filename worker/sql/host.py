"""Every runtime statement on the host's own tables (worker/host/tables.py), named after its operation.

The host's readers never look at the worker's tables: they read `market_data_cache` for prices
and `portfolio_analytics_cache` through their `positions` (CONTEXT.md, "What the host's own code
reads"). Positional ($n) parameters: they run on asyncpg, inside the job's write transaction.
"""

# What the database offers the host fit: a `market_data_cache` the host owns (present, and not
# created by the baseline revision on an empty database, which records what it created), and a
# `positions` table next to our `portfolio_analytics_cache`.
HOST_TABLES = """
SELECT to_regclass('market_data_cache') IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM symbol_onboarding_baseline_tables
                           WHERE table_name = 'market_data_cache') AS host_price_table,
       to_regclass('market_data_cache') IS NOT NULL AS price_table,
       to_regclass('positions') IS NOT NULL
           AND to_regclass('portfolio_analytics_cache') IS NOT NULL AS positions
"""

# The columns of `positions` that the invalidation reads (a host table of another shape is not
# guessed at).
POSITION_COLUMNS = """
SELECT array_agg(attname::text)
FROM pg_attribute
WHERE attrelid = to_regclass('positions') AND attnum > 0 AND NOT attisdropped
"""

# The worker's stored bars of symbol $1 from $2 to $3 (the batch the job just stored, read back
# in its transaction: the rows as the worker now holds them, without sending the arrays twice)
# into the host's table under data_source $4, in one statement:
# - `fitting`: what the host's columns can hold. NUMERIC(12,4) holds under 10^8: a bar whose close
#   does not fit is left out (counted), an open/high/low that does not is stored NULL; volume is
#   INTEGER there, so a volume above 2^31-1 is stored NULL (counted), never wrapped;
# - `written`: upsert on the host's UNIQUE (symbol, date), a new id and timestamps for new rows.
#   Only rows written under one of the worker's data_source names ($5) are updated: a row the
#   host wrote itself is left as it is. An unchanged row is not rewritten. A value the worker
#   lacks (NULL) keeps the stored one;
# - `disagreeing`: the host's own rows of these dates whose close differs from the worker's by
#   more than a tick (read from the statement's snapshot, before the upsert), recorded in
#   host_price_disagreements; dates of this batch that agree again are removed from it.
# Returns what was written, kept and refused, and up to three disagreeing examples.
MIRROR_PRICES = """
WITH incoming AS (
    SELECT price_date, open_price AS open, high_price AS high, low_price AS low,
           close_price AS close, volume
    FROM symbol_prices_daily
    WHERE symbol = $1::varchar AND price_date BETWEEN $2::date AND $3::date
), fitting AS (
    SELECT price_date,
           CASE WHEN abs(open) < 1e8 THEN open END AS open,
           CASE WHEN abs(high) < 1e8 THEN high END AS high,
           CASE WHEN abs(low) < 1e8 THEN low END AS low,
           close,
           CASE WHEN volume BETWEEN -2147483648 AND 2147483647 THEN volume::integer END AS volume,
           volume > 2147483647 AS volume_too_large
    FROM incoming
    WHERE close < 1e8
), host_rows AS (
    SELECT m.date, m.close, m.data_source
    FROM market_data_cache AS m
    WHERE m.symbol = $1::varchar AND m.date BETWEEN $2::date AND $3::date
      AND NOT m.data_source = ANY($5::text[])
), written AS (
    INSERT INTO market_data_cache AS m
        (id, symbol, date, open, high, low, close, volume, data_source, created_at, updated_at)
    SELECT gen_random_uuid(), $1::varchar, price_date, open, high, low, close, volume, $4::varchar,
           now(), now()
    FROM fitting
    ON CONFLICT (symbol, date) DO UPDATE
    SET open = coalesce(EXCLUDED.open, m.open), high = coalesce(EXCLUDED.high, m.high),
        low = coalesce(EXCLUDED.low, m.low), close = EXCLUDED.close,
        volume = coalesce(EXCLUDED.volume, m.volume), data_source = EXCLUDED.data_source,
        updated_at = now()
    WHERE m.data_source = ANY($5::text[])
      AND (m.open, m.high, m.low, m.close, m.volume, m.data_source)
          IS DISTINCT FROM
          (coalesce(EXCLUDED.open, m.open), coalesce(EXCLUDED.high, m.high),
           coalesce(EXCLUDED.low, m.low), EXCLUDED.close, coalesce(EXCLUDED.volume, m.volume),
           EXCLUDED.data_source)
    RETURNING 1
), disagreeing AS (
    SELECT h.date, h.close AS host_close, f.close AS worker_close, h.data_source
    FROM host_rows AS h
    JOIN fitting AS f ON f.price_date = h.date
    WHERE abs(h.close - f.close) > 0.0001
), recorded AS (
    INSERT INTO host_price_disagreements AS d
        (symbol, price_date, data_source, host_close, worker_close, seen_at)
    SELECT $1::varchar, date, data_source, host_close, worker_close, now()
    FROM disagreeing
    ON CONFLICT (symbol, price_date) DO UPDATE
    SET data_source = EXCLUDED.data_source, host_close = EXCLUDED.host_close,
        worker_close = EXCLUDED.worker_close, seen_at = now()
    RETURNING 1
), agreeing AS (
    DELETE FROM host_price_disagreements AS d
    WHERE d.symbol = $1::varchar AND d.price_date BETWEEN $2::date AND $3::date
      AND NOT EXISTS (SELECT 1 FROM disagreeing AS x WHERE x.date = d.price_date)
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS rows_written,
       (SELECT count(*) FROM host_rows) AS host_rows_kept,
       (SELECT count(*) FROM disagreeing) AS host_disagrees,
       (SELECT count(*) FROM incoming) - (SELECT count(*) FROM fitting) AS out_of_range,
       (SELECT count(*) FROM fitting WHERE volume_too_large) AS volume_too_large,
       (SELECT count(*) FROM recorded) + (SELECT count(*) FROM agreeing) AS disagreements_changed,
       (SELECT coalesce(jsonb_agg(e), '[]')
        FROM (SELECT date::text AS date, data_source, host_close::text AS host_close,
                     worker_close::text AS worker_close
              FROM disagreeing ORDER BY date DESC LIMIT 3) AS e) AS examples
"""

# A refresh that replaces symbol $1's history (a split) replaces the worker's own mirror rows
# (data_source among $2) with it; the host's own rows stay.
DELETE_MIRRORED = """
DELETE FROM market_data_cache
WHERE symbol = $1::varchar AND data_source = ANY($2::text[])
"""

# The symbols $1's stored prices or betas changed: the cached analytics of every portfolio that
# holds one of them in an open position (not deleted, no past exit) are stale. One statement for
# all of them (the subquery finds the portfolios once; idx_cache_portfolio finds their rows).
INVALIDATE_ANALYTICS = """
DELETE FROM portfolio_analytics_cache AS c
WHERE c.portfolio_id IN (
    SELECT p.portfolio_id
    FROM positions AS p
    WHERE p.symbol = ANY($1::varchar[])
      AND p.deleted_at IS NULL
      AND (p.exit_date IS NULL OR p.exit_date >= current_date))
"""


# `status`: the host's own rows that disagree with the worker's, and the newest of them.
DISAGREEMENT_FACTS = """
SELECT count(*) AS host_price_disagreements,
       count(DISTINCT symbol) AS symbols,
       max(seen_at) AS last_seen
FROM host_price_disagreements
"""
