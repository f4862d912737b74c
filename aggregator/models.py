"""The small typed values that travel between the pipeline's stages.

Each stage takes and returns these, never dicts: `parse` makes `Entry` values, `dedupe`
turns them into `Intent` values, `store` persists intents and hands back `Item` values.
What a stage hands the next (a fetch's result, a parsed feed, a poll's or a publish's
report, a publish debt) lives here too, so that `store` and the stages share these types
without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class Origin(StrEnum):
    SEED = "seed"
    FEED = "feed"


class Precision(StrEnum):
    """How much of a date the source actually told us."""

    DAY = "day"
    MINUTE = "minute"
    SECOND = "second"


@dataclass(frozen=True, slots=True)
class Entry:
    """One story as a parser read it, normalized but without an identity yet.

    Dates are timezone-aware UTC. HTML fields are already sanitized; the `_text`
    fields are the plain-text renderings used for search and classification.
    """

    title: str
    link: str | None = None
    guid: str | None = None
    summary_html: str = ""
    summary_text: str = ""
    content_html: str | None = None
    content_text: str | None = None
    author: str | None = None
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    precision: Precision = Precision.SECOND
    date_inferred: bool = False  # no date in the source: published is the first-seen time


# --- identity: what dedupe decides ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    guid_key: str | None
    canonical_url: str | None
    fingerprint: str
    title_key: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """What dedupe needs to know about a stored item."""

    id: int
    origin: Origin
    guid_key: str | None
    canonical_url: str | None
    fingerprint: str
    title_key: str
    published: datetime
    content_hash: str
    text: str = ""  # a seed's whole text: for the summary-containment match and re-imports


class Action(StrEnum):
    NEW = "new"  # store a new item
    REVISE = "revise"  # the story changed: new revision of item_id
    MERGE = "merge"  # a seeded item gains the live entry's link and guid
    SEED_TEXT = "seed-text"  # a merged seed's text changed: a revision of only its text
    UNCHANGED = "unchanged"  # nothing to write


@dataclass(frozen=True, slots=True)
class Intent:
    """One entry's decided fate, complete: the store writes it as it is."""

    action: Action
    entry: Entry
    identity: Identity
    content_hash: str
    item_id: int | None = None  # the item it writes (for NEW, the id the item will get)
    atom_id: str | None = None  # NEW: the published id, unique in the archive
    canonical_url: str | None = None  # NEW, MERGE: the link to store (None: another holds it)


@dataclass(frozen=True, slots=True)
class KnownEntry:
    """An entry of a source's document as the last stored poll read it: the item it went
    to, the content it gave that item, and its identity. A re-poll leaves the entry unread
    while its bytes, and the item's content, are the same."""

    item_id: int
    content_hash: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class KnownItem:
    """What the item a known entry went to holds now: how it is found, and its content."""

    guid_key: str | None
    canonical_url: str | None
    content_hash: str


# --- what the archive holds -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """A story as the archive holds it (its newest revision)."""

    id: int
    origin: Origin
    source_id: str
    atom_id: str  # the id published feeds use for this item; never changes
    title: str
    link: str | None
    guid: str | None
    canonical_url: str | None
    summary_html: str
    summary_text: str
    content_html: str | None
    content_text: str | None
    author: str | None
    categories: tuple[str, ...]
    published: datetime
    updated: datetime
    precision: Precision
    date_inferred: bool
    first_seen: datetime
    revision: int
    content_hash: str
    topics: dict[str, float] = field(default_factory=dict)  # topic -> score, for matched topics


@dataclass(frozen=True, slots=True)
class FeedSize:
    """How many items an output feed carries, and when the newest of them last changed."""

    items: int
    updated: datetime | None  # None when it carries none


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A search result: the item, its title and a passage of its text around what matched,
    each as runs of text in order, every run (text, matched)."""

    item: Item
    title: tuple[tuple[str, bool], ...]
    passage: tuple[tuple[str, bool], ...]  # from the summary or the full text


@dataclass(frozen=True, slots=True)
class ItemReference:
    """How a person names an item: its archive number, its published id or a URL of it."""

    text: str  # as given, trimmed: a published id, an original or a canonical link
    number: int | None  # when the text is an archive number
    canonical_url: str | None  # the text as a canonical link, when it is an http(s) URL


@dataclass(frozen=True, slots=True)
class Revision:
    item_id: int
    revision: int
    recorded_at: datetime
    title: str
    summary_html: str
    content_html: str | None
    content_hash: str
    published: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class IngestCounts:
    """What applying intents changed in the archive."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    item_ids: tuple[int, ...] = ()  # the items that are new or changed
    months: frozenset[str] = frozenset()  # "YYYY-MM" of their published dates

    @property
    def changed(self) -> int:
        return self.new + self.updated


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What config says a source is; the archive adds its fetch state."""

    id: str
    title: str
    url: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What a poll changes on its source; None fields leave the stored value alone."""

    status: int | None
    error: str | None
    consecutive_errors: int
    next_poll_not_before: datetime | None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    new_url: str | None = None  # a permanent redirect moved the feed
    gone: bool = False


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source as the archive tracks it: where we poll and how the last polls went."""

    id: str
    kind: str  # "feed" or "seed"
    title: str
    url: str
    config_url: str
    enabled: bool
    gone: bool
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    last_poll: datetime | None
    last_status: int | None
    last_error: str | None
    consecutive_errors: int
    next_poll_not_before: datetime | None
    item_count: int = 0

    @property
    def state(self) -> str:
        if self.kind == "seed":
            return "seeded"  # the seeded articles: imported, never polled
        if self.gone:
            return "gone"
        if not self.enabled:
            return "disabled"
        if self.consecutive_errors:
            return "backing off"
        return "ok"


@dataclass(frozen=True, slots=True)
class FetchLogEntry:
    time: datetime
    source_id: str
    url: str
    status: int | None
    bytes: int
    duration_ms: float
    new_items: int = 0
    updated_items: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PublishState:
    """Whether the published feeds are in step with the archive, kept in the archive so a
    publish that failed (or never ran: the process died after the ingest commit) is owed
    and settled by the next run of any process."""

    owed: bool = False  # items changed since the last publish that succeeded
    owed_since: datetime | None = None  # the first change the feeds do not show yet
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None  # why the last failed publish failed; None after a success

    @property
    def failing(self) -> bool:
        """The newest publish attempt failed (a success clears the error it records)."""
        return self.last_error is not None


@dataclass(frozen=True, slots=True)
class TopicScore:
    """One item's result for one topic; `rules` is whatever classify wants to explain."""

    item_id: int
    topic: str
    score: float
    matched: bool
    rules: tuple[dict[str, Any], ...] = ()  # the rules that fired, for `explain`


# --- captures: the article behind an item ---------------------------------------------------


class CaptureState(StrEnum):
    PENDING = "pending"  # to be fetched, at next_attempt or later
    CAPTURED = "captured"  # the article is stored with its item
    NOT_ARTICLE = "not article"  # the page is boilerplate or too little: reason says which
    DISALLOWED = "disallowed"  # robots.txt forbids it to our User-Agent
    GIVEN_UP = "given up"  # failed too often, or in a way a retry cannot change


@dataclass(frozen=True, slots=True)
class CaptureJob:
    """A pending capture, as the queue hands it out."""

    item_id: int
    source_id: str
    url: str
    attempts: int  # failures so far
    etag: str | None = None  # of the last capture: a re-fetch is a conditional GET
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Article:
    """What a capture found on an article page."""

    html: str  # the body, sanitized
    text: str
    title: str | None = None
    author: str | None = None
    published: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What one capture attempt changes on its queue entry (and, with an article, its item)."""

    state: CaptureState
    time: datetime
    attempts: int  # failures so far (0 after an answer that counted)
    next_attempt: datetime | None = None  # for PENDING
    status: int | None = None
    reason: str | None = None  # why it is not an article, disallowed, given up or retried
    final_url: str | None = None
    etag: str | None = None  # None leaves the stored validators alone
    last_modified: str | None = None
    article: Article | None = None
    page: bytes | None = None  # the page as fetched (stored compressed)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """A capture as the archive holds it."""

    item_id: int
    url: str
    state: CaptureState
    attempts: int
    next_attempt: datetime | None
    last_attempt: datetime | None
    last_status: int | None
    reason: str | None
    final_url: str | None
    title: str | None
    author: str | None
    captured: datetime | None
    page: bytes | None = None  # decompressed; only when asked for


@dataclass(frozen=True, slots=True)
class CaptureReport:
    """One capture attempt, for the command line and the daemon's log."""

    item_id: int
    url: str
    state: CaptureState
    reason: str | None = None
    stored: bool = False  # the article became the item's new revision
    characters: int = 0  # of the article's text, when one was found
    not_modified: bool = False


# --- what one stage hands the next: fetch, parse, poll, publish, discover ---------------------

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # what was asked for
    status: int | None = None  # None when no HTTP answer arrived
    final_url: str = ""  # after redirects
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""  # decompressed
    elapsed: float = 0.0  # seconds
    error: str | None = None  # network failure, cap, bad redirect: one line
    # The URL, or a redirect's, is one we never fetch (not http(s), or a private address
    # where that is not allowed): the error, which asking again would get again.
    refused: str | None = None
    permanent_url: str | None = None  # where 301/308 moved the resource, once it answered
    retry_after: datetime | None = None
    not_modified: bool = False
    gone: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def looks_like_html(self) -> bool:
        """A web page: declared as HTML or XHTML, declared as nothing, or starting as an
        HTML document whatever it was declared as (servers label pages text/plain too)."""
        kind = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind in HTML_TYPES or not kind:
            return True
        return self.body[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    entries: list[Entry]
    title: str = ""
    link: str | None = None
    bozo: str | None = None  # what feedparser found wrong in a document it still read
    version: str = ""  # feedparser's name of the format: rss20, atom10, ...
    dropped: int = 0  # entries not read: over max_entries, or past the tag budget
    unreadable: int = 0  # entries read that could not be converted, and were left out
    note: str | None = None  # one line on the dropped and unreadable entries, for people
    # The digest of each of `entries`, for the next poll to leave it unread if its bytes
    # are the same; None: the document was read whole, and none can be left unread.
    entry_digests: tuple[bytes, ...] | None = None
    unread: frozenset[bytes] = frozenset()  # known digests of entries left unread
    known: int = 0  # entries left unread


@dataclass(frozen=True, slots=True)
class PollReport:
    source_id: str
    url: str
    status: int | None = None
    bytes: int = 0
    new: int = 0
    updated: int = 0
    duration: float = 0.0  # seconds, fetch to stored
    next_poll: datetime | None = None
    error: str | None = None  # the poll failed: why
    item_ids: tuple[int, ...] = ()  # new or changed items
    skipped: bool = False  # not polled (backing off, gone, disabled): `note` says why
    note: str | None = None  # why it was skipped, or a problem in a feed still ingested
    unchanged: bool = False  # 304, or the same bytes as last time: nothing was parsed


@dataclass(frozen=True, slots=True)
class PublishDebt:
    marks: int  # the marks so far: what a publish that begins now covers
    unsettled: int  # of those, the ones no successful publish has covered


NOT_XML_TEXT = "not_xml_text"
EMPTY_TITLE = "empty_title"
RENDER_ERROR = "render_error"
LEFT_OUT_REASONS = {  # the label metrics count by -> what a log line says
    NOT_XML_TEXT: "text XML cannot hold",
    EMPTY_TITLE: "empty title",
    RENDER_ERROR: "the renderer failed",
}


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An item a document was published without."""

    item_id: int
    reason: str  # one of LEFT_OUT_REASONS
    detail: str  # what the renderer said, on one line
    documents: tuple[Path, ...] = ()  # the documents published without it (filled in by publish)

    @property
    def explained(self) -> str:
        return f"{LEFT_OUT_REASONS[self.reason]} ({self.detail})"


@dataclass(frozen=True, slots=True)
class FeedResult:
    slug: str
    entries: int  # in the subscription documents
    months: int  # archive documents
    written: tuple[Path, ...]  # files whose bytes changed
    unchanged: int  # files left as they were
    removed: tuple[Path, ...] = ()  # archive months that no longer have items
    left_out: tuple[LeftOut, ...] = ()  # items some of its documents were published without


@dataclass(frozen=True, slots=True)
class FeedFailure:
    """A feed none or only some of whose documents could be written."""

    slug: str
    error: str  # one line


@dataclass(frozen=True, slots=True)
class PagesResult:
    """What a run did to the item pages."""

    written: tuple[Path, ...] = ()
    unchanged: int = 0
    removed: tuple[Path, ...] = ()  # pages of items the archive no longer has
    error: str | None = None  # why they could not all be written, on one line


@dataclass(frozen=True, slots=True)
class PublishReport:
    written: tuple[Path, ...]  # feed documents and item pages
    unchanged: int
    removed: tuple[Path, ...] = ()
    feeds: tuple[FeedResult, ...] = ()  # the feeds that published
    finished: datetime | None = None  # when the run ended; never written into a document
    left_out: tuple[LeftOut, ...] = ()  # each item left out of some document, once
    failed: tuple[FeedFailure, ...] = ()  # the feeds that did not publish
    pages: PagesResult = PagesResult()

    @property
    def ok(self) -> bool:
        return not self.failed and self.pages.error is None

    def failure(self) -> str:
        """What failed, on one line (for a PublishError and the archive's publish state)."""
        failed = [f"feed {f.slug}: {f.error}" for f in self.failed]
        if self.pages.error:
            failed.append(f"item pages: {self.pages.error}")
        return "; ".join(failed)


@dataclass(frozen=True, slots=True)
class FeedCandidate:
    """A URL that may be a feed (discovery), and what the page said about it."""

    url: str
    title: str = ""
    kind: str = ""  # rss, atom, json: what the page advertised; "" when only guessed
    how: str = "advertised"  # advertised (<link>), linked (<a>), usual (a usual path)


@dataclass(frozen=True, slots=True)
class Found:
    """A discovery candidate that answered with a feed."""

    url: str
    title: str
    kind: str  # the format read: rss20, atom10, json11, ...
    items: int
    how: str


@dataclass(frozen=True, slots=True)
class FeedVerdict:
    """Whether an output feed carries an item, and why."""

    slug: str
    carried: bool
    why: str  # "every item", the topics that carry it, or "no topic matched"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an item is or is not in each topic and feed (`aggregator explain`)."""

    item: Item
    topic_lines: tuple[str, ...]  # classify's reasons: score, threshold, each rule that fired
    feeds: tuple[FeedVerdict, ...]
