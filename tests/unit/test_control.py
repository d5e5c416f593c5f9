"""The operator controls' input parsing (worker/control.py)."""

import pytest

from worker.queue import control


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), (" 1.5H ", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert control.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "-5m", "0s", "2w", "1h30m"])
def test_parse_duration_refuses_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90s, 15m, 2h"):
        control.parse_duration(text)


def test_operator_name_is_the_given_name_or_user_at_host() -> None:
    assert control.operator_name(" alice ") == "alice"
    assert "@" in control.operator_name(None)
