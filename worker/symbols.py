"""Ticker symbols: the one normalisation and validation rule, mirrored by the queue's trigger."""

import re

from worker.models.onboarding_queue import PRIORITIES, SYMBOL_PATTERN

_SYMBOL = re.compile(SYMBOL_PATTERN)
WHITESPACE = " \t\r\n\f\v"


class InvalidSymbolError(ValueError):
    """A symbol that is not 1-20 letters, digits or `. - ^ = /` once trimmed and upper-cased."""


class InvalidPriorityError(ValueError):
    """A priority other than high, normal or low."""


def normalize_symbol(raw: object) -> str:
    """`" brk.b "` -> `"BRK.B"`; raises InvalidSymbolError naming the bad value."""
    if not isinstance(raw, str):
        raise InvalidSymbolError(f"invalid symbol {raw!r}: expected a string")
    # The same trim and case rules as the trigger (btrim of these characters, ASCII upper):
    # str.strip()/upper() alone would also trim Unicode spaces and turn "ß" into "SS".
    symbol = raw.strip(WHITESPACE)
    if not symbol.isascii() or not _SYMBOL.fullmatch(symbol.upper()):
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected 1-20 letters, digits or . - ^ = /"
        )
    return symbol.upper()


def check_priority(priority: object) -> str:
    if priority not in PRIORITIES:
        raise InvalidPriorityError(
            f"invalid priority {priority!r}: expected one of {', '.join(PRIORITIES)}"
        )
    return priority  # type: ignore[return-value]
