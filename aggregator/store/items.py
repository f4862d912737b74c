"""Items and their revisions: lookups for dedupe, applying intents, listing, search."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.dedupe import SEED_MATCH_WINDOW, Action, Candidate, Identity, Intent, atom_id
from aggregator.models import IngestCounts, Item, Origin, Precision, Revision
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
        """Stored items that might be the same story as any of these identities."""
        found: dict[int, Candidate] = {}
        for column, keys in (
            ("guid_key", [i.guid_key for i in identities if i.guid_key]),
            ("canonical_url", [i.canonical_url for i in identities if i.canonical_url]),
            ("fingerprint", [i.fingerprint for i in identities]),
            ("title_key", [i.title_key for i in identities]),
        ):
            for chunk in _chunks(sorted(set(keys))):
                marks = ",".join("?" * len(chunk))
                sql = f"{_CANDIDATE_SELECT} WHERE {column} IN ({marks})"
                for row in self.conn.execute(sql, chunk):
                    found[row[0]] = _candidate(row)
        for row in self._unmerged_seeds(list(dates)):
            found[row[0]] = _candidate(row)
        return list(found.values())

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
            for intent in intents:
                if intent.action is Action.NEW:
                    changed.append(self._insert(intent, source_id, origin, seen))
                    new += 1
                elif intent.action is Action.REVISE:
                    self._revise(intent, seen)
                    changed.append(intent.item_id)
                    updated += 1
                elif intent.action is Action.MERGE:
                    self._merge(intent, seen)
                    changed.append(intent.item_id)
                    updated += 1
                else:
                    unchanged += 1
        return IngestCounts(new, updated, unchanged, tuple(changed))

    def _insert(
        self: Archive, intent: Intent, source_id: str, origin: Origin, seen: datetime
    ) -> int:
        entry, ident = intent.entry, intent.identity
        published = entry.published or seen
        updated = max(entry.updated or published, published)
        row = {
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
            "categories": json.dumps(list(entry.categories)),
            "published": to_text(published),
            "updated": to_text(updated),
            "precision": entry.precision.value,
            "date_inferred": int(entry.date_inferred or entry.published is None),
            "first_seen": to_text(seen),
            "last_seen": to_text(seen),
            "revision": 1,
            "content_hash": intent.content_hash,
        }
        cursor = self.conn.execute(
            f"INSERT INTO items ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        self._record_revision(cursor.lastrowid, 1, seen)
        return cursor.lastrowid

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
        revision = self.conn.execute(
            "SELECT revision FROM items WHERE id = ?", (intent.item_id,)
        ).fetchone()[0]
        self._record_revision(intent.item_id, revision, seen)

    def _merge(self: Archive, intent: Intent, seen: datetime) -> None:
        """A seeded article gains the live entry's link and guid; its text stays."""
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
                ident.canonical_url,
                entry.summary_html,
                entry.summary_text,
                to_text(seen),
                intent.content_hash,
                intent.item_id,
            ),
        )

    def _record_revision(self: Archive, item_id: int, revision: int, seen: datetime) -> None:
        self.conn.execute(
            """INSERT INTO item_revisions (item_id, revision, recorded_at, title, summary_html,
                   content_html, content_hash, published, updated)
               SELECT id, ?, ?, title, summary_html, content_html, content_hash, published,
                   updated FROM items WHERE id = ?""",
            (revision, to_text(seen), item_id),
        )

    # --- reading ---------------------------------------------------------------------------

    def get_item(self: Archive, item_id: int) -> Item | None:
        row = self.conn.execute(f"{_ITEM_SELECT} WHERE id = ?", (item_id,)).fetchone()
        return self._with_topics([_item(row)])[0] if row else None

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
        sql = (
            f"{_ITEM_SELECT} WHERE id IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?"
            " ORDER BY rank LIMIT ?)"
        )
        ranked = self.conn.execute(
            "SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        ).fetchall()
        order = {row[0]: n for n, row in enumerate(ranked)}
        items = [_item(r) for r in self.conn.execute(sql, (query, limit))]
        return self._with_topics(sorted(items, key=lambda item: order[item.id]))


_CANDIDATE_SELECT = (
    "SELECT id, origin, guid_key, canonical_url, fingerprint, title_key, published, "
    "content_hash, coalesce(content_text, summary_text) FROM items"
)
_ITEM_SELECT = f"SELECT {_ITEM_COLUMNS} FROM items"


def _candidate(row: tuple) -> Candidate:
    return Candidate(
        id=row[0],
        origin=Origin(row[1]),
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
