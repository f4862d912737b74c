"""Identity: which stored item, if any, is this entry? Pure functions, no I/O.

Order of evidence: the source's guid, then the canonical link, then a fingerprint of
the normalized title and date. A live entry with none of those matching may still be a
seeded article (seeds have no link or guid): it merges into the seed when the titles
are equal or very similar within a few days, or the seed's text contains its summary.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aggregator.models import Entry, Origin

TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "selectedlocale"}
SEED_MATCH_WINDOW = timedelta(days=4)
SEED_TITLE_SIMILARITY = 90.0  # rapidfuzz token_sort_ratio, 0-100
TAG_AUTHORITY = "aggregator.invalid"  # RFC 2606: owned by no one, so our tag ids clash with none


# --- keys ----------------------------------------------------------------------------------


def canonical_url(url: str | None) -> str | None:
    """The form of a link that two spellings of the same article share."""
    if not url or not url.strip():
        return None
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    port = parts.port
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    query = sorted(
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    )
    # http and https are the same story: the canonical form always says https.
    return urlunsplit(("https", netloc, parts.path or "/", urlencode(query), ""))


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def title_key(title: str) -> str:
    """Case, accents, quotes and punctuation folded away; single spaces."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def fingerprint(title: str, published: datetime | None) -> str:
    day = published.date().isoformat() if published else ""
    return hashlib.sha256(f"{title_key(title)}\x1f{day}".encode()).hexdigest()[:32]


def guid_key(source_id: str, guid: str | None) -> str | None:
    return f"{source_id}\x1f{guid.strip()}" if guid and guid.strip() else None


def content_hash(entry: Entry) -> str:
    """What counts as a change of the story: title, summary and content."""
    parts = (entry.title, entry.summary_html, entry.content_html or "")
    return hashlib.sha256("\x1f".join(" ".join(p.split()) for p in parts).encode()).hexdigest()


def atom_id(entry: Entry, origin: Origin, canonical: str | None) -> str:
    """The published id, fixed when the item is first stored and never recomputed."""
    if origin is Origin.FEED and entry.guid and _looks_like_uri(entry.guid):
        return entry.guid.strip()
    if origin is Origin.FEED and canonical:
        return canonical
    day = entry.published.date().isoformat() if entry.published else "2000-01-01"
    digest = hashlib.sha256(title_key(entry.title).encode()).hexdigest()[:16]
    return f"tag:{TAG_AUTHORITY},{day}:{origin.value}/{digest}"


def _looks_like_uri(value: str) -> bool:
    return bool(re.match(r"^(https?://|urn:|tag:)\S+$", value.strip(), re.I))


@dataclass(frozen=True, slots=True)
class Identity:
    guid_key: str | None
    canonical_url: str | None
    fingerprint: str
    title_key: str


def identify(entry: Entry, source_id: str) -> Identity:
    return Identity(
        guid_key=guid_key(source_id, entry.guid),
        canonical_url=canonical_url(entry.link),
        fingerprint=fingerprint(entry.title, entry.published),
        title_key=title_key(entry.title),
    )


# --- decisions -----------------------------------------------------------------------------


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
    text: str = ""  # seed body, for the summary-containment match


class Action(StrEnum):
    NEW = "new"  # store a new item
    REVISE = "revise"  # the story changed: new revision of item_id
    MERGE = "merge"  # a seeded item gains the live entry's link and guid
    UNCHANGED = "unchanged"  # nothing to write


@dataclass(frozen=True, slots=True)
class Intent:
    action: Action
    entry: Entry
    identity: Identity
    content_hash: str
    item_id: int | None = None


def unique_entries(entries: Iterable[Entry], source_id: str) -> list[Entry]:
    """Drop later repeats of the same story within one document (same guid or link)."""
    seen: set[str] = set()
    result = []
    for entry in entries:
        ident = identify(entry, source_id)
        keys = {k for k in (ident.guid_key, ident.canonical_url) if k}
        keys = keys or {ident.fingerprint}
        if keys & seen:
            continue
        seen |= keys
        result.append(entry)
    return result


def make_intents(
    entries: Sequence[Entry], source_id: str, candidates: Sequence[Candidate]
) -> list[Intent]:
    """Decide, for each entry, whether it is new, a revision, a seed merge or unchanged.

    `content_hash` on a stored item is the hash of what its source last sent, so a merged
    seed keeps its full text and is not "revised" by the shorter feed version each poll.
    """
    index = _CandidateIndex(candidates)
    intents = []
    for entry in unique_entries(entries, source_id):
        ident = identify(entry, source_id)
        digest = content_hash(entry)
        match = index.find(ident, entry)
        if match is None:
            intents.append(Intent(Action.NEW, entry, ident, digest))
        elif match.origin is Origin.SEED and match.canonical_url is None and _is_live(entry):
            intents.append(Intent(Action.MERGE, entry, ident, digest, match.id))
        elif match.content_hash != digest:
            intents.append(Intent(Action.REVISE, entry, ident, digest, match.id))
        else:
            intents.append(Intent(Action.UNCHANGED, entry, ident, digest, match.id))
    return intents


def _is_live(entry: Entry) -> bool:
    return bool(entry.link or entry.guid)


class _CandidateIndex:
    def __init__(self, candidates: Sequence[Candidate]):
        self.by_guid = {c.guid_key: c for c in candidates if c.guid_key}
        self.by_url = {c.canonical_url: c for c in candidates if c.canonical_url}
        self.by_fingerprint = {c.fingerprint: c for c in candidates}
        self.seeds = [c for c in candidates if c.origin is Origin.SEED and not c.canonical_url]
        self.seed_titles = {c.title_key: c for c in candidates if c.origin is Origin.SEED}
        self.claimed: set[int] = set()

    def find(self, ident: Identity, entry: Entry) -> Candidate | None:
        for table, key in (
            (self.by_guid, ident.guid_key),
            (self.by_url, ident.canonical_url),
        ):
            if key and key in table:
                return table[key]
        if ident.guid_key or ident.canonical_url:
            # The same title on the same day is the same story, even under a new link
            # (NATO moved its article URLs) or from another source.
            return self._seed_for(ident, entry) or self.by_fingerprint.get(ident.fingerprint)
        # No guid and no link: a re-imported seed (its date may have been re-inferred) or a
        # feed entry known only by its title and day.
        return self.by_fingerprint.get(ident.fingerprint) or self.seed_titles.get(ident.title_key)

    def _seed_for(self, ident: Identity, entry: Entry) -> Candidate | None:
        for seed in self.seeds:
            if seed.id not in self.claimed and is_same_story_as_seed(entry, ident, seed):
                self.claimed.add(seed.id)
                return seed
        return None


def is_same_story_as_seed(entry: Entry, ident: Identity, seed: Candidate) -> bool:
    if entry.published is None or abs(entry.published - seed.published) > SEED_MATCH_WINDOW:
        return False
    if ident.title_key == seed.title_key:
        return True
    from rapidfuzz import fuzz  # only needed for the rare seed candidates

    if fuzz.token_sort_ratio(ident.title_key, seed.title_key) >= SEED_TITLE_SIMILARITY:
        return True
    summary = title_key(entry.summary_text)
    return len(summary) >= 80 and summary in title_key(seed.text)
