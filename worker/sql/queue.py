"""Every runtime statement of the queue, named after its operation (worker/queue/store.py runs them).

Parameters are positional ($1...) because the runner executes them on asyncpg directly: the
claim loop is the hot path, and asyncpg's prepared-statement cache makes it cheap.
"""

# Claim up to $2 runnable jobs for worker $1, highest priority first, oldest first within one.
# priority_rank puts every onboarding (0-2) ahead of every refresh (3-5): the refresh-jobs revision.
# - The inner SELECT walks idx_queue_claim (status='pending', ordered by priority_rank, run_after)
#   and stops after $2 rows: no sort of the pending set, however long it is.
# - FOR UPDATE SKIP LOCKED: concurrent claimers skip each other's rows instead of waiting, so
#   every row goes to exactly one claimer.
# - attempts counts claims, so a job that keeps killing its worker still runs out of attempts.
# - set_config(..., true) turns synchronous_commit off for this statement's own transaction only:
#   the claim returns without waiting ~4 ms for the WAL flush. Safe: a claim lost in a server
#   crash leaves the job pending, and the claimer's later statements are fenced (below), so the
#   job runs again rather than completing twice. Done in the statement, not as a connection
#   setting, so it also works through a transaction-pooling proxy.
# - Nothing while an operator paused the queue (`pause --queue`, worker/control.py): read in the
#   claim itself, so every worker honours it at its next claim, restarts included.
# - started_at is the claim's token: each statement that ends the claim must present it.
CLAIM = """
WITH async_commit AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true)
),
next AS (
    SELECT id
    FROM symbol_onboarding_queue
    WHERE status = 'pending' AND run_after <= now()
      AND NOT EXISTS (SELECT 1 FROM symbol_onboarding_queue_pauses WHERE paused_until > now())
    ORDER BY priority_rank, run_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE symbol_onboarding_queue AS q
SET status = 'processing', started_at = now(), heartbeat_at = now(),
    attempts = q.attempts + 1, locked_by = $1
FROM next, async_commit
WHERE q.id = next.id
RETURNING q.id, q.symbol, q.priority, q.priority_rank, q.attempts, q.requested_by,
          q.created_at, q.run_after, q.started_at, q.kind
"""

# The work waiting for a worker, for an autoscaler (KEDA's PostgreSQL trigger in
# deploy/kubernetes/scaledobject.yaml carries this text; tests/acceptance/test_deploy.py checks
# they agree): exactly the rows CLAIM could take now, so the same WHERE.
# - run_after <= now(): a job in retry backoff, or deferred behind a paused or rate-limited
#   source, cannot run yet; more workers would only poll it, so it does not count.
# - processing jobs do not count: their workers exist already, and a job of a dead worker stays
#   processing until the stall sweep, which must not hold a replica up. Scaling down is safe
#   while they run: the HPA waits out its stabilization window (300 s) and a stopped worker
#   finishes or hands back its jobs (the shutdown contract).
# - The planner reads one of the partial indexes on the live rows (idx_queue_claim,
#   idx_queue_pending_symbol): KEDA asks every 15 s, and the finished rows, up to millions, are
#   never scanned (tests/acceptance/test_deploy.py checks the plan).
# - While an operator has paused the queue (`pause --queue`), nothing is runnable: a paused
#   backlog must not scale workers up (CLAIM takes nothing then either).
PENDING_FOR_SCALING = """
SELECT count(*) AS runnable_pending
FROM symbol_onboarding_queue
WHERE status = 'pending' AND run_after <= now()
  AND NOT EXISTS (SELECT 1 FROM symbol_onboarding_queue_pauses WHERE paused_until > now())
"""

# Every statement that ends a claim is fenced on (id, locked_by, started_at, status): a worker
# whose job was recovered from it (it was presumed dead) changes nothing and learns it lost the
# job, even if it has since claimed the same job again (started_at differs per claim).
# Those that end it other than cancelled (COMPLETE, COMPLETE_MANY, RETRY_LATER, RELEASE) are also
# fenced on `cancel_requested_at IS NULL`: once an operator's cancel has landed the job cannot
# complete (its transaction rolls back on JobLost) nor go back to pending; the runner then records
# `cancelled` (worker/sql/control.py, FINISH_CANCELLED).
COMPLETE = """
UPDATE symbol_onboarding_queue
SET status = 'completed', completed_at = now(), error_message = NULL, heartbeat_at = NULL
WHERE id = $1 AND locked_by = $2 AND started_at = $3 AND status = 'processing'
  AND cancel_requested_at IS NULL
"""

# A whole claimed batch in one statement, for handlers whose jobs write nothing of their own
# (the onboarding job completes inside its price transaction instead). RETURNING id: any id
# missing is a job this worker lost.
COMPLETE_MANY = """
UPDATE symbol_onboarding_queue
SET status = 'completed', completed_at = now(), error_message = NULL, heartbeat_at = NULL
WHERE (id, started_at) IN (SELECT * FROM unnest($1::uuid[], $3::timestamptz[]))
  AND locked_by = $2 AND status = 'processing' AND cancel_requested_at IS NULL
RETURNING id
"""

# A transient failure: back to pending after $4 seconds, or failed once attempts reach $3.
# Every statement that fails a job also marks a still-pending symbol `error` (here, in FAIL and
# in RECOVER_STALLED; a missing one is created so): a backend must not see "pending" for a
# symbol nothing will onboard. An active, delisted or errored symbol keeps its status.
RETRY_LATER = """
WITH retried AS (
    UPDATE symbol_onboarding_queue
    SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END,
        completed_at = CASE WHEN attempts >= $3 THEN now() END,
        run_after = CASE WHEN attempts >= $3 THEN run_after
                         ELSE now() + make_interval(secs => $4) END,
        error_message = $5, heartbeat_at = NULL
    WHERE id = $1 AND locked_by = $2 AND started_at = $6 AND status = 'processing'
      AND cancel_requested_at IS NULL
    RETURNING symbol, status
),
marked AS (
    INSERT INTO symbol_universe AS u (symbol, status, added_source)
    SELECT symbol, 'error', 'onboarding' FROM retried WHERE status = 'failed'
    ON CONFLICT (symbol) DO UPDATE SET status = 'error', updated_at = now()
    WHERE u.status = 'pending'
)
SELECT status FROM retried
"""

FAIL = """
WITH failed AS (
    UPDATE symbol_onboarding_queue
    SET status = 'failed', completed_at = now(), error_message = $3, heartbeat_at = NULL
    WHERE id = $1 AND locked_by = $2 AND started_at = $4 AND status = 'processing'
    RETURNING symbol
),
marked AS (
    INSERT INTO symbol_universe AS u (symbol, status, added_source)
    SELECT symbol, 'error', 'onboarding' FROM failed
    ON CONFLICT (symbol) DO UPDATE SET status = 'error', updated_at = now()
    WHERE u.status = 'pending'
)
SELECT count(*) FROM failed
"""

# Whether claim ($1, $2, $3) ended completed: COMPLETE keeps locked_by and started_at, so the
# row still names the claim that completed it (asked when a hand-back finds the job gone).
CLAIM_COMPLETED = """
SELECT EXISTS (
    SELECT 1 FROM symbol_onboarding_queue
    WHERE id = $1 AND locked_by = $2 AND started_at = $3 AND status = 'completed'
)
"""

# Hand a job back without spending an attempt (shutdown, an outage, or its price source is
# paused): runnable again after $3 seconds. With no delay it keeps its run_after, so its place
# in the claim order (it was runnable when claimed). $4, when not NULL, replaces error_message.
RELEASE = """
UPDATE symbol_onboarding_queue
SET status = 'pending', attempts = greatest(attempts - 1, 0), started_at = NULL,
    run_after = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) ELSE run_after END,
    error_message = coalesce($4, error_message), locked_by = NULL, heartbeat_at = NULL
WHERE id = $1 AND locked_by = $2 AND started_at = $5 AND status = 'processing'
  AND cancel_requested_at IS NULL
"""

# One statement per worker per interval, however many jobs it runs. Only the jobs it is still
# running ($2): a job it could not hand back (database outage) must go stale and be recovered.
# SKIP LOCKED: a row locked elsewhere (a backend's enqueue raising its priority, in an open
# transaction) must not make the heartbeat wait, nor deadlock with it; it is refreshed next time.
HEARTBEAT = """
WITH mine AS (
    SELECT id
    FROM symbol_onboarding_queue
    WHERE id = ANY($2::uuid[]) AND locked_by = $1 AND status = 'processing'
    FOR UPDATE SKIP LOCKED
)
UPDATE symbol_onboarding_queue AS q
SET heartbeat_at = now()
FROM mine
WHERE q.id = mine.id
"""

# Jobs whose worker stopped heartbeating for $1 seconds go back to pending (or fail, when that
# was their last attempt). SKIP LOCKED: a job being completed right now is not touched.
# run_after is kept: a recovered job keeps its place in the claim order.
# A job an operator asked to cancel ends cancelled instead (its worker is gone: nothing to stop).
# Not within $1 seconds of a server start: after a restart every live worker needs one stall
# timeout to reconnect and heartbeat again, or the first sweep would take their jobs.
RECOVER_STALLED = """
WITH stalled AS (
    SELECT id
    FROM symbol_onboarding_queue
    WHERE status = 'processing'
      AND coalesce(heartbeat_at, started_at, created_at) < now() - make_interval(secs => $1)
      AND pg_postmaster_start_time() < now() - make_interval(secs => $1)
    FOR UPDATE SKIP LOCKED
),
recovered AS (
    UPDATE symbol_onboarding_queue AS q
    SET status = CASE WHEN q.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN q.attempts >= $2 THEN 'failed' ELSE 'pending' END,
        completed_at = CASE WHEN q.attempts >= $2 OR q.cancel_requested_at IS NOT NULL
                            THEN now() END,
        error_message = CASE WHEN q.cancel_requested_at IS NOT NULL
            THEN format('cancelled by %s; its worker %s stopped responding',
                        q.cancel_requested_by, coalesce(q.locked_by, 'unknown'))
            ELSE format('worker %s stopped responding during attempt %s (last heartbeat %s)',
                        coalesce(q.locked_by, 'unknown'), q.attempts, q.heartbeat_at) END,
        locked_by = NULL, heartbeat_at = NULL
    FROM stalled
    WHERE q.id = stalled.id
    RETURNING q.id, q.symbol, q.status, q.attempts
),
-- A symbol whose job failed (or was cancelled) here will not be onboarded: a backend must not
-- see it pending.
marked AS (
    UPDATE symbol_universe AS u SET status = 'error', updated_at = now()
    FROM recovered AS r
    WHERE u.symbol = r.symbol AND r.status IN ('failed', 'cancelled') AND u.status = 'pending'
)
SELECT id, symbol, status, attempts FROM recovered
"""

# Delete up to $3 rows in status $1 that ended more than $2 days ago (oldest first).
PRUNE = """
WITH doomed AS (
    SELECT id
    FROM symbol_onboarding_queue
    WHERE status = $1 AND completed_at < now() - $2::float8 * interval '1 day'
    ORDER BY completed_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
DELETE FROM symbol_onboarding_queue AS q
USING doomed
WHERE q.id = doomed.id
"""

RETRY_JOB = "SELECT retry_symbol_onboarding($1)"
RETRY_FAILED = "SELECT retry_failed_symbol_onboarding()"

# Operator action: a pending job waiting out its backoff (or a deferral) becomes runnable now,
# and idle workers are woken. Returns 1, or 0 when the job is not pending in backoff.
# (pg_notify returns void, which is never NULL: the WHERE only makes it run once per row.)
RUN_NOW = """
WITH woken AS (
    UPDATE symbol_onboarding_queue SET run_after = now()
    WHERE id = $1 AND status = 'pending' AND run_after > now()
    RETURNING id
)
SELECT count(*)::int FROM woken WHERE pg_notify('symbol_onboarding', '') IS NOT NULL
"""

JOB_STATE = """
SELECT status, run_after > now() AS waiting FROM symbol_onboarding_queue WHERE id = $1
"""

# The Python helpers' enqueue. The requester is checked in the same statement, before the insert:
# an unknown `requested_by` returns NULL (no row for the batch) instead of a foreign-key error,
# which would abort the caller's transaction.
ENQUEUE = """
SELECT CASE WHEN CAST(:requested_by AS uuid) IS NULL
              OR EXISTS (SELECT 1 FROM users WHERE id = CAST(:requested_by AS uuid))
            THEN enqueue_symbol_onboarding(:symbol, :priority, :requested_by) END
"""

# One round trip for a batch: the function runs once per symbol, in input order.
ENQUEUE_MANY = """
SELECT enqueue_symbol_onboarding(t.symbol, :priority, :requested_by)
FROM (
    SELECT symbol, position
    FROM unnest(CAST(:symbols AS text[])) WITH ORDINALITY AS u(symbol, position)
    ORDER BY position
) AS t
WHERE CAST(:requested_by AS uuid) IS NULL
   OR EXISTS (SELECT 1 FROM users WHERE id = CAST(:requested_by AS uuid))
"""

# Housekeeping (pruning, cache expiry) is done by one worker at a time: a transaction-level
# advisory lock around each batch (it also holds behind a transaction-pooling proxy, where a
# session lock could be taken on one server connection and released on another).
HOUSEKEEPING_LOCK_KEY = 0x53594D4F4E42  # "SYMONB"
TRY_LOCK_HOUSEKEEPING = "SELECT pg_try_advisory_xact_lock($1)"

# Whether a runnable job exists, locked or not (burst mode must not stop while one is locked by a
# backend's enqueue transaction, which SKIP LOCKED hides from the claim). None while the queue is
# paused: a burst run ends rather than waiting out an operator's pause.
RUNNABLE_EXISTS = """
SELECT EXISTS (SELECT 1 FROM symbol_onboarding_queue WHERE status = 'pending' AND run_after <= now())
   AND NOT EXISTS (SELECT 1 FROM symbol_onboarding_queue_pauses WHERE paused_until > now())
"""
