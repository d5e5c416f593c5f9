"""The rate limiter's settings (PRICE_RATE_LIMIT_*), without a database; the shared limiter
itself is tested in tests/integration/test_ratelimit.py."""

import pytest

from worker.core.settings import SettingsError
from worker.prices.ratelimit import Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2000/hour", Rate(2000, "hour")), (" 5 / minute ", Rate(5, "minute")), ("off", None)],
)
def test_parse_rate(text: str, expected: Rate | None) -> None:
    assert parse_rate("PRICE_RATE_LIMIT_X", text) == expected


@pytest.mark.parametrize("text", ["0/hour", "5/fortnight", "fast", "-1/day", "5"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(SettingsError, match="PRICE_RATE_LIMIT_X"):
        parse_rate("PRICE_RATE_LIMIT_X", text)


def test_rate_spacing() -> None:
    assert Rate(2000, "hour").spacing_s == 1.8 and Rate(5, "minute").spacing_s == 12.0
