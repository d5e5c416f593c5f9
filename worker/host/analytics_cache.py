"""The portfolio analytics cache: computed results per portfolio, kind and positions hash.

`get`, `put`, `invalidate` and `delete_expired` take the caller's SQLAlchemy AsyncSession or
AsyncConnection and run in its transaction: they never commit (nor roll back). Arguments are
checked before any SQL runs, so bad input raises without spoiling the caller's transaction.
`sweep_expired` is the worker's housekeeping hook (a `Housekeeper` extra sweep, on asyncpg):
bounded batches of the same DELETE, one transaction each. Expiry is judged by the database clock (`valid_until > now()`).

JSON encoding of `put`'s data, and so what `get` returns:
- dict (str keys only), list, str, int, bool, None and finite float: as they are; a tuple is
  stored as a list and comes back as one.
- Decimal: its exact string, `Decimal("1.2300")` -> `"1.2300"`, because a JSON number would come
  back as a float and lose exactness. `get` returns that str; `Decimal(value)` restores it.
- date, datetime, time: ISO 8601 strings (`"2024-03-01"`, `"2024-03-01T16:00:00+00:00"`; a
  naive datetime stays naive). `get` returns the str; `date.fromisoformat` etc. restore it.
- UUID: its canonical string (returned as str).
Anything else is refused with CacheDataError naming where in the data it sits: other types
(set, bytes, objects), NaN and infinities (JSON has none), non-str keys (JSON would turn 1 into
"1"), NUL characters and lone surrogates (jsonb rejects them), cycles, and None as the whole
value (`get` returns None for a miss, so a cached None could not be told apart from one).
"""

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

from sqlalchemy import CursorResult, Result, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from worker.core.db import Connection, rows_affected
from worker.core.errors import WorkerError
from worker.sql import analytics_cache as sql

Db = AsyncSession | AsyncConnection
Number = Decimal | int | float | str

CACHE_TYPE_MAX_LEN = 50  # the columns' VARCHAR lengths
CACHE_KEY_MAX_LEN = 255
CACHE_KEY_VERSION = "v1"
SWEEP_MAX_BATCHES = 10  # like the queue's pruning: a housekeeping round stays short


class CacheDataError(WorkerError, ValueError):
    """Data that cannot be cached as JSON without losing something."""


class PositionLike(Protocol):
    """Anything with a symbol, quantity and market value: an ORM row, a Position, ..."""

    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> Number: ...
    @property
    def market_value(self) -> Number | None: ...


class Position(NamedTuple):
    symbol: str
    quantity: Number
    market_value: Number | None = None  # None: not known (hashed as such)


async def get(db: Db, portfolio_id: uuid.UUID | str, cache_type: str, cache_key: str) -> Any:
    """The cached JSON value, or None when there is none or it has expired."""
    params = _key_params(portfolio_id, cache_type, cache_key)
    stored = (await db.execute(text(sql.GET), params)).scalar_one_or_none()
    return None if stored is None else json.loads(stored)


async def put(
    db: Db,
    portfolio_id: uuid.UUID | str,
    cache_type: str,
    cache_key: str,
    data: Any,
    ttl: timedelta,
) -> None:
    """Store `data` under the key for `ttl`, replacing any earlier value (expired or not).

    An unknown portfolio_id fails on the foreign key (sqlalchemy IntegrityError).
    """
    params = _key_params(portfolio_id, cache_type, cache_key)
    if not isinstance(ttl, timedelta):
        raise TypeError(f"invalid ttl {ttl!r}: expected a datetime.timedelta")
    if ttl <= timedelta(0):
        raise ValueError(f"invalid ttl {ttl}: expected a positive duration")
    params.update(cached_data=encode(data), ttl=ttl)
    await db.execute(text(sql.PUT), params)


async def invalidate(
    db: Db, portfolio_id: uuid.UUID | str | None = None, cache_type: str | None = None
) -> int:
    """Delete one portfolio's entries, one type's, both narrowed, or (no arguments) all."""
    params: dict[str, Any] = {}
    if portfolio_id is not None:
        params["portfolio_id"] = _portfolio_uuid(portfolio_id)
    if cache_type is not None:
        params["cache_type"] = _checked_str("cache_type", cache_type, CACHE_TYPE_MAX_LEN)
    if portfolio_id is not None and cache_type is not None:
        statement = sql.INVALIDATE_PORTFOLIO_TYPE
    elif portfolio_id is not None:
        statement = sql.INVALIDATE_PORTFOLIO
    elif cache_type is not None:
        statement = sql.INVALIDATE_TYPE
    else:
        statement = sql.INVALIDATE_ALL
    return _rowcount(await db.execute(text(statement), params))


async def delete_expired(db: Db, batch_size: int) -> int:
    """Delete up to `batch_size` expired entries (oldest first); returns how many."""
    batch_size = _checked_batch_size(batch_size)
    return _rowcount(await db.execute(text(sql.DELETE_EXPIRED), {"batch_size": batch_size}))


async def sweep_expired(
    conn: Connection, batch_size: int, *, max_batches: int | None = SWEEP_MAX_BATCHES
) -> int:
    """Housekeeping: delete expired entries, a batch per statement, until done; returns how many.

    Outside a transaction each batch commits on its own, so no long lock or transaction is held.
    At most `max_batches` per call (None: no limit) keeps one round short; the next takes the rest.
    """
    batch_size = _checked_batch_size(batch_size)
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        status = await conn.execute(sql.DELETE_EXPIRED_POSITIONAL, batch_size)
        deleted = rows_affected(status)
        total += deleted
        batches += 1
        if deleted < batch_size:
            break
    return total


def cache_key(positions: Iterable[PositionLike]) -> str:
    """A stable key for a set of positions: the same whatever their order or number spelling.

    `"v1:"` + SHA-256 of the sorted (symbol, quantity, market value) triples, with symbols trimmed
    and upper-cased and numbers in canonical form (`10`, `10.0` and `Decimal("10.00")` agree).
    Positions are a multiset: two lots of 5 differ from one of 10.
    """
    rows = []
    for index, position in enumerate(positions):
        where = f"positions[{index}]"
        symbol = getattr(position, "symbol", None)
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"{where}: invalid symbol {symbol!r}: expected a non-empty string")
        quantity = _canonical_number(f"{where}.quantity", getattr(position, "quantity", None))
        value = getattr(position, "market_value", None)
        market_value = "" if value is None else _canonical_number(f"{where}.market_value", value)
        rows.append((symbol.strip().upper(), quantity, market_value))
    canonical = json.dumps(sorted(rows), separators=(",", ":"))
    return f"{CACHE_KEY_VERSION}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def encode(data: Any) -> str:
    """`data` as the JSON text put() stores (see the module docstring); CacheDataError if it cannot be."""
    if data is None:
        raise CacheDataError("None cannot be cached: get() returns None for a miss")
    try:
        plain = _plain_json(data, "data", set())
    except RecursionError:
        raise CacheDataError("data is nested too deeply to encode") from None
    return json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _plain_json(value: Any, path: str, open_containers: set[int]) -> Any:
    """`value` with every Decimal, date, time and UUID turned into its string; refuses the rest."""
    if isinstance(value, str):
        return _checked_text(value, path)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheDataError(f"{path}: {value!r} has no JSON form (use None for unknown)")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CacheDataError(f"{path}: {value!r} has no JSON form (use None for unknown)")
        return str(value)
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping | list | tuple):
        if id(value) in open_containers:
            raise CacheDataError(f"{path}: contains itself")
        open_containers.add(id(value))
        try:
            if isinstance(value, Mapping):
                out = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise CacheDataError(
                            f"{path}: key {key!r} is a {type(key).__name__}; "
                            "JSON object keys are strings"
                        )
                    _checked_text(key, f"{path} key {key!r}")
                    out[key] = _plain_json(item, f"{path}[{key!r}]", open_containers)
                return out
            return [
                _plain_json(item, f"{path}[{i}]", open_containers) for i, item in enumerate(value)
            ]
        finally:
            open_containers.discard(id(value))
    raise CacheDataError(
        f"{path}: a {type(value).__name__} cannot be cached as JSON "
        "(supported: dict, list, tuple, str, int, float, bool, None, Decimal, date, datetime, "
        "time, UUID)"
    )


def _checked_text(text: str, path: str) -> str:
    """Text jsonb can store: no NUL character, no lone surrogate (both fail on the server)."""
    if "\x00" in text:
        raise CacheDataError(
            f'{path}: contains a NUL character ("\\x00"), which jsonb cannot store'
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CacheDataError(
            f"{path}: contains a lone surrogate, which is not valid Unicode"
        ) from None
    return text


def _canonical_number(what: str, value: object) -> str:
    """`Decimal("10.50")`, `10.5`, `"10.500"` -> `"10.5"`; ValueError for non-numbers."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{what}: invalid number {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what}: invalid number {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{what}: invalid number {value!r}: expected a finite number")
    if number == 0:
        return "0"  # also -0 and 0E-8
    return format(number.normalize(), "f")


def _key_params(portfolio_id: uuid.UUID | str, cache_type: str, cache_key: str) -> dict[str, Any]:
    return {
        "portfolio_id": _portfolio_uuid(portfolio_id),
        "cache_type": _checked_str("cache_type", cache_type, CACHE_TYPE_MAX_LEN),
        "cache_key": _checked_str("cache_key", cache_key, CACHE_KEY_MAX_LEN),
    }


def _portfolio_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueError(f"invalid portfolio_id {value!r}: expected a UUID")


def _checked_str(name: str, value: object, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValueError(
            f"invalid {name} {value!r}: expected a string of 1 to {max_len} characters"
        )
    return value


def _checked_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size!r}: expected a positive integer")
    return batch_size


def _rowcount(result: Result[Any]) -> int:
    """Rows a DELETE removed (the session's Result of a DML statement is a CursorResult)."""
    assert isinstance(result, CursorResult)
    return result.rowcount
