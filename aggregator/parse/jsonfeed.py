"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1) read into entries.

feedparser 6 does not read JSON Feed, so the standard `json` module does, and each item
becomes the same `Entry` a feed item does, through the same sanitizing, text, date and
size rules: the rest of the pipe cannot tell the formats apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aggregator.models import Entry, ParsedFeed, Precision
from aggregator.parse import dates
from aggregator.parse.feed import (
    FeedError,
    absolute_http,
    absolute_refs,
    note_on,
    sanitize,
    text_of,
)
from aggregator.parse.prepare import DEFAULT_MAX_ENTRIES, over_max_entries
from aggregator.parse.sanitize import text_to_html
from aggregator.parse.text import finished, xml_safe

VERSIONS = {
    "https://jsonfeed.org/version/1": "json10",
    "https://jsonfeed.org/version/1.1": "json11",
}
_JSON_TYPES = ("application/feed+json", "application/json")


def looks_like_json_feed(body: bytes, headers: Mapping[str, str]) -> bool:
    """Served as JSON, or a document whose first character opens a JSON object."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type in _JSON_TYPES or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse_json_feed(body: bytes, url: str, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> ParsedFeed:
    """Raises FeedError (one line) when the document is not a JSON Feed."""
    document = _load(body)
    version = VERSIONS.get(str(document.get("version", "")).rstrip("/"))
    items = document.get("items")
    if version is None or not isinstance(items, list):
        raise FeedError('not a JSON Feed: no "version" of jsonfeed.org and "items" list')
    base = _http(document.get("home_page_url"), url) or url
    entries, failures = [], []
    for raw in items[:max_entries]:
        try:
            entry = _entry(raw, base)
        except Exception as exc:  # one odd item must not cost the others theirs
            failures.append(exc)
            continue
        if entry is not None:
            entries.append(finished(entry))
    dropped = max(0, len(items) - max_entries)
    return ParsedFeed(
        entries=entries,
        title=_line(document.get("title")),
        link=base,
        version=version,
        dropped=dropped,
        unreadable=len(failures),
        note=note_on(over_max_entries(dropped, max_entries) if dropped else None, failures),
    )


def _load(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError) as exc:
        raise FeedError(f"not a JSON Feed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise FeedError("not a JSON Feed: the document is not a JSON object")
    return document


def _entry(raw: Any, base: str) -> Entry | None:
    if not isinstance(raw, dict):
        raise TypeError("an item is not a JSON object")
    link = _http(raw.get("url"), base) or _http(raw.get("external_url"), base)
    content_html = _html(raw.get("content_html"), raw.get("content_text"), base)
    summary_html = _html(None, raw.get("summary"), base) or content_html
    if summary_html == content_html:
        content_html = ""
    title = _line(raw.get("title"))
    if not (title or summary_html or content_html or link):
        return None
    published, precision = _date(raw.get("date_published"))
    updated, _ = _date(raw.get("date_modified"))
    guid = _line(raw.get("id")) or None
    return Entry(
        title=title,
        link=link,
        guid=guid,
        summary_html=summary_html,
        summary_text=text_of(summary_html),
        content_html=content_html or None,
        content_text=text_of(content_html) if content_html else None,
        author=_author(raw),
        categories=tuple(dict.fromkeys(_line(tag) for tag in _list(raw.get("tags")) if _line(tag))),
        published=published or updated,
        updated=updated,
        precision=precision if (published or updated) else Precision.SECOND,
        date_inferred=not (published or updated),
    )


def _html(html: Any, text: Any, base: str) -> str:
    if isinstance(html, str) and html.strip():
        return absolute_refs(sanitize(xml_safe(html)), base)
    if isinstance(text, str) and text.strip():
        return text_to_html(xml_safe(text))
    return ""


def _date(value: Any) -> tuple[datetime | None, Precision]:
    if not isinstance(value, str):
        return None, Precision.SECOND
    return dates.iso_date(value.strip()) or (None, Precision.SECOND)  # JSON Feed: RFC 3339


def _author(raw: dict[str, Any]) -> str | None:
    authors = _list(raw.get("authors")) or _list(raw.get("author"))  # 1.1, then 1.0
    names = [_line(a.get("name")) for a in authors if isinstance(a, dict)]
    return ", ".join(name for name in names if name) or None


def _list(value: Any) -> list:
    if isinstance(value, list):
        return value
    return [value] if value is not None else []


def _line(value: Any) -> str:
    return " ".join(xml_safe(value).split()) if isinstance(value, str) else ""


def _http(value: Any, base: str) -> str | None:
    return absolute_http(xml_safe(value), base) if isinstance(value, str) else None
