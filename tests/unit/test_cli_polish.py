"""The command line as a user meets it (issue 11.19): usage errors, help, version, settings."""

import argparse
import math

import pytest

from worker.cli import main as cli
from worker.cli.common import print_error
from worker.core import logs
from worker.core.settings import Settings, SettingsError


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5"])
def test_a_bad_concurrency_is_named_in_plain_words(capsys, value: str) -> None:
    code, _, err = run_main(capsys, "run", "--concurrency", value)
    assert code == 2
    assert f"argument --concurrency: expected a whole number > 0, got {value!r}" in err
    assert "_positive_int" not in err


def test_a_bad_uuid_is_named_in_plain_words(capsys) -> None:
    code, _, err = run_main(capsys, "retry", "not-a-uuid")
    assert code == 2 and "expected a UUID, got 'not-a-uuid'" in err and "invalid UUID" not in err


def test_version(capsys) -> None:
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.startswith("python -m worker ") and out.split()[-1][0].isdigit()


def test_top_level_help_is_for_users_not_the_module_docstring(capsys) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    assert "Onboard stock symbols" in out and "DATABASE_URL" in out and "exit status" in out
    assert (cli.__doc__ or "").splitlines()[0] not in out


def _actions(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_option_and_argument_has_help_text() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in _actions(cli._parser())
        if not action.help
    ]
    assert missing == []


def test_a_bad_log_level_is_refused_not_replaced_by_info() -> None:
    with pytest.raises(
        SettingsError, match="LOG_LEVEL: expected one of debug, info, warning, error, got 'loud'"
    ):
        Settings.from_env({"LOG_LEVEL": "loud"})
    assert Settings.from_env({"LOG_LEVEL": "WARNING"}).log_level == "WARNING"
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        logs.configure(Settings(log_level="verbose"))


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999"])
@pytest.mark.parametrize(
    "name", ["QUEUE_STALL_TIMEOUT_S", "QUEUE_HEARTBEAT_INTERVAL_S", "PRICE_HTTP_TIMEOUT_S"]
)
def test_non_finite_numbers_are_refused(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}: expected a finite number > 0, got '{raw}'"):
        Settings.from_env({name: raw})


@pytest.mark.parametrize(
    "overrides",
    [
        {"heartbeat_interval_s": math.nan},  # nan > anything is False: it passed every check
        {"stall_timeout_s": math.inf},
        {"shutdown_grace_s": math.nan},
        {"retry_max_s": math.inf},
    ],
)
def test_validate_refuses_non_finite_values_set_in_code(overrides: dict[str, float]) -> None:
    with pytest.raises(SettingsError, match="expected a finite number"):
        Settings(**overrides).validate()  # type: ignore[arg-type]


def test_the_error_line_goes_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background log writer shares stderr's descriptor: a line and its newline written
    separately let a log line in between (CI saw `...were copied){"rows_seen": ...`)."""
    import os
    import sys

    writes: list[bytes] = []
    real_write = os.write

    def record(fd: int, data: bytes) -> int:
        if fd == sys.stderr.fileno():
            writes.append(bytes(data))
            return len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", record)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)  # a real descriptor, not pytest's capture
    print_error("error: no market_data_cache rows for NOPE (the other symbols were copied)")
    assert writes == [
        b"error: no market_data_cache rows for NOPE (the other symbols were copied)\n"
    ]
