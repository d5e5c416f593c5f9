"""Every statement of the `symbol_prices_daily` backfill (worker/host/backfill.py runs them).

A batch is a range of symbols, `symbol > :after AND symbol <= :upto`, optionally narrowed to the
`:symbols` list (NULL: every symbol). Whole symbols per batch make the keyset cursor a symbol and
keep each symbol's universe row and prices in one transaction. Both range ends are always bound
(no `:after IS NULL OR ...`), so even a generic prepared plan is a range scan of the
`(symbol, date)` unique index rather than a scan from the start of the table on every batch.
Rows with an empty symbol name no symbol and are left out (`symbol > ''`).

A cache row the onboarding would refuse (a zero or negative price, high below low, a value that
does not fit: the one rule of worker/prices/validate.py, `row_problem_sql`) is never copied: it is
counted by reason, and it neither adds a symbol nor moves `last_price_date`. The statements that
read the batch come in two forms, with and without the cache's `adjusted_close` column.
"""

from dataclasses import dataclass

from worker.prices.validate import row_problem_sql, row_valid_sql

# Whether the cache table exists, and whether it has the `adjusted_close` column the spec's code
# reads (deployed databases do not have it). to_regclass follows search_path, as the queries do.
CACHE_COLUMNS = """
SELECT to_regclass('market_data_cache') IS NOT NULL AS has_table,
       EXISTS (
           SELECT 1 FROM pg_attribute
           WHERE attrelid = to_regclass('market_data_cache')
             AND attname = 'adjusted_close' AND attnum > 0 AND NOT attisdropped
       ) AS has_adjusted_close
"""

# The rows to go through, for progress and ETA (one pass over the index, before the first batch).
COUNT_ROWS = """
SELECT count(*)
FROM market_data_cache
WHERE symbol > '' AND (CAST(:symbols AS varchar[]) IS NULL OR symbol = ANY(:symbols))
"""

# Which of the requested spellings the cache has (a requested symbol none of whose spellings is
# there is reported, never silently ignored). One index probe per spelling.
SYMBOLS_FOUND = """
SELECT DISTINCT symbol FROM market_data_cache WHERE symbol = ANY(:symbols)
"""

# The next batch's last symbol: the symbol of the `:batch_size`-th row after `:after` (or of the
# last row). The batch then runs through that symbol's last row, so it holds whole symbols and at
# least `:batch_size` rows. NULL when no rows are left. An index-only walk of `:batch_size` entries.
NEXT_BATCH_END = """
SELECT max(symbol)
FROM (
    SELECT symbol
    FROM market_data_cache
    WHERE symbol > :after AND (CAST(:symbols AS varchar[]) IS NULL OR symbol = ANY(:symbols))
    ORDER BY symbol
    LIMIT :batch_size
) AS next_rows
"""

# The batch's rows of market_data_cache: after symbol :after through :upto (whole symbols), only
# those of :symbols when it is not NULL. In every statement below.
_IN_BATCH = """symbol > :after AND symbol <= :upto
      AND (CAST(:symbols AS varchar[]) IS NULL OR symbol = ANY(:symbols))"""
# The batch's rows refused by the price rule, as a JSON object of reason -> rows.
_ROWS_INVALID = """(SELECT CAST(coalesce(json_object_agg(problem, rows), '{}') AS text)
     FROM (SELECT problem, count(*) AS rows FROM batch WHERE problem IS NOT NULL
           GROUP BY problem) AS invalid) AS rows_invalid"""

# Symbols the cache has and the universe lacks; without them the prices would violate the foreign
# key. DO NOTHING: a symbol that is there (or was added concurrently, e.g. by onboarding) is kept
# exactly as it is.
_ADD_MISSING_SYMBOLS = """
INSERT INTO symbol_universe (symbol, status, added_source, last_price_date)
SELECT symbol, 'active', 'batch', max(date)
FROM market_data_cache
WHERE {in_batch}
  AND {valid}
GROUP BY symbol
ON CONFLICT (symbol) DO NOTHING
"""

# Copy the batch; rows already there (an earlier run, or onboarding, even one committing while
# this runs) are skipped, never changed. ON CONFLICT rather than a NOT EXISTS anti-join: the
# anti-join's plan rests on statistics of the very table being filled (a seq-scan anti-join
# chosen on "empty" made a 100,000-row run 20x slower), while ON CONFLICT always probes the
# primary key. Returns the rows seen, inserted, and refused by the price rule (a JSON object of
# reason -> rows), so rows already there = seen - inserted - refused.
_INSERT_PRICES = """
WITH batch AS MATERIALIZED (
    SELECT symbol, date, open, high, low, close, {adjusted_close} AS adjusted_close, volume,
           {problem} AS problem
    FROM market_data_cache
    WHERE {in_batch}
), inserted AS (
    INSERT INTO symbol_prices_daily (
        symbol, price_date, open_price, high_price, low_price, close_price, adj_close_price, volume
    )
    SELECT symbol, date, open, high, low, close, adjusted_close, volume
    FROM batch
    WHERE problem IS NULL
    ON CONFLICT (symbol, price_date) DO NOTHING
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM batch) AS rows_seen,
    (SELECT count(*) FROM inserted) AS rows_inserted,
    {rows_invalid}
"""

# Move last_price_date forward to the batch's latest date, never back (a later date may come from
# onboarding). Only this column changes on rows that were already in the universe.
_ADVANCE_LAST_PRICE_DATE = """
UPDATE symbol_universe AS u
SET last_price_date = latest.price_date
FROM (
    SELECT symbol, max(date) AS price_date
    FROM market_data_cache
    WHERE {in_batch}
      AND {valid}
    GROUP BY symbol
) AS latest
WHERE u.symbol = latest.symbol
  AND (u.last_price_date IS NULL OR u.last_price_date < latest.price_date)
"""

# Reads (and every --dry-run batch) run read-only: a bug there errors instead of writing.
READ_ONLY = "SET TRANSACTION READ ONLY"

# --dry-run: what the three statements above would do to the batch, read-only.
_PREVIEW_BATCH = """
WITH batch AS MATERIALIZED (
    SELECT symbol, date, {problem} AS problem
    FROM market_data_cache
    WHERE {in_batch}
),
latest AS (
    SELECT symbol, max(date) AS price_date FROM batch WHERE problem IS NULL GROUP BY symbol
)
SELECT
    (SELECT count(*) FROM batch) AS rows_seen,
    (SELECT count(*) FROM batch AS b
     WHERE b.problem IS NULL AND NOT EXISTS (
         SELECT 1 FROM symbol_prices_daily AS p
         WHERE p.symbol = b.symbol AND p.price_date = b.date
     )) AS rows_inserted,
    (SELECT count(*) FROM latest AS l
     WHERE NOT EXISTS (SELECT 1 FROM symbol_universe AS u WHERE u.symbol = l.symbol)
    ) AS symbols_added,
    (SELECT count(*) FROM latest AS l
     JOIN symbol_universe AS u ON u.symbol = l.symbol
     WHERE u.last_price_date IS NULL OR u.last_price_date < l.price_date
    ) AS symbols_updated,
    {rows_invalid}
"""


@dataclass(frozen=True)
class BatchStatements:
    """The statements that read a batch, for a cache with or without `adjusted_close`."""

    add_missing_symbols: str
    insert_prices: str
    advance_last_price_date: str
    preview_batch: str


def _batch_statements(adjusted_close: str) -> BatchStatements:
    columns = {
        "open_": "open",
        "high": "high",
        "low": "low",
        "close": "close",
        "adj_close": adjusted_close,
        "volume_": "volume",
    }
    values = {
        "problem": row_problem_sql(**columns),
        "valid": row_valid_sql(**columns),
        "adjusted_close": adjusted_close,
        "in_batch": _IN_BATCH,
        "rows_invalid": _ROWS_INVALID,
    }
    return BatchStatements(
        add_missing_symbols=_ADD_MISSING_SYMBOLS.format(**values),
        insert_prices=_INSERT_PRICES.format(**values),
        advance_last_price_date=_ADVANCE_LAST_PRICE_DATE.format(**values),
        preview_batch=_PREVIEW_BATCH.format(**values),
    )


# Deployed caches have no adjusted close: NULL says "unknown" (a close is not an adjusted close).
BATCH = _batch_statements("NULL::numeric")
BATCH_WITH_ADJUSTED_CLOSE = _batch_statements("adjusted_close")
