"""The backfill's argument checks, progress lines and summary, without a database."""

import argparse
import io
from typing import Any

import pytest
from structlog.testing import capture_logs

from worker.cli.backfill import (
    LogProgress,
    TerminalProgress,
    add_arguments,
    format_duration,
    format_progress,
    format_summary,
)
from worker.core.symbols import InvalidSymbolError
from worker.host.backfill import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_JOBS,
    BackfillProgress,
    BackfillSummary,
    backfill,
    parse_symbols,
)

# Nothing listens here: an attempt to connect would raise OSError, not the ValueError expected.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backfill")
    add_arguments(p)
    return p


def progress(**overrides: Any) -> BackfillProgress:
    fields = {
        "rows_done": 500_000,
        "rows_total": 2_000_000,
        "rows_inserted": 400_000,
        "symbols_added": 1_234,
        "batches": 10,
        "last_symbol": "MSFT",
        "elapsed_s": 5.0,
    }
    return BackfillProgress(**{**fields, **overrides})


def test_defaults() -> None:
    args = parser().parse_args([])
    assert (args.batch_size, args.jobs, args.symbols, args.dry_run) == (
        DEFAULT_BATCH_SIZE,
        1,
        None,
        False,
    )


def test_symbols_are_trimmed_upper_cased_sorted_and_deduplicated() -> None:
    args = parser().parse_args(["--symbols", " brk.b,AAPL , ^gspc,eurusd=x,AAPL", "--dry-run"])
    assert args.symbols == ["AAPL", "BRK.B", "EURUSD=X", "^GSPC"]
    assert args.dry_run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "invalid batch size 0: expected 1 to 1,000,000"),
        (["--batch-size", "-3"], "invalid batch size -3"),
        (["--batch-size", str(MAX_BATCH_SIZE + 1)], "expected 1 to"),
        (["--batch-size", "lots"], "invalid batch size 'lots': expected an integer"),
        (["--batch-size", "1e3"], "expected an integer"),
        (["--jobs", "0"], "invalid jobs 0: expected 1 to 8"),
        (["--jobs", "9"], "invalid jobs 9"),
        (["--jobs", "two"], "invalid jobs 'two': expected an integer"),
        (["--symbols", "AAPL,,MSFT"], "empty entry"),
        (["--symbols", "AAPL,"], "empty entry"),
        (["--symbols", "AAPL,NOT VALID"], "invalid symbol 'NOT VALID'"),
        (["--symbols", "A" * 21], "1-20 letters"),
        (["--symbols", "ÄPFEL"], "invalid symbol"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_parse_symbols_rejects_a_bad_symbol_naming_it() -> None:
    with pytest.raises(InvalidSymbolError, match="'AA PL'"):
        parse_symbols("MSFT,AA PL")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "invalid batch size 0"),
        ({"batch_size": -5}, ValueError, "invalid batch size -5"),
        ({"batch_size": MAX_BATCH_SIZE + 1}, ValueError, "expected 1 to"),
        ({"batch_size": True}, ValueError, "expected an integer"),
        ({"batch_size": "100"}, ValueError, "expected an integer"),
        ({"jobs": 0}, ValueError, "invalid jobs 0"),
        ({"jobs": MAX_JOBS + 1}, ValueError, "expected 1 to"),
        ({"jobs": 2.0}, ValueError, "expected an integer"),
        ({"symbols": ["AAA", "NOT A SYMBOL"]}, InvalidSymbolError, "NOT A SYMBOL"),
        ({"symbols": ["X" * 21]}, InvalidSymbolError, "1-20"),
        ({"symbols": [""]}, InvalidSymbolError, "invalid symbol"),
        ({"symbols": []}, ValueError, "empty"),
        ({"symbols": "AAPL"}, TypeError, "expected a list of symbols"),
    ],
)
async def test_backfill_rejects_bad_input_before_connecting(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await backfill(UNREACHABLE, **kwargs)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "--:--"), (0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3725.2, "1:02:05")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_rate_and_eta() -> None:
    p = progress()
    assert p.rows_per_s == 100_000
    assert p.eta_s == 15.0
    assert progress(elapsed_s=0.0).eta_s is None
    assert progress(rows_done=2_100_000).eta_s == 0.0
    assert format_progress(p) == (
        "backfill 500,000/2,000,000 rows (25.0%), 400,000 inserted, 1,234 symbols added, "
        "100,000 rows/s, ETA 0:15"
    )


def test_terminal_progress_redraws_one_line_and_ends_it() -> None:
    stream = io.StringIO()
    reporter = TerminalProgress(stream)
    reporter(progress(rows_done=1))
    reporter(progress(rows_done=2))
    reporter.close()
    out = stream.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "backfill 2/2,000,000 rows" in out


def test_log_progress_logs_the_first_batch_then_at_most_once_per_interval() -> None:
    now = [0.0]
    reporter = LogProgress(interval_s=10.0, clock=lambda: now[0])
    with capture_logs() as logs:
        for t, done in [(0.0, 1), (3.0, 2), (9.9, 3), (10.0, 4), (15.0, 5), (20.5, 6)]:
            now[0] = t
            reporter(progress(rows_done=done))
    assert [e["event"] for e in logs] == ["backfill_progress"] * 3
    assert [e["rows_done"] for e in logs] == [1, 4, 6]
    assert logs[0]["rows_total"] == 2_000_000 and logs[0]["last_symbol"] == "MSFT"


def test_summary_for_a_person_and_for_logs() -> None:
    summary = BackfillSummary(
        rows_seen=2_000_000,
        rows_inserted=1_999_000,
        symbols_added=8_000,
        symbols_updated=3,
        batches=40,
        elapsed_s=20.0,
        dry_run=False,
        adjusted_close=False,
        symbols_not_found=("NOPE",),
    )
    text = format_summary(summary)
    assert "rows inserted: 1,999,000, skipped (already there): 1,000" in text
    assert "added to symbol_universe: 8,000" in text
    assert "NULL (no adjusted_close column)" in text
    assert "not in market_data_cache: NOPE" in text
    fields = summary.log_fields()
    assert fields["rows_skipped"] == 1_000 and fields["rows_per_s"] == 100_000.0
    assert fields["symbols_not_found"] == ["NOPE"]
