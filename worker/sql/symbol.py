"""Every statement behind one symbol's facts (worker/symbol_facts.py): the per-symbol page
(`GET /symbols/SYM`), `python -m worker show` and the reason `prices` gives for a symbol in
`error`. Read-only, named after the fact; columns named after the fields they fill.
"""

# The universe row with its stored history's extent (an index range of the primary key each).
UNIVERSE_ROW = """
SELECT u.symbol::text AS symbol, u.status, u.asset_type, u.sector, u.industry, u.is_active,
       u.added_source, u.first_seen_date, u.last_seen_date, u.last_price_date,
       u.last_factor_date, u.created_at, u.updated_at,
       (SELECT count(*) FROM symbol_prices_daily AS p WHERE p.symbol = u.symbol)::int AS bars,
       (SELECT min(p.price_date) FROM symbol_prices_daily AS p WHERE p.symbol = u.symbol)
           AS first_price_date
FROM symbol_universe AS u
WHERE u.symbol = $1
"""

# The symbol's stored closes, oldest first (the chart): the adjusted close where the source gave
# one, as the betas use it.
CLOSES = """
SELECT price_date, coalesce(adj_close_price, close_price)::float8 AS close
FROM symbol_prices_daily
WHERE symbol = $1
ORDER BY price_date
"""

# The symbol's jobs, latest first ($2 of them), with the total.
JOBS = """
SELECT id::text AS job_id, kind, status, priority, attempts, created_at, started_at,
       completed_at, run_after, locked_by AS owner, error_message AS error,
       count(*) OVER ()::int AS total
FROM symbol_onboarding_queue
WHERE symbol = $1
ORDER BY created_at DESC, id
LIMIT $2
"""

# Why a symbol is in `error`: its newest failed job.
LAST_FAILED_JOB = """
SELECT id::text AS job_id, kind, attempts, completed_at AS finished_at, error_message AS error
FROM symbol_onboarding_queue
WHERE symbol = $1 AND status = 'failed'
ORDER BY completed_at DESC NULLS LAST, created_at DESC
LIMIT 1
"""

# The symbol of job $1 (`show JOB_ID`), NULL when there is no such job.
JOB_SYMBOL = "SELECT symbol::text FROM symbol_onboarding_queue WHERE id = $1"

# The reference ETFs the symbol's betas wait for (symbol_factor_waits), if it waits.
WAITING_FOR = "SELECT waiting_for::text[] AS etfs FROM symbol_factor_waits WHERE symbol = $1"

# The wide table's newest row for the symbol: the calculation date and the twelve columns.
# (The column list comes from the factor definitions: worker/symbol_facts.py builds it.)
WIDE_BETAS = """
SELECT calculation_date, {columns}
FROM symbol_factor_exposures
WHERE symbol = $1
ORDER BY calculation_date DESC
LIMIT 1
"""

# The host's long table at the symbol's newest calculation date, each factor by name.
LONG_BETAS = """
SELECT f.name::text AS name, e.calculation_date, e.beta_value::float8 AS beta,
       e.r_squared::float8 AS r_squared, e.observations, e.quality_flag::text AS quality_flag
FROM symbol_factor_exposures AS e
JOIN factor_definitions AS f ON f.id = e.factor_id
WHERE e.symbol = $1
  AND e.calculation_date = (SELECT max(calculation_date) FROM symbol_factor_exposures
                            WHERE symbol = $1)
"""
