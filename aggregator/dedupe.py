"""Identity: which stored item, if any, is this entry? Pure functions, no I/O.

Order of evidence: the source's guid, then the canonical link, then a fingerprint of
the normalized title and date. A live entry with none of those matching may still be a
seeded article (seeds have no link or guid): it merges into the seed when the titles
are equal or very similar within a few days, or the seed's text contains its summary.

A publisher's guid is the identity within its source: the link and the title-and-day
fallback may join entries across sources, entries without a guid, or a story whose link
moved, but never two entries their one source tells apart by guid (`told_apart`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from aggregator.models import (
    Action,
    Candidate,
    Entry,
    Identity,
    Intent,
    KnownEntry,
    KnownItem,
    Origin,
)

TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "selectedlocale"}
SEED_MATCH_WINDOW = timedelta(days=4)
SEED_TITLE_SIMILARITY = 90.0  # rapidfuzz token_sort_ratio, 0-100
# scheme://host/path?query#fragment with a plain host: no port, userinfo or IPv6 brackets.
_SIMPLE_URL = re.compile(r"(?i:https?)://([A-Za-z0-9.-]+)(/[^?#\s]*)?(?:\?([^#\s]*))?(?:#\S*)?")
_WORD = re.compile(r"[a-z0-9]+")
TAG_AUTHORITY = "aggregator.invalid"  # RFC 2606: owned by no one, so our tag ids clash with none


# --- keys ----------------------------------------------------------------------------------


def canonical_url(url: str | None) -> str | None:
    """The form of a link that two spellings of the same article share."""
    if not url or not url.strip():
        return None
    simple = _SIMPLE_URL.fullmatch(url.strip())
    if simple:  # the usual shape, without urlsplit's cost (a fifth of a big ingest's dedupe)
        host, path, query = simple.groups()
        return _canonical("https", host.lower(), path or "/", query or "")
    try:
        parts = urlsplit(url.strip())
        netloc = _netloc(parts)
    except ValueError:  # a malformed link ("http://[::1/", "host:abc") is no key
        return None
    if parts.scheme.lower() not in ("http", "https") or not netloc:
        return None
    return _canonical("https", netloc, parts.path or "/", parts.query)


def _canonical(scheme: str, netloc: str, path: str, query: str) -> str:
    # http and https are the same story: the canonical form always says https.
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(sorted((k, v) for k, v in pairs if not _is_tracking(k)))
    return urlunsplit((scheme, netloc, path, query, ""))


def _netloc(parts: SplitResult) -> str:
    """Lower-case host, without userinfo or a default port."""
    netloc = parts.netloc
    if not any(c in netloc for c in ":@["):  # the common case, without the slow properties
        return netloc.lower()
    host, port = (parts.hostname or "").lower(), parts.port
    return host if port in (None, 80, 443) or not host else f"{host}:{port}"


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def title_key(title: str) -> str:
    """Case, accents, quotes and punctuation folded away; single spaces."""
    text = title if title.isascii() else unicodedata.normalize("NFKD", title)
    text = text.encode("ascii", "ignore").decode() if not text.isascii() else text
    return " ".join(_WORD.findall(text.lower()))


def fingerprint(title: str, published: datetime | None) -> str:
    return _fingerprint(title_key(title), published)


def _fingerprint(key: str, published: datetime | None) -> str:
    day = published.date().isoformat() if published else ""
    return hashlib.sha256(f"{key}\x1f{day}".encode()).hexdigest()[:32]


def guid_key(source_id: str, guid: str | None) -> str | None:
    return f"{source_id}\x1f{guid.strip()}" if guid and guid.strip() else None


def told_apart(key: str | None, other: str | None) -> bool:
    """Two guid keys of one source that differ: that source says these are two stories.

    Guids of different sources say nothing about each other, and an entry without a guid
    (or an item stored before its source sent guids) is not told apart from anything."""
    if not key or not other or key == other:
        return False
    return key.partition("\x1f")[0] == other.partition("\x1f")[0]


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


def fallback_atom_id(entry: Entry, origin: Origin, item_id: int) -> str:
    """For the rare item whose natural id another item already has."""
    day = entry.published.date().isoformat() if entry.published else "2000-01-01"
    return f"tag:{TAG_AUTHORITY},{day}:{origin.value}/item-{item_id}"


def _looks_like_uri(value: str) -> bool:
    return bool(re.match(r"^(https?://|urn:|tag:)\S+$", value.strip(), re.I))


def identify(entry: Entry, source_id: str) -> Identity:
    key = title_key(entry.title)
    return Identity(
        guid_key=guid_key(source_id, entry.guid),
        canonical_url=canonical_url(entry.link),
        fingerprint=_fingerprint(key, entry.published),
        title_key=key,
    )


# --- decisions -----------------------------------------------------------------------------


def unique_identified(entries: Iterable[Entry], source_id: str) -> list[tuple[Entry, Identity]]:
    """Each entry with its identity (computed once: it is most of dedupe's time), later
    repeats of the same story within one document (same guid or link) dropped."""
    seen = _SeenInDocument()
    result = []
    for entry in entries:
        ident = identify(entry, source_id)
        if not seen.repeats(ident):
            seen.add(ident)
            result.append((entry, ident))
    return result


class _SeenInDocument:
    """The keys of the entries kept so far. A repeated guid is a repeat; so is a repeated
    link, unless the two entries have different guids; and, for entries with neither,
    a repeated title and day."""

    def __init__(self) -> None:
        self.guids: set[str] = set()
        self.guids_by_url: dict[str, list[str | None]] = {}
        self.bare: set[str] = set()  # fingerprints of entries with neither guid nor link

    def repeats(self, ident: Identity) -> bool:
        if ident.guid_key in self.guids:
            return True
        if url := ident.canonical_url:
            earlier = self.guids_by_url.get(url, ())
            return any(not told_apart(ident.guid_key, guid) for guid in earlier)
        return not ident.guid_key and ident.fingerprint in self.bare

    def add(self, ident: Identity) -> None:
        if ident.guid_key:
            self.guids.add(ident.guid_key)
        if ident.canonical_url:
            self.guids_by_url.setdefault(ident.canonical_url, []).append(ident.guid_key)
        elif not ident.guid_key:
            self.bare.add(ident.fingerprint)


def decide(
    identified: Sequence[tuple[Entry, Identity]],
    candidates: Sequence[Candidate],
    origin: Origin,
    first_new_id: int,
    held_atom_ids: Collection[str] = frozenset(),
) -> list[Intent]:
    """Each entry's complete intent: new (with the id it will get, its published id and
    link), a revision, a seed merge or unchanged.

    `candidates` are the stored items that may be these stories (`needs_title_lookup`
    says which identities they must be looked up by); their links are the ones a new item
    must not take. `held_atom_ids` are published ids stored items already have: decide
    first without them, ask the archive which of `new_atom_ids` it holds, and decide
    again with those (rare: a feed whose guid is another item's link).
    """
    held_urls = {c.canonical_url for c in candidates if c.canonical_url}
    intents = _match(identified, candidates)
    return _complete(intents, origin, first_new_id, set(held_atom_ids), held_urls)


def new_atom_ids(intents: Iterable[Intent]) -> list[str]:
    return [i.atom_id for i in intents if i.action is Action.NEW and i.atom_id]


def needs_title_lookup(
    identities: Iterable[Identity], found: Iterable[Candidate]
) -> list[Identity]:
    """The identities that stored items found by guid or link do not settle: only those
    are matched by title and day, so a re-poll of a big feed loads each item once."""
    found = list(found)
    guids = {c.guid_key for c in found if c.guid_key}
    holders = {c.canonical_url: c.guid_key for c in found if c.canonical_url}
    return [i for i in identities if not _settled(i, guids, holders)]


def still_known(known: KnownEntry, item: KnownItem) -> bool:
    """Whether reading a known entry again would find its item unchanged: the item still
    holds the content the entry gave it (another source or a seed import may have revised
    it) and is still found by the entry's own guid, or own link when it has none (not by
    title and day, where a seed imported since or another item under that link could
    answer instead)."""
    ident = known.identity
    if item.content_hash != known.content_hash:
        return False
    if ident.guid_key is not None:
        return item.guid_key == ident.guid_key
    return ident.canonical_url is not None and item.canonical_url == ident.canonical_url


def needs_every_entry(
    changed: Sequence[tuple[Entry, Identity]],
    unread: Sequence[KnownEntry],
    candidates: Sequence[Candidate],
) -> bool:
    """Whether deciding only the changed entries of a document could decide otherwise than
    deciding every entry (the others left unread as known): a changed entry shares a guid
    or a link with an unread one (a repeat, a story listed apart, a link taken), or its
    title and day when no guid or link settles it, or its candidates hold the stored item
    an unread entry went to or an item under an unread entry's link. Then every entry is
    read: correctness first, speed after."""
    guids = {known.identity.guid_key for known in unread} - {None}
    urls = {known.identity.canonical_url for known in unread} - {None}
    if any(i.guid_key in guids or i.canonical_url in urls for _, i in changed):
        return True
    fingerprints = {known.identity.fingerprint for known in unread}
    unsettled = needs_title_lookup((i for _, i in changed), candidates)
    if any(ident.fingerprint in fingerprints for ident in unsettled):
        return True
    # A stored item under an unread entry's link is "listed apart" from a title-and-day
    # match only when that link is in view.
    items = {known.item_id for known in unread}
    return any(c.id in items or c.canonical_url in urls for c in candidates)


def _settled(ident: Identity, guids: set[str], holders: dict[str, str | None]) -> bool:
    """Found by its guid, or by its link from an item its source does not tell apart."""
    if ident.guid_key in guids:
        return True
    url = ident.canonical_url
    return url in holders and not told_apart(ident.guid_key, holders[url])


def seed_window(entries: Iterable[Entry]) -> tuple[datetime, datetime] | None:
    """The published dates unmerged seeds must fall in to be one of these entries."""
    dates = [entry.published for entry in entries if entry.published]
    if not dates:
        return None
    return min(dates) - SEED_MATCH_WINDOW, max(dates) + SEED_MATCH_WINDOW


def _match(
    identified: Sequence[tuple[Entry, Identity]], candidates: Sequence[Candidate]
) -> list[Intent]:
    """Whether each entry is new, a revision, a seed merge or unchanged.

    `content_hash` on a stored item is the hash of what its source last sent, so a merged
    seed keeps its full text and is not "revised" by the shorter feed version each poll.
    """
    # A source tells its stories apart by guid, or by link when it sends no guids (NATO's
    # feed): two entries of one document under two links are two stories, and a stored
    # item whose link this document lists is not another entry's story under a moved link.
    links_here = {ident.canonical_url for _, ident in identified if ident.canonical_url}
    index = _CandidateIndex(candidates, links_here)
    intents = []
    taken: dict[int, str | None] = {}  # stored item -> guid key of the entry that is it
    new_keys: dict[str, list[Identity]] = {}  # fingerprint -> identities of new entries
    for entry, ident in identified:
        digest = content_hash(entry)
        match = index.find(ident, entry)
        if match is not None and match.id in taken:
            if not told_apart(ident.guid_key, taken[match.id]):
                continue  # the same story twice in one document
            match = None
        if match is None:
            earlier = new_keys.setdefault(ident.fingerprint, []) if entry.published else []
            if any(_same_story_in_document(ident, other) for other in earlier):
                continue  # the same title on the same day, not told apart: once
            earlier.append(ident)
            intents.append(Intent(Action.NEW, entry, ident, digest))
            continue
        taken[match.id] = ident.guid_key
        if _is_unmerged_seed(match) and _is_live(entry):
            intents.append(Intent(Action.MERGE, entry, ident, digest, match.id))
        elif _is_merged_seed(match) and not _is_live(entry):
            # The live source owns a merged item's title, summary and version; the seed
            # (re-imported) brings only its whole text.
            changed = entry.content_text and entry.content_text != match.text
            action = Action.SEED_TEXT if changed else Action.UNCHANGED
            intents.append(Intent(action, entry, ident, digest, match.id))
        elif match.content_hash != digest:
            intents.append(Intent(Action.REVISE, entry, ident, digest, match.id))
        else:
            intents.append(Intent(Action.UNCHANGED, entry, ident, digest, match.id))
    return intents


def _same_story_in_document(ident: Identity, other: Identity) -> bool:
    """Two entries of one document with the same title and day: one story unless their
    source tells them apart, by guid or by listing them under two links."""
    if told_apart(ident.guid_key, other.guid_key):
        return False
    links = (ident.canonical_url, other.canonical_url)
    return not (all(links) and links[0] != links[1])


def _complete(
    intents: list[Intent], origin: Origin, next_id: int, held_ids: set[str], held_urls: set[str]
) -> list[Intent]:
    """Ids and links for the new items, and links for merged seeds.

    A published id another item has would fail the whole store on the UNIQUE constraint:
    such an item gets its own. Likewise a link another item holds (a source that links
    several stories, told apart by their guids, to one page): the first item keeps it as
    its canonical link and the later one, known by its guid, is stored without one. New
    items are written before any merge, so they claim links first.
    """
    done = list(intents)
    for n, intent in enumerate(intents):
        if intent.action is Action.NEW:
            ident = intent.identity
            natural = atom_id(intent.entry, origin, ident.canonical_url)
            published = (
                natural
                if natural not in held_ids
                else fallback_atom_id(intent.entry, origin, next_id)
            )
            held_ids.add(published)
            url = _claim(ident.canonical_url, held_urls)
            done[n] = replace(intent, item_id=next_id, atom_id=published, canonical_url=url)
            next_id += 1
    for n, intent in enumerate(intents):
        if intent.action is Action.MERGE:
            done[n] = replace(
                intent, canonical_url=_claim(intent.identity.canonical_url, held_urls)
            )
    return done


def _claim(url: str | None, held: set[str]) -> str | None:
    """`url` unless another item holds it; then it is held."""
    if url is None or url in held:
        return None
    held.add(url)
    return url


def _is_live(entry: Entry) -> bool:
    return bool(entry.link or entry.guid)


def _is_unmerged_seed(candidate: Candidate) -> bool:
    return (
        candidate.origin is Origin.SEED
        and candidate.canonical_url is None
        and candidate.guid_key is None
    )


def _is_merged_seed(candidate: Candidate) -> bool:
    return candidate.origin is Origin.SEED and not _is_unmerged_seed(candidate)


class _CandidateIndex:
    def __init__(self, candidates: Sequence[Candidate], links_here: set[str]):
        self.links_here = links_here  # the links of the document being matched
        self.by_guid = {c.guid_key: c for c in candidates if c.guid_key}
        self.by_url = {c.canonical_url: c for c in candidates if c.canonical_url}
        self.by_fingerprint: dict[str, list[Candidate]] = {}
        for c in candidates:
            self.by_fingerprint.setdefault(c.fingerprint, []).append(c)
        self.seeds = [c for c in candidates if _is_unmerged_seed(c)]
        self.seed_titles = {c.title_key: c for c in candidates if c.origin is Origin.SEED}
        self.claimed: set[int] = set()

    def find(self, ident: Identity, entry: Entry) -> Candidate | None:
        if ident.guid_key in self.by_guid:
            return self.by_guid[ident.guid_key]
        by_url = self.by_url.get(ident.canonical_url) if ident.canonical_url else None
        if by_url is not None and not told_apart(ident.guid_key, by_url.guid_key):
            return by_url
        if ident.guid_key or ident.canonical_url:
            # The same title on the same day is the same story, even under a new link
            # (NATO moved its article URLs) or from another source.
            # Without a date, a title alone ("Weekly update") says nothing.
            by_title_and_day = self._by_title_and_day(ident) if entry.published else None
            return self._seed_for(ident, entry) or by_title_and_day
        # No guid and no link: a re-imported seed (its date may have been re-inferred) or a
        # feed entry known only by its title and day.
        return self._by_title_and_day(ident) or self.seed_titles.get(ident.title_key)

    def _by_title_and_day(self, ident: Identity) -> Candidate | None:
        return next(
            (
                c
                for c in self.by_fingerprint.get(ident.fingerprint, ())
                if not told_apart(ident.guid_key, c.guid_key) and not self._listed_apart(ident, c)
            ),
            None,
        )

    def _listed_apart(self, ident: Identity, stored: Candidate) -> bool:
        """The document lists the stored item under its own link, beside this entry."""
        url = stored.canonical_url
        return url is not None and url != ident.canonical_url and url in self.links_here

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

    # Word order, and words split or joined ("co-operation", "cooperation").
    similarity = max(
        fuzz.token_sort_ratio(ident.title_key, seed.title_key),
        fuzz.ratio(ident.title_key.replace(" ", ""), seed.title_key.replace(" ", "")),
    )
    if similarity >= SEED_TITLE_SIMILARITY:
        return True
    summary = title_key(entry.summary_text)
    return len(summary) >= 80 and summary in title_key(seed.text)
