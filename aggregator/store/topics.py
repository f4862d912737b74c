"""Which topics each item matched, with the score and the rules that fired."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from aggregator.models import Item, TopicScore

if TYPE_CHECKING:
    from aggregator.store import Archive


def feed_carries(topics: Sequence[str], min_score: float) -> tuple[str, list]:
    """The feed-selection rule as a condition on `items` and its parameters: a feed without
    topics carries every item; one with topics, the items one of them matched with at least
    `min_score`. The one SQL form of `aggregator.publish.topics_carrying` (tests hold them
    equal). EXISTS looks each item up by its key, so a range on `published` keeps its index."""
    if not topics:
        return "1", []
    marks = ",".join("?" * len(topics))
    clause = (
        "EXISTS (SELECT 1 FROM item_topics WHERE item_topics.item_id = items.id "
        f"AND topic IN ({marks}) AND matched = 1 AND score >= ?)"
    )
    return clause, [*topics, min_score]


class TopicsMixin:
    conn: sqlite3.Connection

    def save_scores(
        self: Archive, scores: Iterable[TopicScore], *, replace_items: Sequence[int] = ()
    ) -> None:
        """Write scores; every earlier score of `replace_items` is dropped first."""
        with self.transaction():
            self.conn.executemany(
                "DELETE FROM item_topics WHERE item_id = ?",
                [(item_id,) for item_id in replace_items],
            )
            self.conn.executemany(
                """INSERT INTO item_topics (item_id, topic, score, matched, rules)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(item_id, topic) DO UPDATE SET score = excluded.score,
                       matched = excluded.matched, rules = excluded.rules""",
                (  # a generator: the rows are made as SQLite takes them, never all at once
                    (
                        s.item_id,
                        s.topic,
                        s.score,
                        int(s.matched),
                        json.dumps(s.rules) if s.rules else "[]",
                    )
                    for s in scores
                ),
            )

    def clear_scores(self: Archive) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM item_topics")

    def unscored_item_ids(self: Archive) -> list[int]:
        rows = self.conn.execute(
            "SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM item_topics) ORDER BY id"
        )
        return [r[0] for r in rows]

    def matched_rules(self: Archive, item_ids: Sequence[int]) -> dict[int, dict[str, tuple]]:
        """For each item, the topics it matched and the rules that fired for each (as classify
        recorded them: dicts of "rule", "field", "weight" and "match")."""
        found: dict[int, dict[str, tuple]] = {}
        for item_id, topic, rules in self._matched_topics(item_ids, "rules"):
            found.setdefault(item_id, {})[topic] = tuple(json.loads(rules))
        return found

    def _matched_topics(self: Archive, item_ids: Sequence[int], column: str) -> Iterator[tuple]:
        """(item_id, topic, `column`) of the topics the items matched, 500 ids a query
        (SQLite's limit on bound parameters)."""
        for start in range(0, len(item_ids), 500):
            chunk = list(item_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            yield from self.conn.execute(
                f"SELECT item_id, topic, {column} FROM item_topics "
                f"WHERE matched = 1 AND item_id IN ({marks})",
                chunk,
            )

    def _with_topics(self: Archive, items: list[Item]) -> list[Item]:
        """Attach matched topics and their scores to items read from the archive."""
        if not items:
            return items
        topics: dict[int, dict[str, float]] = {}
        for item_id, topic, score in self._matched_topics([item.id for item in items], "score"):
            topics.setdefault(item_id, {})[topic] = score
        # An item read from the archive has no topics yet: only those that have some change.
        return [
            replace(item, topics=topics[item.id]) if item.id in topics else item for item in items
        ]
