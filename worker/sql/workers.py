"""The live-worker registry (`symbol_onboarding_workers`), named after its operations.

Run by worker/queue/registry.py: the runner announces itself every heartbeat interval, and housekeeping
forgets workers that stopped announcing long ago.
"""

# Register or refresh worker $1 in one statement: the first call inserts the row, every later
# one refreshes it (and re-creates it if housekeeping deleted it during a long outage). The
# claim loop's last tick travels as an age ($8 seconds ago), so the row holds database time and
# no two clocks are compared.
ANNOUNCE_WORKER = """
INSERT INTO symbol_onboarding_workers AS w
    (worker_id, host, pid, version, concurrency, jobs_in_flight, stopping, last_tick_at, http_url,
     heartbeat_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(secs => $8), $9, now())
ON CONFLICT (worker_id) DO UPDATE
SET concurrency = EXCLUDED.concurrency, jobs_in_flight = EXCLUDED.jobs_in_flight,
    stopping = EXCLUDED.stopping, last_tick_at = EXCLUDED.last_tick_at,
    http_url = EXCLUDED.http_url, heartbeat_at = now()
"""

# A worker that stops cleanly leaves no row behind.
DEREGISTER_WORKER = "DELETE FROM symbol_onboarding_workers WHERE worker_id = $1"

# Rows of workers whose last heartbeat is older than $1 seconds: long dead (the status view shows
# them as dead until then).
FORGET_DEAD_WORKERS = """
DELETE FROM symbol_onboarding_workers
WHERE heartbeat_at < now() - make_interval(secs => $1)
"""
