"""Ticker symbols: the one normalisation and validation rule, mirrored by the queue's trigger
(`symbol_onboarding_check_symbol`, revision 0006), and the check of `requested_by`."""

import re
import uuid
from typing import TypeGuard

from worker.core.errors import WorkerError
from worker.models.onboarding_queue import PRIORITIES, SYMBOL_PATTERN, Priority

_SYMBOL = re.compile(SYMBOL_PATTERN)
# A symbol names something: at least one letter or digit (`..`, `/` or `^` alone do not).
_LETTER_OR_DIGIT = re.compile("[A-Z0-9]")
WHITESPACE = " \t\r\n\f\v"


class InvalidSymbolError(WorkerError, ValueError):
    """A symbol that is not 1-20 letters, digits or `. - ^ = /` once trimmed and upper-cased."""


class InvalidPriorityError(WorkerError, ValueError):
    """A priority other than high, normal or low."""


class UnknownRequesterError(WorkerError, ValueError):
    """`requested_by` is not the id of a row in `users`."""


def normalize_symbol(raw: object) -> str:
    """`" brk.b "` -> `"BRK.B"`; raises InvalidSymbolError naming the bad value."""
    if not isinstance(raw, str):
        raise InvalidSymbolError(f"invalid symbol {raw!r}: expected a string")
    # The same trim and case rules as the trigger (btrim of these characters, ASCII upper):
    # str.strip()/upper() alone would also trim Unicode spaces and turn "ß" into "SS".
    symbol = raw.strip(WHITESPACE)
    if (
        not symbol.isascii()
        or not _SYMBOL.fullmatch(symbol.upper())
        or not _LETTER_OR_DIGIT.search(symbol.upper())
    ):
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected 1-20 letters, digits or . - ^ = /, "
            "with at least one letter or digit"
        )
    return symbol.upper()


def is_priority(value: object) -> TypeGuard[Priority]:
    return value in PRIORITIES


def check_priority(priority: object) -> Priority:
    if not is_priority(priority):
        raise InvalidPriorityError(
            f"invalid priority {priority!r}: expected one of {', '.join(PRIORITIES)}"
        )
    return priority


def check_requested_by(requested_by: object) -> uuid.UUID | None:
    """`requested_by` as a UUID (or None); raises UnknownRequesterError for anything else. Whether
    the user exists is the database's to say (worker.queue.store checks it before inserting)."""
    if requested_by is None or isinstance(requested_by, uuid.UUID):
        return requested_by
    if isinstance(requested_by, str):
        try:
            return uuid.UUID(requested_by)
        except ValueError:
            pass
    raise UnknownRequesterError(f"invalid requested_by {requested_by!r}: expected a user's UUID")
