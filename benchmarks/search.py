"""Searching a big archive: our search (ranked, with title and passage) against a bare FTS5 query.

    .venv/bin/python benchmarks/search.py [--items 20000] [--rounds 5]

A synthetic archive (a SQLite file in a temporary folder) holds `--items` feed items with
summaries and full text. Each query is run three ways for its best 50 items:

- baseline: `SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rank LIMIT 50`,
  the least an FTS5 search does;
- ranked: `Archive.search_snippets` as /search runs it (bm25 with column weights, the items'
  rows, their topics, the marked title and a passage from the summary or the full text);
- newest: the same, newest first, as /search.atom runs it.

Prints milliseconds (medians of rounds) and each ratio to the baseline. A query every item
matches is the worst case: all of them are ranked (or sorted) before the best 50 are taken.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator import pipeline  # noqa: E402
from aggregator.models import Entry  # noqa: E402
from aggregator.search import MAX_RESULTS, parse_query  # noqa: E402
from aggregator.store import Archive  # noqa: E402
from aggregator.store.sources import SourceSpec  # noqa: E402

PARAGRAPH = (
    "NATO Allies and partners met at NATO Headquarters to review cooperation on "
    "interoperability, defence capacity building and resilience, and agreed on next steps "
    "for the Individually Tailored Partnership Programmes. "
)
QUERIES = ("partners", '"defence capacity"', "Indo-Pacific", "Georgia")


def entries(count: int) -> list[Entry]:
    start = datetime(2020, 1, 1, 8, tzinfo=UTC)
    return [
        Entry(
            title=f"Meeting number {n} with {'Georgia' if n % 100 == 0 else 'Allies'}",
            link=f"https://www.nato.int/cps/en/natohq/news_{300000 + n}.htm",
            summary_text=PARAGRAPH + ("Indo-Pacific partners joined. " if n % 10 == 0 else ""),
            summary_html=f"<p>{PARAGRAPH}</p>",
            content_html="<p>" + PARAGRAPH * 10 + "</p>",
            content_text=PARAGRAPH * 10,
            published=start + timedelta(hours=n),
        )
        for n in range(count)
    ]


def median_ms(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Archive(Path(folder) / "a.db") as archive:
        archive.sync_sources([SourceSpec("nato", "NATO", "https://www.nato.int/rss", True)])
        made = entries(options.items)
        for start in range(0, len(made), 2000):
            pipeline.store_entries(archive, made[start : start + 2000], "nato")
        bare = "SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rank LIMIT ?"
        print(f"{options.items} items, best {MAX_RESULTS}, median of {options.rounds} rounds")
        print(f"{'query':<22}{'matches':>8}{'baseline':>11}{'ranked':>10}{'newest':>10}")
        for typed in QUERIES:
            fts = parse_query(typed).fts
            matches = archive.conn.execute(
                "SELECT count(*) FROM items_fts WHERE items_fts MATCH ?", (fts,)
            ).fetchone()[0]
            base = median_ms(
                lambda f=fts: archive.conn.execute(bare, (f, MAX_RESULTS)).fetchall(),
                options.rounds,
            )
            ranked = median_ms(
                lambda f=fts: archive.search_snippets(f, MAX_RESULTS), options.rounds
            )
            newest = median_ms(
                lambda f=fts: archive.search_snippets(f, MAX_RESULTS, newest_first=True),
                options.rounds,
            )
            print(
                f"{typed:<22}{matches:>8}{base:>9.1f}ms{ranked:>8.1f}ms{newest:>8.1f}ms"
                f"   ranked/baseline {ranked / base:.2f}, newest/baseline {newest / base:.2f}"
            )


if __name__ == "__main__":
    main()
