"""Items and their revisions: candidates for dedupe, applying its intents, listing, search."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.models import (
    Action,
    Candidate,
    FeedSize,
    IngestCounts,
    Intent,
    Item,
    ItemReference,
    Origin,
    Precision,
    Revision,
    SearchResult,
)
from aggregator.store.codec import from_text, to_text
from aggregator.store.topics import feed_carries

if TYPE_CHECKING:
    from aggregator.store import Archive

CHUNK = 500  # SQLite's default limit on bound parameters is 999 on old builds

_ITEM_COLUMNS = (
    "id, origin, source_id, atom_id, title, link, guid, canonical_url, summary_html, "
    "summary_text, content_html, content_text, author, categories, published, updated, "
    "precision, date_inferred, first_seen, revision, content_hash"
)


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class ItemsMixin:
    conn: sqlite3.Connection

    # --- what dedupe needs ---------------------------------------------------------------

    def candidates_where(self: Archive, column: str, keys: Iterable[str]) -> list[Candidate]:
        """Stored items whose `column` (guid_key, canonical_url, fingerprint or title_key)
        is one of `keys`."""
        if column not in _CANDIDATE_KEYS:
            raise ValueError(f"no candidate key {column!r}")
        found = []
        for chunk in _chunks(sorted(set(keys))):
            marks = ",".join("?" * len(chunk))
            sql = f"{_CANDIDATE_SELECT} WHERE {column} IN ({marks})"
            found.extend(_candidate(row) for row in self.conn.execute(sql, chunk))
        return found

    def unmerged_seeds_between(self: Archive, low: datetime, high: datetime) -> list[Candidate]:
        """Seeded items no live entry has merged into yet, published in [low, high]."""
        sql = (
            f"{_CANDIDATE_SELECT} WHERE origin = 'seed' AND canonical_url IS NULL "
            "AND published BETWEEN ? AND ?"
        )
        return [_candidate(r) for r in self.conn.execute(sql, (to_text(low), to_text(high)))]

    def held_atom_ids(self: Archive, atom_ids: Iterable[str]) -> set[str]:
        """Which of these published ids some stored item already has."""
        held: set[str] = set()
        for chunk in _chunks(sorted(set(atom_ids))):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT atom_id FROM items WHERE atom_id IN ({marks})"
            held.update(r[0] for r in self.conn.execute(sql, chunk))
        return held

    def next_item_id(self: Archive) -> int:
        """The id the next new item gets; read it in the transaction that applies intents."""
        return self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]

    # --- writing ---------------------------------------------------------------------------

    def apply(
        self: Archive, intents: Sequence[Intent], source_id: str, origin: Origin, seen: datetime
    ) -> IngestCounts:
        """Persist dedupe's decisions in one transaction; returns what changed."""
        new = updated = unchanged = 0
        changed: list[int] = []
        revised: list[int] = []
        with self.transaction():
            months = self._insert_all(
                [i for i in intents if i.action is Action.NEW], source_id, origin, seen
            )
            for intent in intents:
                if intent.action is Action.NEW:
                    changed.append(intent.item_id)
                    new += 1
                    continue
                if intent.action is Action.UNCHANGED:
                    unchanged += 1
                    continue
                if intent.action is Action.REVISE:
                    self._revise(intent, seen)
                elif intent.action is Action.MERGE:
                    self._merge(intent, seen)
                elif intent.action is Action.SEED_TEXT:
                    self._replace_seed_text(intent, seen)
                changed.append(intent.item_id)
                revised.append(intent.item_id)
                updated += 1
            months |= self._months_of(revised)
        return IngestCounts(new, updated, unchanged, tuple(changed), frozenset(months))

    def _months_of(self: Archive, item_ids: Sequence[int]) -> set[str]:
        """The months ("YYYY-MM") these items are published in."""
        months: set[str] = set()
        for chunk in _chunks(item_ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT DISTINCT substr(published, 1, 7) FROM items WHERE id IN ({marks})"
            months.update(r[0] for r in self.conn.execute(sql, chunk))
        return months

    def _insert_all(
        self: Archive, intents: Sequence[Intent], source_id: str, origin: Origin, seen: datetime
    ) -> set[str]:
        """Insert new items in one statement, with the ids dedupe gave them; returns the
        months they are published in.

        The rows go through a temporary table so that one INSERT ... SELECT fires the
        full-text trigger for all of them: FTS5 flushes its pending terms at the end of
        every statement, and a statement per item made indexing 5x slower (measured by
        benchmarks/ingest.py).
        """
        if not intents:
            return set()
        stamp = to_text(seen)
        first = self._new_row(intents[0], source_id, origin, seen, stamp)
        columns = ", ".join(first)
        marks = ", ".join("?" * len(first))
        published = list(first).index("published")
        months: set[str] = set()

        def values() -> Iterator[tuple]:  # made as SQLite takes them: 10,000 rows held 15 MB
            for intent in intents:
                row = tuple(self._new_row(intent, source_id, origin, seen, stamp).values())
                months.add(row[published][:7])
                yield row

        self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS new_items AS SELECT {columns} FROM items WHERE 0"
        )
        self.conn.executemany(f"INSERT INTO temp.new_items ({columns}) VALUES ({marks})", values())
        self.conn.execute(
            f"INSERT INTO items ({columns}) SELECT {columns} FROM temp.new_items ORDER BY id"
        )
        self.conn.execute("DELETE FROM temp.new_items")
        self._record_first_revisions([intent.item_id for intent in intents], seen)
        return months

    def _new_row(
        self: Archive,
        intent: Intent,
        source_id: str,
        origin: Origin,
        seen: datetime,
        stamp: str,
    ) -> dict:
        entry, ident = intent.entry, intent.identity
        published = entry.published or seen
        updated = max(entry.updated or published, published)
        published_text = to_text(published)
        return {
            "id": intent.item_id,
            "origin": origin.value,
            "source_id": source_id,
            "atom_id": intent.atom_id,
            "guid": entry.guid,
            "guid_key": ident.guid_key,
            "link": entry.link,
            "canonical_url": intent.canonical_url,
            "title_key": ident.title_key,
            "fingerprint": ident.fingerprint,
            "title": entry.title,
            "summary_html": entry.summary_html,
            "summary_text": entry.summary_text,
            "content_html": entry.content_html,
            "content_text": entry.content_text,
            "author": entry.author,
            "categories": json.dumps(list(entry.categories)) if entry.categories else "[]",
            "published": published_text,
            "updated": published_text if updated == published else to_text(updated),
            "precision": entry.precision.value,
            "date_inferred": int(entry.date_inferred or entry.published is None),
            "first_seen": stamp,
            "last_seen": stamp,
            "revision": 1,
            "content_hash": intent.content_hash,
        }

    def _record_first_revisions(self: Archive, item_ids: Sequence[int], seen: datetime) -> None:
        self.conn.execute(
            """INSERT INTO item_revisions (item_id, revision, recorded_at, title, summary_html,
                   content_html, content_hash, published, updated)
               SELECT id, 1, ?, title, summary_html, content_html, content_hash, published,
                   updated FROM items WHERE id BETWEEN ? AND ?""",
            (to_text(seen), min(item_ids), max(item_ids)),
        )

    def _revise(self: Archive, intent: Intent, seen: datetime) -> None:
        entry = intent.entry
        self.conn.execute(
            """UPDATE items SET title = ?, summary_html = ?, summary_text = ?,
                   content_html = coalesce(?, content_html),
                   content_text = coalesce(?, content_text),
                   author = coalesce(?, author), categories = ?,
                   updated = max(updated, ?), last_seen = ?, revision = revision + 1,
                   content_hash = ?
               WHERE id = ?""",
            (
                entry.title,
                entry.summary_html,
                entry.summary_text,
                entry.content_html,
                entry.content_text,
                entry.author,
                json.dumps(list(entry.categories)),
                to_text(max(entry.updated or seen, seen)),
                to_text(seen),
                intent.content_hash,
                intent.item_id,
            ),
        )
        self._record_revision(intent.item_id, seen)

    def _merge(self: Archive, intent: Intent, seen: datetime) -> None:
        """A seeded article gains the live entry's link and guid (and canonical link, unless
        dedupe found another item holding it); its text stays."""
        entry, ident = intent.entry, intent.identity
        self.conn.execute(
            """UPDATE items SET link = ?, guid = ?, guid_key = ?, canonical_url = ?,
                   summary_html = CASE WHEN summary_text = '' THEN ? ELSE summary_html END,
                   summary_text = CASE WHEN summary_text = '' THEN ? ELSE summary_text END,
                   last_seen = ?, content_hash = ?
               WHERE id = ?""",
            (
                entry.link,
                entry.guid,
                ident.guid_key,
                intent.canonical_url,
                entry.summary_html,
                entry.summary_text,
                to_text(seen),
                intent.content_hash,
                intent.item_id,
            ),
        )

    def _replace_seed_text(self: Archive, intent: Intent, seen: datetime) -> None:
        """A merged seed's whole text, re-imported; its live source's fields stay."""
        entry = intent.entry
        self.conn.execute(
            """UPDATE items SET content_html = ?, content_text = ?, last_seen = ?,
                   revision = revision + 1
               WHERE id = ?""",
            (entry.content_html, entry.content_text, to_text(seen), intent.item_id),
        )
        self._record_revision(intent.item_id, seen)

    def _record_revision(self: Archive, item_id: int, seen: datetime) -> None:
        """Copy the item, as it now is, into its revision history."""
        self.conn.execute(
            """INSERT INTO item_revisions (item_id, revision, recorded_at, title, summary_html,
                   content_html, content_hash, published, updated)
               SELECT id, revision, ?, title, summary_html, content_html, content_hash,
                   published, updated FROM items WHERE id = ?""",
            (to_text(seen), item_id),
        )

    # --- reading ---------------------------------------------------------------------------

    def get_item(self: Archive, item_id: int) -> Item | None:
        row = self.conn.execute(f"{_ITEM_SELECT} WHERE id = ?", (item_id,)).fetchone()
        return self._with_topics([_item(row)])[0] if row else None

    def find_item(self: Archive, reference: ItemReference) -> Item | None:
        """The item a person named: by number, else by published id, else by link."""
        if reference.number is not None:
            return self.get_item(reference.number)
        keys = [("atom_id", reference.text), ("link", reference.text)]  # link: no index
        if reference.canonical_url:  # indexed, and what two spellings of a link share
            keys.insert(1, ("canonical_url", reference.canonical_url))
        for column, value in keys:
            sql = f"SELECT id FROM items WHERE {column} = ? ORDER BY id LIMIT 1"
            row = self.conn.execute(sql, (value,)).fetchone()
            if row:
                return self.get_item(row[0])
        return None

    def get_items(self: Archive, item_ids: Sequence[int]) -> list[Item]:
        marks = ",".join("?" * len(item_ids))
        rows = self.conn.execute(f"{_ITEM_SELECT} WHERE id IN ({marks})", list(item_ids))
        return self._with_topics([_item(row) for row in rows])

    def list_items(
        self: Archive,
        *,
        origin: Origin | None = None,
        source_id: str | None = None,
        topics: Sequence[str] | None = None,
        min_score: float = 0.0,
        limit: int | None = None,
    ) -> list[Item]:
        """Items newest first; with `topics`, only those matched by one of them."""
        where, params = [], []
        if origin is not None:
            where.append("origin = ?")
            params.append(origin.value)
        if source_id is not None:
            where.append("source_id = ?")
            params.append(source_id)
        if topics:
            carried, carried_params = feed_carries(topics, min_score)
            where.append(carried)
            params.extend(carried_params)
        sql = _ITEM_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY published DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._with_topics([_item(r) for r in self.conn.execute(sql, params)])

    def feed_size(self: Archive, topics: Sequence[str], min_score: float = 0.0) -> FeedSize:
        where, params = feed_carries(topics, min_score)
        sql = f"SELECT count(*), max(updated) FROM items WHERE {where}"
        count, updated = self.conn.execute(sql, params).fetchone()
        return FeedSize(count, from_text(updated) if updated else None)

    def iter_items(self: Archive) -> Iterator[Item]:
        """Every item, oldest id first, without loading them all at once."""
        for row in self.conn.execute(f"{_ITEM_SELECT} ORDER BY id"):
            yield _item(row)

    def count_items(self: Archive, origin: Origin | None = None) -> int:
        if origin is None:
            return self.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        sql = "SELECT count(*) FROM items WHERE origin = ?"
        return self.conn.execute(sql, (origin.value,)).fetchone()[0]

    def revisions(self: Archive, item_id: int) -> list[Revision]:
        return self.revisions_of([item_id]).get(item_id, [])

    def revisions_of(self: Archive, item_ids: Sequence[int]) -> dict[int, list[Revision]]:
        """Each item's revisions, oldest first (items without any are not keys)."""
        found: dict[int, list[Revision]] = {}
        for chunk in _chunks(item_ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"""SELECT item_id, revision, recorded_at, title, summary_html, content_html,
                       content_hash, published, updated
                    FROM item_revisions WHERE item_id IN ({marks}) ORDER BY item_id, revision""",
                list(chunk),
            )
            for row in rows:
                found.setdefault(row[0], []).append(_revision(row))
        return found

    def item_ids(self: Archive) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT id FROM items")}

    def search(self: Archive, query: str, limit: int = 20) -> list[Item]:
        """Full-text search (FTS5 syntax), best match first."""
        return [found.item for found in self.search_snippets(query, limit)]

    def search_snippets(
        self: Archive, query: str, limit: int = 20, *, newest_first: bool = False
    ) -> list[SearchResult]:
        """Full-text search (FTS5 syntax), best match first (bm25, a title counting most)
        or the newest matches first, each item with a passage around what matched."""
        columns = ", ".join(f"items.{c.strip()}" for c in _ITEM_COLUMNS.split(","))
        order = (
            "items.published DESC, items.id DESC"
            if newest_first
            else f"bm25(items_fts, {_BM25_WEIGHTS})"
        )
        # The best `limit` chosen first: a sort over every match would mark a title and
        # cut passages for each of them (30x slower for 20,000 matches, benchmarks/search.py).
        # The unary + keeps FTS5 from looking each chosen rowid up on its own: for a phrase
        # that is slower than one pass over the matches.
        chosen = (
            "SELECT items_fts.rowid FROM items_fts JOIN items ON items.id = items_fts.rowid "
            f"WHERE items_fts MATCH :query ORDER BY {order} LIMIT :limit"
        )
        sql = (
            f"SELECT {columns}, highlight(items_fts, 0, :start, :end), "
            f"{_snippet(1)}, {_snippet(2)} "
            "FROM items_fts JOIN items ON items.id = items_fts.rowid "
            f"WHERE items_fts MATCH :query AND +items_fts.rowid IN ({chosen}) ORDER BY {order}"
        )
        marks = {"start": _MARK_START, "end": _MARK_END}
        rows = self.conn.execute(sql, {**marks, "query": query, "limit": limit}).fetchall()
        items = self._with_topics([_item(row) for row in rows])
        return [
            SearchResult(item, _runs(row[-3]), _runs(_matched_or_first(row[-2], row[-1])))
            for item, row in zip(items, rows, strict=True)
        ]


def _snippet(column: int) -> str:
    """A column's passage around what matched (its first words when nothing did)."""
    return f"snippet(items_fts, {column}, :start, :end, '…', {SNIPPET_TOKENS})"


def _matched_or_first(summary: str | None, content: str | None) -> str:
    """The passage to show besides the title: the summary's if a match is in it, else the
    full text's if one is there, else the summary's first words."""
    for passage in (summary, content):
        if passage and _MARK_START in passage:
            return passage
    return summary or content or ""


SNIPPET_TOKENS = 24  # words in a search result's passage
_BM25_WEIGHTS = "5.0, 2.0, 1.0"  # title, summary_text, content_text
# Around matched words in a snippet: control characters no stored text holds (see xmlchars),
# so what they enclose is what SQLite marked and nothing a source wrote.
_MARK_START, _MARK_END = "\x02", "\x03"
_MARKED = re.compile(f"{_MARK_START}([^{_MARK_START}{_MARK_END}]*){_MARK_END}")


def _runs(snippet: str) -> tuple[tuple[str, bool], ...]:
    runs: list[tuple[str, bool]] = []
    at = 0
    for match in _MARKED.finditer(snippet):
        runs.append((snippet[at : match.start()], False))
        runs.append((match[1], True))
        at = match.end()
    runs.append((snippet[at:], False))
    strays = str.maketrans("", "", _MARK_START + _MARK_END)
    return tuple((text.translate(strays), matched) for text, matched in runs if text)


_CANDIDATE_SELECT = (
    "SELECT id, origin, guid_key, canonical_url, fingerprint, title_key, published, "
    "content_hash, CASE WHEN origin = 'seed' THEN coalesce(content_text, summary_text) END "
    "FROM items"
)
_CANDIDATE_KEYS = ("guid_key", "canonical_url", "fingerprint", "title_key")
_ITEM_SELECT = f"SELECT {_ITEM_COLUMNS} FROM items"
_ORIGINS = {origin.value: origin for origin in Origin}


def _candidate(row: tuple) -> Candidate:
    return Candidate(
        id=row[0],
        origin=_ORIGINS[row[1]],
        guid_key=row[2],
        canonical_url=row[3],
        fingerprint=row[4],
        title_key=row[5],
        published=from_text(row[6]),
        content_hash=row[7],
        text=row[8] or "",
    )


def _revision(r: tuple) -> Revision:
    return Revision(r[0], r[1], from_text(r[2]), r[3], r[4], r[5], r[6], *map(from_text, r[7:]))


def _item(row: tuple) -> Item:
    return Item(
        id=row[0],
        origin=Origin(row[1]),
        source_id=row[2],
        atom_id=row[3],
        title=row[4],
        link=row[5],
        guid=row[6],
        canonical_url=row[7],
        summary_html=row[8],
        summary_text=row[9],
        content_html=row[10],
        content_text=row[11],
        author=row[12],
        categories=tuple(json.loads(row[13])),
        published=from_text(row[14]),
        updated=from_text(row[15]),
        precision=Precision(row[16]),
        date_inferred=bool(row[17]),
        first_seen=from_text(row[18]),
        revision=row[19],
        content_hash=row[20],
    )
