"""What a job does when no source delivered (worker/prices/decide.py): pure, no database."""

from worker.prices.base import NoData, SourcePaused, SymbolNotFound, TransientSourceError
from worker.prices.decide import Defer, Fail, Retry, decide


def test_a_paused_source_defers_until_the_soonest_pause_ends_and_names_every_reason() -> None:
    decision = decide(
        [SourcePaused("polygon", 120, "rate limited"), SourcePaused("yahoo", 30, "blocked")],
        [NoData("tiingo", "no rows")],
    )
    assert isinstance(decision, Defer)
    assert decision.delay_s == 30
    assert decision.reason == (
        "deferred, polygon paused for 120 s: rate limited; "
        "deferred, yahoo paused for 30 s: blocked; tiingo: no rows"
    )


def test_a_pause_wins_over_a_transient_failure() -> None:
    decision = decide([SourcePaused("yahoo", 5, "blocked")], [TransientSourceError("fmp", "502")])
    assert isinstance(decision, Defer) and decision.delay_s == 5


def test_a_transient_failure_is_retried() -> None:
    decision = decide([], [SymbolNotFound("yahoo", "unknown"), TransientSourceError("fmp", "502")])
    assert decision == Retry("yahoo: unknown; fmp: 502")


def test_only_permanent_failures_fail() -> None:
    assert decide([], [SymbolNotFound("yahoo", "unknown")]) == Fail("yahoo: unknown")
