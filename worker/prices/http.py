"""What the HTTP sources share: one GET that returns a `Reply` or a classified error, and the
guard that keeps API keys out of logs and error messages."""

import asyncio
import logging
from collections.abc import Iterable, Mapping

import httpx

from worker.logs import redact_text
from worker.prices.base import PriceSource, Reply, SourceError, TransientSourceError
from worker.prices.ratelimit import SourceGate

# One year of daily bars is about 30 KB; anything far bigger is not what we asked for.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Loggers that print request URLs: httpx logs each request's URL, query included, at INFO level.
# FMP only takes its key in the query string, so these get a filter that masks the keys.
URL_LOGGERS = ("httpx",)


class HttpSource(PriceSource):
    """A source behind one HTTP API (base URL from the environment, so tests can redirect it)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        gate: SourceGate,
        base_url: str,
        *,
        secret: str | None = None,
        request_timeout_s: float | None = None,
    ) -> None:
        """`request_timeout_s` bounds each whole request (httpx's timeouts are per connect and
        per read: a server dripping bytes would hold the job forever); None: no bound."""
        self._client = client
        self._request_timeout_s = request_timeout_s
        self._gate = gate
        self._base_url = base_url.rstrip("/")
        self._secrets = (secret,) if secret else ()

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One GET, after taking a request slot; transport failures become TransientSourceError."""
        await self._gate.acquire(self.name)
        try:
            async with asyncio.timeout(self._request_timeout_s):
                return await self._get(url, params=params, headers=headers)
        except TimeoutError:  # the overall limit (asyncio's), not httpx's per-phase timeouts
            raise TransientSourceError(
                self.name, f"timed out (no complete response within {self._request_timeout_s:g} s)"
            ) from None

    async def _get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
    ) -> Reply:
        try:
            async with self._client.stream("GET", url, params=params, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise TransientSourceError(
                            self.name, f"response larger than {MAX_BODY_BYTES} bytes, abandoned"
                        )
                return Reply(
                    status=response.status_code,
                    body=bytes(body),
                    content_type=response.headers.get("content-type", ""),
                    retry_after=response.headers.get("retry-after"),
                    location=response.headers.get("location"),
                    url_path=response.request.url.path,
                )
        except httpx.TimeoutException as exc:
            raise TransientSourceError(self.name, f"timed out ({_describe(exc)})") from None
        except httpx.HTTPError as exc:
            raise TransientSourceError(self.name, f"request failed ({_describe(exc)})") from None

    def scrub(self, exc: SourceError) -> SourceError:
        """The same error with any API key masked (providers may echo request details)."""
        return scrub(exc, self._secrets)


def scrub(exc: SourceError, secrets: Iterable[str]) -> SourceError:
    """`exc` with the secrets (and any key-like query parameter) masked, by worker.logs'
    redact_text: one masking rule for log lines and error messages."""
    detail = redact_text(exc.detail, [s for s in secrets if s])
    if detail != exc.detail:
        exc.detail = detail
        exc.args = (f"{exc.source}: {detail}",)
    return exc


def _describe(exc: Exception) -> str:
    # httpx's messages name the failure, not the URL; the type says which phase failed.
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class MaskSecrets(logging.Filter):
    """Masks the given secrets in log records (attached to URL_LOGGERS while an Onboarder runs)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a key inside another is not half-hidden.
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix; let logging report it
            return True
        masked = redact_text(message, self._secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True

    def attach(self) -> None:
        for name in URL_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def detach(self) -> None:
        for name in URL_LOGGERS:
            logging.getLogger(name).removeFilter(self)
