"""How values are written to and read from SQLite columns."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def to_text(value: datetime | None) -> str | None:
    """Dates are stored as sortable ISO 8601 text in UTC, to the second."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)  # 3.11+ reads the trailing Z as UTC
