"""Every statement of the operator controls (worker/control.py): cancel a job, pause and resume
a price source or the whole queue. Positional ($n) parameters: asyncpg.

A source pause is the same `price_source_state` pause the rate limiter records (worker/prices/
ratelimit.py): every worker already honours it before each request. An operator's pause also
records who (`paused_by`; NULL: the worker's own); the rate limiter's PAUSE_SOURCE keeps it
while the operator's end is the later one (greatest()), so an automatic pause never shortens it.
"""

# "Until resumed" is stored as this far end rather than 'infinity': every reader computes
# `paused_until - now()`, which PostgreSQL refuses for an infinite timestamp, and a job deferred
# behind the pause waits until it (RESUME_SOURCE wakes such jobs).
UNTIL_RESUMED = "9999-12-31 00:00:00+00"
UNTIL_RESUMED_SQL = f"TIMESTAMPTZ '{UNTIL_RESUMED}'"

# The queue that `pause --queue` pauses (one today; the table is keyed by it).
QUEUE_NAME = "symbol_onboarding"

# Channel of the cancel NOTIFY (payload: the job id); cancel_symbol_onboarding sends it.
CANCEL_CHANNEL = "symbol_onboarding_cancel"

CANCEL = "SELECT cancel_symbol_onboarding($1, $2)"

# The live jobs of symbols $1 (cancel --symbol): pending and processing, at most one each.
LIVE_JOBS_OF = """
SELECT id, symbol FROM symbol_onboarding_queue
WHERE symbol = ANY($1::text[]) AND status IN ('pending', 'processing')
ORDER BY symbol
"""

JOB_STATUS = "SELECT status FROM symbol_onboarding_queue WHERE id = $1"

# Which of worker $2's running jobs ($1) an operator asked to cancel (after each heartbeat).
CANCEL_REQUESTED = """
SELECT id FROM symbol_onboarding_queue
WHERE id = ANY($1::uuid[]) AND locked_by = $2 AND status = 'processing'
  AND cancel_requested_at IS NOT NULL
"""

# The worker's end of a cancel: its job stopped (its writes rolled back), the claim ends
# `cancelled`, fenced like every statement that ends a claim. The attempt is given back (an
# operator's cancel is no failure of the job), and a pending symbol becomes `error`, as in
# cancel_symbol_onboarding. Returns 1, or 0 when the claim is no longer ours or not cancelled.
FINISH_CANCELLED = """
WITH cancelled AS (
    UPDATE symbol_onboarding_queue
    SET status = 'cancelled', completed_at = now(), heartbeat_at = NULL,
        attempts = greatest(attempts - 1, 0),
        error_message = format('cancelled by %s while running', cancel_requested_by)
    WHERE id = $1 AND locked_by = $2 AND started_at = $3 AND status = 'processing'
      AND cancel_requested_at IS NOT NULL
    RETURNING symbol
),
marked AS (
    UPDATE symbol_universe AS u SET status = 'error', updated_at = now()
    FROM cancelled AS c
    WHERE u.symbol = c.symbol AND u.status = 'pending'
)
SELECT count(*)::int FROM cancelled
"""

# An operator's pause of source $1 for $2 seconds (NULL: until resumed) because of $3, by $4.
# It replaces an earlier operator pause (shorter or longer: the operator decides), but never ends
# an automatic pause sooner than it would have (paused_by NULL: the rate limiter's).
PAUSE_SOURCE = f"""
INSERT INTO price_source_state AS s (source, paused_until, pause_reason, paused_by, paused_at,
                                     updated_at)
VALUES ($1, coalesce(now() + make_interval(secs => $2), {UNTIL_RESUMED_SQL}), $3, $4, now(), now())
ON CONFLICT (source) DO UPDATE
SET paused_until = CASE WHEN s.paused_by IS NULL
                        THEN greatest(s.paused_until, EXCLUDED.paused_until)
                        ELSE EXCLUDED.paused_until END,
    pause_reason = EXCLUDED.pause_reason, paused_by = EXCLUDED.paused_by,
    paused_at = EXCLUDED.paused_at, updated_at = now()
RETURNING paused_until, paused_until >= {UNTIL_RESUMED_SQL} AS until_resumed
"""

# End source $1's pause, whoever made it, and wake the jobs deferred behind it: their
# error_message starts "deferred, SOURCE paused" (worker/onboarding.py, settle) and their run_after
# is the pause's end, which may be UNTIL_RESUMED. Returns the woken jobs' count, or no row when
# the source was not paused.
RESUME_SOURCE = """
WITH resumed AS (
    UPDATE price_source_state
    SET paused_until = NULL, pause_reason = NULL, paused_by = NULL, paused_at = NULL,
        updated_at = now()
    WHERE source = $1 AND paused_until > now()
    RETURNING source
),
woken AS (
    UPDATE symbol_onboarding_queue AS q SET run_after = now()
    FROM resumed
    WHERE q.status = 'pending' AND q.run_after > now()
      AND q.error_message ~ ('(^|; )deferred, ' || resumed.source || ' paused')
    RETURNING q.id
)
SELECT (SELECT count(*)::int FROM woken) AS woken
FROM resumed
WHERE pg_notify('symbol_onboarding', '') IS NOT NULL
"""

# Pause the whole queue $1 for $2 seconds (NULL: until resumed) because of $3, by $4.
PAUSE_QUEUE = f"""
INSERT INTO symbol_onboarding_queue_pauses AS p (queue, paused_until, pause_reason, paused_by,
                                                 paused_at)
VALUES ($1, coalesce(now() + make_interval(secs => $2), {UNTIL_RESUMED_SQL}), $3, $4, now())
ON CONFLICT (queue) DO UPDATE
SET paused_until = EXCLUDED.paused_until, pause_reason = EXCLUDED.pause_reason,
    paused_by = EXCLUDED.paused_by, paused_at = EXCLUDED.paused_at
RETURNING paused_until, paused_until >= {UNTIL_RESUMED_SQL} AS until_resumed
"""

# Resume queue $1 (a timed pause that ended is removed too); wakes idle workers. Returns whether
# it was paused.
RESUME_QUEUE = """
WITH resumed AS (
    DELETE FROM symbol_onboarding_queue_pauses WHERE queue = $1
    RETURNING paused_until > now() AS was_paused
)
SELECT was_paused FROM resumed WHERE pg_notify('symbol_onboarding', '') IS NOT NULL
"""

# The pause facts for `status`, the page and /metrics: the queue's pause, if any, ...
QUEUE_PAUSE = f"""
SELECT queue, paused_until, pause_reason AS reason, paused_by, paused_at,
       paused_until >= {UNTIL_RESUMED_SQL} AS until_resumed,
       extract(epoch FROM paused_until - now())::float8 AS remaining_s
FROM symbol_onboarding_queue_pauses
WHERE paused_until > now()
"""

# ... and every source with whether it is paused now (the gauges list each known source).
SOURCE_PAUSES = f"""
SELECT source, coalesce(paused_until > now(), false) AS paused, paused_until,
       pause_reason AS reason, paused_by, paused_at,
       coalesce(paused_until >= {UNTIL_RESUMED_SQL}, false) AS until_resumed,
       greatest(coalesce(extract(epoch FROM paused_until - now()), 0), 0)::float8 AS remaining_s
FROM price_source_state
ORDER BY source
"""

# The newest $1 cancelled jobs (walks idx_queue_finished backwards).
LAST_CANCELLED = """
SELECT id::text AS job_id, symbol, kind, cancel_requested_by AS cancelled_by,
       completed_at AS cancelled_at, extract(epoch FROM now() - completed_at)::float8 AS ago_s,
       error_message AS detail
FROM symbol_onboarding_queue
WHERE status = 'cancelled' AND completed_at IS NOT NULL
ORDER BY completed_at DESC
LIMIT $1
"""
