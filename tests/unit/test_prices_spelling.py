"""Symbol spellings: what a host symbol names, and how each provider spells it."""

import pytest

from worker.prices.base import SymbolNotFound
from worker.prices.spelling import Security, host_spellings, parse, provider_symbol, spellings


@pytest.mark.parametrize(
    ("symbol", "security"),
    [
        ("AAPL", Security("plain", "AAPL")),
        ("BRK.B", Security("class_share", "BRK", "B")),
        ("BRK-B", Security("class_share", "BRK", "B")),
        ("BRK/B", Security("class_share", "BRK", "B")),
        ("BP.L", Security("class_share", "BP", "L")),  # or a London listing: see provider_symbol
        ("^GSPC", Security("index", "GSPC")),
        ("EURUSD=X", Security("fx", "EUR", "USD")),
        ("JPY=X", Security("fx", "USD", "JPY")),
        ("INR=X", Security("fx", "USD", "INR")),
        ("EUR/USD", Security("fx", "EUR", "USD")),
        ("BTC-USD", Security("crypto", "BTC", "USD")),
        ("BTC/USDT", Security("crypto", "BTC", "USDT")),
        ("OCDO.L", Security("class_share", "OCDO", "L")),  # or a London listing, as BP.L
        ("WSU.DE", Security("plain", "WSU.DE")),
        ("BAC-PL", Security("plain", "BAC-PL")),
        ("ABC-XYZ", Security("plain", "ABC-XYZ")),  # not a known quote currency
        ("7203.T", Security("plain", "7203.T")),
    ],
)
def test_parse(symbol: str, security: Security) -> None:
    assert parse(symbol) == security


# host symbol -> yahoo, polygon, tiingo, fmp (None: the source does not serve it)
SPELLINGS = {
    "AAPL": ("AAPL", "AAPL", "AAPL", "AAPL"),
    "BRK.B": ("BRK-B", "BRK.B", "BRK-B", "BRK-B"),
    "BRK-B": ("BRK-B", "BRK.B", "BRK-B", "BRK-B"),
    "BRK/B": ("BRK-B", "BRK.B", "BRK-B", "BRK-B"),
    "BF.A": ("BF-A", "BF.A", "BF-A", "BF-A"),
    "BP.L": ("BP.L", "BP.L", "BP.L", "BP.L"),  # Yahoo's London suffix is kept
    "WSU.DE": ("WSU.DE", "WSU.DE", "WSU.DE", "WSU.DE"),
    "^GSPC": ("^GSPC", "I:SPX", None, "^GSPC"),
    "^IXIC": ("^IXIC", "I:COMP", None, "^IXIC"),
    "^DJI": ("^DJI", "I:DJI", None, "^DJI"),
    "EURUSD=X": ("EURUSD=X", "C:EURUSD", None, "EURUSD"),
    "EUR/USD": ("EURUSD=X", "C:EURUSD", None, "EURUSD"),
    # Yahoo's own short form of USD/INR is asked as written, never as its alias USDINR=X.
    "INR=X": ("INR=X", "C:USDINR", None, "USDINR"),
    "JPY=X": ("JPY=X", "C:USDJPY", None, "USDJPY"),
    "USDINR=X": ("USDINR=X", "C:USDINR", None, "USDINR"),
    "USD/INR": ("USDINR=X", "C:USDINR", None, "USDINR"),
    "BTC-USD": ("BTC-USD", "X:BTCUSD", None, "BTCUSD"),
    "BTC/USD": ("BTC-USD", "X:BTCUSD", None, "BTCUSD"),
}


SOURCES = ("yahoo", "polygon", "tiingo", "fmp")


@pytest.mark.parametrize("symbol", SPELLINGS)
def test_each_provider_gets_its_own_spelling(symbol: str) -> None:
    for source, expected in zip(
        ("yahoo", "polygon", "tiingo", "fmp"), SPELLINGS[symbol], strict=True
    ):
        if expected is None:
            with pytest.raises(SymbolNotFound, match="Tiingo's end-of-day prices serve stocks"):
                provider_symbol(source, symbol)
        else:
            assert provider_symbol(source, symbol) == expected, source
    for source in ("database", "csv", "synthetic"):
        assert provider_symbol(source, symbol) == symbol


@pytest.mark.parametrize("source", ["yahoo", "polygon", "tiingo", "fmp"])
def test_a_symbol_in_the_providers_own_spelling_is_asked_as_written(source: str) -> None:
    """Only what the provider does not accept is mapped: its own spellings (every answer of
    provider_symbol that a host may enqueue, and Yahoo's short FX form) come back unchanged."""
    own = {asked for row in SPELLINGS.values() if (asked := row[SOURCES.index(source)])}
    if source == "yahoo":
        assert {"INR=X", "JPY=X", "EURUSD=X", "BTC-USD", "^GSPC", "BRK-B"} <= own
    for asked in sorted(own):
        if ":" in asked:
            continue  # Polygon's prefixes (C:EURUSD) are not a symbol a host can enqueue
        assert provider_symbol(source, asked) == asked


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("AAPL", ["AAPL"]),
        ("BRK.B", ["BRK.B", "BRK-B", "BRK/B"]),
        ("BRK-B", ["BRK-B", "BRK.B", "BRK/B"]),
        ("EURUSD=X", ["EURUSD=X", "EUR/USD"]),
        ("JPY=X", ["JPY=X", "USDJPY=X", "USD/JPY"]),
        ("INR=X", ["INR=X", "USDINR=X", "USD/INR"]),
        ("BTC/USD", ["BTC/USD", "BTC-USD"]),
        ("^GSPC", ["^GSPC"]),
    ],
)
def test_spellings_list_every_host_spelling_the_asked_one_first(
    symbol: str, expected: list[str]
) -> None:
    assert spellings(symbol) == expected


@pytest.mark.parametrize("symbol", SPELLINGS)
def test_the_way_back_finds_the_host_symbol(symbol: str) -> None:
    for source, asked in zip(("yahoo", "polygon", "tiingo", "fmp"), SPELLINGS[symbol], strict=True):
        if asked is None or (source == "fmp" and parse(symbol).kind == "crypto"):
            continue  # not served; FMP's BTCUSD cannot be told from a ticker
        assert symbol in host_spellings(source, asked), (source, asked)


def test_polygon_grouped_daily_tickers_map_back() -> None:
    assert host_spellings("polygon", "BRK.B") == ["BRK.B", "BRK-B", "BRK/B"]
    assert host_spellings("polygon", "I:SPX") == ["^GSPC"]
    assert host_spellings("polygon", "X:BTCUSDT") == ["BTC-USDT", "BTC/USDT"]
    assert host_spellings("polygon", "AAPL") == ["AAPL"]
