"""A real HTTP server on 127.0.0.1 that replays recorded price-provider responses.

Each path gets a script of replies: each request takes the next one, and the last one repeats.
A reply can run a hook when its request arrives, be delayed (to trigger client timeouts), drip
its body slowly (to trigger the overall request limit) or be truncated (the Content-Length
promises more than is sent before the connection closes). Every request is recorded for assertions.
Plain asyncio streams, HTTP/1.1 with `Connection: close`: enough for httpx, nothing hidden.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "prices"
DRIP_PIECES = 20
REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    truncate_at: int | None = None  # send only this many body bytes, then close
    drip_s: float = 0.0  # send the body in DRIP_PIECES pieces, this long apart
    # Run when the request arrives, before answering (e.g. another worker pausing the source).
    on_request: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Seen:
    path: str  # decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    raw_path: str = ""  # as sent, percent-escapes included


def fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def recorded(relative: str, status: int = 200, content_type: str = "application/json") -> Reply:
    """A recorded body from tests/fixtures/prices, served as the provider served it."""
    return Reply(status=status, body=fixture(relative), content_type=content_type)


class FakeProvider:
    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.url = ""

    def route(self, path: str, *replies: Reply) -> None:
        """Serve `replies` in order at `path` (query ignored); the last one repeats."""
        assert replies, "a route needs at least one reply"
        self._scripts[path] = list(replies)

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (its timeout): nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode("latin-1").strip()
        if not request_line:  # a client that connected and gave up before sending (its timeout)
            return
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _method, target, _version = request_line.split(" ", 2)
        raw_path, _, raw_query = target.partition("?")
        path = unquote(raw_path)
        self.requests.append(Seen(path, parse_qs(raw_query), headers, raw_path))
        script = self._scripts.get(path)
        if script is None:
            reply = Reply(404, f"no route for {path}".encode(), "text/plain")
        else:
            reply = script.pop(0) if len(script) > 1 else script[0]
        if reply.on_request is not None:
            await reply.on_request()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        body = reply.body if reply.truncate_at is None else reply.body[: reply.truncate_at]
        head = [
            f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in reply.headers.items()),
        ]
        if not reply.drip_s:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            return
        # A dripping server: every read gets a few bytes in time, the whole body never does.
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        step = max(1, -(-len(body) // DRIP_PIECES))
        for start in range(0, len(body), step):
            writer.write(body[start : start + step])
            await writer.drain()
            await asyncio.sleep(reply.drip_s)
