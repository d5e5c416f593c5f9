"""Every setting, read from the environment once into a frozen dataclass.

Each field names its environment variable; the README lists them all with their defaults.
"""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.errors import ConfigurationError

LOG_LEVELS = ("debug", "info", "warning", "error")
TRUE_WORDS = ("1", "true", "yes", "on")
BOOLEAN_WORDS = ("1", "true", "yes", "0", "false", "no")


class SettingsError(ConfigurationError, ValueError):
    """A setting has a value the worker cannot use."""


def _env(name: str, default: Any, *, secret: bool = False) -> Any:
    # Secrets (passwords in URLs, API keys) stay out of repr(), so out of logs and tracebacks.
    return field(default=default, repr=not secret, metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    # Database
    database_url: str | None = _env("DATABASE_URL", None, secret=True)
    listen_database_url: str | None = _env("LISTEN_DATABASE_URL", None, secret=True)
    listen_enabled: bool = _env("WORKER_LISTEN", True)
    embedded_pgdata: Path = _env("EMBEDDED_PGDATA", Path(".data/pg"))
    # 0 behind a transaction-pooling proxy (PgBouncer), which cannot keep prepared statements.
    statement_cache_size: int = _env("DATABASE_STATEMENT_CACHE_SIZE", 100)
    # A statement that has not answered by then is treated as a lost connection (a silent
    # network cut would otherwise hold a job, or the shutdown, forever).
    command_timeout_s: float = _env("DATABASE_COMMAND_TIMEOUT_S", 60.0)
    # A worker connection idle inside a transaction this long is closed by the server, so a
    # frozen worker cannot hold a symbol's rows locked (0: off). Direct connections only: behind
    # PgBouncer, set its idle_transaction_timeout.
    idle_in_transaction_timeout_s: float = _env("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S", 10.0)
    # A lock wait longer than this ends the statement (SQLSTATE 55P03): the host holding one of
    # its tables (its own migration) makes a job wait and come back later, without spending an
    # attempt, instead of timing out at DATABASE_COMMAND_TIMEOUT_S. Our own lock waits (two
    # workers on one symbol, the factor reference lock) last milliseconds to a few seconds.
    lock_timeout_s: float = _env("DATABASE_LOCK_TIMEOUT_S", 10.0)
    # Runner
    # The most one job may take, its fetch and in-process retries included (the host's own bar
    # for onboarding a symbol is 60 s); then it is retried later with its attempt spent.
    job_timeout_s: float = _env("JOB_TIMEOUT_S", 60.0)
    concurrency: int = _env("WORKER_CONCURRENCY", 4)
    poll_interval_s: float = _env("WORKER_POLL_INTERVAL_S", 2.0)
    shutdown_grace_s: float = _env("WORKER_SHUTDOWN_GRACE_S", 30.0)
    housekeeping_interval_s: float = _env("WORKER_HOUSEKEEPING_INTERVAL_S", 60.0)
    reconnect_max_wait_s: float = _env("WORKER_RECONNECT_MAX_WAIT_S", 30.0)
    worker_name: str | None = _env("WORKER_NAME", None)
    # `run --burst` (cron, CI) exits 1 once the database has been unreachable this long.
    burst_max_outage_s: float = _env("WORKER_BURST_MAX_OUTAGE_S", 60.0)
    # A dead worker (no heartbeat for QUEUE_STALL_TIMEOUT_S) stays listed, as dead, this long;
    # then housekeeping deletes its row from the live-worker registry.
    dead_worker_retention_s: float = _env("WORKER_DEAD_RETENTION_S", 3600.0)
    # The worker's HTTP endpoint (/healthz, /readyz, /metrics, the status page): off when unset;
    # 0 picks a free port (logged as http_listening).
    http_port: int | None = _env("WORKER_HTTP_PORT", None)
    http_host: str = _env("WORKER_HTTP_HOST", "127.0.0.1")
    # Queue lifecycle
    max_attempts: int = _env("QUEUE_MAX_ATTEMPTS", 5)
    retry_base_s: float = _env("QUEUE_RETRY_BASE_S", 10.0)
    retry_max_s: float = _env("QUEUE_RETRY_MAX_S", 3600.0)
    heartbeat_interval_s: float = _env("QUEUE_HEARTBEAT_INTERVAL_S", 5.0)
    stall_timeout_s: float = _env("QUEUE_STALL_TIMEOUT_S", 30.0)
    prune_completed_days: float = _env("QUEUE_PRUNE_COMPLETED_DAYS", 7.0)
    prune_failed_days: float = _env("QUEUE_PRUNE_FAILED_DAYS", 30.0)
    prune_batch_size: int = _env("QUEUE_PRUNE_BATCH_SIZE", 1000)
    # Price sources
    price_source: str = _env("PRICE_SOURCE", "yahoo")
    price_lookback_days: int = _env("PRICE_LOOKBACK_DAYS", 365)
    http_timeout_s: float = _env("PRICE_HTTP_TIMEOUT_S", 20.0)
    yahoo_base_url: str = _env("YAHOO_BASE_URL", "https://query2.finance.yahoo.com")
    polygon_base_url: str = _env("POLYGON_BASE_URL", "https://api.polygon.io")
    polygon_api_key: str | None = _env("POLYGON_API_KEY", None, secret=True)
    tiingo_base_url: str = _env("TIINGO_BASE_URL", "https://api.tiingo.com")
    tiingo_api_key: str | None = _env("TIINGO_API_KEY", None, secret=True)
    fmp_base_url: str = _env("FMP_BASE_URL", "https://financialmodelingprep.com")
    fmp_api_key: str | None = _env("FMP_API_KEY", None, secret=True)
    price_csv_dir: Path | None = _env("PRICE_CSV_DIR", None)
    # In-process retries of one source's fetch on a transient error (timeout, 5xx, bad body),
    # exponential with jitter, before the job goes back to the queue's backoff.
    http_retries: int = _env("PRICE_HTTP_RETRIES", 3)
    http_retry_wait_s: float = _env("PRICE_HTTP_RETRY_WAIT_S", 1.0)
    http_retry_max_wait_s: float = _env("PRICE_HTTP_RETRY_MAX_WAIT_S", 30.0)
    # Request rate per source, shared by every worker process: "N/second|minute|hour|day"
    # (requests evenly spaced), or "off". Checked by worker.prices.ratelimit.parse_rate.
    rate_limit_yahoo: str = _env("PRICE_RATE_LIMIT_YAHOO", "2000/hour")
    rate_limit_polygon: str = _env("PRICE_RATE_LIMIT_POLYGON", "5/minute")
    rate_limit_tiingo: str = _env("PRICE_RATE_LIMIT_TIINGO", "off")
    rate_limit_fmp: str = _env("PRICE_RATE_LIMIT_FMP", "off")
    # A job waits at most this long for its request slot; longer, it is deferred instead.
    rate_limit_max_wait_s: float = _env("PRICE_RATE_LIMIT_MAX_WAIT_S", 30.0)
    # How long a source pauses after a rate-limit signal without Retry-After, and after it
    # answered with a block, consent or challenge page.
    rate_limit_pause_s: float = _env("PRICE_RATE_LIMIT_PAUSE_S", 300.0)
    blocked_pause_s: float = _env("PRICE_BLOCKED_PAUSE_S", 900.0)
    # Circuit breaker: after this many consecutive transient failures of a source (jobs whose
    # in-process retries all failed, counted across every process; 0: off), the source pauses
    # for PRICE_SOURCE_FAILURE_PAUSE_S like a rate limit, so queued jobs are deferred instead of
    # spending their attempts on an outage. A success resets the count.
    source_failures_before_pause: int = _env("PRICE_SOURCE_FAILURES_BEFORE_PAUSE", 5)
    source_failure_pause_s: float = _env("PRICE_SOURCE_FAILURE_PAUSE_S", 120.0)
    # Refresh (worker/refresh.py, worker/schedule.py)
    # A refresh re-fetches this many sessions before last_price_date, to notice corrections and
    # re-adjusted history (splits, dividends) by comparing them with the stored rows.
    refresh_overlap_sessions: int = _env("REFRESH_OVERLAP_SESSIONS", 3)
    # Refreshes in a row on which every source calls a symbol unknown or delisted before it is
    # marked delisted (and no longer refreshed; its prices are kept).
    refresh_delist_after: int = _env("REFRESH_DELIST_AFTER", 3)
    # The exchange calendar (ISO 10383 MIC, exchange_calendars) that says which sessions closed.
    refresh_calendar: str = _env("REFRESH_CALENDAR", "XNYS")
    # When the running worker enqueues the daily refresh: a wall-clock time on each session day
    # of REFRESH_CALENDAR in REFRESH_SCHEDULE_TIMEZONE ("off": never; `refresh` still works).
    refresh_schedule_time: str = _env("REFRESH_SCHEDULE_TIME", "18:00")
    refresh_schedule_timezone: str = _env("REFRESH_SCHEDULE_TIMEZONE", "America/New_York")
    # Bulk refresh (worker/bulk.py): "auto" loads Polygon's grouped daily bars (one request per
    # session for every symbol) when polygon leads PRICE_SOURCE; "off": per-symbol requests only.
    refresh_bulk: str = _env("REFRESH_BULK", "auto")
    # Windows longer than this many sessions (a symbol far behind) use per-symbol requests.
    refresh_bulk_max_sessions: int = _env("REFRESH_BULK_MAX_SESSIONS", 10)
    # Factor betas (worker/factors): "on" computes them in every job that stores prices and
    # refuses to start where they cannot be written; "auto" computes them where they can be
    # written and otherwise keeps prices flowing without betas, computing the skipped ones once
    # the host seeds its factor names (housekeeping notices); "off" never. true/false are on/off.
    factors_enabled: str = _env("FACTORS_ENABLED", "auto")
    # Calendar days of prices read before the calculation date (180 returns need about 260;
    # the rest absorbs gaps in a series).
    factor_history_days: int = _env("FACTOR_HISTORY_DAYS", 400)
    # Symbols per transaction in the `factors` command and when waiting symbols are resolved.
    factor_batch_size: int = _env("FACTOR_BATCH_SIZE", 2000)
    # Connections the `factors` command runs batches on at once (one is read by the server while
    # another is solved and written).
    factor_connections: int = _env("FACTOR_CONNECTIONS", 2)
    # The host's own tables (worker/host.py). "auto" mirrors every stored bar into the host's
    # market_data_cache where the host owns one; "on" refuses to start without it; "off" never.
    host_price_mirror: str = _env("HOST_PRICE_MIRROR", "auto")
    # "auto" deletes the cached analytics of the portfolios holding a symbol whose prices or
    # betas changed, where the host has a positions table; "off" never.
    cache_invalidation: str = _env("CACHE_INVALIDATION", "auto")
    # Logs
    log_format: str = _env("LOG_FORMAT", "auto")  # auto | json | console
    log_level: str = _env("LOG_LEVEL", "info")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every field from `environ` (default: os.environ); `overrides` win (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = environ.get(name)
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(name, raw.strip(), f.default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # nan and inf would pass every comparison below (nan compares False to anything).
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{env_name(f.name)} must be a finite number, got {value!r}")
        positive = (
            "command_timeout_s",
            "lock_timeout_s",
            "job_timeout_s",
            "reconnect_max_wait_s",
            "housekeeping_interval_s",
            "prune_completed_days",
            "prune_failed_days",
            "concurrency",
            "poll_interval_s",
            "heartbeat_interval_s",
            "dead_worker_retention_s",
            "stall_timeout_s",
            "max_attempts",
            "prune_batch_size",
            "price_lookback_days",
            "http_timeout_s",
            "refresh_delist_after",
            "refresh_bulk_max_sessions",
            "burst_max_outage_s",
            "factor_history_days",
            "factor_batch_size",
            "factor_connections",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)} must be > 0, got {getattr(self, name)!r}")
        non_negative = (
            "idle_in_transaction_timeout_s",
            "shutdown_grace_s",
            "refresh_overlap_sessions",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise SettingsError(f"{env_name(name)} must be >= 0, got {getattr(self, name)!r}")
        if self.stall_timeout_s <= 2 * self.heartbeat_interval_s:
            raise SettingsError(
                "QUEUE_STALL_TIMEOUT_S must exceed twice QUEUE_HEARTBEAT_INTERVAL_S, "
                f"got {self.stall_timeout_s} and {self.heartbeat_interval_s}"
            )
        if self.lock_timeout_s >= self.command_timeout_s:
            raise SettingsError(
                "DATABASE_LOCK_TIMEOUT_S must be shorter than DATABASE_COMMAND_TIMEOUT_S, "
                f"got {self.lock_timeout_s} and {self.command_timeout_s}"
            )
        self.schedule_time()
        for name, allowed in (
            ("factors_enabled", ("auto", "on", "off", *BOOLEAN_WORDS)),
            ("host_price_mirror", ("auto", "on", "off")),
            ("cache_invalidation", ("auto", "off")),
        ):
            if str(getattr(self, name)).strip().lower() not in allowed:
                shown = [a for a in allowed if a not in BOOLEAN_WORDS]
                raise SettingsError(
                    f"{env_name(name)} must be {', '.join(shown[:-1])} or {shown[-1]}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.refresh_bulk not in ("auto", "off"):
            raise SettingsError(f"REFRESH_BULK must be auto or off, got {self.refresh_bulk!r}")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise SettingsError(f"WORKER_HTTP_PORT must be 0-65535, got {self.http_port}")
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(
                f"LOG_FORMAT must be auto, json or console, got {self.log_format!r}"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )

    @property
    def factors_mode(self) -> str:
        """FACTORS_ENABLED as auto, on or off (true/false and the like read as on/off)."""
        value = str(self.factors_enabled).strip().lower()
        if value in ("auto", "on", "off"):
            return value
        return "on" if value in TRUE_WORDS else "off"

    @property
    def queue_statement_timeout_s(self) -> float:
        """The bound on a claim and a heartbeat: statements of milliseconds on one index, so one
        unanswered for a heartbeat interval means the way to the database is gone (noticed in
        seconds, not after DATABASE_COMMAND_TIMEOUT_S); it also keeps a heartbeat from
        overlapping the next, and two missed beats still fit in the stall timeout. At least 1 s:
        a busy machine must not turn a slow answer into a cut network."""
        return min(self.command_timeout_s, max(1.0, self.heartbeat_interval_s))

    def schedule_time(self) -> tuple[time, ZoneInfo] | None:
        """REFRESH_SCHEDULE_TIME and _TIMEZONE, checked; None when the schedule is off."""
        if self.refresh_schedule_time.strip().lower() == "off":
            return None
        try:
            at = time.fromisoformat(self.refresh_schedule_time.strip())
        except ValueError:
            raise SettingsError(
                f"REFRESH_SCHEDULE_TIME={self.refresh_schedule_time!r} is not HH:MM (or off)"
            ) from None
        try:
            zone = ZoneInfo(self.refresh_schedule_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"REFRESH_SCHEDULE_TIMEZONE={self.refresh_schedule_timezone!r} is not an IANA "
                "time zone (e.g. America/New_York)"
            ) from None
        return at, zone


def env_name(field_name: str) -> str:
    """The environment variable behind a Settings field."""
    return next(str(f.metadata["env"]) for f in fields(Settings) if f.name == field_name)


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if math.isfinite(value):
                return value
            raise ValueError(raw)
        if name.endswith("_PORT"):
            return int(raw)
        if isinstance(default, Path) or name.endswith("_DIR"):
            return Path(raw)
    except ValueError:
        kind = (
            "port number"
            if name.endswith("_PORT")
            else "finite number"
            if isinstance(default, float)
            else type(default).__name__
        )
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
