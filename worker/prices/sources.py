"""Price sources: one module per provider behind `PriceSource` (base.py), and the chain builder.

`PRICE_SOURCE` (or `--source`) names one source or a comma-separated fallback chain, tried in
order for each symbol: e.g. `database,yahoo` onboards from the local cache when it has the
symbol and from Yahoo otherwise. `check_source_config` rejects a chain the worker cannot run
(unknown name, missing key or directory, bad rate) with one SettingsError line, before anything
starts.
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import asyncpg
import httpx

from worker.core.metrics import Metrics
from worker.core.settings import Settings, SettingsError, env_name
from worker.prices.base import PriceSource
from worker.prices.csv_files import CsvSource
from worker.prices.database import DatabaseSource
from worker.prices.fmp import FmpSource
from worker.prices.polygon import PolygonSource
from worker.prices.ratelimit import Rate, SourceGate, parse_rate
from worker.prices.synthetic import SyntheticSource
from worker.prices.tiingo import TiingoSource
from worker.prices.yahoo import YahooSource

SOURCE_NAMES = ("yahoo", "polygon", "tiingo", "fmp", "database", "csv", "synthetic")
HTTP_SOURCES = {
    # name: (class, base URL field, API key field or None, rate limit field)
    "yahoo": (YahooSource, "yahoo_base_url", None, "rate_limit_yahoo"),
    "polygon": (PolygonSource, "polygon_base_url", "polygon_api_key", "rate_limit_polygon"),
    "tiingo": (TiingoSource, "tiingo_base_url", "tiingo_api_key", "rate_limit_tiingo"),
    "fmp": (FmpSource, "fmp_base_url", "fmp_api_key", "rate_limit_fmp"),
}


def parse_source_names(spec: str, origin: str = "PRICE_SOURCE") -> tuple[str, ...]:
    """`"database, yahoo"` -> ("database", "yahoo"); raises SettingsError naming `origin`."""
    names = tuple(part.strip().lower() for part in spec.split(","))
    problem = (
        "an empty entry"
        if not spec.strip() or "" in names
        else next((f"unknown source {n!r}" for n in names if n not in SOURCE_NAMES), None)
        or ("a source named twice" if len(set(names)) != len(names) else None)
    )
    if problem is not None:
        raise SettingsError(
            f"{origin}: expected one or more of {', '.join(SOURCE_NAMES)}, comma-separated, each"
            f" once, got {spec!r} ({problem})"
        )
    return names


def check_source_config(settings: Settings, sources: str | None = None) -> tuple[str, ...]:
    """The source chain (`sources`: the --source flag, else PRICE_SOURCE), checked; raises
    SettingsError."""
    if sources is None:
        names = parse_source_names(settings.price_source)
    else:
        names = parse_source_names(sources, origin="--source")
    for name in names:
        if name in HTTP_SOURCES:
            _, url_field, key_field, rate_field = HTTP_SOURCES[name]
            url = getattr(settings, url_field)
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise SettingsError(f"{env_name(url_field)}: expected an http(s) URL, got {url!r}")
            if key_field is not None and not getattr(settings, key_field):
                raise SettingsError(
                    f"price source {name} needs {env_name(key_field)}, which is not set"
                )
            parse_rate(env_name(rate_field), getattr(settings, rate_field))
        if name == "csv":
            directory = settings.price_csv_dir
            if directory is None:
                raise SettingsError("price source csv needs PRICE_CSV_DIR, which is not set")
            if not directory.is_dir():
                raise SettingsError(f"PRICE_CSV_DIR: expected a directory, got {str(directory)!r}")
    _check_numbers(settings)
    return names


def source_rates(settings: Settings, names: Sequence[str]) -> dict[str, Rate | None]:
    return {
        name: parse_rate(env_name(HTTP_SOURCES[name][3]), getattr(settings, HTTP_SOURCES[name][3]))
        for name in names
        if name in HTTP_SOURCES
    }


def source_secrets(settings: Settings, names: Sequence[str]) -> list[str]:
    """The API keys the chain uses (to mask them wherever text could leak them)."""
    keys = [HTTP_SOURCES[n][2] for n in names if n in HTTP_SOURCES]
    return [getattr(settings, key) for key in keys if key is not None and getattr(settings, key)]


def build_sources(
    settings: Settings,
    names: Sequence[str],
    *,
    pool: asyncpg.Pool,
    client: httpx.AsyncClient | None,
    gate: SourceGate,
    metrics: Metrics | None = None,
) -> list[PriceSource]:
    """The chain's source objects, in order (names already checked by check_source_config)."""
    sources: list[PriceSource] = []
    for name in names:
        if name in HTTP_SOURCES:
            cls, url_field, key_field, _ = HTTP_SOURCES[name]
            assert client is not None, "HTTP sources need a client"
            secret = getattr(settings, key_field) if key_field else None
            sources.append(
                cls(
                    client,
                    gate,
                    getattr(settings, url_field),
                    secret=secret,
                    # The whole request (connect, headers, every read of the body): twice the
                    # per-phase PRICE_HTTP_TIMEOUT_S, so a dripping server cannot hold a job.
                    request_timeout_s=settings.http_timeout_s * 2,
                    metrics=metrics,
                )
            )
        elif name == "database":
            sources.append(DatabaseSource(pool))
        elif name == "csv":
            assert settings.price_csv_dir is not None
            sources.append(CsvSource(settings.price_csv_dir))
        elif name == "synthetic":
            sources.append(SyntheticSource(pool))  # it warns that its prices are not real
    return sources


def _check_numbers(settings: Settings) -> None:
    # Settings built in code skip from_env's checks: the chain's own numbers are checked here.
    settings.validate(
        (
            "http_retries",
            "http_retry_wait_s",
            "http_retry_max_wait_s",
            "http_timeout_s",
            "rate_limit_max_wait_s",
            "source_failures_before_pause",
            "rate_limit_pause_s",
            "blocked_pause_s",
            "source_failure_pause_s",
        )
    )
