"""The seeded articles: plain-text captures of nato.int pages, in two formats.

*Article*: a title line, optional bullet lines with the publication date ("23 Feb. 2022 -")
and "Last updated: 19 Jul. 2021 09:36", then the body. Without a date line the first
explicit date in the text is the publication date.

*Listing capture*: blocks of a title, a relative age ("2 weeks 3 days ago") and a summary.
Ages are relative to when the page was captured, which the file does not say: it is
inferred from the blocks that also carry an explicit date (date + age = capture day; the
most common answer wins), or given by the caller. An explicit date beats an age.

Either way the whole text is kept as the entry's content, in paragraphs; the summary is
only its first paragraph, shortened for display.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from aggregator.errors import UsageError
from aggregator.models import Entry, Precision
from aggregator.parse import dates
from aggregator.parse.sanitize import text_to_html
from aggregator.parse.text import finished

_BULLET = re.compile(r"^\s*[•·*\-]\s*(.*)$")
_UPDATED = re.compile(r"^last updated:?\s*(.+)$", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n\s*\n")
SUMMARY_CHARS = 600  # the summary shown in feeds; the whole text is the content
# A block whose lines (all but its last) are no longer than this was wrapped at a fixed
# width: its lines are one paragraph. Longer lines are paragraphs of their own, as in
# captures that separate paragraphs by a single newline.
WRAP_WIDTH = 100


class SeedError(UsageError):
    """A seed file that cannot be read as either format; read_seed_file's names the file."""


@dataclass(frozen=True, slots=True)
class _Block:
    title: str
    age: dates.Age
    summary: str
    explicit: date | None


# --- files ---------------------------------------------------------------------------------


def seed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.txt") if p.is_file())


def read_seed_file(path: Path, reference: str | None = None) -> list[Entry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"{path}: cannot read: {exc}") from None
    try:
        return parse_seed_text(text, reference)
    except SeedError as exc:
        raise SeedError(f"{path}: {exc}") from None


def parse_seed_text(text: str, reference: str | None = None) -> list[Entry]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if any(dates.AGE_LINE.match(line) for line in lines):
        return parse_listing(lines, reference)
    return [parse_article(lines)]


# --- article -------------------------------------------------------------------------------


def parse_article(lines: list[str]) -> Entry:
    rest = _strip_blank(lines)
    if not rest:
        raise SeedError("empty file")
    title, rest = rest[0].strip(), rest[1:]
    published_day, updated, rest = _article_dates(rest)
    body = "\n".join(rest).strip()
    if published_day is None:
        published_day = dates.first_explicit_date(body)
    if published_day is None:
        raise SeedError("no publication date: neither a date line nor a date in the text")
    published = dates.at_noon(published_day)
    return _entry(title, body, published, max(updated or published, published), Precision.DAY)


def _article_dates(lines: list[str]) -> tuple[date | None, datetime | None, list[str]]:
    """Read the bullet lines under the title; return the rest of the lines."""
    published, updated, index = None, None, 0
    while index < len(lines):
        line = lines[index]
        bullet = _BULLET.match(line)
        if not line.strip():
            index += 1
            continue
        if not bullet:
            break
        content = bullet.group(1).strip()
        if match := _UPDATED.match(content):
            updated = dates.nato_local_datetime(match.group(1))
        elif published is None:
            published = dates.first_explicit_date(content)
        index += 1
    return published, updated, lines[index:]


# --- listing -------------------------------------------------------------------------------


def parse_listing(lines: list[str], reference: str | None = None) -> list[Entry]:
    blocks = _blocks(lines)
    if not blocks:
        raise SeedError("a listing capture with no titled items")
    ref, ref_has_time = _reference(blocks, reference)
    return [_listing_entry(block, ref, ref_has_time) for block in blocks]


def _blocks(lines: list[str]) -> list[_Block]:
    """A block is a title line, an age line and the summary lines up to a blank line.

    The line before an age line is a title only when it is not itself part of a summary
    (directly after another age line): that is how trailing page chrome is told apart.
    """
    ages = {i: age for i, line in enumerate(lines) if (age := dates.parse_age(line))}
    blocks = []
    for index, age in ages.items():
        title_at = _previous_nonblank(lines, index)
        if title_at is None or title_at in ages or _follows_age(lines, title_at, ages):
            continue
        summary = _summary(lines, index + 1, ages)
        title = lines[title_at].strip()
        explicit = dates.first_explicit_date(f"{title}\n{summary}")
        blocks.append(_Block(title, age, summary, explicit))
    return blocks


def _previous_nonblank(lines: list[str], index: int) -> int | None:
    for i in range(index - 1, -1, -1):
        if lines[i].strip():
            return i
    return None


def _follows_age(lines: list[str], index: int, ages: dict) -> bool:
    return index > 0 and (index - 1) in ages


def _summary(lines: list[str], start: int, ages: dict) -> str:
    taken = []
    for i in range(start, len(lines)):
        if not lines[i].strip() or i in ages:
            break
        taken.append(lines[i].strip())
    return "\n".join(taken)


def _reference(blocks: list[_Block], given: str | None) -> tuple[datetime | None, bool]:
    if given:
        try:
            return dates.parse_reference(given)
        except ValueError as exc:  # what the person typed: the one reason it says
            raise SeedError(str(exc)) from None
    votes = Counter(
        block.explicit + block.age.delta
        for block in blocks
        if block.explicit and block.age.uncertainty <= timedelta(days=1)
    )
    if votes:
        day = max(votes.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return dates.at_noon(day), False
    if all(block.explicit for block in blocks):
        return None, False
    raise SeedError(
        "relative ages need a reference date and no item carries an explicit date "
        "to infer it from; pass --reference-date YYYY-MM-DD (the day the page was captured)"
    )


def _listing_entry(block: _Block, ref: datetime | None, ref_has_time: bool) -> Entry:
    by_age = ref - block.age.delta if ref else None
    if block.explicit and (by_age is None or _agrees(block, by_age)):
        published, precision = dates.at_noon(block.explicit), Precision.DAY
    else:
        published, precision = dates.age_date(block.age, ref, ref_has_time)
    return _entry(block.title, block.summary, published, published, precision)


def _agrees(block: _Block, by_age: datetime) -> bool:
    """A date in the text that is far from the age is about something else (a past summit)."""
    slack = block.age.uncertainty + timedelta(days=2)
    return abs(dates.at_noon(block.explicit) - by_age) <= slack


# --- shared --------------------------------------------------------------------------------


def _entry(
    title: str, body: str, published: datetime, updated: datetime, precision: Precision
) -> Entry:
    content = "\n\n".join(paragraphs(body))
    summary = _shortened(content.split("\n\n", 1)[0])
    entry = Entry(
        title=" ".join(title.split()),
        summary_html=text_to_html(summary),
        summary_text=summary,
        content_html=text_to_html(content) if content else None,
        content_text=content or None,
        published=published,
        updated=updated,
        precision=precision,
    )
    return finished(entry)


def paragraphs(text: str) -> list[str]:
    """The paragraphs of plain text, each on one line: blocks separated by blank lines,
    and within a block each line that is not a fixed-width wrap of the next."""
    found = []
    for block in _BLANK_LINES.split(text):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        lines = [line for line in lines if line]
        if all(len(line) <= WRAP_WIDTH for line in lines[:-1]):
            lines = [" ".join(lines)] if lines else []
        found.extend(lines)
    return found


def _shortened(paragraph: str) -> str:
    if len(paragraph) <= SUMMARY_CHARS:
        return paragraph
    return paragraph[:SUMMARY_CHARS].rsplit(" ", 1)[0] + "…"


def _strip_blank(lines: list[str]) -> list[str]:
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    return lines[start:]
