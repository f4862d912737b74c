"""The bytes feedparser gets: hostile documents refused, the rest cut to size and made XML.

feedparser's time and memory follow a document's structure, not its size: 140,000 tiny
items in 9.7 MB took 63 s and 1.41 GB; it spends 16 us on each element, and some shapes
are quadratic in it (an element's attributes: xml.sax looks each one up by a linear scan;
namespace prefixes: each element in an unknown namespace scans all prefixes declared).
So before feedparser sees a document (already re-encoded as UTF-8):

- `refusal`: entity declarations (entity expansion attacks), an element with more than
  MAX_ATTRIBUTES attributes, more than MAX_PREFIXES namespace prefixes: no feed needs
  them, and they cost minutes. The poll fails with the reason.
- `cut`: the entries after the first `max_entries`, or after the MAX_TAGS-th tag, are cut
  out of the bytes (the document's trailer kept, so it stays well-formed and feedparser on
  its fast strict parser); the count and the reason are reported.
- `xml_characters`: characters and character references XML 1.0 cannot hold are removed
  (feedparser's fallback parser raised UnicodeEncodeError on `&#xD800;`), so the strict
  parser reads the document.
- `entry_spans`, `with_entries`, `entry_digests`: where each entry's bytes are, a document
  of some of them, and a digest of each, so that a re-poll reads only the entries whose
  bytes changed since the last one stored.

Everything here is one linear pass of a regular expression, at C speed between matches;
CDATA sections and comments are skipped whole, as they hold text, not markup.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from dataclasses import dataclass

from aggregator.config import FETCH

DEFAULT_MAX_ENTRIES: int = FETCH["max_entries"].default  # for callers without a config
MAX_TAGS = 500_000  # start and end tags: 8 s of feedparser at most (16 us for <a/>)
MAX_ATTRIBUTES = 100  # on one element
MAX_PREFIXES = 100  # distinct namespace prefixes declared in a document

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
_MANY_ATTRIBUTES = re.compile(
    rb"<[^\s<>!?/][^\s<>/]*(?:\s+[^\s<>=/]+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*')){%d}"
    % (MAX_ATTRIBUTES + 1)
)
_PREFIX_DECLARATION = re.compile(rb"xmlns:([^\s=<>/]+)\s*=")
_TEXT_SECTION = rb"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)"
# An item or entry start or end tag, with any namespace prefix, in any case (feedparser
# lowercases names): <item>, <atom:entry>, </rss:item>. Not <items> (RSS 1.0's list).
_ENTRY_TAG = re.compile(
    _TEXT_SECTION + rb"|<(?P<slash>/?)(?:[A-Za-z_][\w.-]*:)?(?i:item|entry)(?=[\s/>])",
    re.DOTALL,
)
_REFERENCE = re.compile(
    _TEXT_SECTION + rb"|&#(?:[xX](?P<hex>[0-9a-fA-F]+)|(?P<decimal>[0-9]+));", re.DOTALL
)
# C0 controls but tab, LF and CR; U+FFFE and U+FFFF in UTF-8. Bytes that are never part
# of another character in UTF-8, so deleting them leaves the rest intact.
_CONTROLS = bytes(c for c in range(32) if c not in (9, 10, 13))
_CONTROL = re.compile(b"[%s]" % re.escape(_CONTROLS))
_NON_CHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
_SUMMARY_LIKE = re.compile(
    rb"(?i)<(?:[a-z_][\w.-]*:)?(?:description|summary|content|subtitle|tagline|info|abstract)\b"
)
_STATEFUL_HEAD = re.compile(
    rb"(?i)<!DOCTYPE|<!ATTLIST|<(?:[a-z_][\w.-]*:)?(?:content|encoded|fullitem|body)\b"
)
_CARRIED = re.compile(rb"(?i)\bbase\s*=|\bxmlns\b")  # xml:base (or base=), namespaces
_ENDS_AN_ENTRY = re.compile(rb"(?i)</(?:[a-z_][\w.-]*:)?(?:item|entry)\s*>\s*\Z")
_TAG = re.compile(rb"<(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>")  # a tag, `>` in quoted values too
DIGEST_SIZE = 16  # bytes: a collision among a source's entries is never expected


def refusal(data: bytes) -> str | None:
    """Why the document is refused unread, or None."""
    if _ENTITY_DECLARATION.search(data):
        return (
            "refused: the document declares XML entities (<!ENTITY), which feeds do not "
            "need and entity-expansion and external-entity attacks use"
        )
    if _MANY_ATTRIBUTES.search(data):
        return f"refused: an element has more than {MAX_ATTRIBUTES:,} attributes"
    prefixes: set[bytes] = set()
    for declaration in _PREFIX_DECLARATION.finditer(data):
        prefixes.add(declaration[1])
        if len(prefixes) > MAX_PREFIXES:
            return (
                f"refused: the document declares more than {MAX_PREFIXES:,} XML namespace prefixes"
            )
    return None


@dataclass(frozen=True, slots=True)
class Cut:
    data: bytes
    dropped: int = 0  # entries cut out
    note: str | None = None  # why, in one line
    refused: str | None = None  # the document cannot be read within the limits
    entry_starts: tuple[int, ...] = ()  # in `data`: where each entry's start tag is
    entries_end: int = 0  # in `data`: just after the last entry (the trailer's start)


def cut(data: bytes, max_entries: int) -> Cut:
    """The document with at most `max_entries` entries and about MAX_TAGS tags, the first
    ones in document order, and its trailer (what follows the last entry) kept."""
    shape = _Shape(data, max_entries)
    outside = shape.tags_before_first + shape.trailer_tags
    if outside > MAX_TAGS:
        return Cut(data, refused=f"refused: more than {MAX_TAGS:,} tags outside the entries")
    kept = _entries_within_budget(shape, max_entries)
    if kept == shape.entries:
        return Cut(data, entry_starts=tuple(shape.starts), entries_end=shape.trailer_start)
    start = shape.starts[kept]
    trailer = data[shape.trailer_start :] if shape.trailer_start > start else b""
    dropped = shape.entries - kept
    if kept == max_entries:
        note = over_max_entries(dropped, max_entries)
    else:
        entries, were = _entries_were(dropped)
        note = f"{entries} {were} dropped: the document has more than {MAX_TAGS:,} tags"
    starts = tuple(shape.starts[:kept])
    return Cut(data[:start] + trailer, dropped, note, entry_starts=starts, entries_end=start)


def entry_spans(data: bytes, cut: Cut) -> list[tuple[int, int]] | None:
    """Where each entry is in `cut.data` (as `data`, unchanged): from its start tag to the
    next entry's, the last to the trailer; None when the positions are not known (the
    characters were cleaned, or an end tag is missing). A span may hold what lies between
    two entries too; a nested entry makes a span hold two, which the reader notices."""
    starts = cut.entry_starts
    if data is not cut.data or not starts or not starts[-1] < cut.entries_end:
        return None
    return list(itertools.pairwise([*starts, cut.entries_end]))


def entries_stand_alone(data: bytes, cut: Cut, spans: list[tuple[int, int]]) -> bool:
    """Whether feedparser reads each entry in `spans` the same in any document made of the
    head, some of the entries and the trailer as in the whole. feedparser keeps state from
    one element to the next that XML scopes but it does not, so only plain documents pass:
    nothing but whitespace between the entries (channel elements there set state for the
    next entry); a head with no DTD (a default xml:base), no content element and at most
    one summary-like one (both leave state the first entry read inherits); and entries
    with no base (handed on to the entries after) and no namespace declaration (a prefix
    or URI once seen is kept for the rest of the document)."""
    head_end = cut.entry_starts[0]
    if _STATEFUL_HEAD.search(data, 0, head_end):
        return False
    if len(_SUMMARY_LIKE.findall(data, 0, head_end)) > 1:
        return False
    if _CARRIED.search(data, spans[0][0], spans[-1][1]):
        return False
    return all(_ENDS_AN_ENTRY.search(data[max(start, end - 256) : end]) for start, end in spans)


def with_entries(data: bytes, cut: Cut, spans: list[tuple[int, int]]) -> bytes:
    """The document with only the entries in `spans`: what comes before the first entry,
    those entries, and the trailer, so that it is as well-formed as the whole."""
    head, trailer = data[: cut.entry_starts[0]], data[cut.entries_end :]
    return b"".join([head, *(data[start:end] for start, end in spans), trailer])


def entry_digests(data: bytes, cut: Cut, spans: list[tuple[int, int]], context: str) -> list[bytes]:
    """A digest of each entry in `spans` as the parser would read it: its bytes, the tags
    before the first entry (namespaces, xml:base, xml:lang) and `context` (the rules
    that convert entries and the URL links resolve against). The text between those tags
    is left out: it holds the channel's lastBuildDate, which changes on every poll and
    no entry reads."""
    head = b"".join(_TAG.findall(data[: cut.entry_starts[0]]))
    frame = hashlib.blake2b(context.encode() + b"\0" + head, digest_size=DIGEST_SIZE).digest()
    return [
        hashlib.blake2b(data[start:end], digest_size=DIGEST_SIZE, key=frame).digest()
        for start, end in spans
    ]


def over_max_entries(dropped: int, max_entries: int) -> str:
    """The note on entries a document had beyond fetch.max_entries, whatever its format."""
    entries, were = _entries_were(dropped)
    return f"{entries} over fetch.max_entries ({max_entries:,}) {were} dropped"


def _entries_were(count: int) -> tuple[str, str]:
    return (f"{count:,} entry", "was") if count == 1 else (f"{count:,} entries", "were")


class _Shape:
    """Where the entries of a document start, and how many tags come before each."""

    def __init__(self, data: bytes, max_entries: int) -> None:
        self.starts: list[int] = []  # offsets of the first max_entries + 1 entry start tags
        self.tags_before: list[int] = []  # tags before each of them
        self.entries = 0  # entry start tags in all
        self.trailer_start = len(data)  # just after the last entry end tag
        tags = position = 0
        tags_at_trailer = None
        for found in _ENTRY_TAG.finditer(data):
            tags += data.count(b"<", position, found.start())
            position = found.end()
            slash = found["slash"]
            if slash is None:
                continue  # a CDATA section or a comment: text, not tags
            tags += 1
            if slash:
                end = data.find(b">", position)
                self.trailer_start = len(data) if end < 0 else end + 1
                tags_at_trailer = tags
            else:
                self.entries += 1
                if len(self.starts) <= max_entries:
                    self.starts.append(found.start())
                    self.tags_before.append(tags - 1)
        self.tags = tags + data.count(b"<", position)
        self.trailer_tags = 0 if tags_at_trailer is None else self.tags - tags_at_trailer
        self.tags_before_first = self.tags_before[0] if self.starts else self.tags


def _entries_within_budget(shape: _Shape, max_entries: int) -> int:
    """How many of the first entries to keep: at most max_entries, and as many as keep the
    tags (before the cut, plus the trailer's) within MAX_TAGS."""
    if shape.entries <= max_entries and shape.tags <= MAX_TAGS:
        return shape.entries
    budget = MAX_TAGS - shape.trailer_tags
    # tags_before[k] is what the first k entries cost, with everything before them.
    within = bisect.bisect_right(shape.tags_before, budget)
    return max(0, min(max_entries, within - 1, shape.entries))


def xml_characters(data: bytes) -> bytes:
    """UTF-8 `data` without characters, or references to characters, that XML 1.0 cannot
    hold: C0 controls but tab, LF and CR, U+FFFE, U+FFFF, surrogates, beyond U+10FFFF.
    A reference to a surrogate or beyond stands for a character we cannot know: U+FFFD."""
    if _CONTROL.search(data):
        data = data.translate(None, _CONTROLS)
    for sequence in _NON_CHARACTERS:
        if sequence in data:
            data = data.replace(sequence, b"")
    if b"&#" not in data:
        return data
    cleaned = _REFERENCE.sub(_xml_reference, data)
    return data if cleaned == data else cleaned  # the same object: entry positions still hold


def _xml_reference(found: re.Match[bytes]) -> bytes:
    digits, base = (found["hex"], 16) if found["hex"] is not None else (found["decimal"], 10)
    if digits is None:
        return found[0]  # a CDATA section or a comment, left as it is
    digits = digits.lstrip(b"0") or b"0"
    code = int(digits, base) if len(digits) <= 8 else 0x110000
    if code in (9, 10, 13) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD:
        return found[0]
    if 0x10000 <= code <= 0x10FFFF:
        return found[0]
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return b"&#xFFFD;"
    return b""  # a control character or a non-character: no text
