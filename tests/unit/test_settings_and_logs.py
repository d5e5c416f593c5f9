"""Settings from the environment, and log redaction (no database)."""

import io
import json
import logging

import pytest
import structlog

from worker.core import logs
from worker.core.settings import Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.concurrency == 4 and settings.database_url is None
    assert settings.max_attempts == 5 and settings.stall_timeout_s == 30.0


def test_values_are_parsed_and_flags_win() -> None:
    env = {"WORKER_CONCURRENCY": "8", "WORKER_LISTEN": "off", "QUEUE_STALL_TIMEOUT_S": "45.5"}
    settings = Settings.from_env(env, concurrency=2)
    assert (settings.concurrency, settings.listen_enabled, settings.stall_timeout_s) == (
        2,
        False,
        45.5,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WORKER_CONCURRENCY": "many"},
            "WORKER_CONCURRENCY: expected a whole number > 0, got 'many'",
        ),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY: expected a whole number > 0, got '0'"),
        ({"WORKER_LISTEN": "maybe"}, "WORKER_LISTEN: expected on or off .*, got 'maybe'"),
        ({"QUEUE_STALL_TIMEOUT_S": "5"}, "QUEUE_STALL_TIMEOUT_S: expected more than twice"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected auto, json or console, got 'xml'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://u:topsecret@h/db", "POLYGON_API_KEY": "pk_abcdef"}
    )
    assert "topsecret" not in repr(settings) and "pk_abcdef" not in repr(settings)


def test_log_lines_are_json_without_secrets() -> None:
    settings = Settings.from_env(
        {
            "LOG_FORMAT": "json",
            "DATABASE_URL": "postgresql://app:db-pass-123@db.internal/prod",
            "TIINGO_API_KEY": "tiingo-key-xyz",
        }
    )
    out = io.StringIO()
    logs.configure(settings, stream=out)
    log = structlog.get_logger()
    log.info("connect", url=settings.database_url, detail={"headers": "Token tiingo-key-xyz"})
    log.warning("fetch", url="https://api.example.com/x?apikey=abc123&symbol=AAPL")
    try:
        raise RuntimeError("failed for postgresql://app:db-pass-123@db.internal/prod")
    except RuntimeError:
        log.exception("boom")
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    text = out.getvalue()
    for secret in ("db-pass-123", "tiingo-key-xyz", "abc123"):
        assert secret not in text
    assert events[0]["url"] == "postgresql://app:***@db.internal/prod"
    assert "symbol=AAPL" in events[1]["url"]
    assert "RuntimeError" in events[2]["exception"]


def test_console_tracebacks_are_masked_too() -> None:
    settings = Settings.from_env({"LOG_FORMAT": "console", "FMP_API_KEY": "fmp-key-123456"})
    out = io.StringIO()
    logs.configure(settings, stream=out)
    try:
        raise RuntimeError("GET /stable/x?apikey=fmp-key-123456 failed")
    except RuntimeError:
        structlog.get_logger().exception("fetch_failed")
    assert "RuntimeError" in out.getvalue() and "fmp-key-123456" not in out.getvalue()


def test_standard_library_records_become_redacted_json_lines() -> None:
    """asyncpg and asyncio log through `logging`: one JSON line each in the same stream, with
    the traceback as a field and secrets masked, not text on stderr."""
    settings = Settings.from_env(
        {"LOG_FORMAT": "json", "DATABASE_URL": "postgresql://app:db-pass-123@db.internal/prod"}
    )
    out = io.StringIO()
    try:
        logs.configure(settings, stream=out)
        try:
            raise ConnectionResetError("lost postgresql://app:db-pass-123@db.internal/prod")
        except ConnectionResetError:
            logging.getLogger("asyncpg.pool").warning(
                "release of %s failed", "conn-1", exc_info=True
            )
        logging.getLogger("asyncio").debug("below LOG_LEVEL: dropped")
        logging.getLogger("httpx").info("HTTP Request: GET ... (a library's info: dropped)")
        lines = out.getvalue().strip().splitlines()
        assert len(lines) == 1, lines
        (event,) = [json.loads(line) for line in lines]
        assert event["event"] == "release of conn-1 failed"
        assert event["logger"] == "asyncpg.pool" and event["level"] == "warning"
        assert "ConnectionResetError" in event["exception"]
        assert "db-pass-123" not in out.getvalue()
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logs._StdlibBridge)]:
            root.removeHandler(handler)


def test_a_line_logged_inside_the_writers_own_put_neither_deadlocks_nor_is_lost() -> None:
    """A garbage collection inside `put` (which holds the queue's lock) can make asyncio log
    through the standard-library bridge into the same writer: simulated by logging from the
    queue's `_put`, which runs under that lock. Before: the thread waited on itself forever."""
    import os
    import threading

    read_fd, write_fd = os.pipe()
    writer = logs.LineWriter(write_fd)
    lines = writer._lines
    plain_put = lines._put  # type: ignore[attr-defined]

    def put_then_log(item: str) -> None:
        plain_put(item)
        if item == "outer":
            writer.write("nested")

    lines._put = put_then_log  # type: ignore[attr-defined]
    done = threading.Event()
    thread = threading.Thread(target=lambda: (writer.write("outer"), done.set()), daemon=True)
    thread.start()
    assert done.wait(5), "the writer deadlocked on its own queue"
    assert writer.flush(5)
    os.close(write_fd)
    assert os.read(read_fd, 100) == b"outer\nnested\n"
    os.close(read_fd)
