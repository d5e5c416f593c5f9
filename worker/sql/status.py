"""Every statement behind the status facts (worker/ops/status.py), read-only, named after the fact.

worker/ops/status.py runs them in one read-only REPEATABLE READ transaction, so every fact in one
report is of the same moment (`now()` included). Ages are computed here, in database time: no
client clock is ever compared with the server's.
"""

from worker.sql.control import UNTIL_RESUMED_SQL
from worker.sql.refresh import BEHIND_WHERE

# Counts by status and priority, and each group's oldest job (its age from its enqueue,
# created_at). Every status: `status` shows the whole table (a scan of it: ~160 ms at a million
# finished rows, fine on demand).
COUNTS = """
SELECT status, priority, count(*)::int AS jobs,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_age_s
FROM symbol_onboarding_queue
GROUP BY status, priority
"""

# The same for the live statuses only: the queue depth and the oldest pending job's wait, what
# /metrics reads at every scrape. An index-only scan of the live rows (idx_queue_status): 0.2 ms
# with a million finished rows in the table, which COUNTS would scan.
LIVE_COUNTS = """
SELECT status, priority, count(*)::int AS jobs,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_age_s
FROM symbol_onboarding_queue
WHERE status IN ('pending', 'processing')
GROUP BY status, priority
"""

# Each statement below names its columns after the fields of the status fact it fills.
OLDEST_PENDING = """
SELECT id::text AS job_id, symbol, priority, attempts, created_at,
       extract(epoch FROM now() - created_at)::float8 AS wait_s
FROM symbol_onboarding_queue
WHERE status = 'pending'
ORDER BY created_at
LIMIT 1
"""

# Running jobs with their heartbeat age, measured as the stall sweep measures it
# (RECOVER_STALLED: heartbeat, else the claim), so "stalled" (older than $1 seconds) here means
# "the sweep may take it".
RUNNING = """
SELECT job_id, symbol, priority, owner, attempt, running_s, heartbeat_age_s,
       heartbeat_age_s > $1 AS stalled
FROM (
    SELECT id::text AS job_id, symbol, priority, locked_by AS owner, attempts AS attempt,
           coalesce(extract(epoch FROM now() - started_at)::float8, 0) AS running_s,
           extract(epoch FROM now() - coalesce(heartbeat_at, started_at, created_at))::float8
               AS heartbeat_age_s,
           started_at
    FROM symbol_onboarding_queue
    WHERE status = 'processing'
) AS r
ORDER BY started_at
"""

# Pending jobs that may not run yet (retry backoff, or deferred behind a paused source): the
# first $1 by next run, with the total; error_message holds why they wait.
BACKOFF = """
SELECT id::text AS job_id, symbol, priority, attempts, run_after AS next_run_at,
       extract(epoch FROM run_after - now())::float8 AS next_run_in_s,
       error_message AS last_error,
       count(*) OVER ()::int AS total
FROM symbol_onboarding_queue
WHERE status = 'pending' AND run_after > now()
ORDER BY run_after
LIMIT $1
"""

# Every source's shared state: its pause (if any: who made it, NULL the worker itself; whether
# until resumed, worker/sql/control.py) and the circuit breaker's failure count.
SOURCES = f"""
SELECT source, paused_until, pause_reason AS reason, consecutive_failures, paused_by,
       coalesce(paused_until >= {UNTIL_RESUMED_SQL}, false) AS until_resumed,
       extract(epoch FROM paused_until - now())::float8 AS remaining_s
FROM price_source_state
ORDER BY source
"""

# Live workers; alive: a heartbeat within $1 seconds.
WORKERS = """
SELECT *, heartbeat_age_s <= $1 AS alive
FROM (
    SELECT worker_id, host, pid, version, concurrency, jobs_in_flight, stopping, http_url,
           started_at,
           extract(epoch FROM now() - started_at)::float8 AS up_s,
           extract(epoch FROM now() - last_tick_at)::float8 AS last_tick_age_s,
           extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
    FROM symbol_onboarding_workers
) AS w
ORDER BY started_at, worker_id
"""

# The newest $2 finished jobs of status $1 (walks idx_queue_finished backwards).
LAST_FINISHED = """
SELECT id::text AS job_id, symbol, priority, attempts, completed_at AS finished_at,
       extract(epoch FROM now() - completed_at)::float8 AS ago_s, error_message AS error
FROM symbol_onboarding_queue
WHERE status = $1 AND completed_at IS NOT NULL
ORDER BY completed_at DESC
LIMIT $2
"""

# Jobs finished per minute over the last $1 minutes (0: the current minute), by outcome.
FINISHED_PER_MINUTE = """
SELECT floor(extract(epoch FROM now() - completed_at) / 60)::int AS minutes_ago, status,
       count(*)::int AS jobs
FROM symbol_onboarding_queue
WHERE status IN ('completed', 'failed')
  AND completed_at > now() - make_interval(mins => $1)
GROUP BY 1, 2
"""

NOW = "SELECT now()"

# The status facts: symbols current with session $1, behind it (and the oldest last_price_date
# among them), delisted, in error (their onboarding failed: not behind, since no refresh picks
# them up, yet not current either); pending refresh jobs.
REFRESH_FACTS = f"""
SELECT
    count(*) FILTER (WHERE coalesce(u.status, 'active') = 'active' AND u.last_price_date >= $1)
        AS current,
    count(*) FILTER (WHERE {BEHIND_WHERE}) AS behind,
    count(*) FILTER (WHERE coalesce(u.status, 'active') IN ('active', 'pending')
                       AND u.last_price_date IS NULL) AS without_prices,
    min(u.last_price_date) FILTER (WHERE coalesce(u.status, 'active') = 'active'
                                     AND u.last_price_date < $1) AS oldest_last_price_date,
    count(*) FILTER (WHERE u.status = 'delisted') AS delisted,
    count(*) FILTER (WHERE u.status = 'error') AS error,
    (SELECT count(*) FROM symbol_onboarding_queue
     WHERE kind = 'refresh' AND status IN ('pending', 'processing')) AS refresh_jobs_live
FROM symbol_universe AS u
"""

# How many active symbols (status 'active', as the factors command picks them) have their factor
# betas (worker/factors): with a calculation date (and the oldest of those dates), without one,
# and among them those waiting for reference ETF prices.
FACTOR_FACTS = """
SELECT
    count(*) FILTER (WHERE u.last_factor_date IS NOT NULL) AS with_betas,
    min(u.last_factor_date) AS oldest_last_factor_date,
    count(*) FILTER (WHERE u.last_factor_date IS NULL) AS without_betas,
    count(w.symbol) AS waiting_for_references
FROM symbol_universe AS u
LEFT JOIN symbol_factor_waits AS w ON w.symbol = u.symbol
WHERE u.status = 'active'
"""

# The last daily refresh batch (worker/jobs/schedule.py).
LAST_SCHEDULE_RUN = """
SELECT trading_day, enqueued_at, through_session, jobs, worker_id
FROM refresh_schedule_runs
ORDER BY trading_day DESC
LIMIT 1
"""
