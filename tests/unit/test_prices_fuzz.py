"""Fuzzing the parsers: whatever a provider sends yields validated bars or a SourceError, never
an unexpected exception (which the job could only treat as a bug)."""

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.prices.base import Bar, Reply, SourceError, Window
from worker.prices.csv_files import parse_csv
from worker.prices.fmp import parse_eod
from worker.prices.polygon import parse_aggs
from worker.prices.tiingo import parse_prices
from worker.prices.validate import ValueProblem, normalize, price, volume
from worker.prices.yahoo import parse_chart

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prices"
WINDOW = Window(date(2000, 1, 1), date(2030, 12, 31))
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pipeline(name: str) -> Callable[[Reply], list[Bar]]:
    """Parse and validate, as a source's fetch does."""

    def run(reply: Reply) -> list[Bar]:
        if name == "yahoo":
            rows = parse_chart("X", reply)[0]
        elif name == "polygon":
            rows = parse_aggs("X", reply)[0]
        elif name == "tiingo":
            rows = parse_prices("X", reply)
        elif name == "fmp":
            rows = parse_eod("X", reply)
        else:
            rows = parse_csv("X", reply.body, "X.csv")
        return normalize(name, "X", rows, WINDOW).bars

    return run


SOURCES = ("yahoo", "polygon", "tiingo", "fmp", "csv")
RECORDINGS = {
    "yahoo": (
        FIXTURES / "yahoo/chart-AAPL-1d-2020-08-31_2020-11-07-split-and-dividend.json"
    ).read_bytes(),
    "polygon": (FIXTURES / "polygon/aggs-AAPL-1-day-2023-01-01_2023-01-10.json").read_bytes(),
    "tiingo": (FIXTURES / "tiingo/daily-prices-AAPL-2023-01-03_2023-01-10.SLICE.json").read_bytes(),
    "fmp": (FIXTURES / "fmp/v3-historical-price-full-AAPL-2023-01-01_2023-01-10.json").read_bytes(),
    "csv": (FIXTURES / "stooq/aapl_us_d-2025-02-03_2026-02-03.csv").read_bytes()[:2000],
}


def outcome(name: str, reply: Reply) -> list[Bar] | SourceError:
    try:
        bars = pipeline(name)(reply)
    except SourceError as exc:
        assert str(exc).startswith(f"{name}: ") and exc.detail
        return exc
    assert all(isinstance(b, Bar) for b in bars)
    assert [b.price_date for b in bars] == sorted({b.price_date for b in bars})
    return bars


statuses = st.sampled_from([200, 200, 200, 301, 400, 401, 402, 403, 404, 408, 422, 429, 500, 503])
content_types = st.sampled_from(["application/json", "text/plain", "text/html", "text/csv", ""])
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def dump(value: object) -> bytes:
    # Decimals as JSON numbers, the way providers write them (NaN/Infinity as bare words too).
    def convert(v: object) -> object:
        if isinstance(v, Decimal):
            if v.is_nan():
                return float("nan")
            return float(v) if v.is_infinite() else _Raw(str(v))
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return _encoder.encode(convert(value)).encode()


class _Raw(float):
    """A float subclass whose repr is the exact decimal text (json uses float.__repr__)."""

    def __new__(cls, text: str) -> "_Raw":
        obj = super().__new__(cls, 0.0)
        obj.text = text  # type: ignore[attr-defined]
        return obj

    def __repr__(self) -> str:
        return self.text  # type: ignore[attr-defined]


_encoder = json.JSONEncoder(allow_nan=True)


@FUZZ
@given(st.sampled_from(SOURCES), statuses, content_types, st.binary(max_size=300))
def test_any_bytes(name: str, status: int, content_type: str, body: bytes) -> None:
    outcome(name, Reply(status, body, content_type))


@FUZZ
@given(st.sampled_from(SOURCES), statuses, json_values)
def test_any_json(name: str, status: int, value: object) -> None:
    outcome(name, Reply(status, dump(value), "application/json"))


@FUZZ
@given(
    st.sampled_from(SOURCES),
    st.data(),
)
def test_mutated_recordings(name: str, data: st.DataObject) -> None:
    body = bytearray(RECORDINGS[name])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = data.draw(
            st.sampled_from([b"", b"null", b"-1", b"1e999", b"NaN", b'"x"', b"[", b"}", b",", b"0"])
            | st.binary(max_size=6)
        )
        if kind == "delete":
            del body[at : at + data.draw(st.integers(1, 40))]
        elif kind == "insert":
            body[at:at] = piece
        else:
            body[at : at + len(piece)] = piece
    outcome(name, Reply(200, bytes(body), "application/json"))


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "t": st.one_of(st.integers(-(10**16), 10**16), numbers, scalars),
                "o": scalars,
                "h": scalars,
                "l": scalars,
                "c": st.one_of(numbers, scalars),
                "v": st.one_of(numbers, scalars),
            }
        ),
        max_size=6,
    ),
    st.sampled_from(["OK", "DELAYED", "ERROR", None]),
    st.one_of(st.none(), st.text(max_size=30)),
)
def test_plausible_polygon_pages(
    results: list[dict[str, object]], status: object, next_url: object
) -> None:
    document = {"status": status, "results": results, "next_url": next_url}
    outcome("polygon", Reply(200, dump(document)))


@FUZZ
@given(
    st.lists(st.integers(-(10**12), 10**12) | scalars, max_size=6),
    st.sampled_from(["America/New_York", "Europe/Berlin", "", "Nowhere/Land", "../../etc", None]),
    st.lists(st.lists(st.one_of(numbers, st.none()), max_size=6), min_size=6, max_size=6),
)
def test_plausible_yahoo_charts(
    timestamps: list[object], zone: object, series: list[list[object]]
) -> None:
    keys = ("open", "high", "low", "close", "volume")
    document = {
        "chart": {
            "result": [
                {
                    "meta": {"exchangeTimezoneName": zone, "currency": "USD"},
                    "timestamp": timestamps,
                    "indicators": {
                        "quote": [dict(zip(keys, series[:5], strict=True))],
                        "adjclose": [{"adjclose": series[5]}],
                    },
                }
            ],
            "error": None,
        }
    }
    outcome("yahoo", Reply(200, dump(document)))


cells = st.one_of(
    st.sampled_from(["", "null", "NaN", "-1", "0", "1e999", "12.5", "2023-01-03", "20230103"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
)


@FUZZ
@given(
    st.lists(
        st.sampled_from(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "X"]),
        max_size=8,
    ),
    st.lists(st.lists(cells, max_size=8), max_size=6),
)
def test_plausible_csv_files(header: list[str], rows: list[list[str]]) -> None:
    text = "\n".join([",".join(header), *(",".join(r) for r in rows)])
    outcome("csv", Reply(200, text.encode("utf-8", "surrogatepass")))


@FUZZ
@given(st.one_of(numbers, scalars, st.lists(scalars, max_size=2)))
def test_values_become_stored_types_or_a_value_problem(value: object) -> None:
    for convert, kind in ((price, Decimal), (volume, int)):
        try:
            result = convert(value)
        except ValueProblem as exc:
            assert str(exc)
            continue
        assert result is None or isinstance(result, kind)
        if isinstance(result, Decimal):
            assert result.as_tuple().exponent == -4 and Decimal(0) < result < Decimal(10**8)
        if isinstance(result, int):
            assert 0 <= result < 2**63
