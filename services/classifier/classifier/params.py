"""Types shared by request parameters and bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    # pydantic would also take a number of seconds since 1970; the schema (and a
    # reader) promise an ISO 8601 date-time, so anything else is refused.
    if isinstance(value, str) and _ISO_DATE_TIME.match(value):
        return value
    if isinstance(value, str | int | float):
        raise ValueError("expected an ISO 8601 date-time with offset, e.g. 2026-11-22T10:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
"""An aware date-time given as ISO 8601 text (not as a Unix timestamp)."""
