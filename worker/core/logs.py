"""structlog, configured once: JSON lines when stdout is not a terminal, readable console otherwise.

Secrets never reach the output: a processor replaces every known secret value (API keys, the
database password) and any password inside a URL, wherever it appears in an event.

The output can never stop or wedge the worker: lines go to the stream from a thread of its own
(`LineWriter`), so a full pipe (a reader that stopped reading) costs the worker nothing but the
lines it drops, and a closed one (`make run | tee log`, then tee dies) only ends the output.
"""

import contextlib
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

import structlog

from worker.core.settings import LOG_LEVELS, Settings, bad_setting

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_QUERY_SECRET = re.compile(r"(?i)\b(apikey|api_key|token|key|password)=([^&\s\"']+)")
REDACTED = "***"


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value, longest first (so a key inside another is not half-hidden)."""
    values = [settings.polygon_api_key, settings.tiingo_api_key, settings.fmp_api_key]
    for url in (settings.database_url, settings.listen_database_url):
        match = _URL_PASSWORD.search(url or "")
        if match:
            values.append(match.group("pw"))
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m[1]}={REDACTED}", text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class _Redactor:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        return {key: self._clean(value) for key, value in event.items()}

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self.secrets)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value


class LineWriter:
    """Writes log lines to a stream's file descriptor from a daemon thread, never blocking.

    Lines wait in a bounded queue; when it is full (nobody reads the pipe) new lines are
    dropped and counted. A write that fails (EPIPE: the reader is gone) ends the output for
    good. The descriptor is a duplicate written with os.write, so no Python-level lock of
    sys.stdout is ever held by the thread (a daemon thread holding one would abort the
    interpreter's exit).
    """

    def __init__(self, fd: int, *, max_lines: int = 10_000) -> None:
        self._fd = os.dup(fd)
        self._lines: queue.Queue[str] = queue.Queue(maxsize=max_lines)
        self._local = threading.local()
        self.dropped = 0
        self.broken = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        if self.broken:
            return
        nested: list[str] | None = getattr(self._local, "nested", None)
        if nested is not None:
            # Logged from inside this thread's own put, which holds the queue's lock: a garbage
            # collection there can free a future whose exception nobody read, and asyncio logs
            # it (through the standard-library bridge). Queued after the outer line, never a
            # deadlock on that lock.
            nested.append(line)
            return
        self._local.nested = nested = [line]
        try:
            while nested:
                try:
                    self._lines.put_nowait(nested.pop(0))
                except queue.Full:
                    self.dropped += 1
        finally:
            self._local.nested = None

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait up to `timeout_s` for the queued lines to be written; False if some were not."""
        deadline = time.monotonic() + timeout_s
        while self._lines.unfinished_tasks and not self.broken:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        while True:
            lines = [self._lines.get()]
            with contextlib.suppress(queue.Empty):
                while len(lines) < 100:  # a burst of lines in one write
                    lines.append(self._lines.get_nowait())
            data = "".join(line + "\n" for line in lines).encode()
            try:
                while data and not self.broken:
                    data = data[os.write(self._fd, data) :]
            except OSError:  # EPIPE, EBADF: the reader is gone; stop writing for good
                self.broken = True
            finally:
                for _ in lines:
                    self._lines.task_done()


class _LineLogger:
    """structlog's logger interface over a LineWriter (or a plain stream without a descriptor)."""

    def __init__(self, writer: LineWriter | None, stream: IO[str]) -> None:
        self._writer = writer
        self._stream = stream

    def msg(self, message: str) -> None:
        if self._writer is not None:
            self._writer.write(message)
            return
        with contextlib.suppress(OSError, ValueError):  # a closed stream must not raise here
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure(settings: Settings, *, stream: Any = None) -> LineWriter | None:
    """Configure structlog; returns the LineWriter to flush at exit (None for a stream without
    a file descriptor, such as io.StringIO in tests, which is written directly)."""
    stream = stream or sys.stdout
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not stream.isatty()
    )
    if settings.log_level.lower() not in LOG_LEVELS:  # never silently another level
        raise bad_setting("log_level", settings.log_level)
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text before redaction, in both modes, so they are masked too.
        structlog.processors.format_exc_info,
        _Redactor(secrets_of(settings)),
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty()),
    ]
    writer: LineWriter | None = None
    try:
        writer = LineWriter(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (io.StringIO)
        writer = None
    line_logger = _LineLogger(writer, stream)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: line_logger,
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (asyncpg's pool, asyncio's "exception never
    # retrieved"): their records become lines of the same stream, redacted and one per record,
    # instead of multi-line text on stderr from logging's last-resort handler. Warnings and
    # worse only (or LOG_LEVEL's, if higher): at info, httpx alone logs every request.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibBridge)]:
        root.removeHandler(handler)  # configured again: one bridge
    root.addHandler(_StdlibBridge())
    root.setLevel(max(level, logging.WARNING))
    return writer


class _StdlibBridge(logging.Handler):
    """A standard-library log record as a structlog event: the message, the logger's name, and
    the traceback when the record has one."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:  # a broken record must not break the caller, as in logging itself
            self.handleError(record)
