"""Feed bytes -> `Entry` values, with feedparser doing the reading.

What we do around feedparser, and why:
- The bytes are prepared first (`prepare`): documents that declare XML entities, or that
  hold structure feedparser is quadratic on, are refused; entries over `max_entries` (or
  a tag budget) are cut out of the bytes before feedparser builds them; characters and
  references XML cannot hold are removed. feedparser falls back to its "loose" parser when
  expat refuses a document, and that parser expands entity bombs again (2 MB took a
  minute and 5 GB here) and raised on `&#xD800;`. External DTDs and entities are never
  loaded (expat's external entity feature is off in feedparser, and a test proves it).
- Whatever still goes wrong inside feedparser or a codec is a FeedError with one line;
  whatever goes wrong converting one entry drops that entry only, counted in the result.
- feedparser's own HTML sanitizer and relative-URI resolution are switched off: they are
  half of its time, and nh3 sanitizes every fragment once here anyway; links are made
  absolute on the sanitized output instead.
- Every entry leaves through `text.finished`: XML-safe text in every field, and a title.
- Bytes go to feedparser wrapped in BytesIO: given bare bytes it may treat them as a
  file name and read that file.
- feedparser is imported on the first parse, not with this module: a re-poll answered 304
  or with the same bytes never parses, and pays no import.
- A big document is read in parts of PART_ENTRIES entries (`prepare.with_entries`: the
  head and trailer kept around each part), each converted before the next is read:
  feedparser's dictionaries for 10,000 entries took 23 MB at once.
- Only the entries whose bytes changed are read: each entry's digest (`prepare.entry_digests`)
  is compared with the `known` digests the last stored poll of the source left, and the
  parts hold only the others. NATO's feed changes its lastBuildDate on every poll, so its
  bytes differ each time while its items rarely do; feedparser's 16 us per element made
  every such poll cost a whole parse. A new ENTRY_RULES (or version) reads everything again.
- A part feedparser finds anything wrong with, one that yields another number of entries
  than it was given, or parts that disagree on the feed's title or link, and the document is
  read whole instead, as it always was (and no digests are kept); so is one whose entries
  would read otherwise apart (`prepare.entries_stand_alone`: an xml:base feedparser hands on,
  channel elements between entries, a podcast's two summaries in the head): the parts only
  ever give what the whole gives.
"""

from __future__ import annotations

import calendar
import functools
import html
import io
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import urljoin, urlsplit

from aggregator import __version__
from aggregator.errors import SourceError
from aggregator.models import Entry, ParsedFeed, Precision
from aggregator.parse import dates, prepare
from aggregator.parse.prepare import DEFAULT_MAX_ENTRIES
from aggregator.parse.sanitize import html_to_text, sanitize_html, sanitized_html_to_text
from aggregator.parse.text import finished, xml_safe

# NATO's pubDate, "09 Nov. 2022 12:00:00 GMT": a day, always at noon.
_NATO_DAY = re.compile(r"^\s*\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}\s+12:00(:00)?\s+(GMT|UTC|Z)\s*$")
_RELATIVE_REF = re.compile(r'\b(href|src)="(?![a-zA-Z][a-zA-Z0-9+.-]*:|//)([^"]*)"')
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?\b")
_UTC_NAMED = re.compile(r"\b(GMT|UTC|Z)\b")
# Text that nh3 would return unchanged (no markup, entities, NUL, CR, NBSP or control
# characters): most NATO descriptions. Skipping nh3 and the HTML-to-text pass for it is a
# tenth of our parse time; tests prove the output is the same.
_PLAIN = re.compile("[^<>&\x00-\x08\x0b-\x1f\x7f-\xa0\ufeff\ufffe\uffff\ud800-\udfff]*")
_ABSOLUTE = re.compile(r"^\s*https?://(?!\[)", re.IGNORECASE)  # an IPv6 host: urlsplit checks it
# dict.get skips FeedParserDict's alias lookups (a tenth of the time spent reading its
# entries); the keys read are the names feedparser stores.
_get = dict.get
_HTML_TYPES = ("text/html", "application/xhtml+xml")
PART_ENTRIES = 500  # entries feedparser reads at once from a big document
# Change it when a change here makes the same bytes give other entries: every source's
# entries are then read again on its next poll, not only those whose bytes changed.
ENTRY_RULES = "entries-3"


class FeedError(SourceError):
    """The bytes are not a feed we can read; str() is the one-line reason."""


def parse_feed(
    body: bytes,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    known: Collection[bytes] = frozenset(),
) -> ParsedFeed:
    """Read a feed's first `max_entries` entries but those whose digest is in `known`;
    raise FeedError (one line) when it is hostile, unreadable, or yields no entries at all."""
    try:
        return _parse(body, url, headers or {}, max_entries, known)
    except FeedError:
        raise
    except Exception as exc:  # inside feedparser or a codec: what a source sent, not a bug here
        raise FeedError(f"cannot read the document: {_one_line(exc)}") from exc


def _parse(
    body: bytes, url: str, headers: Mapping[str, str], max_entries: int, known: Collection[bytes]
) -> ParsedFeed:
    feedparser = _feedparser()
    encoding_info: dict[str, Any] = {}
    data = feedparser.encodings.convert_to_utf8(headers, body, encoding_info)
    refused = prepare.refusal(data)
    if refused:
        raise FeedError(refused)
    cut = prepare.cut(data, max_entries)
    if cut.refused:
        raise FeedError(cut.refused)
    data = prepare.xml_characters(cut.data)
    spans = prepare.entry_spans(data, cut)
    read = _read_changed(data, cut, spans, url, known) if spans else None
    if read is None:
        result = _read(data)
        problem = _bozo_message(result) or _bozo_message(encoding_info)
        raw_entries = result.entries
        result.entries = []  # let each raw entry go as soon as it is converted
        if not raw_entries and not cut.dropped:
            _raise_if_not_a_feed(result, problem, headers)
        entries, _, failures = _entries(raw_entries, url)
        read = _Read(result, entries, failures)
    else:
        problem = _bozo_message(encoding_info)
    result, failures = read.result, read.failures
    feed = result.feed
    return ParsedFeed(
        entries=read.entries,
        title=" ".join(xml_safe(feed.get("title", "")).split()),
        link=absolute_http(xml_safe(feed.get("link") or ""), url),
        bozo=problem,
        version=result.get("version") or "",
        dropped=cut.dropped,
        unreadable=len(failures),
        note=note_on(cut.note, failures),
        entry_digests=None if read.digests is None else tuple(read.digests),
        unread=read.unread,
        known=read.known,
    )


def _read(data: bytes) -> Any:
    return _feedparser().parse(io.BytesIO(data), sanitize_html=False, resolve_relative_uris=False)


@dataclass(slots=True)
class _Read:
    result: Any  # feedparser's result for the document's own fields
    entries: list[Entry]
    failures: list[Exception]
    digests: list[bytes] | None = None  # of each of `entries`
    unread: frozenset[bytes] = frozenset()
    known: int = 0


def _read_changed(
    data: bytes, cut: prepare.Cut, spans: list[tuple[int, int]], url: str, known: Collection
) -> _Read | None:
    """The entries whose digest is not `known`, read in parts of PART_ENTRIES; None when
    the document must be read whole: when an entry would read otherwise without the others
    (`prepare.entries_stand_alone`), or a part is not clean."""
    if not prepare.entries_stand_alone(data, cut, spans):
        return None
    context = f"{ENTRY_RULES} {__version__} feedparser {_feedparser().__version__} {url}"
    digests = prepare.entry_digests(data, cut, spans, context)
    changed = [index for index, digest in enumerate(digests) if digest not in known]
    parts = [changed[at : at + PART_ENTRIES] for at in range(0, len(changed), PART_ENTRIES)]
    read = _Read(None, [], [], digests=[])
    for part in parts or [[]]:  # nothing changed: the head and trailer, for the feed's fields
        result = _read(prepare.with_entries(data, cut, [spans[index] for index in part]))
        if _bozo_message(result) is not None or len(result.entries) != len(part):
            return None
        if read.result is None:
            if not result.get("version"):  # an entry may be what tells the format
                return None
            read.result = result
        elif _feed_fields(result) != _feed_fields(read.result):
            return None
        raw_entries = result.entries
        result.entries = []
        converted, positions, failed = _entries(raw_entries, url)
        read.entries += converted
        read.digests += [digests[part[at]] for at in positions]
        read.failures += failed
    read.unread = frozenset(digest for digest in digests if digest in known)
    read.known = len(spans) - len(changed)
    return read


def _feed_fields(result: Any) -> tuple:
    return (result.get("version"), result.feed.get("title"), result.feed.get("link"))


def _entries(raw_entries: list, base: str) -> tuple[list[Entry], list[int], list[Exception]]:
    """The entries converted, in order, with where each was among the raw entries; and the
    errors of those that could not be."""
    raw_entries.reverse()
    entries, positions, failures = [], [], []
    for position in range(len(raw_entries)):
        try:
            entry = _entry(raw_entries.pop(), base)
        except Exception as exc:  # one odd entry must not cost the others theirs
            failures.append(exc)
            continue
        if entry is not None:
            entries.append(finished(entry))
            positions.append(position)
    return entries, positions, failures


def note_on(cut_note: str | None, failures: list[Exception]) -> str | None:
    """One line on the entries a parse dropped (`cut_note`) and could not convert."""
    notes = [cut_note] if cut_note else []
    if failures:
        count = f"{len(failures):,} entry" if len(failures) == 1 else f"{len(failures):,} entries"
        notes.append(f"{count} could not be read (first: {_one_line(failures[0])})")
    return "; ".join(notes) or None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bozo_message(result: Mapping[str, Any]) -> str | None:
    exc = result.get("bozo_exception")
    if not result.get("bozo") or isinstance(exc, _feedparser().CharacterEncodingOverride):
        # "text/xml without a charset is us-ascii" (RFC 3023) is ignored by every server.
        return None
    text = " ".join(str(exc).split()) if exc is not None else ""
    name = type(exc).__name__ if exc is not None else "problem"
    return f"{name}: {text}" if text else name


def _raise_if_not_a_feed(result: Any, problem: str | None, headers: Mapping[str, str]) -> None:
    if result.get("version"):
        if problem:
            raise FeedError(f"malformed feed with no readable entries ({problem})")
        return  # a well-formed feed that is empty today
    content_type = headers.get("content-type") or "no Content-Type"
    reason = f"; {problem}" if problem else ""
    raise FeedError(f"not a feed: no RSS or Atom document found ({content_type}{reason})")


# --- feedparser's tags, in linear time ----------------------------------------------------


def _add_tag_once(self: Any, term: str | None, scheme: str | None, label: str | None) -> None:
    """feedparser's `_add_tag` (categories, dc:subject, media and iTunes keywords), which
    scans the entry's tags for a duplicate each time: quadratic, 8,000 categories in one
    item took a second and 500,000 would take hours. This keeps the tags seen in a set
    beside the list. Only the last tag changes once added (an RSS category's text comes
    after its domain attribute), so the set holds all tags but the last."""
    from feedparser.util import FeedParserDict  # loaded already: feedparser calls this

    context = self._get_context()
    tags = context.setdefault("tags", [])
    if not term and not scheme and not label:
        return
    index = self.__dict__.setdefault("_tags_seen", {})
    held, seen, counted = index.get(id(tags)) or (tags, set(), 0)
    if held is not tags:  # a list feedparser let go (an Atom <source>'s), its id reused
        seen, counted = set(), 0
    while counted < len(tags) - 1:
        seen.add(_tag_key(tags[counted]))
        counted += 1
    index[id(tags)] = (tags, seen, counted)
    value = (term, scheme, label)
    if value not in seen and not (tags and _tag_key(tags[-1]) == value):
        tags.append(FeedParserDict(term=term, scheme=scheme, label=label))


def _tag_key(tag: Mapping[str, Any]) -> tuple:
    return (_get(tag, "term"), _get(tag, "scheme"), _get(tag, "label"))


def _start_entry_afresh(self: Any, attrs_d: Any) -> None:
    """feedparser's `_start_item` (and `_start_entry`), with the state an entry's text
    constructs read reset first. feedparser leaves it set by what came before: markup
    written unescaped in a description (HTML5's <details><summary>, a pasted <body>) runs
    an end handler whose start it swallowed and leaves `incontent` off by one for every
    later entry, which then loses its text's type or reads its inline markup as elements;
    a head's content or second summary sets `hasContent` for the first entry only. Each
    entry now reads as it would first after a plain head: alone, or among others."""
    from feedparser.util import FeedParserDict  # loaded already: feedparser calls this

    self.incontent = 0
    self.contentparams = FeedParserDict()
    self._summaryKey = None
    self.hasContent = 0
    FEEDPARSER_OWN["_start_item"](self, attrs_d)


def _start_rss_outside_entries(self: Any, attrs_d: Any) -> None:
    """feedparser's `_start_rss`, ignored inside an entry: an <rss/> there (in an Atom
    entry's foreign markup) turned the document's version to RSS for the entries after."""
    if not self.inentry:
        FEEDPARSER_OWN["_start_rss"](self, attrs_d)


FEEDPARSER_OWN: dict[str, Any] = {}  # what _feedparser() replaced in feedparser, by name
_PATCHING = threading.Lock()


@functools.cache
def _feedparser() -> ModuleType:
    """feedparser, imported once, with `_add_tag_once`, `_start_entry_afresh` and
    `_start_rss_outside_entries` in place of its own."""
    import feedparser
    import feedparser.encodings
    from feedparser.mixin import _FeedParserMixin

    replacements = {
        "_add_tag": _add_tag_once,
        "_start_item": _start_entry_afresh,
        "_start_entry": _start_entry_afresh,
        "_start_rss": _start_rss_outside_entries,
    }
    # Parses run in threads of their own, and functools.cache lets two first calls both run
    # this: the originals are kept once, so a replacement never calls itself.
    with _PATCHING:
        for name, replacement in replacements.items():
            FEEDPARSER_OWN.setdefault(name, getattr(_FeedParserMixin, name))
            setattr(_FeedParserMixin, name, replacement)
    return feedparser


# --- one entry -----------------------------------------------------------------------------


def _entry(raw: Mapping[str, Any], base: str) -> Entry | None:
    """The entry, or None when it has nothing to show or point to; `finished` gives an
    entry without a title one."""
    link = absolute_http(_get(raw, "link"), base)
    guid = (_get(raw, "id") or "").strip() or None
    title = _title(raw)
    summary_html = _html(_get(raw, "summary_detail"), _get(raw, "summary"), base)
    content_html = _content(raw, base, summary_html)
    summary_text = text_of(summary_html)
    content_text = text_of(content_html) if content_html else None
    if not (title or summary_text or content_text or link):
        return None
    published, precision = _date(raw, "published")
    updated, _ = _date(raw, "updated")
    published = published or updated
    return Entry(
        title=title,
        link=link,
        guid=guid,
        summary_html=summary_html,
        summary_text=summary_text,
        content_html=content_html,
        content_text=content_text,
        author=" ".join((_get(raw, "author") or "").split()) or None,
        categories=_categories(raw),
        published=published,
        updated=updated,
        precision=precision if published else Precision.SECOND,
        date_inferred=published is None,
    )


def _title(raw: Mapping[str, Any]) -> str:
    value = _get(raw, "title") or ""
    detail = _get(raw, "title_detail") or {}
    if _get(detail, "type") in _HTML_TYPES and ("<" in value or "&" in value):
        value = html_to_text(value)
    return " ".join(xml_safe(value).split())


def _html(detail: Mapping[str, Any] | None, value: str | None, base: str) -> str:
    """A text construct as sanitized HTML, whatever type the feed gave it."""
    if not value:
        return ""
    kind = _get(detail or {}, "type", "text/html")
    if kind not in _HTML_TYPES:
        value = "<p>" + html.escape(value, quote=False) + "</p>"
    return absolute_refs(sanitize(value), base)


def sanitize(fragment: str) -> str:
    """`sanitize_html`, without calling nh3 for text it would return unchanged."""
    if _PLAIN.fullmatch(fragment):
        return fragment.strip()
    return sanitize_html(fragment)


def text_of(fragment: str) -> str:
    """`html_to_text` for sanitized HTML, without parsing text that has no markup."""
    if _PLAIN.fullmatch(fragment):
        lines = (" ".join(line.split()) for line in fragment.splitlines())
        return "\n".join(line for line in lines if line)
    return sanitized_html_to_text(fragment)


def _content(raw: Mapping[str, Any], base: str, summary_html: str) -> str | None:
    # feedparser copies an Atom entry's content into a missing summary: sanitize it once.
    summary = _get(raw, "summary")
    parts = [
        _html(part, _get(part, "value"), base) if _get(part, "value") != summary else summary_html
        for part in _get(raw, "content") or ()
        if _get(part, "value")
    ]
    content = "\n".join(p for p in parts if p)
    return content if content and content != summary_html else None


def _categories(raw: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in _get(raw, "tags") or ():
        term = " ".join((_get(tag, "term") or _get(tag, "label") or "").split())
        if term:
            seen.setdefault(term, None)
    return tuple(seen)


# --- links ---------------------------------------------------------------------------------


def absolute_http(link: str | None, base: str) -> str | None:
    if not link or not link.strip():
        return None
    if _ABSOLUTE.match(link):
        return link.strip()
    try:
        absolute = urljoin(base, link.strip())
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None
    except ValueError:  # "Invalid IPv6 URL": no link we can follow
        return None


def absolute_refs(fragment: str, base: str) -> str:
    """Relative href/src in sanitized HTML (which always double-quotes) made absolute."""
    if not fragment or not base or ('href="' not in fragment and 'src="' not in fragment):
        return fragment
    return _RELATIVE_REF.sub(lambda m: _absolute_ref(m, base), fragment)


def _absolute_ref(ref: re.Match[str], base: str) -> str:
    try:
        absolute = urljoin(base, html.unescape(ref[2]))
    except ValueError:  # "Invalid IPv6 URL": leave it as the feed wrote it
        return ref[0]
    return f'{ref[1]}="{html.escape(absolute)}"'


# --- dates ---------------------------------------------------------------------------------


def _date(raw: Mapping[str, Any], key: str) -> tuple[datetime | None, Precision]:
    """feedparser's reading of the date (a UTC struct_time), else ours; a date without a
    time is that day at noon UTC with day precision, as NATO's own feed writes days."""
    # dict.get: feedparser's own get() answers "updated" with the published date.
    text = dict.get(raw, key) or ""
    parsed = dict.get(raw, f"{key}_parsed")
    moment = None
    if parsed:
        try:
            moment = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
        except (OverflowError, ValueError, OSError):
            moment = None
    moment = moment or nato_date(text)
    if moment is None:
        return None, Precision.SECOND
    if not _CLOCK.search(text):
        return dates.at_noon(moment.date()), Precision.DAY
    return moment, Precision.DAY if _NATO_DAY.match(text) else Precision.SECOND


def nato_date(text: str) -> datetime | None:
    """Dates feedparser cannot read but NATO writes: '09 Nov. 2022' (noon UTC), with a
    time in UTC when the text says GMT or UTC, else in Brussels time as on nato.int."""
    day = dates.first_explicit_date(text) if text else None
    if day is None:
        return None
    clock = _CLOCK.search(text)
    if clock is None:
        return dates.at_noon(day)
    if not _UTC_NAMED.search(text):
        return dates.nato_local_datetime(text)
    hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return dates.at_noon(day)
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)
