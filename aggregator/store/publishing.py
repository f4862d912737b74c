"""The publish state: whether the feeds on disk are in step with the archive.

Kept in the `meta` table so that it survives a crash between the ingest commit and the
publish, and so that every process (daemon, one-off `fetch`, `serve`) sees the same state.

A debt is counted, not flagged: each store that changes items adds a mark, and a publish
settles the marks that were there when it began. So a change stored while a publish runs
stays owed, and the next store can tell whether the debt is its own alone (its feeds are
then enough to publish) or older (every feed is owed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aggregator.models import PublishDebt, PublishState
from aggregator.store.codec import from_text, to_text

if TYPE_CHECKING:
    from aggregator.store import Archive

MARKS = "publish.marks"  # how many times a publish was marked owed, ever
SETTLED = "publish.settled"  # how many of those marks a successful publish has covered
OWED_SINCE = "publish.owed_since"
LAST_SUCCESS = "publish.last_success"
LAST_FAILURE = "publish.last_failure"
LAST_ERROR = "publish.last_error"
_KEYS = (MARKS, SETTLED, OWED_SINCE, LAST_SUCCESS, LAST_FAILURE, LAST_ERROR)
FIRST_PUBLISHED = "publish.first."  # + a feed's slug: when that feed was first published


class PublishingMixin:
    conn: sqlite3.Connection

    def publish_state(self: Archive) -> PublishState:
        rows = self._publish_meta()
        return PublishState(
            owed=_debt(rows).unsettled > 0,
            owed_since=from_text(rows.get(OWED_SINCE)),
            last_success=from_text(rows.get(LAST_SUCCESS)),
            last_failure=from_text(rows.get(LAST_FAILURE)),
            last_error=rows.get(LAST_ERROR),
        )

    def publish_debt(self: Archive) -> PublishDebt:
        return _debt(self._publish_meta())

    def mark_publish_owed(self: Archive, when: datetime) -> None:
        """Call inside the ingest's transaction: the debt lands with the items or not at all."""
        with self.transaction():
            debt = self.publish_debt()
            if not debt.unsettled:
                self.set_meta(OWED_SINCE, _stamp(when))
            self.set_meta(MARKS, str(debt.marks + 1))

    def record_publish_success(self: Archive, when: datetime, covers: int | None = None) -> None:
        """The feeds show the archive as it was when `covers` marks were made (read
        publish_debt().marks before publishing; None: every mark so far is settled)."""
        with self.transaction():
            rows = self._publish_meta()
            debt = _debt(rows)
            settled = debt.marks if covers is None else min(covers, debt.marks)
            settled = max(settled, int(rows.get(SETTLED) or 0))
            self.set_meta(SETTLED, str(settled))
            self.set_meta(LAST_SUCCESS, _stamp(when))
            self.conn.execute("DELETE FROM meta WHERE key = ?", (LAST_ERROR,))
            if settled == debt.marks:
                self.conn.execute("DELETE FROM meta WHERE key = ?", (OWED_SINCE,))

    def record_publish_failure(self: Archive, when: datetime, error: str) -> None:
        """The publish is owed (whatever it was for: the next one publishes every feed)."""
        with self.transaction():
            self.mark_publish_owed(when)
            self.set_meta(LAST_FAILURE, _stamp(when))
            self.set_meta(LAST_ERROR, " ".join(error.split())[:500])

    def first_published(self: Archive, slugs: Sequence[str], when: datetime) -> dict[str, datetime]:
        """When each feed was first published; a feed never published before is first
        published `when` (recorded now, to the second). An empty feed's date: it never
        changes, so an empty document keeps its bytes."""
        keys = [FIRST_PUBLISHED + slug for slug in slugs]
        if not keys:
            return {}
        known = self._meta_values(keys)
        if len(known) < len(keys):
            with self.transaction():
                self.conn.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [(key, to_text(when)) for key in keys if key not in known],
                )
                known = self._meta_values(keys)
        return {key[len(FIRST_PUBLISHED) :]: from_text(value) for key, value in known.items()}

    def never_published(self: Archive, slugs: Sequence[str]) -> set[str]:
        """The feeds no publish has written yet (a feed new to config, or a fresh archive)."""
        known = self._meta_values([FIRST_PUBLISHED + slug for slug in slugs]) if slugs else {}
        return {slug for slug in slugs if FIRST_PUBLISHED + slug not in known}

    def _meta_values(self: Archive, keys: Sequence[str]) -> dict[str, str]:
        places = ",".join("?" * len(keys))
        sql = f"SELECT key, value FROM meta WHERE key IN ({places})"
        return dict(self.conn.execute(sql, list(keys)))

    def _publish_meta(self: Archive) -> dict[str, str]:
        return self._meta_values(_KEYS)


def _stamp(when: datetime) -> str:
    """To the microsecond, unlike the archive's other dates: a publish that fails and the
    one that settles it can fall in the same second, and readers order the two."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _debt(rows: dict[str, str]) -> PublishDebt:
    marks = int(rows.get(MARKS) or 0)
    return PublishDebt(marks, marks - int(rows.get(SETTLED) or 0))
