"""The runner: claim loop, concurrency, LISTEN wake-up, heartbeats, housekeeping, shutdown.

It holds no SQL (worker/queue/store.py does) and no job logic (the handler does); it decides when to
claim, runs up to `concurrency` jobs at once, and writes one log line per job outcome.

Shutdown contract: the first SIGTERM/SIGINT stops claiming and lets in-flight jobs finish for up
to `shutdown_grace_s`; jobs still running then are cancelled and handed back to pending at once
(no attempt spent). A second signal skips the grace period. Then connections close and the
process exits 0.

Cut off from the database: claims and heartbeats are bounded by the heartbeat interval, so a
silent network shows in seconds; jobs the database has not confirmed (claim or heartbeat) for
the stall timeout, after which any worker's sweep may take them, are cancelled and left to the
sweep (`jobs_abandoned_unreachable`, once per episode); claiming resumes when it answers.
"""

import asyncio
import contextlib
import random
import time
import uuid
from datetime import datetime
from typing import Literal, Protocol

import asyncpg
import structlog

from worker.core import db, tracing
from worker.core.errors import (
    DatabaseUnavailable,
    JobLost,
    LockWaitTimeout,
    database_errors,
    describe,
)
from worker.core.metrics import Metrics
from worker.core.settings import Settings
from worker.queue import control, registry
from worker.queue.outcome import Outcome, clip, unexpected
from worker.queue.store import Job, Queue

CHANNEL = "symbol_onboarding"
LISTENER_PROBE_S = 10.0
LIVENESS_SLACK_S = 10.0
log = structlog.get_logger("worker.runner")


# What a hand-back found: the job is pending again; this claim had completed after all (its
# COMMIT landed but the answer never came); it is no longer ours; the database did not answer.
HandBack = Literal["handed_back", "completed", "lost", "unreachable"]
JobKey = tuple[uuid.UUID, datetime]


class JobResultLike(Protocol):
    @property
    def outcome(self) -> Outcome: ...
    @property
    def rows(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...


class Handler(Protocol):
    """Runs one claimed job and performs its queue transition (see worker/jobs/onboarding.py)."""

    async def run(self, job: Job) -> JobResultLike: ...


class Housekeeping(Protocol):
    """One housekeeping round (see worker/queue/housekeeping.py), and the stall sweep on its own."""

    async def __call__(self) -> None: ...
    async def recover_stalled(self) -> int: ...


class Runner:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        queue: Queue,
        handler: Handler,
        *,
        claim_dsn: str,
        listen_dsn: str | None = None,
        burst: bool = False,
        housekeeping: Housekeeping | None = None,
        metrics: Metrics | None = None,
        http_url: str | None = None,
    ) -> None:
        """`http_url`: where this worker's HTTP endpoint listens (the registry shows it)."""
        self.settings = settings
        self.pool = pool
        self.queue = queue
        self.handler = handler
        self.claim_dsn = claim_dsn
        self.listen_dsn = listen_dsn
        self._claim_conn: asyncpg.Connection | None = None
        self.burst = burst
        self.housekeeping = housekeeping
        self.metrics = metrics or Metrics()
        self._claim_connects = 0
        # Keyed by claim (id and its started_at token): the same job claimed again after a
        # recovery is another entry, never confused with a stale execution.
        self._in_flight: dict[JobKey, asyncio.Task[None]] = {}
        # When the database last confirmed each running claim (monotonic, taken before the
        # claim or heartbeat was sent, so never later than the row's heartbeat_at).
        self._confirmed: dict[JobKey, float] = {}
        # Jobs given up after QUEUE_STALL_TIMEOUT_S without a heartbeat (another worker may run
        # them now): cancelled, no longer in flight, awaited on the way out.
        self._abandoned: dict[JobKey, asyncio.Task[None]] = {}
        # Running jobs an operator cancelled (worker/control.py): their task was cancelled and
        # records `cancelled` instead of handing the job back.
        self._cancelling: set[JobKey] = set()
        self._unreachable_logged = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._abort = asyncio.Event()
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.listener_connects = 0
        # What the registry shows of this process.
        self.info = registry.WorkerInfo.this_process(
            queue.worker_id, settings.concurrency, http_url
        )
        self._last_tick = time.monotonic()  # the claim loop's last round (liveness)
        self._background: list[asyncio.Task[None]] = []

    # --- control ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: abort (hand unfinished jobs back now).

        The events are set before anything is logged: a signal always takes effect, whatever
        happens to the log's output.
        """
        aborting = self._stopping.is_set()
        if aborting:
            self._abort.set()
        self._stopping.set()
        self._wake.set()
        if aborting:
            log.warning("shutdown_abort", in_flight=len(self._in_flight))
        else:
            log.info("shutdown_requested", in_flight=len(self._in_flight))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def tick_age_s(self) -> float:
        """Seconds since the claim loop last went round."""
        return time.monotonic() - self._last_tick

    def liveness(self) -> str | None:
        """None while this process's loops are alive; else why not (for /healthz).

        The claim loop goes round at least every poll interval; the longest legitimate gap is a
        claim stuck on a silent network (the command timeout) followed by the reconnect backoff.
        A worker that is shutting down is alive: it is draining its jobs."""
        for task in self._background:
            if task.done() and not task.cancelled():
                return f"background loop {task.get_name()} ended"
        if self.stopping:
            return None
        limit = (
            self.settings.command_timeout_s
            + self.settings.reconnect_max_wait_s
            + self.settings.poll_interval_s
            + LIVENESS_SLACK_S
        )
        age = self.tick_age_s()
        if age > limit:
            return f"claim loop last went round {age:.0f} s ago (limit {limit:.0f} s)"
        return None

    async def run(self) -> None:
        await self._announce()
        background = [asyncio.create_task(self._heartbeat_loop(), name="heartbeat")]
        if self.housekeeping is not None:
            background.append(asyncio.create_task(self._housekeeping_loop(), name="housekeeping"))
        if self.listen_dsn is not None:
            background.append(asyncio.create_task(self._listen_loop(), name="listen"))
        for task in background:
            task.add_done_callback(self._background_ended)
        self._background = background
        log.info(
            "worker_started",
            worker_id=self.queue.worker_id,
            concurrency=self.settings.concurrency,
            listen=self.listen_dsn is not None,
            burst=self.burst,
        )
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            if self._abandoned:  # cancelled already; bounded: they may wait on a dead network
                await asyncio.wait(list(self._abandoned.values()), timeout=1)
            if self._claim_conn is not None:
                self._claim_conn.terminate()  # no goodbye to wait for on a cut network
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._deregister()
            log.info("worker_stopped", worker_id=self.queue.worker_id)

    def _background_ended(self, task: asyncio.Task[None]) -> None:
        """A background loop must never end while the worker runs: stop rather than run blind."""
        if task.cancelled():
            return
        log.error("background_task_ended", task=task.get_name(), error=repr(task.exception()))
        if not self._stopping.is_set():
            self.request_stop()

    # --- claiming --------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        outage = _Backoff(self.settings.reconnect_max_wait_s)
        outage_since: float | None = None
        while not self._stopping.is_set():
            self._last_tick = time.monotonic()
            # Cleared before claiming: a NOTIFY that lands during the claim still wakes us.
            self._wake.clear()
            free = self.settings.concurrency - len(self._in_flight)
            jobs: list[Job] = []
            if free > 0:
                try:
                    sent = time.monotonic()
                    jobs = await self.queue.claim(
                        await self._claim_connection(),
                        free,
                        timeout_s=self.settings.queue_statement_timeout_s,
                    )
                except DatabaseUnavailable as exc:
                    outage_since = outage_since or time.monotonic()
                    self._check_burst_outage(outage_since, exc)
                    await self._sleep(outage.next_delay(), reason="database_unavailable", exc=exc)
                    continue
                except Exception as exc:  # a timeout or a driver fault: a fresh connection
                    self._drop_claim_connection()
                    await self._sleep(outage.next_delay(), reason="claim_failed", exc=exc)
                    continue
                if outage.failures:
                    log.info("database_available", after_failures=outage.failures)
                    outage.reset()
                    outage_since = None
                self._unreachable_logged = False
                for job in jobs:
                    self._start(job, confirmed_at=sent)
            if self.burst and not jobs and not self._in_flight:
                if not await self._runnable_left():
                    log.info("burst_done")
                    return
            if jobs and len(jobs) == free:
                continue
            await self._wait(self.settings.poll_interval_s)

    def _check_burst_outage(self, since: float, exc: DatabaseUnavailable) -> None:
        """Burst mode (cron, CI) must end: give up once the outage outlasts its bound."""
        limit = self.settings.burst_max_outage_s
        if self.burst and time.monotonic() - since >= limit:
            raise DatabaseUnavailable(
                f"database unreachable for {limit:g} s (WORKER_BURST_MAX_OUTAGE_S): {exc}"
            ) from exc

    async def _runnable_left(self) -> bool:
        """Burst mode: is a job still to run here? One hidden from the claim by a lock held
        elsewhere, or one a dead worker left in processing (swept back to pending first)."""
        try:
            if self.housekeeping is not None and await self.housekeeping.recover_stalled():
                return True
            return await self.queue.runnable_exists(self.pool)
        except DatabaseUnavailable:
            return True  # unknown: keep trying (the claim bounds an outage) rather than stop
        except Exception:
            log.exception("burst_check_failed")
            return True

    async def _claim_connection(self) -> asyncpg.Connection:
        """A connection of its own for claims: no pool hand-off on the latency path."""
        if self._claim_conn is None or self._claim_conn.is_closed():
            self._drop_claim_connection()
            # Bounded like the claim: a connect into a cut network must not hang for a minute.
            self._claim_conn = await db.connect(
                self.claim_dsn, self.settings, timeout=self.settings.queue_statement_timeout_s
            )
            self._claim_connects += 1
            if self._claim_connects > 1:
                self.metrics.database_reconnect("claim")
        return self._claim_conn

    def _drop_claim_connection(self) -> None:
        if self._claim_conn is not None:
            self._claim_conn.terminate()
        self._claim_conn = None

    def _start(self, job: Job, *, confirmed_at: float) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.symbol}")
        self._in_flight[(job.id, job.started_at)] = task
        self._confirmed[(job.id, job.started_at)] = confirmed_at
        self.metrics.job_started(job)

    async def _execute(self, job: Job) -> None:
        bound = log.bind(job_id=str(job.id), symbol=job.symbol, attempt=job.attempts)
        started = time.perf_counter()

        def elapsed_ms() -> float:
            return round((time.perf_counter() - started) * 1000, 1)

        outcome = "crashed"
        key = (job.id, job.started_at)
        result = None
        # The job's span (worker/core/tracing.py; a no-op without OpenTelemetry), current while
        # the handler runs, so the fetch, write and factor spans nest under it.
        traced = contextlib.ExitStack()
        span = traced.enter_context(
            tracing.span(
                tracing.JOB_SPAN,
                {
                    "symbol": job.symbol,
                    "kind": job.kind,
                    "attempt": job.attempts,
                    "priority": job.priority,
                    "job_id": str(job.id),
                },
            )
        )
        try:
            with database_errors():  # whatever the handler, an outage is named the same way
                result = await self.handler.run(job)
            outcome = result.outcome
            level = "info" if result.outcome == "completed" else "warning"
            getattr(bound, level)(
                "job_finished",
                outcome=result.outcome,
                duration_ms=elapsed_ms(),
                rows=result.rows,
                error=result.error,
                # Rows the source sent that were not stored, by reason (onboarding jobs).
                rows_skipped=getattr(result, "skipped", None),
            )
        except asyncio.CancelledError:
            if key in self._cancelling:  # an operator's cancel: the job's writes rolled back
                outcome = await asyncio.shield(self._record_cancelled(job))
                self._log_hand_back(bound, outcome, outcome, elapsed_ms())
                raise
            if key in self._abandoned:  # given up unreachable: the sweep returns it, not us
                outcome = "abandoned"
                bound.warning("job_finished", outcome="abandoned", duration_ms=elapsed_ms())
                raise
            handed = await asyncio.shield(
                self._hand_back(job, "worker shut down before the job finished")
            )
            outcome = {"handed_back": "handed_back", "completed": "completed"}.get(
                handed, "abandoned"
            )
            self._log_hand_back(bound, handed, outcome, elapsed_ms())
            raise
        except JobLost as exc:
            # Lost, cancelled by an operator (the completion or hand-back is fenced on it), or
            # completed by this very claim although its worker never heard so.
            outcome = await self._record_cancelled(job)
            self._log_hand_back(bound, outcome, outcome, elapsed_ms(), error=str(exc))
        except LockWaitTimeout as exc:  # a table held elsewhere: back later, no attempt spent
            delay = _jittered(self.settings.retry_base_s)
            handed = await self._hand_back(
                job, f"deferred: waited too long for a database lock: {exc}", delay_s=delay
            )
            outcome = "deferred" if handed == "handed_back" else handed
            self._log_hand_back(
                bound, handed, outcome, elapsed_ms(), error=str(exc), retry_in_s=round(delay, 2)
            )
        except DatabaseUnavailable as exc:  # an outage: back to pending, no attempt spent
            handed = await self._hand_back(job, f"interrupted by a database outage: {exc}")
            outcome = "completed" if handed == "completed" else "interrupted"
            self._log_hand_back(bound, handed, outcome, elapsed_ms(), error=str(exc))
        except Exception as exc:  # a bug in the handler: keep the job, count the attempt
            # The one rule of worker/queue/outcome.py, for a handler that raised past its own
            # classify: retry_later fails it on its last attempt (a pending symbol: `error`).
            bound.exception("job_finished", outcome="crashed", duration_ms=elapsed_ms())
            with contextlib.suppress(JobLost, DatabaseUnavailable):
                await self.queue.retry_later(self.pool, job, clip(unexpected(exc)))
        finally:
            self._in_flight.pop(key, None)
            self._confirmed.pop(key, None)
            self._abandoned.pop(key, None)
            self._cancelling.discard(key)
            self.metrics.job_finished(job, outcome, time.perf_counter() - started)
            tracing.annotate(
                span,
                {
                    "outcome": outcome,
                    "rows": getattr(result, "rows", None),
                    "source": getattr(result, "source", None),
                },
            )
            traced.close()
            self._wake.set()

    @staticmethod
    def _log_hand_back(
        bound: structlog.typing.FilteringBoundLogger,
        handed: str,
        outcome: str,
        duration_ms: float,
        **details: object,
    ) -> None:
        """The job's one outcome line once the hand-back said what became of it: a completion
        whose acknowledgement was lost is logged as completed (acknowledged=False)."""
        if handed == "completed":
            bound.info(
                "job_finished",
                outcome="completed",
                acknowledged=False,
                duration_ms=duration_ms,
                **details,
            )
        else:
            bound.warning("job_finished", outcome=outcome, duration_ms=duration_ms, **details)

    async def _record_cancelled(self, job: Job) -> str:
        """After the job stopped (cancelled task, or JobLost): `cancelled` if an operator's cancel
        is recorded on its claim now; else `completed` (it committed first) or `lost`."""
        try:
            if await asyncio.wait_for(
                control.finish_cancelled(self.pool, job.id, self.queue.worker_id, job.started_at),
                self.settings.queue_statement_timeout_s,
            ):
                return "cancelled"
        except (DatabaseUnavailable, TimeoutError) as exc:
            # Left processing with its cancel recorded: the stall sweep ends it cancelled.
            log.warning("job_cancel_record_failed", job_id=str(job.id), error=describe(exc))
            return "unreachable"
        return "completed" if await self._completed(job) else "lost"

    def _cancel_requested(self, job_id: uuid.UUID, *, noticed_by: str) -> None:
        """An operator cancelled a job: stop it if this worker runs it (its task's cancellation
        rolls back the job's open transaction; `_execute` then records `cancelled`)."""
        for key, task in list(self._in_flight.items()):
            if key[0] == job_id and key not in self._cancelling:
                self._cancelling.add(key)
                # Scheduled, not called: a task claimed in this same loop turn has not entered
                # _execute yet, and a task cancelled before its first step never runs its
                # finally (the job would stay in flight). Its first step is queued before this.
                asyncio.get_running_loop().call_soon(task.cancel)
                log.info("job_cancel_requested", job_id=str(job_id), noticed_by=noticed_by)

    def _on_cancel_notice(self, payload: str) -> None:
        with contextlib.suppress(ValueError):  # not a job id: not ours to act on
            self._cancel_requested(uuid.UUID(payload), noticed_by="notify")

    async def _completed(self, job: Job) -> bool:
        """Whether this claim of `job` ended completed (False when the database cannot say)."""
        try:
            return await asyncio.wait_for(
                self.queue.completed(self.pool, job), self.settings.queue_statement_timeout_s
            )
        except (DatabaseUnavailable, TimeoutError):
            return False

    async def _hand_back(self, job: Job, reason: str, *, delay_s: float = 0.0) -> HandBack:
        """Return the job to pending (runnable after `delay_s`); if the database is away, the
        stall sweep will. A job no longer ours is checked for a completion of this claim that
        committed unacknowledged (a connection lost during its COMMIT).

        Bounded by the stall timeout, and cut short by an abort (second signal): each attempt
        also has its own timeout, so a silent network cannot hold the shutdown.
        """
        backoff = _Backoff(1.0)
        deadline = time.monotonic() + self.settings.stall_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(
                    self.queue.release(self.pool, job, delay_s=delay_s, reason=reason),
                    timeout=min(5.0, remaining),
                )
                log.info("job_handed_back", job_id=str(job.id), symbol=job.symbol)
                return "handed_back"
            except JobLost:
                return "completed" if await self._completed(job) else "lost"
            except (DatabaseUnavailable, TimeoutError) as exc:
                if time.monotonic() + 0.1 > deadline or self._abort.is_set():
                    # Left processing: once this worker stops heartbeating it, the sweep returns it.
                    log.warning("job_hand_back_failed", job_id=str(job.id), error=describe(exc))
                    return "unreachable"
                await self._wait_abort(backoff.next_delay())

    async def _wait_abort(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._abort.wait(), timeout_s)

    # --- waiting, listening, heartbeats, housekeeping --------------------------------------------

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)

    async def _sleep(self, delay_s: float, *, reason: str, exc: BaseException) -> None:
        log.warning(reason, error=describe(exc), retry_in_s=round(delay_s, 2))
        await self._wait(delay_s)

    async def _drain(self) -> None:
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        if not self._abort.is_set():
            grace = self.settings.shutdown_grace_s
            log.info(
                "shutdown_waiting",
                in_flight=len(tasks),
                grace_s=grace,
                hint="a second SIGTERM or Ctrl-C hands the jobs back now, without waiting",
            )
            abort = asyncio.create_task(self._abort.wait())
            finished = asyncio.ensure_future(asyncio.wait(tasks))
            await asyncio.wait(
                [finished, abort], timeout=grace, return_when=asyncio.FIRST_COMPLETED
            )
            abort.cancel()
            finished.cancel()
        await asyncio.sleep(0)  # tasks created by the last claim enter their handlers first
        for task in tasks:
            task.cancel()  # a no-op for jobs that finished; the rest hand their job back
        # Hand-backs are bounded (see _hand_back); this bound is only a last resort.
        await asyncio.wait(tasks, timeout=self.settings.stall_timeout_s + 5)

    async def _listen_loop(self) -> None:
        backoff = _Backoff(self.settings.reconnect_max_wait_s)
        assert self.listen_dsn is not None
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.listen_dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
                await conn.add_listener(
                    control.CANCEL_CHANNEL, lambda *args: self._on_cancel_notice(args[-1])
                )
                self.listening.set()
                self.listener_connects += 1
                if self.listener_connects > 1:
                    self.metrics.database_reconnect("listen")
                self._wake.set()  # anything enqueued while we were not listening
                log.info("listener_connected")
                backoff.reset()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTENER_PROBE_S)
                    # A network cut is silent on an idle connection: probe it now and then.
                    await conn.execute("SELECT 1", timeout=5)
                raise ConnectionResetError("LISTEN connection closed")
            except Exception as exc:  # polling still finds work; keep trying to listen
                self.listening.clear()
                delay = backoff.next_delay()
                log.warning("listener_lost", error=describe(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.terminate()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            await self._heartbeat_once()
            self._abandon_unconfirmed()
            with contextlib.suppress(TimeoutError):  # a cut network: _announce said nothing yet
                await asyncio.wait_for(self._announce(), self.settings.queue_statement_timeout_s)

    def _abandon_unconfirmed(self) -> None:
        """Jobs whose claim the database has not confirmed for QUEUE_STALL_TIMEOUT_S may be
        running elsewhere by now (any worker's sweep may have taken them): stop them, so that
        nothing more is fetched for them, and leave them to the sweep. Logged once per
        episode; claiming goes on trying and resumes when the database answers."""
        now = time.monotonic()
        limit = self.settings.stall_timeout_s
        if not any(now - self._confirmed.get(key, now) >= limit for key in self._in_flight):
            return
        # The database has not answered for a stall timeout: every running job is as lost as
        # the oldest (they differ by a claim round at most), so they go together, logged once.
        stale = list(self._in_flight)
        for key in stale:
            task = self._in_flight.pop(key)
            self._abandoned[key] = task
            task.cancel()
        if not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning(
                "jobs_abandoned_unreachable",
                jobs=len(stale),
                job_ids=[str(job_id) for job_id, _ in stale],
                unconfirmed_for_s=limit,
            )

    async def _announce(self) -> None:
        """Register this worker, or refresh its row in the live-worker registry."""
        try:
            await registry.announce(
                self.pool,
                self.info,
                in_flight=len(self._in_flight),
                tick_age_s=self.tick_age_s(),
                stopping=self.stopping,
            )
        except DatabaseUnavailable as exc:
            log.warning("worker_announce_failed", error=str(exc))
        except Exception:  # the registry is for operators: never let it stop the worker
            log.exception("worker_announce_failed")

    async def _deregister(self) -> None:
        """A clean stop leaves no row behind (bounded: the database may be gone)."""
        try:
            await asyncio.wait_for(registry.deregister(self.pool, self.queue.worker_id), 5)
        except (TimeoutError, DatabaseUnavailable) as exc:
            log.warning("worker_deregister_failed", error=describe(exc))

    async def _heartbeat_once(self) -> None:
        """One heartbeat of the running jobs, bounded so that a cut network shows in seconds."""
        if not self._in_flight:
            return
        keys = list(self._in_flight)
        timeout_s = self.settings.queue_statement_timeout_s
        sent = time.monotonic()
        try:
            async with self.pool.acquire(timeout=timeout_s) as conn:
                await self.queue.heartbeat(
                    conn, [job_id for job_id, _ in keys], timeout_s=timeout_s
                )
                # A cancel whose NOTIFY this worker missed (no listener, a reconnect).
                cancelled = await control.cancel_requested(
                    conn, [job_id for job_id, _ in keys], self.queue.worker_id
                )
        except DatabaseUnavailable as exc:
            log.warning("heartbeat_failed", error=str(exc))
        except TimeoutError:
            log.warning("heartbeat_failed", error=f"no answer within {timeout_s:g} s")
        except Exception:  # never let the heartbeat die: live jobs would be taken away
            log.exception("heartbeat_failed")
        else:
            self._unreachable_logged = False
            for key in keys:
                if key in self._confirmed:
                    self._confirmed[key] = sent
            for job_id in cancelled:
                self._cancel_requested(job_id, noticed_by="heartbeat")

    async def _housekeeping_loop(self) -> None:
        assert self.housekeeping is not None
        interval = min(self.settings.stall_timeout_s / 3, self.settings.housekeeping_interval_s)
        failing = False  # one warning per episode of an outage or a table held elsewhere
        while True:
            await asyncio.sleep(interval)
            # Our own jobs first, so that after an outage our sweep never takes them from us.
            await self._heartbeat_once()
            try:
                await self.housekeeping()
            except (DatabaseUnavailable, TimeoutError) as exc:
                if not failing:
                    log.warning(
                        "housekeeping_failed",
                        error=describe(exc),
                        lock_wait=isinstance(exc, LockWaitTimeout),
                        retry_in_s=round(interval, 2),
                    )
                failing = True
            except Exception:  # recovery must keep running: log and try again next round
                log.exception("housekeeping_failed")
            else:
                if failing:
                    log.info("housekeeping_resumed")
                failing = False
            self._wake.set()  # recovered jobs are claimable at once


def _jittered(delay_s: float) -> float:
    """Between half and all of `delay_s`, so that jobs handed back together come back spread."""
    return delay_s / 2 + random.uniform(0, delay_s / 2)


class _Backoff:
    """Exponential backoff with jitter for reconnects: 0.1 s doubling up to `max_s`."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.max_s, 0.1 * 2.0 ** (self.failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0
