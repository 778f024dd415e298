"""What every text, instant and number on the activity topic must satisfy.

These checks run where data enters (the ingest request schemas) and again
where it is consumed (the worker's decoder), so one bad value can neither be
accepted over HTTP nor stop the worker when written straight onto the topic:
PostgreSQL refuses NUL characters and lone surrogates, Python's datetime
overflows near year 1, and a revision beyond int64 cannot be stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field

# C0 controls other than tab, newline and carriage return; lone surrogates.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
# Ids and labels hold no control character at all.
_CONTROL_IN_ID = re.compile(r"[\x00-\x1f\ud800-\udfff]")

EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2100, 1, 1, tzinfo=UTC)
MAX_REVISION = 2**63 - 1  # a bigint; sources may use a modification time in ms
MAX_COUNT = 2**31 - 1
MAX_NESTING = 32


def _describe(char: str) -> str:
    return f"U+{ord(char):04X}"


def check_id(value: str) -> str:
    """Refuse any control character (or a lone surrogate) in an id or a label."""
    found = _CONTROL_IN_ID.search(value)
    if found:
        raise ValueError(
            f"control character {_describe(found.group())} at position {found.start()} "
            "is not allowed"
        )
    return value


# What spreadsheets read as the start of a formula (CSV/formula injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_formula_safe(value: str) -> str:
    """Refuse an id a spreadsheet would run as a formula once exported (ids from HTTP).

    Line breaks (and every other control character) are refused by check_id.
    Checked at the ingest edge only: the worker's decoder keeps accepting
    events already on the topic.
    """
    if value.startswith(FORMULA_STARTS):
        raise ValueError(
            f"must not start with {value[0]!r}: a spreadsheet would read the id as a formula"
        )
    return value


def check_text(value: str) -> str:
    """Refuse control characters other than tab and newlines in free text."""
    found = _CONTROL_IN_TEXT.search(value)
    if found:
        raise ValueError(
            f"control character {_describe(found.group())} at position {found.start()} "
            "is not allowed"
        )
    return value


def check_instant(value: datetime) -> datetime:
    """Refuse instants outside [1970, 2100): no source system has such facts."""
    if not EARLIEST_INSTANT <= value < LATEST_INSTANT:
        raise ValueError(
            f"must lie between {EARLIEST_INSTANT.date()} and {LATEST_INSTANT.date()} (UTC)"
        )
    return value


def check_json(value: Any, depth: int = 0) -> Any:
    """Apply check_text to every key and string of a JSON value, with bounded nesting."""
    if depth > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key))
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise ValueError("integer beyond 64 bits")
    return value


IdText = Annotated[str, AfterValidator(check_id)]
# An id or label as HTTP clients send it: also never formula-like.
IdTextIn = Annotated[str, AfterValidator(check_id), AfterValidator(check_formula_safe)]
FreeText = Annotated[str, AfterValidator(check_text)]
Instant = Annotated[
    AwareDatetime,
    AfterValidator(check_instant),
    Field(
        description="ISO 8601 date-time with a UTC offset, from 1970-01-01 to before 2100-01-01."
    ),
]
Revision = Annotated[
    int,
    Field(ge=0, le=MAX_REVISION, description="Bump when the source fact is re-sent changed."),
]
# What HTTP clients send: an integer, never `true` or "3" (it feeds the event id).
RevisionIn = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_REVISION,
        description="Bump when the source fact is re-sent changed (an integer).",
    ),
]
