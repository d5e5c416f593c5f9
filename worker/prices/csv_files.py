"""Daily prices from CSV files in `PRICE_CSV_DIR`, one file per symbol.

File name: `<SYMBOL>.csv` (or the lower-case `<symbol>.csv`), with `/` in a symbol written `_`.
Layouts, located by the header line (leading junk lines are skipped, as old Stooq downloads
printed warnings before it), columns found by name:
- Yahoo-style `Date,Open,High,Low,Close,Adj Close,Volume`: `Adj Close` -> adj_close_price.
- Stooq-style `Date,Open,High,Low,Close,Volume`: no adjusted column, adj_close_price NULL (note
  that Stooq's Close is itself split- and dividend-adjusted).
Dates are `YYYY-MM-DD` or `YYYYMMDD`; `null` or an empty cell is a missing value.
"""

import asyncio
import csv
import re
from datetime import date
from pathlib import Path

from worker.prices.base import (
    Bars,
    InvalidData,
    NoData,
    PriceSource,
    RawBar,
    TransientSourceError,
    Window,
    iso_date,
)
from worker.prices.spelling import spellings
from worker.prices.validate import normalize

NAME = "csv"
MAX_FILE_BYTES = 64 * 1024 * 1024
HEADER_SEARCH_LINES = 50
COLUMN_ALIASES = {
    "date": "date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adjclose": "adj_close",
    "volume": "volume",
}
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


class CsvSource(PriceSource):
    name = NAME

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def candidates(self, symbol: str) -> list[Path]:
        # "/" is the only path separator the symbol alphabet allows; with ".csv" appended the
        # name can be neither "." nor "..", so the file is always directly inside the directory.
        # Every spelling of the symbol (BRK-B.csv for BRK.B), the enqueued one first.
        names: dict[str, None] = {}
        for spelling in spellings(symbol):
            stem = spelling.replace("/", "_")
            names.update(dict.fromkeys((f"{stem}.csv", f"{stem.lower()}.csv")))
        return [self._directory / name for name in names]

    async def fetch(self, symbol: str, window: Window) -> Bars:
        data, path = await asyncio.to_thread(self._read, symbol)
        rows = parse_csv(symbol, data, path.name)
        return normalize(NAME, symbol, rows, window)

    def _read(self, symbol: str) -> tuple[bytes, Path]:
        paths = self.candidates(symbol)
        for path in paths:
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise InvalidData(NAME, f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
                return path.read_bytes(), path
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                raise InvalidData(NAME, f"{path.name} is a directory, not a file") from None
            except OSError as exc:
                raise TransientSourceError(
                    NAME, f"cannot read {path.name}: {exc.strerror or type(exc).__name__}"
                ) from None
        names = " or ".join(p.name for p in paths)
        raise NoData(NAME, f"no price file for {symbol} in PRICE_CSV_DIR (looked for {names})")


def parse_csv(symbol: str, data: bytes, file_name: str) -> list[RawBar]:
    """The rows of one price file, or InvalidData/NoData naming the file and line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidData(NAME, f"{file_name} is not UTF-8 text") from None
    lines = text.splitlines()
    start, columns = _header(lines, file_name)
    rows: list[RawBar] = []
    try:
        for offset, cells in enumerate(csv.reader(lines[start + 1 :])):
            line_no = start + 2 + offset
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                raise InvalidData(
                    NAME,
                    f"{file_name} line {line_no}: {len(cells)} fields, the header has {len(columns)}",
                )
            values = dict(zip(columns, cells, strict=True))
            rows.append(
                RawBar(
                    price_date=_date(values["date"], file_name, line_no),
                    open=values.get("open"),
                    high=values.get("high"),
                    low=values.get("low"),
                    close=values["close"],
                    adj_close=values.get("adj_close"),
                    volume=values.get("volume"),
                )
            )
    except csv.Error as exc:
        raise InvalidData(NAME, f"{file_name} is not valid CSV ({exc})") from None
    return rows


def _header(lines: list[str], file_name: str) -> tuple[int, list[str]]:
    """The index of the header line and its columns (canonical names, unknown ones kept)."""
    for index, line in enumerate(lines[:HEADER_SEARCH_LINES]):
        try:
            cells = next(csv.reader([line]), [])
        except csv.Error:
            continue
        if not cells or cells[0].strip().lower() != "date":
            continue
        columns = [
            COLUMN_ALIASES.get(re.sub(r"[\s_]", "", c.lower()), c.strip().lower()) for c in cells
        ]
        if "close" not in columns:
            raise InvalidData(NAME, f"{file_name} has no Close column (header: {line[:120]!r})")
        if len(set(columns)) != len(columns):
            raise InvalidData(NAME, f"{file_name} repeats a column (header: {line[:120]!r})")
        return index, columns
    content = "\n".join(lines).strip()
    lowered = content.lower()
    if lowered == "no data":
        raise NoData(NAME, f"{file_name} holds Stooq's 'No data' answer, not prices")
    if "exceeded the daily hits limit" in lowered:
        raise InvalidData(NAME, f"{file_name} holds Stooq's quota message, not prices")
    if content.startswith("<"):
        raise InvalidData(NAME, f"{file_name} is an HTML page, not a price CSV")
    raise InvalidData(
        NAME,
        f"{file_name} has no header line starting with Date "
        "(expected Date,Open,High,Low,Close[,Adj Close],Volume)",
    )


def _date(value: str, file_name: str, line_no: int) -> date:
    text = value.strip()
    match = _COMPACT_DATE.match(text)
    if match is not None:
        text = f"{match.group(1)}-{match.group(2)}-{match.group(3)}"
    return iso_date(NAME, text, f"{file_name} line {line_no}")
