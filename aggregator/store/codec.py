"""How values are written to and read from SQLite columns."""

from __future__ import annotations

from datetime import datetime

from aggregator.clock import from_stamp, stamp


def to_text(value: datetime | None) -> str | None:
    """Dates are stored as sortable ISO 8601 text in UTC, to the second."""
    return stamp(value, None)


def from_text(value: str | None) -> datetime | None:
    return from_stamp(value)
