"""Symbol spellings: the symbol is kept exactly as the host enqueued it (`BRK-B` stays `BRK-B`);
each price source asks its provider in the provider's own spelling, and the bars come back under
the host's symbol. The one home of these rules: the sources, the `database` source and
`backfill --symbols` all use it.

What is recognised in a host's symbol (already normalised: upper case, `A-Z 0-9 . - ^ = /`):
- a class share: 1-6 letters, `.` `-` or `/`, one letter (`BRK.B`, `BRK-B`, `BRK/B`, `BF.B`).
  A dot before `L`, `T`, `F` or `V` is also Yahoo's suffix of a London, Tokyo, Frankfurt or
  TSX Venture listing (`BP.L`): Yahoo, Tiingo and FMP keep such a symbol as it is;
- an index: `^` and its name (`^GSPC`, Yahoo's and FMP's spelling);
- a currency pair: `EURUSD=X` (Yahoo; `JPY=X` is USD/JPY) or `EUR/USD` (both ISO currencies);
- a crypto pair: `BTC-USD` (Yahoo) or `BTC/USD`, quoted in a currency or coin listed below.

Provider spellings (`provider_symbol`):

| kind | yahoo | polygon | tiingo | fmp |
|---|---|---|---|---|
| class share | `BRK-B` | `BRK.B` | `BRK-B` | `BRK-B` |
| index | `^GSPC` | `I:SPX` | not served | `^GSPC` |
| currency pair | `EURUSD=X` (`INR=X` as written) | `C:EURUSD` | not served | `EURUSD` |
| crypto pair | `BTC-USD` | `X:BTCUSD` | not served | `BTCUSD` |

A symbol already in the provider's own spelling is asked exactly as written: `spelling.py` maps
only what the provider does not accept. Yahoo's short form `INR=X` (USD/INR) stays `INR=X`, not
`USDINR=X`: Yahoo treats such aliases inconsistently (it sometimes answers a request for one
spelling under the other), so the host's choice of the two is the one to ask.
Tiingo's end-of-day endpoint serves stocks, ETFs and funds only (indices, FX and crypto have
endpoints of their own), so those are refused before any request. Anything else is sent as is.
The way back, for an answer that names its symbols (Polygon's grouped daily), is
`host_spellings`; `spellings` lists every host spelling of a symbol, for the host's own tables.
"""

import re
from typing import NamedTuple

from worker.prices.base import SymbolNotFound

CLASS_SHARE = re.compile(r"([A-Z]{1,6})[./-]([A-Z])")
# Yahoo's one-letter exchange suffixes: London, Tokyo, Frankfurt, TSX Venture.
LISTING_SUFFIXES = frozenset("LTFV")
FIAT = frozenset(
    "USD EUR JPY GBP CHF CAD AUD NZD SEK NOK DKK HKD SGD CNY CNH INR MXN BRL ZAR KRW TRY PLN".split()
)
# What a crypto pair may be quoted in (Yahoo spells them BASE-QUOTE).
CRYPTO_QUOTES = FIAT | frozenset({"USDT", "USDC", "BTC", "ETH"})
FX_PAIR = re.compile(r"([A-Z]{3})([A-Z]{3})=X")
FX_USD = re.compile(r"([A-Z]{3})=X")  # Yahoo's short form of USD against a currency: JPY=X
SLASH_PAIR = re.compile(r"([A-Z0-9]{2,10})/([A-Z]{3,4})")
DASH_PAIR = re.compile(r"([A-Z0-9]{2,10})-([A-Z]{3,4})")
INDEX = re.compile(r"\^([A-Z0-9.]{1,19})")
# Yahoo index names whose Polygon ticker differs (else Polygon's is the name after `^`).
POLYGON_INDICES = {"GSPC": "SPX", "IXIC": "COMP"}


KIND_NAMES = {"index": "an index", "fx": "a currency pair", "crypto": "a crypto pair"}


class Security(NamedTuple):
    """What a symbol names: `kind` is class_share, index, fx, crypto or plain."""

    kind: str
    base: str  # the ticker, the index name, or the pair's base currency
    quote: str = ""  # the share class letter, or the pair's quote currency


def parse(symbol: str) -> Security:
    """What a (normalised) host symbol names."""
    if match := INDEX.fullmatch(symbol):
        return Security("index", match.group(1))
    if match := FX_PAIR.fullmatch(symbol):
        return Security("fx", match.group(1), match.group(2))
    if match := FX_USD.fullmatch(symbol):
        return Security("fx", "USD", match.group(1))
    if match := SLASH_PAIR.fullmatch(symbol):
        base, quote = match.groups()
        if base in FIAT and quote in FIAT:
            return Security("fx", base, quote)
        if quote in CRYPTO_QUOTES:
            return Security("crypto", base, quote)
    if (match := DASH_PAIR.fullmatch(symbol)) and match.group(2) in CRYPTO_QUOTES:
        return Security("crypto", match.group(1), match.group(2))
    if match := CLASS_SHARE.fullmatch(symbol):
        return Security("class_share", match.group(1), match.group(2))
    return Security("plain", symbol)


def provider_symbol(source: str, symbol: str) -> str:
    """`symbol` as `source` spells it; SymbolNotFound when the source does not serve its kind."""
    kind, base, quote = parse(symbol)
    if kind == "plain":
        return symbol
    if source == "polygon":
        if kind == "class_share":
            return f"{base}.{quote}"
        if kind == "index":
            return f"I:{POLYGON_INDICES.get(base, base)}"
        return f"{'C' if kind == 'fx' else 'X'}:{base}{quote}"
    if source in ("yahoo", "tiingo", "fmp"):
        if kind == "class_share":
            if symbol[len(base)] == "." and quote in LISTING_SUFFIXES:
                return symbol  # a listing suffix (BP.L), or ambiguous: kept as written
            return f"{base}-{quote}"
        if source == "tiingo":
            raise SymbolNotFound(
                source,
                f"{symbol} is {KIND_NAMES[kind]}: "
                "Tiingo's end-of-day prices serve stocks, ETFs and funds only",
            )
        if kind == "index":
            return f"^{base}"
        if source == "yahoo":
            if kind == "fx":
                # EURUSD=X and JPY=X are Yahoo's own: kept; EUR/USD is not: EURUSD=X.
                return symbol if symbol.endswith("=X") else f"{base}{quote}=X"
            return f"{base}-{quote}"
        return f"{base}{quote}"
    return symbol


def spellings(symbol: str) -> list[str]:
    """Every spelling a host may have used for the security `symbol` names, `symbol` first:
    `BRK.B` -> BRK.B, BRK-B, BRK/B. For finding it in the host's own tables."""
    kind, base, quote = parse(symbol)
    if kind == "class_share":
        variants = [f"{base}{sep}{quote}" for sep in ".-/"]
    elif kind == "fx":
        variants = [f"{base}{quote}=X", f"{base}/{quote}"]
        if base == "USD":
            variants.append(f"{quote}=X")
    elif kind == "crypto":
        variants = [f"{base}-{quote}", f"{base}/{quote}"]
    else:
        variants = []
    return [symbol, *(v for v in variants if v != symbol)]


def host_spellings(source: str, asked: str) -> list[str]:
    """The way back: the host spellings a provider's own symbol may stand for, to match an answer
    that names its symbols (Polygon's grouped daily `"T": "BRK.B"`) against the host's universe.
    `host_spellings(s, provider_symbol(s, x))` includes `x`."""
    if source == "polygon" and asked[:2] in ("I:", "C:", "X:"):
        prefix, name = asked[:2], asked[2:]
        if prefix == "I:":
            yahoo = {v: k for k, v in POLYGON_INDICES.items()}
            return [f"^{yahoo.get(name, name)}"]
        if prefix == "C:" and len(name) == 6:
            return spellings(f"{name}=X")
        for quote in sorted(CRYPTO_QUOTES, key=len, reverse=True):
            if prefix == "X:" and name.endswith(quote) and len(name) > len(quote):
                return spellings(f"{name[: -len(quote)]}-{quote}")
        return [asked]
    if source == "fmp" and len(asked) == 6 and asked[:3] in FIAT and asked[3:] in FIAT:
        return spellings(f"{asked}=X")
    return spellings(asked)
