"""HTML listing pages: a site's news listing read with CSS selectors into entries.

When a site has no feed (or retired it), its listing page still names each story: a card
with a title link, a date and a summary. An `html` source says which CSS selectors find
them (selectolax's lexbor engine; no browser, no script runs). The entries are the same
values a feed gives, cleaned the same way, so the rest of the pipe cannot tell the kinds
apart.

A page whose item, title or link selector matches nothing is not an empty listing: the
site changed its markup, and the poll fails saying which selector to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urljoin

from aggregator.config import Selectors
from aggregator.models import Entry, ParsedFeed, Precision
from aggregator.parse import dates
from aggregator.parse.feed import FeedError, absolute_http, note_on
from aggregator.parse.prepare import DEFAULT_MAX_ENTRIES, over_max_entries
from aggregator.parse.sanitize import text_to_html
from aggregator.parse.text import finished, xml_safe

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class ListingError(FeedError):
    """The page cannot be read as the configured listing; str() is the one-line reason."""


def parse_listing(
    body: bytes,
    url: str,
    selectors: Selectors,
    fetched_at: datetime,
    headers: Mapping[str, str] | None = None,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ParsedFeed:
    """The stories of a listing page fetched from `url` at `fetched_at` (relative dates
    such as '3 days ago' count back from it). Raises ListingError when the page's
    structure no longer matches the selectors."""
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    page = LexborHTMLParser(decode_page(body, headers or {}))
    base = _base_url(page, url)
    try:
        cards = page.css(selectors.item)
    except (SelectolaxError, ValueError) as exc:
        raise ListingError(f'selector "{selectors.item}" cannot be used: {exc}') from exc
    if not cards:
        raise ListingError(_changed(selectors.item, "item"))
    _check_fields(cards, selectors)
    read = cards[:max_entries]
    entries, failures = [], []
    for card in read:
        try:
            entry = _entry(card, selectors, base, fetched_at)
        except Exception as exc:  # one odd card must not cost the others theirs
            failures.append(exc)
            continue
        if entry is not None:
            entries.append(finished(entry))
    dropped = len(cards) - len(read)
    return ParsedFeed(
        entries=entries,
        title=_page_title(page),
        link=url,
        version="html",
        dropped=dropped,
        unreadable=len(failures),
        note=note_on(over_max_entries(dropped, max_entries) if dropped else None, failures),
    )


def _check_fields(cards: list, selectors: Selectors) -> None:
    """A title or link selector that matches in no card means the markup changed."""
    for name in ("title", "link"):
        selector = getattr(selectors, name)
        if not any(card.css_first(selector) is not None for card in cards):
            raise ListingError(_changed(selector, name) + f" in any of the {len(cards)} items")


def _changed(selector: str, name: str) -> str:
    return f'the page\'s structure changed: selector "{selector}" ({name}) matched nothing'


def _entry(card, selectors: Selectors, base: str, fetched_at: datetime) -> Entry | None:
    title = _text(card.css_first(selectors.title))
    link = _link(card.css_first(selectors.link), base)
    summary = _text(card.css_first(selectors.summary)) if selectors.summary else ""
    if not (title or link or summary):
        return None
    found = _date(card.css_first(selectors.date), fetched_at) if selectors.date else None
    published, precision = found or (None, Precision.SECOND)
    return Entry(
        title=title,
        link=link,
        summary_html=text_to_html(summary) if summary else "",
        summary_text=summary,
        published=published,
        precision=precision,
        date_inferred=published is None,
    )


def _text(node) -> str:
    if node is None:
        return ""
    return " ".join(xml_safe(node.text(separator=" ") or "").split())


def _link(node, base: str) -> str | None:
    if node is None:
        return None
    href = node.attributes.get("href")
    if not href and node.tag != "a":  # the selector named the card's heading: its link
        inner = node.css_first("a[href]")
        href = inner.attributes.get("href") if inner is not None else None
    return absolute_http(xml_safe(href), base) if href else None


def _date(node, fetched_at: datetime) -> tuple[datetime, Precision] | None:
    if node is None:
        return None
    for text in (node.attributes.get("datetime"), node.text(separator=" ")):
        if text and (found := dates.written_date(text, fetched_at)):
            return found
    return None


def _base_url(page, url: str) -> str:
    base = page.css_first("base[href]")
    if base is None:
        return url
    try:
        return urljoin(url, base.attributes.get("href") or "")
    except ValueError:
        return url


def _page_title(page) -> str:
    return _text(page.css_first("title"))


def decode_page(body: bytes, headers: Mapping[str, str]) -> str:
    """The page as text: the charset the server or the page names, else UTF-8; bytes that
    do not decode become U+FFFD rather than failing the page."""
    charset = _charset_of(headers.get("content-type", "")) or _charset_in(body[:4096])
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _charset_of(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def _charset_in(head: bytes) -> str | None:
    match = _CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None
