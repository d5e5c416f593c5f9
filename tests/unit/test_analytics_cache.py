"""cache_key and the cache's JSON encoding, without a database."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.host import analytics_cache as cache
from worker.host.analytics_cache import CacheDataError, Position, cache_key, encode

PORTFOLIO = [
    Position("AAPL", Decimal("10"), Decimal("1895.20")),
    Position("BRK.B", 3, Decimal("1240.5")),
    Position("^GSPC", Decimal("0.5"), None),
]

positions = st.lists(
    st.builds(
        Position,
        st.sampled_from(["AAPL", "MSFT", "BRK.B", "EURUSD=X", "BTC-USD"]),
        st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False),
        st.none() | st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
    ),
    max_size=8,
)


@dataclass
class OrmLikePosition:
    """The shape of a backend row: plain attributes."""

    symbol: str
    quantity: Any
    market_value: Any


def test_key_is_versioned_sha256_hex() -> None:
    key = cache_key(PORTFOLIO)
    version, digest = key.split(":")
    assert version == "v1" and len(digest) == 64 and int(digest, 16) >= 0


@settings(max_examples=50)
@given(positions, st.randoms())
def test_order_does_not_matter(items: list[Position], rnd: Any) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert cache_key(shuffled) == cache_key(items)


def test_spelling_of_symbols_and_numbers_does_not_matter() -> None:
    respelled = [
        OrmLikePosition(" aapl ", 10.0, "1895.2"),
        OrmLikePosition("brk.b", Decimal("3.000"), 1240.50),
        OrmLikePosition("^gspc", "0.50", None),
    ]
    assert cache_key(respelled) == cache_key(PORTFOLIO)
    assert cache_key(iter(PORTFOLIO)) == cache_key(PORTFOLIO)
    assert cache_key([Position("X", Decimal("-0.0"), Decimal("0E-8"))]) == cache_key(
        [Position("X", 0, 0)]
    )


@pytest.mark.parametrize(
    "changed",
    [
        [Position("AAPL", Decimal("11"), Decimal("1895.20")), *PORTFOLIO[1:]],
        [Position("AAPL", Decimal("10"), Decimal("1895.21")), *PORTFOLIO[1:]],
        [Position("MSFT", Decimal("10"), Decimal("1895.20")), *PORTFOLIO[1:]],
        [Position("AAPL", Decimal("10"), None), *PORTFOLIO[1:]],
        PORTFOLIO[1:],
        [*PORTFOLIO, Position("AAPL", Decimal("10"), Decimal("1895.20"))],
        [Position("AAPL", 5, Decimal("947.60")), Position("AAPL", 5, Decimal("947.60"))],
        [],
    ],
)
def test_any_change_changes_the_key(changed: list[Position]) -> None:
    assert cache_key(changed) != cache_key(PORTFOLIO)


@settings(max_examples=50)
@given(positions, positions)
def test_different_multisets_get_different_keys(a: list[Position], b: list[Position]) -> None:
    def number(value: Decimal) -> str:
        return str((value + 0).normalize())  # + 0 turns -0 into 0

    def canonical(items: list[Position]) -> list[tuple[str, str, str]]:
        return sorted(
            (
                p.symbol,
                number(Decimal(p.quantity)),
                "" if p.market_value is None else number(Decimal(p.market_value)),
            )
            for p in items
        )

    if canonical(a) != canonical(b):
        assert cache_key(a) != cache_key(b)


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (Position("", 1, 1), "positions\\[0\\]: invalid symbol ''"),
        (Position("  ", 1, 1), "invalid symbol"),
        (OrmLikePosition(None, 1, 1), "invalid symbol None"),  # type: ignore[arg-type]
        (Position("AAPL", "ten", 1), "positions\\[0\\].quantity: invalid number 'ten'"),
        (Position("AAPL", True, 1), "quantity: invalid number True"),
        (Position("AAPL", float("nan"), 1), "quantity: invalid number nan"),
        (Position("AAPL", 1, Decimal("Infinity")), "market_value: invalid number"),
        (Position("AAPL", 1, [1]), "market_value: invalid number"),
    ],
)
def test_bad_positions_are_rejected_naming_the_field(position: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cache_key([position])


def test_encoding_of_decimal_dates_uuid_and_tuples() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    data = {
        "beta": Decimal("1.2300"),
        "tiny": Decimal("1E-12"),
        "as_of": date(2024, 3, 1),
        "at": datetime(2024, 3, 1, 16, 0, tzinfo=UTC),
        "naive": datetime(2024, 3, 1, 16, 0, 5),
        "close": time(16, 0),
        "id": ident,
        "pair": (1, 2.5),
        "text": "Zürich ✓",
        "nested": [{"ok": True, "none": None}],
    }
    assert json.loads(encode(data)) == {
        "beta": "1.2300",
        "tiny": "1E-12",
        "as_of": "2024-03-01",
        "at": "2024-03-01T16:00:00+00:00",
        "naive": "2024-03-01T16:00:05",
        "close": "16:00:00",
        "id": "12345678-1234-5678-1234-567812345678",
        "pair": [1, 2.5],
        "text": "Zürich ✓",
        "nested": [{"ok": True, "none": None}],
    }


def cyclic() -> list[Any]:
    loop: list[Any] = [1]
    loop.append({"again": loop})
    return loop


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "None cannot be cached"),
        ({"s": {1, 2}}, r"data\['s'\]: a set cannot be cached as JSON"),
        ([b"raw"], r"data\[0\]: a bytes cannot be cached"),
        ({"x": [object()]}, r"data\['x'\]\[0\]: a object cannot"),
        ({"nan": float("nan")}, r"data\['nan'\]: nan has no JSON form"),
        ({"inf": float("-inf")}, "-inf has no JSON form"),
        ({"d": Decimal("NaN")}, "Decimal\\('NaN'\\) has no JSON form"),
        ({1: "one"}, "key 1 is a int; JSON object keys are strings"),
        ({("a", "b"): 1}, "is a tuple"),
        ({"t": "a\x00b"}, "NUL character"),
        ({"a\x00": 1}, "NUL character"),
        ({"t": "\ud800"}, "lone surrogate"),
        (cyclic(), r"data\[1\]\['again'\]: contains itself"),
    ],
)
def test_unencodable_data_is_refused_saying_where(data: Any, message: str) -> None:
    with pytest.raises(CacheDataError, match=message):
        encode(data)


def test_shared_but_acyclic_values_are_fine() -> None:
    shared = {"v": 1}
    assert json.loads(encode([shared, shared])) == [{"v": 1}, {"v": 1}]


def test_deep_nesting_is_a_clear_error() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CacheDataError, match="nested too deeply"):
        encode(deep)


PID = uuid.UUID("00000000-0000-0000-0000-000000000001")
HOUR = timedelta(hours=1)
KEY = "v1:key"


# `db` is None: each check must fire before the database is used (else AttributeError).
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: cache.put(None, PID, "t", KEY, [1], timedelta(0)),
            ValueError,
            "invalid ttl 0:00:00",
        ),
        (lambda: cache.put(None, PID, "t", KEY, [1], -HOUR), ValueError, "positive duration"),
        (lambda: cache.put(None, PID, "t", KEY, [1], 3600), TypeError, "datetime.timedelta"),
        (lambda: cache.put(None, PID, "t", KEY, {1, 2}, HOUR), CacheDataError, "a set"),
        (lambda: cache.put(None, PID, "t", KEY, None, HOUR), CacheDataError, "None"),
        (lambda: cache.put(None, PID, "t" * 51, KEY, [1], HOUR), ValueError, "1 to 50"),
        (lambda: cache.put(None, PID, "", KEY, [1], HOUR), ValueError, "cache_type ''"),
        (lambda: cache.put(None, PID, "t", "k" * 256, [1], HOUR), ValueError, "1 to 255"),
        (lambda: cache.put(None, "nope", "t", KEY, [1], HOUR), ValueError, "portfolio_id 'nope'"),
        (lambda: cache.get(None, PID, None, KEY), ValueError, "cache_type None"),
        (lambda: cache.get(None, PID, "t", 42), ValueError, "cache_key 42"),
        (lambda: cache.get(None, 17, "t", KEY), ValueError, "portfolio_id 17"),
        (lambda: cache.invalidate(None, "x"), ValueError, "portfolio_id 'x'"),
        (lambda: cache.invalidate(None, cache_type=""), ValueError, "cache_type ''"),
        (lambda: cache.delete_expired(None, 0), ValueError, "batch size 0"),
        (lambda: cache.delete_expired(None, True), ValueError, "batch size True"),
        (lambda: cache.delete_expired(None, "10"), ValueError, "batch size '10'"),
        (lambda: cache.sweep_expired(None, 0), ValueError, "batch size 0"),
    ],
)
async def test_bad_arguments_are_refused_before_the_database(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await call()
