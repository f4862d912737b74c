"""The queries publish needs: an output feed's items, month by month."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from aggregator.models import Item
from aggregator.store.items import _ITEM_SELECT, _item
from aggregator.store.topics import feed_carries

if TYPE_CHECKING:
    from aggregator.store import Archive

_MONTH = "substr(published, 1, 7)"  # 'YYYY-MM' of the stored UTC text date


class FeedsMixin:
    conn: sqlite3.Connection
    _depth: int

    @contextmanager
    def consistent_read(self: Archive) -> Iterator[None]:
        """Several reads that see one state of the archive (a deferred transaction: in WAL
        mode it takes no lock that would stop a writer). Inside a transaction: that one."""
        if self._depth or self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def feed_months(self: Archive, topics: Sequence[str], min_score: float = 0.0) -> list[str]:
        """The months ('YYYY-MM', by published date in UTC) that hold a matching item,
        oldest first."""
        where, params = feed_carries(topics, min_score)
        sql = f"SELECT DISTINCT {_MONTH} FROM items WHERE {where} ORDER BY 1"
        return [row[0] for row in self.conn.execute(sql, params)]

    def feed_month_items(
        self: Archive, month: str, topics: Sequence[str], min_score: float = 0.0
    ) -> list[Item]:
        """Every matching item published in `month` ('YYYY-MM'), newest first."""
        where, params = feed_carries(topics, min_score)
        # A range on `published` uses its index, where substr() would scan.
        sql = (
            f"{_ITEM_SELECT} WHERE {where} AND published >= ? AND published < ? "
            "ORDER BY published DESC, id DESC"
        )
        rows = self.conn.execute(sql, [*params, f"{month}-01", _next_month(month) + "-01"])
        return self._with_topics([_item(row) for row in rows])


def _next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"
