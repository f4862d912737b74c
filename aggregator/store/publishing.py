"""The publish state: whether the feeds on disk are in step with the archive.

Kept in the `meta` table so that it survives a crash between the ingest commit and the
publish, and so that every process (daemon, one-off `fetch`, `serve`) sees the same state.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.models import PublishState
from aggregator.store.codec import from_text, to_text

if TYPE_CHECKING:
    from aggregator.store import Archive

OWED = "publish.owed"
OWED_SINCE = "publish.owed_since"
LAST_SUCCESS = "publish.last_success"
LAST_FAILURE = "publish.last_failure"
LAST_ERROR = "publish.last_error"
_KEYS = (OWED, OWED_SINCE, LAST_SUCCESS, LAST_FAILURE, LAST_ERROR)


class PublishingMixin:
    conn: sqlite3.Connection

    def publish_state(self: Archive) -> PublishState:
        marks = ",".join("?" * len(_KEYS))
        rows = dict(self.conn.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", _KEYS))
        return PublishState(
            owed=rows.get(OWED) == "1",
            owed_since=from_text(rows.get(OWED_SINCE)),
            last_success=from_text(rows.get(LAST_SUCCESS)),
            last_failure=from_text(rows.get(LAST_FAILURE)),
            last_error=rows.get(LAST_ERROR),
        )

    def mark_publish_owed(self: Archive, when: datetime) -> None:
        """Call inside the ingest's transaction: the debt lands with the items or not at all."""
        with self.transaction():
            if self.get_meta(OWED) != "1":
                self.set_meta(OWED_SINCE, to_text(when))
            self.set_meta(OWED, "1")

    def record_publish_success(self: Archive, when: datetime) -> None:
        with self.transaction():
            self.set_meta(OWED, "0")
            self.set_meta(LAST_SUCCESS, to_text(when))
            self.conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (LAST_ERROR, OWED_SINCE))

    def record_publish_failure(self: Archive, when: datetime, error: str) -> None:
        with self.transaction():
            self.mark_publish_owed(when)
            self.set_meta(LAST_FAILURE, to_text(when))
            self.set_meta(LAST_ERROR, " ".join(error.split())[:500])
