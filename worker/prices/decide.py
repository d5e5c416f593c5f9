"""What a job does when no source delivered, as pure functions of the fetch outcome (no I/O).

- defer: some source is paused (a rate limit, a block, the circuit breaker) and may serve the
  symbol once its pause ends: release the job until the soonest pause ends, no attempt spent;
- retry: a transient failure (after the in-process retries): retried with backoff;
- fail: every source refused for good (unknown symbol, no data, bad key, invalid data).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from worker.prices.base import SourceError, SourcePaused, TransientSourceError


@dataclass(frozen=True)
class Defer:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class Retry:
    error: str


@dataclass(frozen=True)
class Fail:
    error: str


Decision = Defer | Retry | Fail


def decide(deferrals: Sequence[SourcePaused], failures: Sequence[SourceError]) -> Decision:
    """Defer when any source is paused, else retry when any failure is transient, else fail;
    the message names every source's reason (the caller masks secrets first)."""
    errors = "; ".join(str(f) for f in failures)
    if deferrals:
        first = min(deferrals, key=lambda d: d.delay_s)
        reason = "; ".join(
            [f"deferred, {d.source} paused for {d.delay_s:.0f} s: {d.reason}" for d in deferrals]
            + ([errors] if errors else [])
        )
        return Defer(first.delay_s, reason)
    if any(isinstance(f, TransientSourceError) for f in failures):
        return Retry(errors)
    return Fail(errors)
