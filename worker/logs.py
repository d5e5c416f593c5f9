"""structlog, configured once: JSON lines when stdout is not a terminal, readable console otherwise.

Secrets never reach the output: a processor replaces every known secret value (API keys, the
database password) and any password inside a URL, wherever it appears in an event.
"""

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

from worker.settings import LOG_LEVELS, Settings, SettingsError

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


def configure(settings: Settings, *, stream: Any = None) -> None:
    stream = stream or sys.stdout
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not stream.isatty()
    )
    if settings.log_level.lower() not in LOG_LEVELS:  # never silently another level
        raise SettingsError(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {settings.log_level!r}"
        )
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
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
