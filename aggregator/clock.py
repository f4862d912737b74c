"""One clock and one way to write a moment.

Every moment the program keeps or shows is timezone-aware UTC; the archive, the command
line, text logs and JSON write it as ISO 8601 to the second with a Z
(`2026-11-23T10:30:00Z`); JSON log lines add milliseconds, so that log tools order the lines
of one second. A moment that is not there prints as "-" in text and as null
in JSON (`stamp(None)` and `stamp(None, None)`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

STAMP = "%Y-%m-%dT%H:%M:%SZ"
MISSING = "-"


def now() -> datetime:
    """The current moment, UTC, to the microsecond."""
    return datetime.now(UTC)


def now_to_the_second() -> datetime:
    """The current moment as the archive keeps it: to the second."""
    return now().replace(microsecond=0)


def up_to_the_second(moment: datetime | None) -> datetime | None:
    """`moment` on a whole second, never earlier: a "not before" kept to the second."""
    if moment is None or not moment.microsecond:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def later(moment: datetime, seconds: float) -> datetime:
    """`seconds` after `moment`, or the latest moment there is when that is past it."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def stamp(moment: datetime | None, missing: str | None = MISSING) -> str | None:
    """`2026-11-23T10:30:00Z`; `missing` when there is no moment."""
    if moment is None:
        return missing
    return moment.astimezone(UTC).strftime(STAMP)


def from_stamp(text: str | None) -> datetime | None:
    """A stamp read back (any ISO 8601 with an offset or a Z), as aware UTC."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)
