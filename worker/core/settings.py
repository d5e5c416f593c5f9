"""Every setting, read from the environment once into a frozen dataclass.

Each field names its environment variable and says what it does (`help`); the docs' settings page
is generated from them (tools/settings_doc.py). A bad value is reported in one style wherever it
comes from (an environment variable, a value set in code, a command-line flag):
`NAME: expected WHAT, got VALUE`.
"""

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.core.errors import ConfigurationError

LOG_LEVELS = ("debug", "info", "warning", "error")
TRUE_WORDS = ("1", "true", "yes", "on")
BOOLEAN_WORDS = ("1", "true", "yes", "0", "false", "no")


# What a whole-number flag or setting that must be positive accepts (the CLI's flags say it too).
WHOLE_NUMBER_ABOVE_ZERO = "a whole number > 0"
# What the settings that are neither plain numbers nor free text accept.
_CHOICES = {
    "listen_enabled": "on or off (1, true, yes, on / 0, false, no, off)",
    "factors_enabled": "auto, on or off (1, true, yes / 0, false, no read as on / off)",
    "host_price_mirror": "auto, on or off",
    "cache_invalidation": "auto or off",
    "http_port": "a port number 0-65535",
    "refresh_bulk": "auto or off",
    "refresh_schedule_time": "HH:MM or off",
    "refresh_schedule_timezone": "an IANA time zone, e.g. America/New_York",
    "log_format": "auto, json or console",
    "log_level": f"one of {', '.join(LOG_LEVELS)}",
}


class SettingsError(ConfigurationError, ValueError):
    """A setting has a value the worker cannot use."""


def bad_setting(field_name: str, value: object) -> SettingsError:
    """The one error style: the variable, what it accepts, and the value it got."""
    return SettingsError(f"{env_name(field_name)}: expected {expected(field_name)}, got {value!r}")


def _env(name: str, default: Any, help: str, *, secret: bool = False) -> Any:
    # `help` is the setting's one-line meaning: the docs' settings page is generated from it
    # (tools/settings_doc.py), so every field must say what it does.
    # Secrets (passwords in URLs, API keys) stay out of repr(), so out of logs and tracebacks.
    return field(default=default, repr=not secret, metadata={"env": name, "help": help})


@dataclass(frozen=True)
class Settings:
    # Database
    database_url: str | None = _env(
        "DATABASE_URL",
        None,
        "PostgreSQL URL, `postgresql://` or `postgresql+asyncpg://`; several hosts as `h1:p1,h2:p2` or `?host=h1,h2&port=p1,p2` (see failover); unset: the embedded server",
        secret=True,
    )
    listen_database_url: str | None = _env(
        "LISTEN_DATABASE_URL",
        None,
        "direct URL for the LISTEN connection (when `DATABASE_URL` goes through a pooler); unset: `DATABASE_URL`",
        secret=True,
    )
    listen_enabled: bool = _env("WORKER_LISTEN", True, "`false`: poll only, no LISTEN connection")
    embedded_pgdata: Path = _env(
        "EMBEDDED_PGDATA", Path(".data/pg"), "data folder of the embedded server"
    )
    # 0 behind a transaction-pooling proxy (PgBouncer), which cannot keep prepared statements.
    statement_cache_size: int = _env(
        "DATABASE_STATEMENT_CACHE_SIZE",
        100,
        "asyncpg prepared-statement cache; `0` behind PgBouncer",
    )
    # A statement that has not answered by then is treated as a lost connection (a silent
    # network cut would otherwise hold a job, or the shutdown, forever).
    command_timeout_s: float = _env(
        "DATABASE_COMMAND_TIMEOUT_S",
        60.0,
        "a statement unanswered this long fails (a job spends an attempt; loops retry)",
    )
    # A worker connection idle inside a transaction this long is closed by the server, so a
    # frozen worker cannot hold a symbol's rows locked (0: off). Direct connections only: behind
    # PgBouncer, set its idle_transaction_timeout.
    idle_in_transaction_timeout_s: float = _env(
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S",
        10.0,
        "the server ends a worker connection idle this long inside a transaction (a frozen worker releases its locks); `0`: off; direct connections only (behind PgBouncer set its `idle_transaction_timeout`)",
    )
    # A lock wait longer than this ends the statement (SQLSTATE 55P03): the host holding one of
    # its tables (its own migration) makes a job wait and come back later, without spending an
    # attempt, instead of timing out at DATABASE_COMMAND_TIMEOUT_S. Our own lock waits (two
    # workers on one symbol, the factor reference lock) last milliseconds to a few seconds.
    lock_timeout_s: float = _env(
        "DATABASE_LOCK_TIMEOUT_S",
        10.0,
        "a lock wait longer than this ends the statement (SQLSTATE 55P03): a job waiting on a table the host holds (its own migration) goes back after a delay without spending an attempt, and housekeeping warns once and tries again next round; must be shorter than `DATABASE_COMMAND_TIMEOUT_S`. Direct connections set it for every statement; behind PgBouncer the transactions that touch host tables set it with `SET LOCAL`",
    )
    # Runner
    # The most one job may take, its fetch and in-process retries included (the host's own bar
    # for onboarding a symbol is 60 s); then it is retried later with its attempt spent.
    job_timeout_s: float = _env(
        "JOB_TIMEOUT_S",
        60.0,
        "the most one job may take, its fetch and in-process retries included: then it is stopped and retried by the queue's backoff with its attempt spent (`error_message` says it hit the deadline); 60 s is the host's own bar for onboarding a symbol",
    )
    concurrency: int = _env("WORKER_CONCURRENCY", 4, "jobs in flight per process (`--concurrency`)")
    poll_interval_s: float = _env(
        "WORKER_POLL_INTERVAL_S", 2.0, "poll interval when no NOTIFY arrives"
    )
    shutdown_grace_s: float = _env(
        "WORKER_SHUTDOWN_GRACE_S", 30.0, "how long in-flight jobs may finish after SIGTERM"
    )
    housekeeping_interval_s: float = _env(
        "WORKER_HOUSEKEEPING_INTERVAL_S", 60.0, "pruning interval"
    )
    reconnect_max_wait_s: float = _env(
        "WORKER_RECONNECT_MAX_WAIT_S", 30.0, "longest wait between reconnect attempts"
    )
    worker_name: str | None = _env(
        "WORKER_NAME",
        None,
        "prefix of the worker id shown in `status` and `locked_by`; unset: `host:pid`",
    )
    # `run --burst` (cron, CI) exits 1 once the database has been unreachable this long.
    burst_max_outage_s: float = _env(
        "WORKER_BURST_MAX_OUTAGE_S",
        60.0,
        "`run --burst` exits 1 once the database has been unreachable this long",
    )
    # A dead worker (no heartbeat for QUEUE_STALL_TIMEOUT_S) stays listed, as dead, this long;
    # then housekeeping deletes its row from the live-worker registry.
    dead_worker_retention_s: float = _env(
        "WORKER_DEAD_RETENTION_S",
        3600.0,
        "a dead worker stays listed (as dead) this long, then housekeeping deletes its row",
    )
    # The worker's HTTP endpoint (/healthz, /readyz, /metrics, the status page): off when unset;
    # 0 picks a free port (logged as http_listening).
    http_port: int | None = _env(
        "WORKER_HTTP_PORT",
        None,
        "port of the worker's HTTP endpoint (probes, `/metrics`, status page); `0`: any free port; unset: off",
    )
    http_host: str = _env(
        "WORKER_HTTP_HOST", "127.0.0.1", "address the endpoint binds (`0.0.0.0` in a container)"
    )
    # Queue lifecycle
    max_attempts: int = _env("QUEUE_MAX_ATTEMPTS", 5, "attempts before a job fails")
    retry_base_s: float = _env(
        "QUEUE_RETRY_BASE_S", 10.0, "first retry delay; doubles per attempt, with jitter"
    )
    retry_max_s: float = _env("QUEUE_RETRY_MAX_S", 3600.0, "longest retry delay")
    heartbeat_interval_s: float = _env(
        "QUEUE_HEARTBEAT_INTERVAL_S",
        5.0,
        "heartbeat interval of running jobs; also the bound on each claim and heartbeat statement (and the claim connection's connect), at least 1 s, or `DATABASE_COMMAND_TIMEOUT_S` if shorter, so a cut network shows in seconds",
    )
    stall_timeout_s: float = _env(
        "QUEUE_STALL_TIMEOUT_S",
        30.0,
        "heartbeat age after which a job is recovered (> 2 x heartbeat); a worker whose heartbeats have not succeeded this long gives its running jobs up (`jobs_abandoned_unreachable`)",
    )
    prune_completed_days: float = _env(
        "QUEUE_PRUNE_COMPLETED_DAYS", 7.0, "completed jobs older than this are deleted"
    )
    prune_failed_days: float = _env(
        "QUEUE_PRUNE_FAILED_DAYS", 30.0, "failed jobs older than this are deleted"
    )
    prune_batch_size: int = _env("QUEUE_PRUNE_BATCH_SIZE", 1000, "rows per pruning statement")
    # Price sources
    price_source: str = _env(
        "PRICE_SOURCE", "yahoo", "a source or a comma-separated fallback chain (`--source`)"
    )
    price_lookback_days: int = _env("PRICE_LOOKBACK_DAYS", 365, "days of history to load")
    http_timeout_s: float = _env(
        "PRICE_HTTP_TIMEOUT_S",
        20.0,
        "httpx's timeout per phase of one request (connect capped at 10 s, each read, each write); the whole request, body included, is bounded at twice it, and every in-process retry is another such request; the whole job is bounded by `JOB_TIMEOUT_S`",
    )
    yahoo_base_url: str = _env(
        "YAHOO_BASE_URL", "https://query2.finance.yahoo.com", "Yahoo chart API base"
    )
    polygon_base_url: str = _env(
        "POLYGON_BASE_URL", "https://api.polygon.io", "Polygon (Massive) base"
    )
    polygon_api_key: str | None = _env(
        "POLYGON_API_KEY", None, "required when `polygon` is in `PRICE_SOURCE`", secret=True
    )
    tiingo_base_url: str = _env("TIINGO_BASE_URL", "https://api.tiingo.com", "Tiingo base")
    tiingo_api_key: str | None = _env(
        "TIINGO_API_KEY", None, "required when `tiingo` is in `PRICE_SOURCE`", secret=True
    )
    fmp_base_url: str = _env(
        "FMP_BASE_URL", "https://financialmodelingprep.com", "FMP base (`/stable/` endpoints)"
    )
    fmp_api_key: str | None = _env(
        "FMP_API_KEY", None, "required when `fmp` is in `PRICE_SOURCE`", secret=True
    )
    price_csv_dir: Path | None = _env(
        "PRICE_CSV_DIR", None, "folder of per-symbol CSV files, required by the `csv` source"
    )
    # In-process retries of one source's fetch on a transient error (timeout, 5xx, bad body),
    # exponential with jitter, before the job goes back to the queue's backoff.
    http_retries: int = _env(
        "PRICE_HTTP_RETRIES",
        3,
        "in-process retries of a transient fetch error before the queue's backoff",
    )
    http_retry_wait_s: float = _env(
        "PRICE_HTTP_RETRY_WAIT_S", 1.0, "first in-process retry wait (exponential, jittered)"
    )
    http_retry_max_wait_s: float = _env(
        "PRICE_HTTP_RETRY_MAX_WAIT_S", 30.0, "longest in-process retry wait"
    )
    # Request rate per source, shared by every worker process: "N/second|minute|hour|day"
    # (requests evenly spaced), or "off". Checked by worker.prices.ratelimit.parse_rate.
    rate_limit_yahoo: str = _env(
        "PRICE_RATE_LIMIT_YAHOO",
        "2000/hour",
        "request rate shared by all workers: `N/second`, `N/minute`, `N/hour`, `N/day` or `off`",
    )
    rate_limit_polygon: str = _env(
        "PRICE_RATE_LIMIT_POLYGON",
        "5/minute",
        "as `PRICE_RATE_LIMIT_YAHOO` (the default is the free plan's limit)",
    )
    rate_limit_tiingo: str = _env("PRICE_RATE_LIMIT_TIINGO", "off", "as `PRICE_RATE_LIMIT_YAHOO`")
    rate_limit_fmp: str = _env("PRICE_RATE_LIMIT_FMP", "off", "as `PRICE_RATE_LIMIT_YAHOO`")
    # A job waits at most this long for its request slot; longer, it is deferred instead.
    rate_limit_max_wait_s: float = _env(
        "PRICE_RATE_LIMIT_MAX_WAIT_S",
        30.0,
        "longest a job waits for its request slot; longer, it is deferred",
    )
    # How long a source pauses after a rate-limit signal without Retry-After, and after it
    # answered with a block, consent or challenge page.
    rate_limit_pause_s: float = _env(
        "PRICE_RATE_LIMIT_PAUSE_S",
        300.0,
        "source pause after a rate-limit answer without `Retry-After`",
    )
    blocked_pause_s: float = _env(
        "PRICE_BLOCKED_PAUSE_S", 900.0, "source pause after a block, consent or challenge page"
    )
    # Circuit breaker: after this many consecutive transient failures of a source (jobs whose
    # in-process retries all failed, counted across every process; 0: off), the source pauses
    # for PRICE_SOURCE_FAILURE_PAUSE_S like a rate limit, so queued jobs are deferred instead of
    # spending their attempts on an outage. A success resets the count.
    source_failures_before_pause: int = _env(
        "PRICE_SOURCE_FAILURES_BEFORE_PAUSE",
        5,
        "consecutive transient failures of a source (across all workers) that pause it; `0`: off",
    )
    source_failure_pause_s: float = _env(
        "PRICE_SOURCE_FAILURE_PAUSE_S",
        120.0,
        "how long that pause lasts: queued jobs are deferred, not failed, during a provider outage",
    )
    # Refresh (worker/refresh.py, worker/schedule.py)
    # A refresh re-fetches this many sessions before last_price_date, to notice corrections and
    # re-adjusted history (splits, dividends) by comparing them with the stored rows.
    refresh_overlap_sessions: int = _env(
        "REFRESH_OVERLAP_SESSIONS",
        3,
        "sessions before `last_price_date` a refresh fetches again, to notice re-adjusted or corrected history",
    )
    # Refreshes in a row on which every source calls a symbol unknown or delisted before it is
    # marked delisted (and no longer refreshed; its prices are kept).
    refresh_delist_after: int = _env(
        "REFRESH_DELIST_AFTER",
        3,
        "refreshes in a row on which every source calls a symbol unknown before it is `delisted`",
    )
    # The exchange calendar (ISO 10383 MIC, exchange_calendars) that says which sessions closed.
    refresh_calendar: str = _env(
        "REFRESH_CALENDAR",
        "XNYS",
        "exchange calendar (ISO 10383 MIC, `exchange_calendars`) of the sessions a refresh waits for",
    )
    # When the running worker enqueues the daily refresh: a wall-clock time on each session day
    # of REFRESH_CALENDAR in REFRESH_SCHEDULE_TIMEZONE ("off": never; `refresh` still works).
    refresh_schedule_time: str = _env(
        "REFRESH_SCHEDULE_TIME",
        "18:00",
        "when the running worker enqueues the daily refresh, on each session day; `off`: never",
    )
    refresh_schedule_timezone: str = _env(
        "REFRESH_SCHEDULE_TIMEZONE", "America/New_York", "the time zone of `REFRESH_SCHEDULE_TIME`"
    )
    # Bulk refresh (worker/bulk.py): "auto" loads Polygon's grouped daily bars (one request per
    # session for every symbol) when polygon leads PRICE_SOURCE; "off": per-symbol requests only.
    refresh_bulk: str = _env(
        "REFRESH_BULK",
        "auto",
        "`auto`: Polygon's grouped daily bars (one request per session for every symbol) when `polygon` leads `PRICE_SOURCE`; `off`: per-symbol requests only",
    )
    # Windows longer than this many sessions (a symbol far behind) use per-symbol requests.
    refresh_bulk_max_sessions: int = _env(
        "REFRESH_BULK_MAX_SESSIONS",
        10,
        "a refresh window longer than this (a symbol far behind) uses per-symbol requests",
    )
    # Factor betas (worker/factors): "on" computes them in every job that stores prices and
    # refuses to start where they cannot be written; "auto" computes them where they can be
    # written and otherwise keeps prices flowing without betas, computing the skipped ones once
    # the host seeds its factor names (housekeeping notices); "off" never. true/false are on/off.
    factors_enabled: str = _env(
        "FACTORS_ENABLED",
        "auto",
        "`auto`: compute factor betas in each job that stores prices where they can be written, else keep prices flowing and compute them once the host seeds its factor names; `on`: refuse to start where they cannot be written; `off`: never",
    )
    # Calendar days of prices read before the calculation date (180 returns need about 260;
    # the rest absorbs gaps in a series).
    factor_history_days: int = _env(
        "FACTOR_HISTORY_DAYS", 400, "calendar days of prices read before a calculation date"
    )
    # Symbols per transaction in the `factors` command and when waiting symbols are resolved.
    factor_batch_size: int = _env(
        "FACTOR_BATCH_SIZE",
        2000,
        "symbols per transaction in `factors` and when waiting symbols are resolved",
    )
    # Connections the `factors` command runs batches on at once (one is read by the server while
    # another is solved and written).
    factor_connections: int = _env(
        "FACTOR_CONNECTIONS", 2, "connections the `factors` command runs batches on at once"
    )
    # The host's own tables (worker/host.py). "auto" mirrors every stored bar into the host's
    # market_data_cache where the host owns one; "on" refuses to start without it; "off" never.
    host_price_mirror: str = _env(
        "HOST_PRICE_MIRROR",
        "auto",
        "keep the host's `market_data_cache` current with every stored bar: `auto` where the host owns that table, `on` refuses to start without it, `off` never",
    )
    # "auto" deletes the cached analytics of the portfolios holding a symbol whose prices or
    # betas changed, where the host has a positions table; "off" never.
    cache_invalidation: str = _env(
        "CACHE_INVALIDATION",
        "auto",
        "`auto`: delete the cached analytics of every portfolio holding a symbol whose prices or betas changed, where the host has a `positions` table; `off`: never",
    )
    # Logs
    log_format: str = _env(
        "LOG_FORMAT", "auto", "`json`, `console`, or `auto` (JSON when stdout is not a terminal)"
    )
    log_level: str = _env("LOG_LEVEL", "info", "`debug`, `info`, `warning`, `error`")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        uses: Collection[str] | None = None,
        **overrides: Any,
    ) -> "Settings":
        """Read every field from `environ` (default: os.environ); `overrides` win (CLI flags).

        `uses`: the fields the caller reads (default: all), the only ones checked. A bad value
        of any other setting is not an error (its default stands in, unread): a command fails
        only for the settings it uses.
        """
        environ = os.environ if environ is None else environ
        checked = {f.name for f in fields(cls)} if uses is None else set(uses)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw.strip() == "" or f.name in overrides:  # a flag wins, unread
                continue
            try:
                values[f.name] = _parse(f.name, raw.strip(), f.default)
            except SettingsError:
                if f.name in checked:
                    raise
        values.update(overrides)
        settings = cls(**values)
        settings.validate(checked)
        return settings

    def validate(self, names: Collection[str] | None = None) -> None:
        """Check the fields `names` (default: all); SettingsError for the first bad one."""
        names = {f.name for f in fields(self)} if names is None else names
        for f in fields(self):  # in field order: the same first error at every run
            if f.name in names and not _acceptable(f.name, getattr(self, f.name)):
                raise bad_setting(f.name, getattr(self, f.name))
        if {"stall_timeout_s", "heartbeat_interval_s"} <= set(names) and (
            self.stall_timeout_s <= 2 * self.heartbeat_interval_s
        ):
            raise SettingsError(
                "QUEUE_STALL_TIMEOUT_S: expected more than twice QUEUE_HEARTBEAT_INTERVAL_S "
                f"({self.heartbeat_interval_s!r}), got {self.stall_timeout_s!r}"
            )
        if {"lock_timeout_s", "command_timeout_s"} <= set(names) and (
            self.lock_timeout_s >= self.command_timeout_s
        ):
            raise SettingsError(
                "DATABASE_LOCK_TIMEOUT_S: expected less than DATABASE_COMMAND_TIMEOUT_S "
                f"({self.command_timeout_s!r}), got {self.lock_timeout_s!r}"
            )
        if "refresh_schedule_time" in names or "refresh_schedule_timezone" in names:
            self.schedule_time()

    @staticmethod
    def bounds() -> dict[str, str]:
        """The numeric settings with a lower bound: field name -> "> 0" or ">= 0"."""
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
            "rate_limit_pause_s",
            "blocked_pause_s",
            "source_failure_pause_s",
        )
        non_negative = (
            "idle_in_transaction_timeout_s",
            "shutdown_grace_s",
            "refresh_overlap_sessions",
            "http_retries",
            "http_retry_wait_s",
            "http_retry_max_wait_s",
            "rate_limit_max_wait_s",
            "source_failures_before_pause",
        )
        return {**dict.fromkeys(positive, "> 0"), **dict.fromkeys(non_negative, ">= 0")}

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
            raise bad_setting("refresh_schedule_time", self.refresh_schedule_time) from None
        try:
            zone = ZoneInfo(self.refresh_schedule_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise bad_setting("refresh_schedule_timezone", self.refresh_schedule_timezone) from None
        return at, zone


def env_name(field_name: str) -> str:
    """The environment variable behind a Settings field."""
    return next(str(f.metadata["env"]) for f in fields(Settings) if f.name == field_name)


def expected(field_name: str) -> str:
    """What a setting accepts, in words: "a whole number > 0", "auto or off", ..."""
    if field_name in _CHOICES:
        return _CHOICES[field_name]
    default = next(f.default for f in fields(Settings) if f.name == field_name)
    kind = (
        "a whole number"
        if isinstance(default, int)
        else "a finite number"
        if isinstance(default, float)
        else "a path"
        if isinstance(default, Path) or field_name.endswith("_dir")
        else "text"
    )
    bound = Settings.bounds().get(field_name)
    return f"{kind} {bound}" if bound else kind


def _acceptable(field_name: str, value: Any) -> bool:
    # nan and inf would pass every comparison below (nan compares False to anything).
    if isinstance(value, float) and not math.isfinite(value):
        return False
    bound = Settings.bounds().get(field_name)
    if bound is not None:
        return bool(value > 0 if bound == "> 0" else value >= 0)
    if field_name == "http_port":
        return value is None or 0 <= value <= 65535
    if field_name in ("refresh_bulk", "cache_invalidation"):
        return value in ("auto", "off")
    if field_name == "host_price_mirror":
        return value in ("auto", "on", "off")
    if field_name == "factors_enabled":
        return str(value).strip().lower() in ("auto", "on", "off", *BOOLEAN_WORDS)
    if field_name == "log_format":
        return value in ("auto", "json", "console")
    if field_name == "log_level":
        return str(value).lower() in LOG_LEVELS
    return True


def _parse(field_name: str, raw: str, default: Any) -> Any:
    """`raw` as the field's type, checked; the error names the variable and the raw text."""
    try:
        if isinstance(default, bool):
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int) or field_name == "http_port":
            value: Any = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        elif isinstance(default, Path) or field_name.endswith("_dir"):
            return Path(raw)
        else:
            value = raw
    except ValueError:
        raise bad_setting(field_name, raw) from None
    if not _acceptable(field_name, value):
        raise bad_setting(field_name, raw)
    return value
