"""`as_of`: the past moment a conversion or a quote is priced at, read from a date or an RFC 3339 instant.

- A date `YYYY-MM-DD` means the **end of that day in UTC** (23:59:59.999999Z), so every rate published on
  that day counts (the ECB publishes at 16:00 Frankfurt time, 14:00 or 15:00 UTC).
- An instant needs its offset (`2024-03-01T15:30:00+01:00`, `...Z`); it is normalised to UTC. Up to
  microseconds (PostgreSQL's precision), so the instant compared is the instant given.
- A future `as_of` is refused (`as_of_in_future`): a date after today (UTC), an instant later than now
  plus the allowed clock skew (`CES_MAX_CLOCK_SKEW_SECONDS`). Today's date is allowed: its end lies ahead,
  but only rates already published can be at or before it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 section 5.6 date-time: an offset is required; a fraction of up to 6 digits (microseconds).
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# JSON Schema pattern for the wire contract (the same two shapes).
AS_OF_SCHEMA_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
)
AS_OF_DESCRIPTION = (
    "price at a past moment: a date YYYY-MM-DD (the end of that day, UTC) or an RFC 3339 instant with its "
    "offset; the newest rate published at or before it is used, and the staleness rule applies relative to it"
)
END_OF_DAY = time(23, 59, 59, 999999, tzinfo=UTC)


class AsOfError(ValueError):
    """Why an `as_of` cannot be used: `reason` is `invalid_as_of` or `as_of_in_future`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_as_of(value: object, now: datetime, max_skew: timedelta) -> datetime:
    """The UTC instant `value` names; raises `AsOfError` when it is malformed or in the future."""
    instant, is_date = read_as_of(value)
    if is_date and instant.date() > now.astimezone(UTC).date():
        raise AsOfError("as_of_in_future", f"as_of {value} is after today ({now.astimezone(UTC).date()}, UTC)")
    if not is_date and instant > now + max_skew:
        raise AsOfError(
            "as_of_in_future",
            f"as_of {value} is later than now ({now.isoformat()}) plus the "
            f"{int(max_skew.total_seconds())}s clock skew allowed",
        )
    return instant


def read_as_of(value: object) -> tuple[datetime, bool]:
    """The UTC instant `value` names, and whether it was a date; raises `AsOfError` (`invalid_as_of`)."""
    if not isinstance(value, str):
        raise AsOfError("invalid_as_of", 'as_of must be a string: a date "2024-03-01" or an RFC 3339 instant')
    if _DATE.fullmatch(value):
        try:
            return datetime.combine(date.fromisoformat(value), END_OF_DAY), True
        except ValueError:
            raise AsOfError("invalid_as_of", f"as_of {value[:40]!r} is not a calendar date") from None
    if not _INSTANT.fullmatch(value):
        raise AsOfError(
            "invalid_as_of",
            f"as_of {value[:40]!r} is neither a date YYYY-MM-DD nor an RFC 3339 instant with an offset",
        )
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC), False
    except (ValueError, OverflowError):
        raise AsOfError("invalid_as_of", f"as_of {value[:40]!r} is not a valid instant") from None
