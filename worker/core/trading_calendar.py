"""Trading sessions from a kept exchange calendar (exchange_calendars), not a hand-written list.

The refresh asks only for sessions that have closed: `last_completed_session(now)` is the latest
session whose close (early closes included) is at or before `now`, so a weekend or holiday adds
nothing to fetch. The calendar is read once into plain sorted lists (dates and UTC closes) and
answered with bisect; it covers 1990 to two years past the clock it was built for, and is rebuilt
when asked about a moment beyond that (a worker that runs for years).
"""

import bisect
import functools
import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from worker.core.settings import SettingsError

FIRST_YEAR = 1990
YEARS_AHEAD = 2


class TradingCalendar:
    """The sessions of one exchange calendar (`XNYS` by default), by its ISO 10383 MIC."""

    def __init__(self, name: str = "XNYS", *, now: datetime | None = None) -> None:
        self.name = name
        self._build((now or datetime.now(UTC)).date())

    def _build(self, today: date) -> None:
        import exchange_calendars  # pandas behind it: imported when a calendar is first built

        end = date(today.year + YEARS_AHEAD, 12, 31)
        try:
            with warnings.catch_warnings():
                # exchange_calendars 4.13 reads Series.values, which pandas 3.1 deprecates for
                # tz-aware series; the library's concern, harmless here (we read UTC closes).
                warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
                calendar = exchange_calendars.get_calendar(
                    self.name, start=date(FIRST_YEAR, 1, 2), end=end
                )
        except exchange_calendars.errors.InvalidCalendarName:
            raise SettingsError(
                "REFRESH_CALENDAR: expected an exchange calendar (an ISO 10383 MIC such as XNYS,"
                f" XLON, XETR), got {self.name!r}"
            ) from None
        self._sessions: list[date] = [ts.date() for ts in calendar.sessions]
        self._closes: list[datetime] = [ts.to_pydatetime() for ts in calendar.closes]
        self._end = end

    def _check(self, day: date) -> None:
        if day > self._end - timedelta(days=366):
            self._build(day)

    def is_session(self, day: date) -> bool:
        self._check(day)
        i = bisect.bisect_left(self._sessions, day)
        return i < len(self._sessions) and self._sessions[i] == day

    def session_close(self, day: date) -> datetime:
        """The session's close (UTC); ValueError if `day` is not a session."""
        self._check(day)
        i = bisect.bisect_left(self._sessions, day)
        if i == len(self._sessions) or self._sessions[i] != day:
            raise ValueError(f"{day} is not a {self.name} session")
        return self._closes[i]

    def last_completed_session(self, now: datetime) -> date:
        """The latest session whose close is at or before `now` (an aware datetime)."""
        self._check(now.date())
        i = bisect.bisect_right(self._closes, now.astimezone(UTC))
        if i == 0:
            raise ValueError(f"no {self.name} session closed before {now.isoformat()}")
        return self._sessions[i - 1]

    def sessions_between(self, start: date, end: date) -> list[date]:
        """The sessions from `start` to `end`, both inclusive."""
        self._check(end)
        lo = bisect.bisect_left(self._sessions, start)
        hi = bisect.bisect_right(self._sessions, end)
        return self._sessions[lo:hi]

    def sessions_back(self, day: date, count: int) -> date:
        """The session `count` sessions before `day` (a session or not): 0 gives the latest
        session on or before `day`."""
        self._check(day)
        i = bisect.bisect_right(self._sessions, day) - 1 - count
        return self._sessions[max(i, 0)]

    def sessions_on_or_after(self, day: date, count: int) -> Sequence[date]:
        """The first `count` sessions on or after `day`."""
        self._check(day + timedelta(days=count * 2 + 10))
        i = bisect.bisect_left(self._sessions, day)
        return self._sessions[i : i + count]


@functools.cache
def shared_calendar(name: str) -> TradingCalendar:
    """One calendar per name and process, for callers that ask often (the status views): built
    once (about 0.1 s), and it rebuilds itself when the clock outgrows it."""
    return TradingCalendar(name)
