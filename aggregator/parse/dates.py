"""Dates written by people: explicit dates in prose, relative ages, NATO's own formats.

Pure functions. Everything returned is timezone-aware UTC. A date known only to the day
is placed at 12:00 UTC, as NATO's own feed does, so it lands on the same calendar day in
every timezone from UTC-11 to UTC+11.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aggregator.models import Precision

NATO_TIMEZONE = ZoneInfo("Europe/Brussels")  # where "Last updated" times on nato.int are local
NOON = time(12, 0)

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))

# "23 Feb. 2022", "On 23rd May 2023", "27 and 28 October 2022" (the first day counts),
# "27-28 October 2022", "9 November 2022".
_DAY_MONTH_YEAR = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?:\s*(?:and|-|–|to)\s*\d{{1,2}}(?:st|nd|rd|th)?)?"
    rf"\s+({_MONTH})\.?,?\s+(\d{{4}})\b",
    re.IGNORECASE,
)
# "November 9, 2022", "May 23rd 2023"
_MONTH_DAY_YEAR = re.compile(
    rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE
)
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")

_AGE_PART = r"(\d+)\s+(year|month|week|day|hour|minute|min|second|sec)s?"
AGE_LINE = re.compile(rf"^\s*(?:{_AGE_PART}\s*,?\s*)+ago\s*$", re.IGNORECASE)
_AGE_PARTS = re.compile(_AGE_PART, re.IGNORECASE)
_UNIT_SECONDS = {
    "year": 365 * 86400,
    "month": 30 * 86400,
    "week": 7 * 86400,
    "day": 86400,
    "hour": 3600,
    "minute": 60,
    "min": 60,
    "second": 1,
    "sec": 1,
}


@dataclass(frozen=True, slots=True)
class Age:
    """A relative age such as "2 weeks 3 days ago"."""

    delta: timedelta
    uncertainty: timedelta  # months and years are rounded by the site that printed them
    has_time: bool  # says hours or minutes, so it is precise to the minute


def parse_age(line: str) -> Age | None:
    if not AGE_LINE.match(line):
        return None
    seconds, units = 0, set()
    for amount, unit in _AGE_PARTS.findall(line):
        unit = unit.lower()
        units.add(unit)
        seconds += int(amount) * _UNIT_SECONDS[unit]
    if "year" in units:
        uncertainty = timedelta(days=183)
    elif "month" in units:
        uncertainty = timedelta(days=16)
    else:
        uncertainty = timedelta(days=1)
    has_time = bool(units & {"hour", "minute", "min", "second", "sec"})
    return Age(timedelta(seconds=seconds), uncertainty, has_time)


def age_date(
    age: Age, reference: datetime, reference_has_time: bool = True
) -> tuple[datetime, Precision]:
    """The moment an age counts back to from `reference`: to the minute when both the age
    and the reference say the time of day, else only the day (at noon)."""
    moment = reference - age.delta
    if age.has_time and reference_has_time:
        return moment.replace(second=0, microsecond=0), Precision.MINUTE
    return at_noon(moment.date()), Precision.DAY


def written_date(text: str, reference: datetime) -> tuple[datetime, Precision] | None:
    """A date as a web page writes it: ISO 8601 (a `datetime` attribute), NATO's
    '07 Dec. 2022' or '19 Jul. 2021 09:36' (Brussels time), or an age such as
    '2 weeks 3 days ago' counted back from `reference` (when the page was fetched)."""
    text = " ".join(text.split())
    if not text:
        return None
    found = iso_date(text)
    if found is None and (age := parse_age(text)):
        found = age_date(age, reference)
    if found is None and (moment := nato_local_datetime(text)):
        found = moment, Precision.MINUTE
    if found is None and (day := first_explicit_date(text)):
        found = at_noon(day), Precision.DAY
    return found


def iso_date(text: str) -> tuple[datetime, Precision] | None:
    """An ISO 8601 / RFC 3339 date or time (a day alone is that day at noon), or None."""
    try:
        if _ISO_DAY.fullmatch(text):
            return at_noon(date.fromisoformat(text)), Precision.DAY
        if not _ISO_TIME.match(text):
            return None
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # no zone said: take UTC rather than guess
    try:
        return moment.astimezone(UTC), Precision.SECOND
    except OverflowError:
        return None


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def first_explicit_date(text: str) -> date | None:
    """The first full calendar date written in the text, if any."""
    found: list[tuple[int, date]] = []
    for match in _DAY_MONTH_YEAR.finditer(text):
        day = _date(match.group(3), match.group(2), match.group(1))
        if day:
            found.append((match.start(), day))
            break
    for match in _MONTH_DAY_YEAR.finditer(text):
        day = _date(match.group(3), match.group(1), match.group(2))
        if day:
            found.append((match.start(), day))
            break
    return min(found)[1] if found else None


def _date(year: str, month: str, day: str) -> date | None:
    try:
        return date(int(year), MONTHS[month.lower().rstrip(".")], int(day))
    except (ValueError, KeyError):
        return None


def at_noon(day: date) -> datetime:
    return datetime.combine(day, NOON, tzinfo=UTC)


def nato_local_datetime(text: str) -> datetime | None:
    """'19 Jul. 2021 09:36' as printed on nato.int (Brussels time) -> UTC."""
    day = first_explicit_date(text)
    clock = _CLOCK.search(text)
    if day is None or clock is None:
        return None
    hour, minute = int(clock.group(1)), int(clock.group(2))
    if hour > 23 or minute > 59:
        return None
    try:  # year 1 in Brussels is before datetime's range once made UTC
        return datetime.combine(day, time(hour, minute), tzinfo=NATO_TIMEZONE).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_reference(text: str) -> tuple[datetime, bool]:
    """--reference-date: 'YYYY-MM-DD' (to the day) or an ISO 8601 time (to the minute).

    Returns the time in UTC and whether it was given to the minute.
    """
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return at_noon(date.fromisoformat(text)), False
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f'reference date must look like 2022-11-26, got "{text}"') from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC), True
