"""How a job ended, decided in one place for the runner and every job kind.

Outcomes (worker/jobs/onboarding.py describes each for onboarding):
- completed: the job's work is stored and the job completed, in one transaction;
- retried: a transient failure, a job past JOB_TIMEOUT_S, a statement timeout or a bug (an
  attempt is spent; `Queue.retry_later` fails it on its last attempt);
- failed: a permanent failure with a message a person can act on;
- deferred: released without spending an attempt (every usable source is paused).
Cancellation, `JobLost`, `DatabaseUnavailable` and `ConfigurationError` propagate: the runner
hands the job back (no attempt spent) or stops.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from structlog.typing import FilteringBoundLogger

from worker.core.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobLost,
    database_errors,
)
from worker.core.settings import Settings
from worker.queue.store import Job

Outcome = Literal["completed", "retried", "failed", "deferred"]

# The runner handles these (lost jobs, database outages); a job never swallows them (nor
# cancellation, which is not an Exception).
PROPAGATE: tuple[type[Exception], ...] = (JobLost, DatabaseUnavailable, ConfigurationError)
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobResult:
    outcome: Outcome
    rows: int | None = None  # rows stored, when known
    error: str | None = None
    # Rows the serving source skipped (invalid, or without a close), by reason; None: none.
    skipped: dict[str, int] | None = None
    source: str | None = None  # the source whose bars were stored, when there were any


def clip(text: str) -> str:
    """An error message as the queue stores it (bounded: a provider may answer with a page)."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def unexpected(exc: BaseException) -> str:
    """The error a bug leaves on its job: retried with its type and message, so an operator
    sees it and the job is not lost."""
    return f"unexpected {type(exc).__name__}: {exc}"


RetryLater = Callable[[Job, str], Awaitable[JobResult]]


async def classify(
    job: Job,
    work: Awaitable[JobResult],
    *,
    kind: str,
    settings: Settings,
    retry_later: RetryLater,
    log: FilteringBoundLogger,
    mask: Callable[[str], str] = str,
) -> JobResult:
    """Run a job's work and settle how it ended, the same way for every kind of job: an
    outage, a lost job or a configuration error propagates (the runner hands the job back or
    stops); a statement timeout, a bug and a job past JOB_TIMEOUT_S are retried with backoff
    (an attempt spent) through the job kind's `retry_later`. `mask` hides secrets in a bug's
    message."""
    deadline = asyncio.timeout(settings.job_timeout_s)
    try:
        with database_errors():
            async with deadline:
                return await work
    except PROPAGATE:
        raise
    except TimeoutError:
        if deadline.expired():
            # A slow or dripping provider (each request is bounded at twice
            # PRICE_HTTP_TIMEOUT_S, each try of the in-process retries again): the slot goes
            # to other symbols, and the queue's backoff tries this one later.
            error = (
                f"the job hit its deadline of {settings.job_timeout_s:g} s "
                "(JOB_TIMEOUT_S) and was stopped"
            )
            log.warning(f"{kind}_deadline_exceeded", error=error)
            return await retry_later(job, error)
        # A statement unanswered within DATABASE_COMMAND_TIMEOUT_S: not an outage (a
        # statement that always times out must run out of attempts), not a bug either.
        error = (
            "a database statement timed out after "
            f"{settings.command_timeout_s:g} s (DATABASE_COMMAND_TIMEOUT_S)"
        )
        log.warning(f"{kind}_statement_timeout", error=error)
        return await retry_later(job, error)
    except Exception as exc:
        # A bug, not a provider problem: retried so an operator sees it and nothing is lost.
        error = clip(mask(unexpected(exc)))
        log.exception(f"{kind}_unexpected_error", error=error)
        return await retry_later(job, error)
