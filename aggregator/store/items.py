"""Items and their revisions: lookups for dedupe, applying intents, listing, search."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.dedupe import SEED_MATCH_WINDOW, atom_id, fallback_atom_id, told_apart
from aggregator.models import (
    Action,
    Candidate,
    Identity,
    IngestCounts,
    Intent,
    Item,
    Origin,
    Precision,
    Revision,
)
from aggregator.store.codec import from_text, to_text

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

    def candidates_for(
        self: Archive, identities: Sequence[Identity], dates: Iterable[datetime]
    ) -> list[Candidate]:
        """Stored items that might be the same story as any of these identities.

        Titles and fingerprints are only looked up for identities whose guid and link
        matched nothing: dedupe consults them only then, and a re-poll of a big feed
        would otherwise load every item three times.
        """
        found: dict[int, Candidate] = {}
        self._find_candidates(found, "guid_key", [i.guid_key for i in identities if i.guid_key])
        urls = [i.canonical_url for i in identities if i.canonical_url]
        self._find_candidates(found, "canonical_url", urls)
        guids = {c.guid_key for c in found.values() if c.guid_key}
        holders = {c.canonical_url: c.guid_key for c in found.values() if c.canonical_url}
        rest = [i for i in identities if not _settled(i, guids, holders)]
        self._find_candidates(found, "fingerprint", [i.fingerprint for i in rest])
        self._find_candidates(found, "title_key", [i.title_key for i in rest])
        for row in self._unmerged_seeds(list(dates)):
            found[row[0]] = _candidate(row)
        return list(found.values())

    def _find_candidates(self: Archive, found: dict, column: str, keys: list[str]) -> None:
        for chunk in _chunks(sorted(set(keys))):
            marks = ",".join("?" * len(chunk))
            sql = f"{_CANDIDATE_SELECT} WHERE {column} IN ({marks})"
            for row in self.conn.execute(sql, chunk):
                if row[0] not in found:
                    found[row[0]] = _candidate(row)

    def _unmerged_seeds(self: Archive, dates: list[datetime]) -> list[tuple]:
        if not dates:
            return []
        low, high = min(dates) - SEED_MATCH_WINDOW, max(dates) + SEED_MATCH_WINDOW
        sql = (
            f"{_CANDIDATE_SELECT} WHERE origin = 'seed' AND canonical_url IS NULL "
            "AND published BETWEEN ? AND ?"
        )
        return self.conn.execute(sql, (to_text(low), to_text(high))).fetchall()

    # --- writing ---------------------------------------------------------------------------

    def apply(
        self: Archive, intents: Sequence[Intent], source_id: str, origin: Origin, seen: datetime
    ) -> IngestCounts:
        """Persist dedupe's decisions in one transaction; returns what changed."""
        new = updated = unchanged = 0
        changed: list[int] = []
        with self.transaction():
            fresh = [intent for intent in intents if intent.action is Action.NEW]
            new_ids = iter(self._insert_all(fresh, source_id, origin, seen))
            for intent in intents:
                if intent.action is Action.NEW:
                    changed.append(next(new_ids))
                    new += 1
                elif intent.action is Action.REVISE:
                    self._revise(intent, seen)
                    changed.append(intent.item_id)
                    updated += 1
                elif intent.action is Action.MERGE:
                    self._merge(intent, seen)
                    changed.append(intent.item_id)
                    updated += 1
                elif intent.action is Action.SEED_TEXT:
                    self._replace_seed_text(intent, seen)
                    changed.append(intent.item_id)
                    updated += 1
                else:
                    unchanged += 1
        return IngestCounts(new, updated, unchanged, tuple(changed))

    def _insert_all(
        self: Archive, intents: Sequence[Intent], source_id: str, origin: Origin, seen: datetime
    ) -> list[int]:
        """Insert new items in one statement; ids are given here, in document order.

        The rows go through a temporary table so that one INSERT ... SELECT fires the
        full-text trigger for all of them: FTS5 flushes its pending terms at the end of
        every statement, and a statement per item made indexing 5x slower (measured by
        benchmarks/ingest.py). Only this transaction writes, so max(id) + 1 is free.
        """
        if not intents:
            return []
        first = self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]
        stamp = to_text(seen)
        rows = [
            self._new_row(intent, first + n, source_id, origin, seen, stamp)
            for n, intent in enumerate(intents)
        ]
        self._make_atom_ids_unique(rows, intents, origin)
        columns = ", ".join(rows[0])
        marks = ", ".join("?" * len(rows[0]))
        self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS new_items AS SELECT {columns} FROM items WHERE 0"
        )
        self.conn.executemany(
            f"INSERT INTO temp.new_items ({columns}) VALUES ({marks})",
            [tuple(r.values()) for r in rows],
        )
        self.conn.execute(
            f"INSERT INTO items ({columns}) SELECT {columns} FROM temp.new_items ORDER BY id"
        )
        self.conn.execute("DELETE FROM temp.new_items")
        last = first + len(rows) - 1
        self._record_first_revisions(first, last, seen)
        return list(range(first, last + 1))

    def _make_atom_ids_unique(
        self: Archive, rows: list[dict], intents: Sequence[Intent], origin: Origin
    ) -> None:
        """An id some other item already has (a feed whose guid is another item's link)
        would fail the whole ingest on the UNIQUE constraint: such an item gets its own.

        Likewise a link another item holds (a source that links several stories, told
        apart by their guids, to one page): the first item keeps it as its canonical link
        and the later one, known by its guid, is stored without one."""
        taken_ids = self._taken("atom_id", [row["atom_id"] for row in rows])
        taken_urls = self._taken("canonical_url", [row["canonical_url"] for row in rows])
        for row, intent in zip(rows, intents, strict=True):
            if row["atom_id"] in taken_ids:
                row["atom_id"] = fallback_atom_id(intent.entry, origin, row["id"])
            taken_ids.add(row["atom_id"])
            if row["canonical_url"] in taken_urls:
                row["canonical_url"] = None
            elif row["canonical_url"]:
                taken_urls.add(row["canonical_url"])

    def _taken(self: Archive, column: str, values: list[str | None]) -> set[str]:
        """Which of these values some stored item already has in `column`."""
        taken: set[str] = set()
        for chunk in _chunks(sorted({v for v in values if v})):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {column} FROM items WHERE {column} IN ({marks})"
            taken.update(r[0] for r in self.conn.execute(sql, chunk))
        return taken

    def _new_row(
        self: Archive,
        intent: Intent,
        item_id: int,
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
            "id": item_id,
            "origin": origin.value,
            "source_id": source_id,
            "atom_id": atom_id(entry, origin, ident.canonical_url),
            "guid": entry.guid,
            "guid_key": ident.guid_key,
            "link": entry.link,
            "canonical_url": ident.canonical_url,
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

    def _record_first_revisions(self: Archive, first: int, last: int, seen: datetime) -> None:
        self.conn.execute(
            """INSERT INTO item_revisions (item_id, revision, recorded_at, title, summary_html,
                   content_html, content_hash, published, updated)
               SELECT id, 1, ?, title, summary_html, content_html, content_hash, published,
                   updated FROM items WHERE id BETWEEN ? AND ?""",
            (to_text(seen), first, last),
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
        """A seeded article gains the live entry's link and guid; its text stays.

        The canonical link too, unless another item holds it (see `_make_atom_ids_unique`).
        """
        entry, ident = intent.entry, intent.identity
        canonical = ident.canonical_url
        if canonical and self._taken("canonical_url", [canonical]):
            canonical = None
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
                canonical,
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
            marks = ",".join("?" * len(topics))
            where.append(
                f"id IN (SELECT item_id FROM item_topics WHERE topic IN ({marks}) "
                "AND matched = 1 AND score >= ?)"
            )
            params.extend([*topics, min_score])
        sql = _ITEM_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY published DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._with_topics([_item(r) for r in self.conn.execute(sql, params)])

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
        rows = self.conn.execute(
            """SELECT item_id, revision, recorded_at, title, summary_html, content_html,
                   content_hash, published, updated
               FROM item_revisions WHERE item_id = ? ORDER BY revision""",
            (item_id,),
        )
        return [
            Revision(r[0], r[1], from_text(r[2]), r[3], r[4], r[5], r[6], *map(from_text, r[7:]))
            for r in rows
        ]

    def search(self: Archive, query: str, limit: int = 20) -> list[Item]:
        """Full-text search (FTS5 syntax), best match first."""
        columns = ", ".join(f"items.{c.strip()}" for c in _ITEM_COLUMNS.split(","))
        sql = (
            f"SELECT {columns} FROM items_fts JOIN items ON items.id = items_fts.rowid "
            "WHERE items_fts MATCH ? ORDER BY items_fts.rank LIMIT ?"
        )
        return self._with_topics([_item(r) for r in self.conn.execute(sql, (query, limit))])


def _settled(ident: Identity, guids: set[str], holders: dict[str, str | None]) -> bool:
    """Found by its guid, or by its link from an item its source does not tell apart."""
    if ident.guid_key in guids:
        return True
    url = ident.canonical_url
    return url in holders and not told_apart(ident.guid_key, holders[url])


_CANDIDATE_SELECT = (
    "SELECT id, origin, guid_key, canonical_url, fingerprint, title_key, published, "
    "content_hash, CASE WHEN origin = 'seed' THEN coalesce(content_text, summary_text) END "
    "FROM items"
)
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
