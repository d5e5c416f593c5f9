"""The refresh's decisions without a database: trading sessions, the overlap comparison and the
split ratio, the schedule settings."""

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from worker.core.settings import Settings, SettingsError
from worker.core.trading_calendar import TradingCalendar
from worker.jobs.refresh import PriceChange, price_changes, split_ratio
from worker.prices.base import Bar

NEW_YORK = ZoneInfo("America/New_York")
CALENDAR = TradingCalendar("XNYS", now=datetime(2023, 12, 1, tzinfo=UTC))


def bar(day: date, close: str, adj: str | None = None) -> Bar:
    return Bar(day, None, None, None, Decimal(close), None if adj is None else Decimal(adj), None)


def test_sessions_skip_weekends_and_holidays() -> None:
    assert CALENDAR.sessions_between(date(2023, 11, 21), date(2023, 11, 28)) == [
        date(2023, 11, 21),
        date(2023, 11, 22),
        date(2023, 11, 24),  # Thanksgiving (23rd) is a holiday
        date(2023, 11, 27),
        date(2023, 11, 28),
    ]
    assert not CALENDAR.is_session(date(2023, 11, 25))
    assert CALENDAR.sessions_back(date(2023, 11, 27), 2) == date(2023, 11, 22)
    assert CALENDAR.sessions_back(date(2023, 11, 26), 0) == date(2023, 11, 24)


def test_the_last_completed_session_waits_for_the_close_early_closes_included() -> None:
    def last(*args: int) -> date:
        return CALENDAR.last_completed_session(datetime(*args, tzinfo=NEW_YORK))

    assert last(2023, 11, 28, 15, 59) == date(2023, 11, 27)
    assert last(2023, 11, 28, 16, 0) == date(2023, 11, 28)
    assert last(2023, 11, 24, 13, 0) == date(2023, 11, 24)  # the day after Thanksgiving: 13:00
    assert last(2023, 11, 23, 20, 0) == date(2023, 11, 22)
    assert last(2023, 11, 26, 12, 0) == date(2023, 11, 24)


def test_a_calendar_far_from_the_clock_it_was_built_for_is_rebuilt() -> None:
    calendar = TradingCalendar("XNYS", now=datetime(2023, 1, 1, tzinfo=UTC))
    assert calendar.is_session(date(2030, 12, 2))  # beyond its first build: rebuilt
    assert not calendar.is_session(date(2030, 12, 25))


def test_an_unknown_calendar_is_a_settings_error() -> None:
    with pytest.raises(
        SettingsError, match=r"REFRESH_CALENDAR: expected an exchange calendar .*, got 'XXXX'"
    ):
        TradingCalendar("XXXX")


def test_values_within_a_tick_are_rounding_not_changes() -> None:
    stored = [(date(2023, 1, 3), Decimal("125.0700"), Decimal("123.6325"))]
    assert price_changes(stored, [bar(date(2023, 1, 3), "125.0701", "123.6324")]) == []
    # A source without adjusted closes cannot contradict a stored one.
    assert price_changes(stored, [bar(date(2023, 1, 3), "125.0700")]) == []
    assert price_changes(stored, [bar(date(2023, 1, 3), "125.0700", "123.1000")]) == [
        PriceChange(date(2023, 1, 3), "adj_close_price", Decimal("123.6325"), Decimal("123.1000"))
    ]


def change(old: str, new: str) -> PriceChange:
    return PriceChange(date(2023, 1, 3), "close_price", Decimal(old), Decimal(new))


@pytest.mark.parametrize(
    ("changes", "ratio"),
    [
        ([change("100", "50"), change("101", "50.5")], "2:1"),
        ([change("30", "90"), change("33", "99")], "1:3"),  # a 1-for-3 reverse split
        ([change("150", "100")], "3:2"),
        ([change("100", "99.2"), change("101", "100.19")], None),  # a dividend's re-adjustment
        ([change("100", "50"), change("100", "40")], None),  # no single ratio
        ([change("100", "43.7")], None),  # far from a simple ratio: a correction
    ],
)
def test_split_ratio(changes: list[PriceChange], ratio: str | None) -> None:
    assert split_ratio(changes) == ratio


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REFRESH_SCHEDULE_TIME": "6pm"},
            "REFRESH_SCHEDULE_TIME: expected HH:MM or off, got '6pm'",
        ),
        (
            {"REFRESH_SCHEDULE_TIMEZONE": "New York"},
            "REFRESH_SCHEDULE_TIMEZONE: expected an IANA time zone",
        ),
        (
            {"REFRESH_OVERLAP_SESSIONS": "-1"},
            "REFRESH_OVERLAP_SESSIONS: expected a whole number >= 0, got '-1'",
        ),
        (
            {"REFRESH_DELIST_AFTER": "0"},
            "REFRESH_DELIST_AFTER: expected a whole number > 0, got '0'",
        ),
        ({"REFRESH_BULK": "always"}, "REFRESH_BULK: expected auto or off, got 'always'"),
        (
            {"REFRESH_BULK_MAX_SESSIONS": "0"},
            "REFRESH_BULK_MAX_SESSIONS: expected a whole number > 0",
        ),
    ],
)
def test_refresh_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_schedule_can_be_off() -> None:
    assert Settings.from_env({"REFRESH_SCHEDULE_TIME": "off"}).schedule_time() is None
